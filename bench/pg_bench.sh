#!/usr/bin/env bash
# midflight benchmark: one run, the same pgbench data, the same two throwaway
# PostgreSQL 15 servers, every method side by side.
#
#   bench/pg_bench.sh
#
#   1. copy (schema + data + primary keys, each into a fresh empty database):
#        raw     psql COPY TO | psql COPY FROM, one pipe per table, in parallel
#        dump    pg_dump -Fd -j 2 + pg_restore -j 2
#        pgcopydb  pgcopydb clone --table-jobs 2 --index-jobs 2
#        native  logical replication initial sync (CREATE SUBSCRIPTION, copy_data)
#        midflight  `midflight run` until phase "replicating" (+ its peak RSS)
#   2. drain: midflight and the native subscription are both paused, one
#      pgbench run builds the backlog, then each drains it alone (timed)
#   3. steady lag: max midflight lag_seconds under pgbench -R $LAG_RATE
#   4. midflight compare (must say equal)
#
# Knobs (environment):
#   SCALE=100          pgbench scale (100 = 10 M rows in pgbench_accounts)
#   DRAIN_SECONDS=60   pgbench -c 4 -T duration that builds the drain backlog
#   SKIP=              comma list of: raw,dump,pgcopydb,native,midflight,drain,lag,compare
#   MF_WORKERS=2       midflight copy_workers; a comma list ("2,4") times the copy once
#                      per value, the last one is kept for drain, lag and compare; a value
#                      with "after" ("2after") sets early_indexes: false (every index
#                      built after the whole copy, as before early index builds), so
#                      MF_WORKERS=2after,2 times both ways side by side
#   MF_SPEC_EXTRA=     extra YAML lines for midflight's spec ("chunk_rows: 1000000")
#   MF_PARTITIONS=     midflight apply partitions (default: the spec's default, cores 2-8)
#   LAG_RATE=500 LAG_SECONDS=20   the steady-lag pgbench (-R, -T)
#   DST_SETTINGS="fsync=on synchronous_commit=off"  extra postgresql.conf lines for the target
#                      (a durable disk with non-durable commits, as teams run apply targets)
#   SCALES=            scale mode instead of 1-4: a comma list of pgbench scales ("10,100,300");
#                      per scale the source is loaded again, then pgcopydb and midflight copy it
#                      (seconds, rows/s, peak RSS of each); then, on the largest scale, midflight
#                      drains one backlog per DRAIN_SERIES entry (pgbench -c 4 -T seconds, default
#                      "30,60,120"; empty skips it): seconds, changes/s, peak RSS
#   SRC_PORT=27432 DST_PORT=27433 TIMEOUT=7200 (seconds, per wait) KEEP=1 (keep the temp dir)
#   MIDFLIGHT_BIN=path  use this binary instead of building (scripts/build honours
#                       MIDFLIGHT_BUILD_DIR for a separate build directory)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTDB=$ROOT/scripts/testdb
source "$ROOT/bench/lib.sh"
SCALE=${SCALE:-100}
DRAIN_SECONDS=${DRAIN_SECONDS:-60}
SKIP=${SKIP:-}
MF_WORKERS=${MF_WORKERS:-2}
LAG_RATE=${LAG_RATE:-500}
LAG_SECONDS=${LAG_SECONDS:-20}
SRC_PORT=${SRC_PORT:-27432}
DST_PORT=${DST_PORT:-27433}
TIMEOUT=${TIMEOUT:-7200}
KEEP=${KEEP:-}
POLL=0.2
TABLES=(pgbench_accounts pgbench_branches pgbench_tellers pgbench_history)
export PGPASSWORD=midflight PGAPPNAME=midflight-bench

known="raw dump pgcopydb native midflight drain lag compare"
for s in ${SKIP//,/ }; do
  [[ " $known " == *" $s "* ]] || { echo "pg_bench.sh: SKIP: unknown '$s' (known: ${known// /,})" >&2; exit 2; }
done
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }
IFS=, read -r -a MF_W <<<"$MF_WORKERS"

# ---------------------------------------------------------------- helpers --

WORK=
MF_PID=
LOAD_PID=
COPY_PIDS=()
cleanup() {
  local rc=$?
  set +e
  [[ -n $LOAD_PID ]] && kill "$LOAD_PID" 2>/dev/null
  for p in "${COPY_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  if [[ -n $MF_PID ]]; then kill -TERM "$MF_PID" 2>/dev/null; sleep 1; kill -9 "$MF_PID" 2>/dev/null; fi
  cleanup_work "$WORK/src" "$WORK/dst"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sql_src() { psql_to "$SRC" "$@"; }
dst_uri() { "$TESTDB" uri "$WORK/dst" "$1"; }
fresh_db() {
  psql_to "$DST" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
}
drop_db() { psql_to "$DST" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)"; }
# Sanity check after each copy: row counts equal the source's, 3 primary keys.
check_copy() {
  local db=$1 t n m pk
  for t in "${TABLES[@]}"; do
    n=$(sql_src -c "SELECT count(*) FROM $t")
    m=$(psql_to "$(dst_uri "$db")" -c "SELECT count(*) FROM $t")
    [[ $n == "$m" ]] || die "$db: $t has $m rows on the target, $n on the source"
  done
  pk=$(psql_to "$(dst_uri "$db")" -c "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid::regclass::text LIKE 'pgbench_%'")
  [[ $pk == 3 ]] || die "$db: expected 3 primary keys on the target, found $pk"
  log "checked: row counts match the source, primary keys present"
}

# midflight
SPEC=
MF_LOG=
mf_wait_streaming() {  # after mf_start: until this process logs a metrics line with the source connected
  local deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    mf_check_alive "starting"
    tail -n +"$((MF_LOG_MARK + 1))" "$MF_LOG" | grep '^\[replicating\] lag' | grep -vq disconnected && return 0
    sleep "$POLL"
  done
  die "midflight did not start streaming in ${TIMEOUT}s"
}

# native logical replication
NATIVE_DB=bench_native
native_sql() { psql_to "$(dst_uri "$NATIVE_DB")" "$@"; }
native_drop() {
  native_sql -c "DROP SUBSCRIPTION IF EXISTS bench_sub" >/dev/null
  drop_slot bench_sub
  sql_src -c "DROP PUBLICATION IF EXISTS bench_pub"
  drop_db "$NATIVE_DB"
}

# results
declare -A COPY_S=()   # method -> seconds
COPY_ORDER=()
COPY_LABEL=()
MF_RSS=()              # per MF_W entry
# add_copy when a copy method has ended (cpu_mark before it started; lib.sh).
add_copy() {
  COPY_ORDER+=("$1"); COPY_LABEL+=("$2"); COPY_S[$1]=$3
  copy_cpu "$1"
  log "$2: $3 s (CPU s: source, target, tools: ${COPY_CPU[$1]})"
}

# ------------------------------------------------------------- scale mode --
# tree_rss_mb PID: the resident memory of PID and all its descendants, in MB.
tree_rss_mb() {
  awk -v root="$1" 'FNR == 1 { split($0, f, ") "); split(f[2], g, " "); pid = FILENAME; sub("/proc/", "", pid); sub("/stat", "", pid); parent[pid] = g[2]; rss[pid] = g[22] }
    END { total = 0; for (p in parent) { q = p; while (q != "" && q != 0 && q != root) q = parent[q]; if (q == root) total += rss[p] }
          printf "%.0f", total * 4096 / 1048576 }' /proc/[0-9]*/stat 2>/dev/null
}
# peak_tree_rss PID FILE: samples tree_rss_mb every 0.5 s while PID lives; the maximum in FILE.
peak_tree_rss() {
  local max=0 r
  while kill -0 "$1" 2>/dev/null; do
    r=$(tree_rss_mb "$1"); ((r > max)) && max=$r
    echo "$max" >"$2"
    sleep 0.5
  done
}
scale_mode() {
  local scales drains i n rows secs rps spec sampler
  IFS=, read -r -a scales <<<"$SCALES"
  IFS=, read -r -a drains <<<"${DRAIN_SERIES-30,60,120}"
  local -a S_ROWS S_MB S_INIT S_PGC S_PGC_RSS S_MF S_MF_RSS S_LOAD D_TX D_S D_RSS D_BYTES D_LOAD
  local w=${MF_W[${#MF_W[@]}-1]}
  log "scale mode: scales ${SCALES}, drain series ${DRAIN_SERIES-30,60,120}, midflight copy_workers ${w%after}; disk free in /tmp: $(df -h --output=avail /tmp | tail -1)"
  for i in "${!scales[@]}"; do
    n=${scales[$i]}
    section "scale $n"
    t0=$(now)
    pgbench -i -s "$n" -q "$SRC" >"$WORK/pgbench-init.log" 2>&1 || die "pgbench -i -s $n failed: $(tail -3 "$WORK/pgbench-init.log")"
    S_INIT[i]=$(since "$t0")
    sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
    sql_src -c "CHECKPOINT"
    rows=0
    for t in "${TABLES[@]}"; do rows=$((rows + $(sql_src -c "SELECT count(*) FROM $t"))); done
    S_ROWS[i]=$rows
    S_MB[i]=$(sql_src -c "SELECT pg_database_size(current_database()) / 1048576")
    log "pgbench -i -s $n: $rows rows, ${S_MB[$i]} MB, in ${S_INIT[$i]} s; disk free in /tmp: $(df -h --output=avail /tmp | tail -1)"
    if ! skipped pgcopydb; then
      fresh_db bench_pgcopydb
      t0=$(now)
      pgcopydb clone --source "$SRC" --target "$(dst_uri bench_pgcopydb)" --table-jobs 2 --index-jobs 2 \
        --dir "$WORK/pgcopydb" >"$WORK/pgcopydb.log" 2>&1 &
      COPY_PIDS=($!)
      peak_tree_rss "${COPY_PIDS[0]}" "$WORK/pgcopydb.rss" &
      sampler=$!
      wait "${COPY_PIDS[0]}" || die "pgcopydb clone failed at scale $n (see $WORK/pgcopydb.log)"
      S_PGC[i]=$(since "$t0")
      COPY_PIDS=()
      wait "$sampler" || true
      S_PGC_RSS[i]=$(cat "$WORK/pgcopydb.rss" 2>/dev/null || echo -)
      log "pgcopydb: ${S_PGC[$i]} s, peak RSS of its processes (sampled every 0.5 s) ${S_PGC_RSS[$i]} MB"
      check_copy bench_pgcopydb
      drop_db bench_pgcopydb
      rm -rf "$WORK/pgcopydb"
    fi
    fresh_db bench_midflight
    SPEC=$WORK/midflight-scale.yaml
    MF_LOG=$WORK/midflight-scale-$n.log
    rm -rf "$WORK/midflight-state"
    cat >"$SPEC" <<YAML
name: bench
source: $SRC
target: $(dst_uri bench_midflight)
state_dir: $WORK/midflight-state
copy_workers: ${w%after}
${MF_PARTITIONS:+partitions: $MF_PARTITIONS}
${MF_SPEC_EXTRA:-}
YAML
    t0=$(now)
    mf_start
    mf_wait_phase replicating
    S_MF[i]=$(since "$t0")
    S_MF_RSS[i]=$(mf_peak_rss_mb)
    S_LOAD[i]=$(cut -d' ' -f1 /proc/loadavg)
    log "midflight: ${S_MF[$i]} s, peak RSS ${S_MF_RSS[$i]} MB (load average ${S_LOAD[$i]})"
    check_copy bench_midflight
    if ((i < ${#scales[@]} - 1)) || ((${#drains[@]} == 0)); then
      mf_stop
      drop_slot midflight_bench
      sql_src -c "DROP PUBLICATION IF EXISTS midflight_bench"
      drop_db bench_midflight
    fi
  done
  # Drain series, on the last scale's data: midflight stopped while pgbench
  # builds a backlog of D seconds, then timed until it applied all of it.
  # Each drain is a new process: its VmHWM is that drain's peak (start-up included).
  for i in "${!drains[@]}"; do
    local d=${drains[$i]} before after
    section "drain series: backlog of pgbench -c 4 -T $d"
    [[ -n $MF_PID ]] && { mf_wait_streaming; mf_wait_applied "$(flush_lsn)"; mf_stop; }
    before=$(flush_lsn)
    pgbench -c 4 -T "$d" "$SRC" >"$WORK/pgbench-drain-$d.log" 2>&1 || die "pgbench failed: $(tail -3 "$WORK/pgbench-drain-$d.log")"
    after=$(flush_lsn)
    read -r D_TX[i] _ < <(pgbench_field "$WORK/pgbench-drain-$d.log")
    D_BYTES[i]=$(sql_src -c "SELECT pg_wal_lsn_diff('$after', '$before')::bigint")
    t0=$(now)
    mf_start
    mf_wait_applied "$after"
    D_S[i]=$(since "$t0")
    D_RSS[i]=$(mf_peak_rss_mb)
    D_LOAD[i]=$(cut -d' ' -f1 /proc/loadavg)
    log "drained ${D_TX[$i]} transactions (${D_BYTES[$i]} bytes of WAL) in ${D_S[$i]} s, peak RSS ${D_RSS[$i]} MB"
    mf_stop
  done
  mf_stop

  section "summary: scale mode, $(nproc) cores"
  echo
  echo "copy (schema + data + primary keys into an empty database); rows = all 4 tables; load = 1-minute load average when midflight's copy ended"
  printf '  %6s %11s %8s  %9s %10s %8s  %9s %10s %8s  %9s %6s\n' scale rows MB "pgc s" "pgc rows/s" "pgc RSS" "mf s" "mf rows/s" "mf RSS" "mf/pgc" load
  for i in "${!scales[@]}"; do
    printf '  %6s %11s %8s  %9s %10s %8s  %9.2f %10.0f %8s  %9s %6s\n' "${scales[$i]}" "${S_ROWS[$i]}" "${S_MB[$i]}" \
      "${S_PGC[$i]:--}" "$( [[ -n ${S_PGC[$i]:-} ]] && div "${S_ROWS[$i]}" "${S_PGC[$i]}" | awk '{ printf "%.0f", $1 }' || echo -)" \
      "${S_PGC_RSS[$i]:+${S_PGC_RSS[$i]} MB}" "${S_MF[$i]}" "$(div "${S_ROWS[$i]}" "${S_MF[$i]}")" "${S_MF_RSS[$i]} MB" \
      "$( [[ -n ${S_PGC[$i]:-} ]] && echo "$(div "${S_MF[$i]}" "${S_PGC[$i]}")x" || echo -)" "${S_LOAD[$i]}"
  done
  echo "  (midflight RSS: VmHWM of its process; pgcopydb RSS: the sum over its processes, sampled every 0.5 s)"
  if ((${#drains[@]})); then
    echo
    echo "drain series at scale ${scales[${#scales[@]}-1]} (midflight stopped while pgbench -c 4 -T D builds the backlog, then timed until applied; incl. process start-up)"
    printf '  %6s %10s %10s %14s %9s %11s %9s %8s %6s\n' "D (s)" transactions changes "WAL bytes" seconds changes/s "tx/s" RSS load
    for i in "${!drains[@]}"; do
      printf '  %6s %10s %10s %14s %9.2f %11.0f %9.0f %8s %6s\n' "${drains[$i]}" "${D_TX[$i]}" "$((D_TX[i] * 4))" "${D_BYTES[$i]}" \
        "${D_S[$i]}" "$(div "$((D_TX[i] * 4))" "${D_S[$i]}")" "$(div "${D_TX[$i]}" "${D_S[$i]}")" "${D_RSS[$i]} MB" "${D_LOAD[$i]}"
    done
  fi
  printf '\nhost: %s cores, load average %s at the end\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# ------------------------------------------------------------------ setup --
section "setup"
"$ROOT/scripts/setup" --bench
if [[ -n ${MIDFLIGHT_BIN:-} ]]; then MF=$MIDFLIGHT_BIN; else MF=$("$ROOT/scripts/build"); fi
[[ -x $MF ]] || die "build did not produce $MF"
log "midflight: $MF"
log "pgcopydb: $(pgcopydb --version 2>/dev/null | head -1)"
WORK=$(mktemp -d /tmp/midflight-bench.XXXXXX)
CPU_SRC=$WORK/src CPU_DST=$WORK/dst   # copy_cpu (lib.sh)
chmod 755 "$WORK"
log "work dir: $WORK"
"$TESTDB" start pg "$WORK/src" "$SRC_PORT"
# shellcheck disable=SC2086 # DST_SETTINGS is a list of name=value words
"$TESTDB" start pg "$WORK/dst" "$DST_PORT" ${DST_SETTINGS:-}
SRC=$("$TESTDB" uri "$WORK/src")
DST=$("$TESTDB" uri "$WORK/dst")
log "source ${SRC/:midflight@/:***@}, target ${DST/:midflight@/:***@}"
[[ -n ${SCALES:-} ]] && { scale_mode; exit 0; }
t0=$(now)
pgbench -i -s "$SCALE" -q "$SRC" >"$WORK/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(tail -3 "$WORK/pgbench-init.log")"
INIT_S=$(since "$t0")
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
ROWS=$(sql_src -c "SELECT count(*) FROM pgbench_accounts")
SRC_SIZE=$(sql_src -c "SELECT pg_size_pretty(pg_database_size(current_database()))")
log "pgbench -i -s $SCALE: $ROWS rows in pgbench_accounts, database $SRC_SIZE, in $INIT_S s"

# ------------------------------------------------------------------- copy --
section "copy: schema + data + primary keys into an empty database"

if ! skipped raw; then
  log "raw COPY pipe: pre-data, 4 parallel psql COPY pipes, post-data"
  fresh_db bench_raw
  T=$(dst_uri bench_raw)
  cpu_mark
  t0=$(now)
  pg_dump --schema-only --section=pre-data "$SRC" | psql_to "$T" >/dev/null
  COPY_PIDS=()
  for t in "${TABLES[@]}"; do
    (psql_to "$SRC" -c "COPY $t TO STDOUT" | psql_to "$T" -c "COPY $t FROM STDIN") &
    COPY_PIDS+=($!)
  done
  for p in "${COPY_PIDS[@]}"; do wait "$p" || die "a COPY pipe failed"; done
  COPY_PIDS=()
  pg_dump --section=post-data "$SRC" | psql_to "$T" >/dev/null
  add_copy raw "raw COPY pipe (4 tables in parallel)" "$(since "$t0")"
  check_copy bench_raw
  drop_db bench_raw
fi

if ! skipped dump; then
  log "pg_dump -Fd -j 2 | pg_restore -j 2"
  fresh_db bench_dump
  cpu_mark
  t0=$(now)
  pg_dump -Fd -j 2 -f "$WORK/dump" "$SRC"
  pg_restore -j 2 --exit-on-error -d "$(dst_uri bench_dump)" "$WORK/dump"
  add_copy dump "pg_dump -Fd -j2 + pg_restore -j2" "$(since "$t0")"
  check_copy bench_dump
  drop_db bench_dump
  rm -rf "$WORK/dump"
fi

if ! skipped pgcopydb; then
  log "pgcopydb clone --table-jobs 2 --index-jobs 2"
  fresh_db bench_pgcopydb
  cpu_mark
  t0=$(now)
  pgcopydb clone --source "$SRC" --target "$(dst_uri bench_pgcopydb)" --table-jobs 2 --index-jobs 2 \
    --dir "$WORK/pgcopydb" >"$WORK/pgcopydb.log" 2>&1 || die "pgcopydb clone failed (see $WORK/pgcopydb.log)"
  add_copy pgcopydb "pgcopydb clone (2 table + 2 index jobs)" "$(since "$t0")"
  check_copy bench_pgcopydb
  drop_db bench_pgcopydb
  rm -rf "$WORK/pgcopydb"
fi

NATIVE_KEPT=
if ! skipped native; then
  log "native logical replication: schema (pre- and post-data), then CREATE SUBSCRIPTION (copy_data)"
  fresh_db "$NATIVE_DB"
  T=$(dst_uri "$NATIVE_DB")
  cpu_mark
  t0=$(now)
  native_subscribe "$T" "${TABLES[@]}"
  add_copy native "native logical replication (initial sync)" "$(since "$t0")"
  check_copy "$NATIVE_DB"
  if skipped drain; then
    native_drop
  else
    # Caught up (the source is idle); paused until the drain section.
    native_sql -c "ALTER SUBSCRIPTION bench_sub DISABLE"
    NATIVE_KEPT=1
  fi
fi

MF_KEPT=
if ! skipped midflight; then
  for i in "${!MF_W[@]}"; do
    w=${MF_W[$i]%after}
    early=true
    [[ ${MF_W[$i]} == *after ]] && early=false
    log "midflight run (copy_workers $w, early_indexes $early) until phase replicating"
    fresh_db bench_midflight
    SPEC=$WORK/midflight-$i.yaml
    MF_LOG=$WORK/midflight-$i.log
    cat >"$SPEC" <<YAML
name: bench
source: $SRC
target: $(dst_uri bench_midflight)
state_dir: $WORK/midflight-state-$i
copy_workers: $w
early_indexes: $early
${MF_PARTITIONS:+partitions: $MF_PARTITIONS}
${MF_SPEC_EXTRA:-}
YAML
    cpu_mark
  t0=$(now)
    mf_start
    mf_wait_phase replicating
    secs=$(since "$t0")
    MF_RSS[i]=$(mf_peak_rss_mb)
    mf_stop
    label="midflight (copy_workers $w)"
    [[ $early == false ]] && label="midflight (copy_workers $w, indexes after)"
    add_copy "mf$i" "$label" "$secs"
    log "midflight peak RSS (VmHWM): ${MF_RSS[$i]} MB; its log: $(grep -E 'copying: done|built as their|indexes and constraints built' "$MF_LOG" | tr '\n' ' ')"
    check_copy bench_midflight
    if ((i == ${#MF_W[@]} - 1)) && ! { skipped drain && skipped lag && skipped compare; }; then
      MF_KEPT=1   # its slot keeps the changes for the drain
    else
      drop_slot midflight_bench
      sql_src -c "DROP PUBLICATION IF EXISTS midflight_bench"
      drop_db bench_midflight
      rm -rf "$WORK/midflight-state-$i"
    fi
  done
fi

# ------------------------------------------------------------------ drain --
DRAIN_DONE=
if ! skipped drain && [[ -n $NATIVE_KEPT$MF_KEPT ]]; then
  section "change drain: backlog of pgbench -c 4 -T $DRAIN_SECONDS with every consumer paused"
  BEFORE_LSN=$(flush_lsn)
  log "pgbench -c 4 -T $DRAIN_SECONDS on the source (midflight stopped, subscription disabled)"
  pgbench -c 4 -T "$DRAIN_SECONDS" "$SRC" >"$WORK/pgbench-drain.log" 2>&1 || die "pgbench failed: $(tail -3 "$WORK/pgbench-drain.log")"
  AFTER_LSN=$(flush_lsn)
  read -r DRAIN_TX DRAIN_TPS < <(pgbench_field "$WORK/pgbench-drain.log")
  DRAIN_CHANGES=$((DRAIN_TX * 4))   # a pgbench transaction: 3 UPDATEs + 1 INSERT
  WAL_BYTES=$(sql_src -c "SELECT pg_wal_lsn_diff('$AFTER_LSN', '$BEFORE_LSN')::bigint")
  log "backlog: $DRAIN_TX transactions ($DRAIN_TPS tps), $DRAIN_CHANGES row changes, WAL $BEFORE_LSN -> $AFTER_LSN ($WAL_BYTES bytes)"
  slot_backlog() { sql_src -c "SELECT pg_wal_lsn_diff('$AFTER_LSN', confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = '$1'"; }

  if [[ -n $MF_KEPT ]]; then
    MF_BACKLOG=$(slot_backlog midflight_bench)
    log "midflight: restarting; draining until applied_lsn >= $AFTER_LSN (slot backlog $MF_BACKLOG bytes)"
    t0=$(now)
    mf_start
    mf_wait_applied "$AFTER_LSN"
    MF_DRAIN_S=$(since "$t0")
    MF_APPLIED=$(mf_status | jq -r .replication.changes_applied)
    log "midflight drained in $MF_DRAIN_S s ($MF_APPLIED changes applied by this process, per its status)"
    mf_stop
  fi
  if [[ -n $NATIVE_KEPT ]]; then
    NATIVE_BACKLOG=$(slot_backlog bench_sub)
    log "native: ENABLE; draining until latest_end_lsn (or the slot's confirmed_flush_lsn) >= $AFTER_LSN (slot backlog $NATIVE_BACKLOG bytes)"
    t0=$(now)
    native_drain "$AFTER_LSN"
    NATIVE_DRAIN_S=$(since "$t0")
    log "native drained in $NATIVE_DRAIN_S s (latest_end_lsn $NATIVE_END, confirmed_flush_lsn $NATIVE_CONF)"
    native_drop
    NATIVE_KEPT=
  fi
  DRAIN_DONE=1
elif [[ -n $NATIVE_KEPT ]]; then
  native_drop
  NATIVE_KEPT=
fi

# ------------------------------------------------------------ steady lag --
LAG_MAX=
if [[ -n $MF_KEPT ]] && ! skipped lag; then
  section "steady lag: midflight under pgbench -c 4 -R $LAG_RATE -T $LAG_SECONDS"
  mf_start
  mf_wait_streaming
  mf_wait_applied "$(flush_lsn)"
  pgbench -c 4 -R "$LAG_RATE" -T "$LAG_SECONDS" "$SRC" >"$WORK/pgbench-lag.log" 2>&1 &
  LOAD_PID=$!
  LAG_MAX=0 LAG_BYTES_MAX=0 samples=0
  while kill -0 "$LOAD_PID" 2>/dev/null; do
    sleep 1
    mf_check_alive "measuring lag"
    st=$(mf_status) || continue
    l=$(jq -r .lag_seconds <<<"$st")
    b=$(jq -r .lag_bytes <<<"$st")
    LAG_MAX=$(awk -v a="$LAG_MAX" -v b="$l" 'BEGIN { print (b > a ? b : a) }')
    ((b > LAG_BYTES_MAX)) && LAG_BYTES_MAX=$b
    samples=$((samples + 1))
  done
  rc=0; wait "$LOAD_PID" || rc=$?; LOAD_PID=
  ((rc == 0)) || die "pgbench failed: $(tail -3 "$WORK/pgbench-lag.log")"
  read -r LAG_TX LAG_TPS < <(pgbench_field "$WORK/pgbench-lag.log")
  log "$samples samples: max lag ${LAG_MAX} s, max ${LAG_BYTES_MAX} bytes ($LAG_TX transactions, $LAG_TPS tps)"
fi

# ---------------------------------------------------------------- compare --
COMPARE_RESULT=
if [[ -n $MF_KEPT ]] && ! skipped compare; then
  section "midflight compare"
  [[ -n $MF_PID ]] || { mf_start; mf_wait_streaming; }
  mf_wait_applied "$(flush_lsn)"
  mf_stop
  rc=0
  out=$("$MF" compare "$SPEC" 2>&1) || rc=$?
  echo "$out"
  COMPARE_RESULT=$(tail -1 <<<"$out")
  ((rc == 0)) || COMPARE_RESULT="$COMPARE_RESULT (exit $rc)"
fi
mf_stop

# ---------------------------------------------------------------- summary --
section "summary: SCALE=$SCALE ($ROWS rows in pgbench_accounts, source database $SRC_SIZE), $(nproc) cores"
mf_keys=()
for i in "${!MF_W[@]}"; do [[ -n ${COPY_S[mf$i]:-} ]] && mf_keys+=("mf$i"); done
if ((${#COPY_ORDER[@]})); then
  echo
  echo "copy (schema + data + primary keys into an empty database)"
  printf '  %-42s %9s' method seconds
  for k in "${mf_keys[@]}"; do printf ' %16s' "mf(${MF_W[${k#mf}]})/method"; done
  echo
  for j in "${!COPY_ORDER[@]}"; do
    m=${COPY_ORDER[$j]}
    printf '  %-42s %9.2f' "${COPY_LABEL[$j]}" "${COPY_S[$m]}"
    for k in "${mf_keys[@]}"; do printf ' %15sx' "$(div "${COPY_S[$k]}" "${COPY_S[$m]}")"; done
    echo
  done
  for k in "${mf_keys[@]}"; do
    printf '  midflight (copy_workers %s) peak RSS: %s MB\n' "${MF_W[${k#mf}]}" "${MF_RSS[${k#mf}]}"
  done
  echo
  echo "copy CPU seconds (user + system): source server, target server, the tools (midflight's own process for midflight)"
  copy_cpu_table 42
fi
if [[ -n $DRAIN_DONE ]]; then
  echo
  echo "drain (one backlog, the same for every consumer: pgbench -c 4 -T $DRAIN_SECONDS = $DRAIN_TX transactions at $DRAIN_TPS tps, $DRAIN_CHANGES row changes, $WAL_BYTES bytes of WAL)"
  printf '  %-30s %9s %15s %11s %12s\n' consumer seconds "backlog bytes" changes/s "tx/s"
  [[ -n ${NATIVE_DRAIN_S:-} ]] && printf '  %-30s %9.2f %15s %11.0f %12.0f\n' "native logical replication" "$NATIVE_DRAIN_S" \
    "$NATIVE_BACKLOG" "$(div "$DRAIN_CHANGES" "$NATIVE_DRAIN_S")" "$(div "$DRAIN_TX" "$NATIVE_DRAIN_S")"
  [[ -n ${MF_DRAIN_S:-} ]] && printf '  %-30s %9.2f %15s %11.0f %12.0f\n' "midflight" "$MF_DRAIN_S" \
    "$MF_BACKLOG" "$(div "$DRAIN_CHANGES" "$MF_DRAIN_S")" "$(div "$DRAIN_TX" "$MF_DRAIN_S")"
  [[ -n ${NATIVE_DRAIN_S:-} && -n ${MF_DRAIN_S:-} ]] &&
    printf '  midflight drain rate / native: %sx (native seconds / midflight seconds)\n' "$(div "$NATIVE_DRAIN_S" "$MF_DRAIN_S")"
  [[ -n ${MF_APPLIED:-} ]] && printf '  midflight reported %s changes applied while draining\n' "$MF_APPLIED"
fi
[[ -n $LAG_MAX ]] && printf '\nsteady lag under pgbench -c 4 -R %s -T %s: max %s s (max %s bytes), %s tps\n' \
  "$LAG_RATE" "$LAG_SECONDS" "$LAG_MAX" "$LAG_BYTES_MAX" "$LAG_TPS"
[[ -n $COMPARE_RESULT ]] && printf '\ncompare: %s\n' "$COMPARE_RESULT"

echo
echo "targets (meaningful at SCALE=100; midflight: the last MF_WORKERS entry)"
last=${mf_keys[${#mf_keys[@]}-1]:-}
mf0=
[[ -n $last ]] && mf0=${COPY_S[$last]:-}
mf_rss=-
[[ -n $last ]] && mf_rss=${MF_RSS[${last#mf}]:--}
r_pgc=-; r_raw=-; r_drain=-
[[ -n $mf0 && -n ${COPY_S[pgcopydb]:-} ]] && r_pgc=$(div "$mf0" "${COPY_S[pgcopydb]}")
[[ -n $mf0 && -n ${COPY_S[raw]:-} ]] && r_raw=$(div "$mf0" "${COPY_S[raw]}")
[[ -n ${NATIVE_DRAIN_S:-} && -n ${MF_DRAIN_S:-} ]] && r_drain=$(div "$NATIVE_DRAIN_S" "$MF_DRAIN_S")
printf '  %-52s %8s  %s\n' "copy time / pgcopydb's <= 0.9" "$r_pgc" "$(met "$r_pgc" '<=' 0.9)"
printf '  %-52s %8s  %s\n' "copy time / raw COPY pipe's <= 1.1" "$r_raw" "$(met "$r_raw" '<=' 1.1)"
printf '  %-52s %8s  %s\n' "drain rate / native logical replication's >= 2" "$r_drain" "$(met "$r_drain" '>=' 2)"
printf '  %-52s %8s  %s\n' "steady lag < 1 s" "${LAG_MAX:--}" "$(met "${LAG_MAX:--}" '<' 1)"
printf '  %-52s %8s  %s\n' "peak RSS while copying < 300 MB" "$mf_rss" "$(met "$mf_rss" '<' 300)"
[[ -z $COMPARE_RESULT || $COMPARE_RESULT == "source and target are equal" ]] || die "midflight compare: $COMPARE_RESULT"
