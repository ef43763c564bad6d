#!/usr/bin/env bash
# midflight benchmark across engines, MariaDB -> PostgreSQL: one run, the same
# sysbench data, three throwaway servers (a MariaDB source, a PostgreSQL
# target, a MariaDB target for the same-engine comparison).
#
#   bench/cross_bench.sh
#
#   1. copy (schema + data + primary keys + secondary indexes into an empty
#      PostgreSQL database), ROUNDS interleaved rounds, the order of the two
#      alternating each round; median seconds, rows/s:
#        pgloader   pgloader mysql://... postgresql://... (Debian's pgloader:
#                   4 workers, indexes after the data; a 4 GB heap and
#                   prefetch rows = 25000, see PGLOADER_* below)
#        midflight  `midflight run` MariaDB -> PostgreSQL until phase
#                   "replicating" (+ its peak RSS)
#   2. drain: the last midflight MariaDB -> PostgreSQL migration and a
#      MariaDB -> MariaDB migration of the same tables, both stopped while one
#      sysbench oltp_write_only run builds the backlog on the source; then
#      each is started alone and timed until its restart position reaches the
#      source's binlog position (changes/s, ratio cross / same-engine)
#   3. midflight compare of the MariaDB -> PostgreSQL migration (must say equal)
#
# Knobs (environment):
#   TABLES=8 TABLE_SIZE=200000   sysbench oltp_read_write prepare --tables --table-size
#   ROUNDS=3           copy rounds (pgloader and midflight once each per round)
#   DRAIN_SECONDS=30   sysbench oltp_write_only --threads=4 --time that builds the drain backlog
#   SKIP=              comma list of: pgloader,midflight,drain,compare
#   DRAIN_FIRST=cross  which migration drains the backlog first: cross (MariaDB -> PostgreSQL) or same
#   MF_WORKERS=2 MF_CHUNK_ROWS=250000 MF_PARTITIONS=2   midflight copy_workers, chunk_rows, partitions
#   MF_SPEC_EXTRA=     extra YAML lines for midflight's specs
#   PGLOADER_HEAP_MB=4096  pgloader's --dynamic-space-size (SBCL heap): with its default (about 1 GB)
#                      and its defaults, pgloader 3.6.7 died with "Heap exhausted during garbage collection"
#                      copying 8 x 200,000 sysbench rows (its known issue); empty = its default
#   PGLOADER_WITH="prefetch rows = 25000"  pgloader --with options, comma list (its default prefetch is
#                      100,000 rows per table; "" = all its defaults; e.g. "workers = 2, concurrency = 1")
#   SRC_PORT=30800 PG_PORT=30801 MY_PORT=30802   server ports (30800-30820)
#   TIMEOUT=1800 (seconds, per wait) KEEP=1 (keep the temp dir; servers are stopped anyway)
#   MIDFLIGHT_BIN=path  use this binary instead of building
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTDB=$ROOT/scripts/testdb
source "$ROOT/bench/lib.sh"
TABLES=${TABLES:-8}
TABLE_SIZE=${TABLE_SIZE:-200000}
ROUNDS=${ROUNDS:-3}
DRAIN_SECONDS=${DRAIN_SECONDS:-30}
SKIP=${SKIP:-}
DRAIN_FIRST=${DRAIN_FIRST:-cross}
MF_WORKERS=${MF_WORKERS:-2}
MF_CHUNK_ROWS=${MF_CHUNK_ROWS:-250000}
MF_PARTITIONS=${MF_PARTITIONS:-2}
PGLOADER_HEAP_MB=${PGLOADER_HEAP_MB-4096}
PGLOADER_WITH=${PGLOADER_WITH-prefetch rows = 25000}
SRC_PORT=${SRC_PORT:-30800}
PG_PORT=${PG_PORT:-30801}
MY_PORT=${MY_PORT:-30802}
TIMEOUT=${TIMEOUT:-1800}
KEEP=${KEEP:-}
POLL=0.2
USER_PW=midflight   # scripts/testdb's user and password on every server
DB=sbtest
export PGPASSWORD=$USER_PW

known="pgloader midflight drain compare"
for s in ${SKIP//,/ }; do
  [[ " $known " == *" $s "* ]] || { echo "cross_bench.sh: SKIP: unknown '$s' (known: ${known// /,})" >&2; exit 2; }
done
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }
for p in "$SRC_PORT" "$PG_PORT" "$MY_PORT"; do
  ((p >= 30800 && p <= 30820)) || { echo "cross_bench.sh: port $p is outside 30800-30820" >&2; exit 2; }
done
[[ $DRAIN_FIRST == cross || $DRAIN_FIRST == same ]] || { echo "cross_bench.sh: DRAIN_FIRST must be cross or same" >&2; exit 2; }
((ROUNDS >= 1)) || { echo "cross_bench.sh: ROUNDS must be at least 1" >&2; exit 2; }
TBL=()
for ((i = 1; i <= TABLES; i++)); do TBL+=("sbtest$i"); done

# ---------------------------------------------------------------- helpers --
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
host_busy() {  # -> "busy total" jiffies of all cores from /proc/stat
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
busy_since() {  # B0 T0 -> percent of all cores busy since that host_busy sample
  local b t
  read -r b t < <(host_busy)
  awk -v b=$((b - $1)) -v t=$((t - $2)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }'
}
loadavg() { cut -d' ' -f1 /proc/loadavg; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

WORK=
MF_PID=
cleanup() {
  local rc=$?
  set +e
  if [[ -n $MF_PID ]]; then kill -TERM "$MF_PID" 2>/dev/null; sleep 1; kill -9 "$MF_PID" 2>/dev/null; fi
  cleanup_work "$WORK/src" "$WORK/pg" "$WORK/my"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sql_src() { "$TESTDB" sql "$WORK/src" -N -B "$@"; }
sql_my() { "$TESTDB" sql "$WORK/my" -N -B "$@"; }
PG_ADMIN=postgres://$USER_PW:$USER_PW@127.0.0.1:$PG_PORT/postgres
pg_uri() { echo "postgres://$USER_PW:$USER_PW@127.0.0.1:$PG_PORT/$1"; }
# my_pos DIR: the server's binlog position, encoded as midflight's restart_pos ((file number << 32) | offset).
my_pos() {
  local f p
  read -r f p _ < <(sql "$1" -e "SHOW MASTER STATUS")
  [[ -n $f ]] || die "SHOW MASTER STATUS is empty on $1"
  echo $(((10#${f##*.} << 32) | p))
}
sql() { local dir=$1; shift; "$TESTDB" sql "$dir" -N -B "$@"; }
fmt_pos() { echo "$(($1 >> 32)):$(($1 & 0xffffffff))"; }
binlog_bytes() { sql "$1" -e "SHOW BINARY LOGS" | awk '{ s += $2 } END { printf "%.0f", s }'; }
sb_field() {  # FILE: "<transactions> <tps>" from sysbench's summary
  awk '/^ *transactions:/ { gsub(/[()]/, "", $3); printf "%s %.0f\n", $2, $3; found = 1 } END { if (!found) print "0 0" }' "$1"
}
fresh_pg() { psql_to "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }
drop_pg() { psql_to "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $1"; }

# check_pg DB SCHEMA: row counts on the PostgreSQL target equal the source's,
# and every table has its primary key and its secondary index on k.
check_pg() {
  local db=$1 schema=$2 t m idx uri
  uri=$(pg_uri "$db")
  for t in "${TBL[@]}"; do
    m=$(psql_to "$uri" -c "SELECT count(*) FROM \"$schema\".\"$t\"")
    [[ $m == "$TABLE_SIZE" ]] || die "$db: $schema.$t has $m rows on the target, $TABLE_SIZE on the source"
    idx=$(psql_to "$uri" -c "SELECT count(*) FILTER (WHERE indisprimary), count(*) FILTER (WHERE NOT indisprimary
        AND pg_get_indexdef(indexrelid) LIKE '%(k)%') FROM pg_index WHERE indrelid = '\"$schema\".\"$t\"'::regclass")
    [[ $idx == "1|1" ]] || die "$db: $schema.$t lacks its primary key or its index on k (primary, on k: $idx)"
  done
  log "checked: $TABLES tables x $TABLE_SIZE rows, each with its primary key and its index on k"
}

# midflight
SPEC=
MF_LOG=
mf_field() { mf_status | jq -r ".$1 // \"\""; }
mf_wait_pos() {  # POS: until status restart_position >= POS (a my_pos value)
  local applied="" deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    mf_check_alive "applying up to $1"
    applied=$(mf_field replication.restart_position || true)
    [[ -n $applied ]] && ((applied >= $1)) && return 0
    sleep "$POLL"
  done
  die "midflight did not apply up to $1 in ${TIMEOUT}s (restart_pos $applied)"
}
# write_mf_spec NAME TARGET_URI
write_mf_spec() {
  SPEC=$WORK/$1.yaml
  MF_LOG=$WORK/$1.log
  cat >"$SPEC" <<YAML
name: $1
source: mysql://$USER_PW:$USER_PW@127.0.0.1:$SRC_PORT/$DB
target: $2
state_dir: $WORK/state-$1
copy_workers: $MF_WORKERS
chunk_rows: $MF_CHUNK_ROWS
partitions: $MF_PARTITIONS
${MF_SPEC_EXTRA:-}
YAML
}

# ------------------------------------------------------------------ setup --
section "setup"
if ! skipped pgloader && ! command -v pgloader >/dev/null; then
  log "pgloader is not installed: scripts/setup --bench"
  "$ROOT/scripts/setup" --bench >/dev/null
fi
for t in mariadbd mariadb sysbench psql jq; do
  command -v "$t" >/dev/null || [[ -x /usr/sbin/$t ]] || die "$t is not installed (scripts/setup)"
done
skipped pgloader || command -v pgloader >/dev/null || die "pgloader is not installed (scripts/setup --bench)"
for p in "$SRC_PORT" "$PG_PORT" "$MY_PORT"; do port_free "$p" || die "port $p is in use"; done
read -r h0 ht0 < <(host_busy); sleep 2
BG_BUSY=$(busy_since "$h0" "$ht0")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "host: $(nproc) cores; before starting anything: CPU ${BG_BUSY}% busy (2 s sample), load average $LOAD_START"
WORK=$(mktemp -d /tmp/midflight-crossbench.XXXXXX)
chmod 755 "$WORK"
log "work dir: $WORK"
if [[ -n ${MIDFLIGHT_BIN:-} ]]; then BIN=$MIDFLIGHT_BIN; else BIN=$("$ROOT/scripts/build"); fi
[[ -x $BIN ]] || die "build did not produce $BIN"
MF=$WORK/midflight   # a private copy: a rebuild by someone else does not change it mid-run
cp "$BIN" "$MF"
log "midflight: $BIN (copied to $MF)"
log "$(/usr/sbin/mariadbd --version 2>/dev/null || mariadbd --version); $(psql --version); $(pgloader --version 2>/dev/null | head -1); $(sysbench --version)"
"$TESTDB" start mariadb "$WORK/src" "$SRC_PORT"
"$TESTDB" start pg "$WORK/pg" "$PG_PORT"
"$TESTDB" start mariadb "$WORK/my" "$MY_PORT"
log "MariaDB source :$SRC_PORT, PostgreSQL target :$PG_PORT, MariaDB target :$MY_PORT (same-engine drain)"
sql_src -e "CREATE DATABASE $DB"
SB_BASE=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$SRC_PORT" --mysql-user="$USER_PW"
         --mysql-password="$USER_PW" --mysql-db="$DB" --tables="$TABLES" --table-size="$TABLE_SIZE")
t0=$(now)
sysbench oltp_read_write "${SB_BASE[@]}" --threads=2 prepare >"$WORK/sysbench-prepare.log" 2>&1 ||
  die "sysbench prepare failed: $(tail -3 "$WORK/sysbench-prepare.log")"
PREP_S=$(since "$t0")
SRC_MB=$(sql_src -e "SELECT ROUND(SUM(DATA_LENGTH + INDEX_LENGTH) / 1048576) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$DB'")
ROWS=$((TABLES * TABLE_SIZE))
log "sysbench prepare: $TABLES tables x $TABLE_SIZE rows ($ROWS rows, $SRC_MB MB InnoDB data + indexes) in $PREP_S s"

# ------------------------------------------------------------------- copy --
section "copy MariaDB -> PostgreSQL: schema + data + keys + indexes into an empty database, $ROUNDS interleaved rounds"
PGL_S=(); PGL_BUSY=(); PGL_LOAD=(); PGL_SELF=()
MF_S=(); MF_BUSY=(); MF_LOAD=(); MF_RSS=()
MF_KEPT=

copy_pgloader() {  # ROUND
  local r=$1 db=bench_pgl_$1 t0 b0 bt0 with=()
  fresh_pg "$db"
  [[ -n $PGLOADER_HEAP_MB ]] && with=(--dynamic-space-size "$PGLOADER_HEAP_MB")
  [[ -n $PGLOADER_WITH ]] && with+=(--with "$PGLOADER_WITH")
  log "round $r: pgloader mysql://…/$DB postgresql://…/$db ${with[*]}"
  read -r b0 bt0 < <(host_busy)
  t0=$(now)
  pgloader "${with[@]}" "mysql://$USER_PW:$USER_PW@127.0.0.1:$SRC_PORT/$DB" \
    "postgresql://$USER_PW:$USER_PW@127.0.0.1:$PG_PORT/$db" >"$WORK/pgloader-$r.log" 2>&1 ||
    die "pgloader failed (see $WORK/pgloader-$r.log): $(grep -m3 -E 'ERROR|FATAL' "$WORK/pgloader-$r.log")"
  PGL_S+=("$(since "$t0")")
  PGL_BUSY+=("$(busy_since "$b0" "$bt0")")
  PGL_LOAD+=("$(loadavg)")
  grep -qE 'ERROR|FATAL' "$WORK/pgloader-$r.log" && die "pgloader logged errors (see $WORK/pgloader-$r.log)"
  # pgloader's own "Total import time" (its report adds up its steps: it can exceed the wall time).
  PGL_SELF+=("$(awk '/Total import time/ { v = $NF; s = 0
    if (match(v, /[0-9]+h/)) s += 3600 * substr(v, RSTART, RLENGTH - 1)
    if (match(v, /[0-9]+m/)) s += 60 * substr(v, RSTART, RLENGTH - 1)
    if (match(v, /[0-9.]+s$/)) s += substr(v, RSTART, RLENGTH - 1)
    printf "%.2f\n", s }' "$WORK/pgloader-$r.log")")
  log "round $r: pgloader ${PGL_S[-1]} s (its own total import time ${PGL_SELF[-1]} s; host busy ${PGL_BUSY[-1]}%, load average ${PGL_LOAD[-1]})"
  check_pg "$db" "$DB"   # pgloader puts the tables into a schema named after the MySQL database
  drop_pg "$db"
}

copy_midflight() {  # ROUND
  local r=$1 db=bench_mf_$1 t0 b0 bt0
  fresh_pg "$db"
  write_mf_spec "cross$r" "$(pg_uri "$db")"
  log "round $r: midflight run MariaDB -> PostgreSQL (copy_workers $MF_WORKERS) until phase replicating"
  read -r b0 bt0 < <(host_busy)
  t0=$(now)
  mf_start
  mf_wait_phase replicating
  MF_S+=("$(since "$t0")")
  MF_BUSY+=("$(busy_since "$b0" "$bt0")")
  MF_LOAD+=("$(loadavg)")
  MF_RSS+=("$(mf_peak_rss_mb)")
  mf_stop
  log "round $r: midflight ${MF_S[-1]} s (host busy ${MF_BUSY[-1]}%, load average ${MF_LOAD[-1]}), peak RSS ${MF_RSS[-1]} MB"
  check_pg "$db" "$DB"   # midflight keeps the MySQL database's name as the schema
  if ((r == ROUNDS)); then
    MF_KEPT=cross$r   # stopped at its restart position; drained and compared below
  else
    drop_pg "$db"
    rm -rf "$WORK/state-cross$r"
  fi
}

for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then
    skipped pgloader || copy_pgloader "$r"
    skipped midflight || copy_midflight "$r"
  else
    skipped midflight || copy_midflight "$r"
    skipped pgloader || copy_pgloader "$r"
  fi
done

# ------------------------------------------------------------------ drain --
DRAIN_DONE=
if ! skipped drain && [[ -n $MF_KEPT ]]; then
  section "drain: backlog of sysbench oltp_write_only --threads=4 --time=$DRAIN_SECONDS, both migrations stopped"
  CROSS_SPEC=$WORK/$MF_KEPT.yaml
  log "MariaDB -> MariaDB migration of the same tables (the same-engine drain): copy, then stopped"
  sql_my -e "CREATE DATABASE sbtest_new"
  write_mf_spec same "mysql://$USER_PW:$USER_PW@127.0.0.1:$MY_PORT/sbtest_new"
  SAME_SPEC=$SPEC
  t0=$(now)
  mf_start
  mf_wait_phase replicating
  SAME_COPY_S=$(since "$t0")
  mf_stop
  log "MariaDB -> MariaDB copy: $SAME_COPY_S s (not part of the comparison)"

  B_BYTES0=$(binlog_bytes "$WORK/src")
  log "sysbench oltp_write_only --threads=4 --time=$DRAIN_SECONDS on the source (both migrations stopped)"
  sysbench oltp_write_only "${SB_BASE[@]}" --threads=4 --time="$DRAIN_SECONDS" --report-interval=0 \
    --mysql-ignore-errors=1213,1205 run >"$WORK/sysbench-drain.log" 2>&1 ||
    die "sysbench failed: $(tail -3 "$WORK/sysbench-drain.log")"
  read -r DRAIN_TX DRAIN_TPS < <(sb_field "$WORK/sysbench-drain.log")
  DRAIN_CHANGES=$((DRAIN_TX * 4))   # oltp_write_only: 2 UPDATEs, 1 DELETE, 1 INSERT per transaction
  GOAL_POS=$(my_pos "$WORK/src")
  B_BYTES=$(($(binlog_bytes "$WORK/src") - B_BYTES0))
  log "backlog: $DRAIN_TX transactions ($DRAIN_TPS tps), $DRAIN_CHANGES row changes, $B_BYTES bytes of binlog, up to $(fmt_pos "$GOAL_POS")"

  # drain NAME SPEC -> seconds in D_S, changes applied in D_APPLIED, peak RSS in D_RSS, host busy in D_BUSY
  drain() {
    local t0 b0 bt0
    SPEC=$2
    MF_LOG=$WORK/$(basename "$2" .yaml).log
    log "$1: restarting; draining until restart_pos >= $(fmt_pos "$GOAL_POS") (from $(fmt_pos "$(mf_field replication.restart_position)"))"
    read -r b0 bt0 < <(host_busy)
    t0=$(now)
    mf_start
    mf_wait_pos "$GOAL_POS"
    D_S=$(since "$t0")
    D_BUSY=$(busy_since "$b0" "$bt0")
    D_RSS=$(mf_peak_rss_mb)
    D_APPLIED=$(mf_field replication.changes_applied)
    mf_stop
    log "$1: drained in $D_S s ($D_APPLIED changes applied by this process, host busy $D_BUSY%, peak RSS $D_RSS MB)"
  }
  drain_cross() {
    drain "MariaDB -> PostgreSQL" "$CROSS_SPEC"
    X_S=$D_S; X_APPLIED=$D_APPLIED; X_BUSY=$D_BUSY; X_RSS=$D_RSS; X_LOAD=$(loadavg)
  }
  drain_same() {
    drain "MariaDB -> MariaDB" "$SAME_SPEC"
    S_S=$D_S; S_APPLIED=$D_APPLIED; S_BUSY=$D_BUSY; S_RSS=$D_RSS; S_LOAD=$(loadavg)
  }
  if [[ $DRAIN_FIRST == cross ]]; then drain_cross; drain_same; else drain_same; drain_cross; fi
  DRAIN_DONE=1
  "$TESTDB" stop "$WORK/my"   # one server less sharing the cores during the compare
fi

# ---------------------------------------------------------------- compare --
COMPARE_RESULT=
if [[ -n $MF_KEPT ]] && ! skipped compare; then
  section "midflight compare (MariaDB -> PostgreSQL)"
  SPEC=$WORK/$MF_KEPT.yaml
  MF_LOG=$WORK/$MF_KEPT.log
  mf_start
  mf_wait_pos "$(my_pos "$WORK/src")"
  mf_stop
  rc=0
  out=$("$MF" compare "$SPEC" 2>&1) || rc=$?
  echo "$out"
  COMPARE_RESULT=$(tail -1 <<<"$out")
  ((rc == 0)) || COMPARE_RESULT="$COMPARE_RESULT (exit $rc)"
fi

# ---------------------------------------------------------------- summary --
section "summary: MariaDB -> PostgreSQL, $TABLES tables x $TABLE_SIZE rows ($ROWS rows, $SRC_MB MB), $(nproc) cores"
join() { local IFS=' '; echo "$*"; }
if ((${#PGL_S[@]} + ${#MF_S[@]})); then
  echo
  echo "copy (schema + data + primary keys + index on k into an empty PostgreSQL database; $ROUNDS interleaved rounds; median)"
  printf '  %-44s %9s %11s   %-28s %-18s %s\n' method median rows/s "seconds per round" "host busy %" "load average"
  PGL_MED=-; MF_MED=-
  if ((${#PGL_S[@]})); then
    PGL_MED=$(printf '%s\n' "${PGL_S[@]}" | median)
    printf '  %-44s %9.2f %11.0f   %-28s %-18s %s\n' "pgloader (4 workers; ${PGLOADER_WITH:-defaults})" "$PGL_MED" "$(div "$ROWS" "$PGL_MED")" \
      "$(join "${PGL_S[@]}")" "$(join "${PGL_BUSY[@]}")" "$(join "${PGL_LOAD[@]}")"
    PGL_SELF_MED=$(printf '%s\n' "${PGL_SELF[@]}" | median)
    printf '  %-44s %9.2f %11s   %-28s\n' "  (pgloader's own \"Total import time\")" "$PGL_SELF_MED" "" "$(join "${PGL_SELF[@]}")"
  fi
  if ((${#MF_S[@]})); then
    MF_MED=$(printf '%s\n' "${MF_S[@]}" | median)
    printf '  %-44s %9.2f %11.0f   %-28s %-18s %s\n' "midflight (copy_workers $MF_WORKERS)" "$MF_MED" "$(div "$ROWS" "$MF_MED")" \
      "$(join "${MF_S[@]}")" "$(join "${MF_BUSY[@]}")" "$(join "${MF_LOAD[@]}")"
    printf '  midflight peak RSS (VmHWM) per round: %s MB\n' "$(join "${MF_RSS[@]}")"
  fi
  ((${#PGL_S[@]} && ${#MF_S[@]})) &&
    printf '  ratio midflight / pgloader (median wall-clock seconds): %sx\n' "$(div "$MF_MED" "$PGL_MED")"
  ((${#PGL_S[@]})) && echo "  (pgloader's \"Total import time\" is the last line of its own report, which adds up its steps: not a wall-clock time)"
fi
if [[ -n $DRAIN_DONE ]]; then
  echo
  echo "drain (one backlog: sysbench oltp_write_only --threads=4 --time=$DRAIN_SECONDS = $DRAIN_TX transactions at $DRAIN_TPS tps, $DRAIN_CHANGES row changes, $B_BYTES bytes of binlog; $MF_PARTITIONS partitions; incl. process start-up; $DRAIN_FIRST-engine drain first)"
  printf '  %-30s %9s %11s %9s %10s %10s %13s\n' consumer seconds changes/s "tx/s" "peak RSS" "host busy" "load average"
  printf '  %-30s %9.2f %11.0f %9.0f %7s MB %9s%% %13s\n' "midflight MariaDB -> PostgreSQL" "$X_S" \
    "$(div "$DRAIN_CHANGES" "$X_S")" "$(div "$DRAIN_TX" "$X_S")" "$X_RSS" "$X_BUSY" "$X_LOAD"
  printf '  %-30s %9.2f %11.0f %9.0f %7s MB %9s%% %13s\n' "midflight MariaDB -> MariaDB" "$S_S" \
    "$(div "$DRAIN_CHANGES" "$S_S")" "$(div "$DRAIN_TX" "$S_S")" "$S_RSS" "$S_BUSY" "$S_LOAD"
  printf '  drain rate across engines / same engine: %sx (same-engine seconds / cross-engine seconds)\n' "$(div "$S_S" "$X_S")"
  printf '  changes applied per status: %s (to PostgreSQL), %s (to MariaDB)\n' "$X_APPLIED" "$S_APPLIED"
fi
[[ -n $COMPARE_RESULT ]] && printf '\ncompare (MariaDB -> PostgreSQL, after the drain): %s\n' "$COMPARE_RESULT"
printf '\nhost: %s cores; CPU %s%% busy before the run (2 s sample); load average %s at the start, %s at the end\n' \
  "$(nproc)" "$BG_BUSY" "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
[[ -z $COMPARE_RESULT || $COMPARE_RESULT == "source and target are equal" ]] || die "midflight compare: $COMPARE_RESULT"
