#!/usr/bin/env bash
# Restart-to-first-apply and drain time of a PostgreSQL -> PostgreSQL
# migration that resumes in phase replicating, for one or more midflight
# binaries side by side on the same servers and migration.
#
#   bench/pg_restart_bench.sh OLD_BIN NEW_BIN ...
#
# pgbench -i -s $SCALE on a throwaway source, `midflight run` (the first
# binary) until replicating, stopped. Then $ROUNDS rounds; per round, per
# binary (the order alternates): pgbench -c 4 -T $BACKLOG_SECONDS on the
# source with midflight stopped, then `midflight run` timed from exec:
#   first  - until the target's checkpoint table first changes (a watcher
#            session on the target polls it every 10 ms: binary-independent)
#   drain  - until `midflight status` shows applied_position >= the source's
#            flush position after pgbench
# Prints one line per run and the medians per binary.
#
# Environment: SRC_PORT (18601), DST_PORT (18602), SCALE (10), ROUNDS (3),
# BACKLOG_SECONDS (20), POLL (0.1), KEEP=1 keeps the work directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TESTDB=$ROOT/scripts/testdb
SRC_PORT=${SRC_PORT:-18601}
DST_PORT=${DST_PORT:-18602}
SCALE=${SCALE:-10}
ROUNDS=${ROUNDS:-3}
BACKLOG_SECONDS=${BACKLOG_SECONDS:-20}
POLL=${POLL:-0.1}
TIMEOUT=${TIMEOUT:-600}
KEEP=${KEEP:-}
(($# >= 1)) || { echo "usage: $0 MIDFLIGHT_BIN..." >&2; exit 2; }
BINS=()
for b in "$@"; do BINS+=("$(readlink -f "$b")"); done
source "$ROOT/bench/lib.sh"

WORK=$(mktemp -d /tmp/mf-restart-bench.XXXXXX)
chmod 755 "$WORK"
MF_PID=
WATCH_PID=
cleanup() {
  local rc=$?
  set +e
  [[ -n $WATCH_PID ]] && kill "$WATCH_PID" 2>/dev/null
  if [[ -n $MF_PID ]]; then kill -TERM "$MF_PID" 2>/dev/null; sleep 1; kill -9 "$MF_PID" 2>/dev/null; fi
  cleanup_work "$WORK/src" "$WORK/dst"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "signal received" >&2; exit 130' INT TERM
sql_src() { psql_to "$SRC" "$@"; }

"$TESTDB" start pg "$WORK/src" "$SRC_PORT" >/dev/null
"$TESTDB" start pg "$WORK/dst" "$DST_PORT" >/dev/null
SRC=$("$TESTDB" uri "$WORK/src")
DST=$("$TESTDB" uri "$WORK/dst")
psql_to "$DST" -c "CREATE DATABASE rd"
TGT=$("$TESTDB" uri "$WORK/dst" rd)
pgbench -i -q -s "$SCALE" "$SRC" >"$WORK/pgbench-init.log" 2>&1
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"

SPEC=$WORK/rd.yaml
MF_LOG=$WORK/midflight.log
cat >"$SPEC" <<YAML
name: rd
source: $SRC
target: $TGT
state_dir: $WORK/state
YAML
MF=${BINS[0]}
log "initial copy with $MF"
mf_start
mf_wait_phase replicating
mf_wait_applied "$(flush_lsn)"
mf_stop

# watch_first FILE: a target session that writes the epoch time at which
# midflight.checkpoints first differs from what it holds now.
watch_first() {
  psql_to "$TGT" -c "DO \$\$ DECLARE s text; c text; BEGIN
      SELECT string_agg(part || ':' || commit_lsn || ':' || seq, ',' ORDER BY part) INTO s FROM midflight.checkpoints;
      COMMIT;  -- each look in its own transaction: no lock held between looks
      LOOP
        PERFORM pg_sleep(0.01);
        SELECT string_agg(part || ':' || commit_lsn || ':' || seq, ',' ORDER BY part) INTO c FROM midflight.checkpoints;
        EXIT WHEN c IS DISTINCT FROM s;
        COMMIT;
      END LOOP;
      RAISE WARNING 'first %', extract(epoch FROM clock_timestamp());
    END \$\$" 2>&1 | sed -n 's/.*first \([0-9.]*\).*/\1/p' >"$1"
}

declare -A FIRST=() DRAIN=()
for ((r = 1; r <= ROUNDS; r++)); do
  order=("${!BINS[@]}")
  ((r % 2 == 0)) && order=($(printf '%s\n' "${order[@]}" | tac))
  for i in "${order[@]}"; do
    MF=${BINS[$i]}
    pgbench -c 4 -j 2 -T "$BACKLOG_SECONDS" "$SRC" >"$WORK/pgbench.log" 2>&1
    read -r tx tps < <(pgbench_field "$WORK/pgbench.log")
    goal=$(flush_lsn)
    watch_first "$WORK/first" &
    WATCH_PID=$!
    sleep 0.5
    t0=$(now)
    mf_start
    mf_wait_applied "$goal"
    drain=$(since "$t0")
    wait "$WATCH_PID" || true
    WATCH_PID=
    first=$(awk -v a="$t0" -v b="$(cat "$WORK/first")" 'BEGIN { printf "%.2f", b - a }')
    mf_stop
    FIRST[$i]+="$first "
    DRAIN[$i]+="$drain "
    log "round $r, binary $i ($MF): backlog $tx transactions ($tps tps): first apply after $first s, drained in $drain s"
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
printf '%-60s %22s %16s\n' "binary" "start to first apply s" "drain s"
for i in "${!BINS[@]}"; do
  printf '%-60s %22s %16s\n' "${BINS[$i]}" "$(median <<<"${FIRST[$i]}") (${FIRST[$i]% })" "$(median <<<"${DRAIN[$i]}") (${DRAIN[$i]% })"
done
grep -E '^[0-9T:.-]+Z' "$MF_LOG" >"$WORK/timed.log" || true
[[ -n $KEEP ]] && echo "log: $MF_LOG"
exit 0
