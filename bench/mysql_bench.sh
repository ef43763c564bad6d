#!/usr/bin/env bash
# midflight benchmark, MySQL / MariaDB: one run, the same sysbench data, four
# throwaway MariaDB 10.11 servers (a primary, two replicas of it, a target),
# every method side by side.
#
#   bench/mysql_bench.sh
#
#   1. copy (schema + data + secondary indexes, each into a fresh empty database
#      on the target; every method reads replica A, the primary is not read):
#        dump      mariadb-dump --single-transaction | mariadb
#        mydumper  mydumper -t 2 + myloader -t 2
#        raw       SELECT ... INTO OUTFILE on replica A + LOAD DATA INFILE on the
#                  target, 2 tables at a time, secondary indexes added after
#                  the load (as sysbench prepare does)
#        midflight `midflight run` (source_replica = replica A) until phase
#                  "replicating" (+ its peak RSS)
#   2. drain: midflight stopped and replica B's SQL thread stopped while one
#      sysbench oltp_write_only run builds the backlog on the primary (replica
#      A, midflight's source, keeps replicating); then each drains it alone
#   3. steady lag: midflight lag_seconds (max, p50) under sysbench at $LAG_RATE tx/s
#   4. midflight compare (must say equal)
#
# Knobs (environment):
#   TABLES=8 TABLE_SIZE=1000000   sysbench oltp_read_write prepare --tables --table-size
#   DRAIN_SECONDS=60   sysbench oltp_write_only --threads=4 --time that builds the drain backlog
#   SKIP=              comma list of: dump,mydumper,raw,midflight,drain,lag,compare
#   MF_WORKERS=2 MF_CHUNK_ROWS=250000 MF_PARTITIONS=2   midflight copy_workers, chunk_rows, partitions;
#                      MF_WORKERS may be a comma list ("2after,2,2nobinlog,3"): the copy is timed once per
#                      entry, side by side, the last one is kept for drain, lag and compare; "after" sets
#                      early_indexes: false (secondary indexes after the whole copy), "nobinlog" sets
#                      copy_binlog: false (the copy's sessions run with sql_log_bin = 0, as myloader's do),
#                      "c<N>" sets chunk_rows: N for that entry ("2c1000000")
#   MF_SPEC_EXTRA=     extra YAML lines for midflight's spec
#   REPLICA_PARALLEL=0 replica B's slave_parallel_threads (0 = MariaDB's default, one SQL thread)
#   DST_OPTS=          extra mariadbd options for the target, e.g. "--innodb-buffer-pool-size=4G
#                      --innodb-log-file-size=2G" (scripts/testdb's servers have 256M of each)
#   REPLICA_C_THREADS=$(nproc)  replica C, a second comparison: parallel replication with this many
#                      slave_parallel_threads and slave_parallel_mode=optimistic (the strongest thing a
#                      DBA would try); 0 leaves replica C out
#   LAG_RATE=500 LAG_SECONDS=20   the steady-lag sysbench (--rate, --time, 4 threads)
#   PRI_PORT=27501 REPA_PORT=27502 REPB_PORT=27503 DST_PORT=27504 REPC_PORT=27505   server ports (27500-27520)
#   TIMEOUT=1800 (seconds, per wait) KEEP=1 (keep the temp dir; servers are stopped anyway)
#   MIDFLIGHT_BIN=path  use this binary instead of building (scripts/build honours
#                       MIDFLIGHT_BUILD_DIR for a separate build directory)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTDB=$ROOT/scripts/testdb
source "$ROOT/bench/lib.sh"
TABLES=${TABLES:-8}
TABLE_SIZE=${TABLE_SIZE:-1000000}
DRAIN_SECONDS=${DRAIN_SECONDS:-60}
SKIP=${SKIP:-}
MF_WORKERS=${MF_WORKERS:-2}
MF_CHUNK_ROWS=${MF_CHUNK_ROWS:-250000}
MF_PARTITIONS=${MF_PARTITIONS:-2}
REPLICA_PARALLEL=${REPLICA_PARALLEL:-0}
REPLICA_C_THREADS=${REPLICA_C_THREADS:-$(nproc)}
DST_OPTS=${DST_OPTS:-}
LAG_RATE=${LAG_RATE:-500}
LAG_SECONDS=${LAG_SECONDS:-20}
PRI_PORT=${PRI_PORT:-27501}
REPA_PORT=${REPA_PORT:-27502}
REPB_PORT=${REPB_PORT:-27503}
DST_PORT=${DST_PORT:-27504}
REPC_PORT=${REPC_PORT:-27505}
TIMEOUT=${TIMEOUT:-1800}
KEEP=${KEEP:-}
POLL=0.2
USER_PW=midflight   # scripts/testdb's user and password on every server
DB=sbtest

known="dump mydumper raw midflight drain lag compare"
for s in ${SKIP//,/ }; do
  [[ " $known " == *" $s "* ]] || { echo "mysql_bench.sh: SKIP: unknown '$s' (known: ${known// /,})" >&2; exit 2; }
done
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }
for p in "$PRI_PORT" "$REPA_PORT" "$REPB_PORT" "$DST_PORT" "$REPC_PORT"; do
  ((p >= 27500 && p <= 27520)) || { echo "mysql_bench.sh: port $p is outside 27500-27520" >&2; exit 2; }
done
IFS=, read -r -a MF_W <<<"$MF_WORKERS"
TBL=()
for ((i = 1; i <= TABLES; i++)); do TBL+=("sbtest$i"); done

# ---------------------------------------------------------------- helpers --
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

WORK=
MF_PID=
LOAD_PID=
COPY_PIDS=()
cleanup() {
  local rc=$?
  set +e
  [[ -n $LOAD_PID ]] && kill -TERM "$LOAD_PID" 2>/dev/null
  for p in "${COPY_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  if [[ -n $MF_PID ]]; then kill -TERM "$MF_PID" 2>/dev/null; sleep 1; kill -9 "$MF_PID" 2>/dev/null; fi
  cleanup_work "$WORK/pri" "$WORK/repa" "$WORK/repb" "$WORK/dst" "$WORK/repc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The superuser over each server's socket, batch mode, no column names.
sql() { local dir=$1; shift; "$TESTDB" sql "$dir" -N -B "$@"; }
sql_pri() { sql "$WORK/pri" "$@"; }
sql_a() { sql "$WORK/repa" "$@"; }
sql_b() { sql "$WORK/repb" "$@"; }
sql_c() { sql "$WORK/repc" "$@"; }
with_c() { ((REPLICA_C_THREADS > 0)); }
sql_dst() { sql "$WORK/dst" "$@"; }
uri() { echo "mysql://$USER_PW:$USER_PW@127.0.0.1:$1/$2"; }
# my_pos DIR: the server's binlog position, encoded as midflight's restart_pos ((file number << 32) | offset).
my_pos() {
  local f p
  read -r f p _ < <(sql "$1" -e "SHOW MASTER STATUS")
  [[ -n $f ]] || die "SHOW MASTER STATUS is empty on $1"
  echo $(((10#${f##*.} << 32) | p))
}
# binlog_bytes DIR: the total size of the server's binlogs (for backlog sizes across rotations).
fmt_pos() { echo "$(($1 >> 32)):$(($1 & 0xffffffff))"; }   # restart_pos -> "file number:offset"
binlog_bytes() { sql "$1" -e "SHOW BINARY LOGS" | awk '{ s += $2 } END { printf "%.0f", s }'; }
gtid_primary() { sql_pri -e "SELECT @@gtid_binlog_pos"; }
# slave_field DIR FIELD: one field of SHOW SLAVE STATUS.
slave_field() { "$TESTDB" sql "$1" -E -e "SHOW SLAVE STATUS" | awk -v f="$2" '{ k = $1; sub(/:$/, "", k) } k == f { sub(/^[^:]*: ?/, ""); print; exit }'; }
# wait_replica DIR [FIELD]: until the replica's gtid_slave_pos (or FIELD of SHOW SLAVE STATUS,
# e.g. Gtid_IO_Pos) equals the primary's gtid_binlog_pos.
wait_replica() {
  local dir=$1 field=${2:-} want have err deadline=$((SECONDS + TIMEOUT))
  want=$(gtid_primary)
  while :; do
    if [[ -n $field ]]; then have=$(slave_field "$dir" "$field"); else have=$(sql "$dir" -e "SELECT @@gtid_slave_pos"); fi
    [[ $have == "$want" ]] && return 0
    err=$(slave_field "$dir" Last_Error)
    [[ -z $err ]] || die "replica $(basename "$dir"): $err"
    ((SECONDS < deadline)) || die "replica $(basename "$dir") did not reach $want in ${TIMEOUT}s (${field:-gtid_slave_pos} $have)"
    sleep "$POLL"
  done
}
fresh_db() { sql_dst -e "DROP DATABASE IF EXISTS \`$1\`; CREATE DATABASE \`$1\`"; }
# drop_db DB: also empties the target's binlog (every copy writes ~the data size to it but mydumper's).
drop_db() { sql_dst -e "DROP DATABASE IF EXISTS \`$1\`; RESET MASTER"; }
# Row counts and index names per table, from replica A (what every method copies).
declare -A SRC_COUNT=()
index_list() { sql "$1" -e "SELECT TABLE_NAME, GROUP_CONCAT(DISTINCT INDEX_NAME ORDER BY INDEX_NAME)
  FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '$2' GROUP BY TABLE_NAME ORDER BY TABLE_NAME"; }
check_copy() {  # DB: row counts and index names on the target equal replica A's
  local db=$1 t m
  for t in "${TBL[@]}"; do
    m=$(sql_dst -e "SELECT COUNT(*) FROM \`$db\`.\`$t\`")
    [[ $m == "${SRC_COUNT[$t]}" ]] || die "$db: $t has $m rows on the target, ${SRC_COUNT[$t]} on the source"
  done
  [[ $(index_list "$WORK/dst" "$db") == "$SRC_INDEXES" ]] || die "$db: indexes differ: $(index_list "$WORK/dst" "$db" | tr '\n' ' ')"
  log "checked: row counts and indexes match the source"
}
SB_BASE=()
sb_field() {  # FILE: "<transactions> <tps>" from sysbench's summary
  awk '/^ *transactions:/ { gsub(/[()]/, "", $3); printf "%s %.0f\n", $2, $3; found = 1 } END { if (!found) print "0 0" }' "$1"
}

# midflight
SPEC=
MF_LOG=
mf_field() { mf_status | jq -r ".$1 // \"\""; }
mf_wait_pos() {  # POS: until status restart_pos >= POS (a my_pos value)
  local applied="" deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    mf_check_alive "applying up to $1"
    applied=$(mf_field replication.restart_position || true)
    [[ -n $applied ]] && (( applied >= $1 )) && return 0
    sleep "$POLL"
  done
  die "midflight did not apply up to $1 in ${TIMEOUT}s (restart_pos $applied)"
}
# caught_up: replica A has everything the primary committed, midflight everything replica A logged.
mf_caught_up() { wait_replica "$WORK/repa"; mf_wait_pos "$(my_pos "$WORK/repa")"; }

# results
declare -A COPY_S=()   # method -> seconds
declare -A COPY_LOAD=() # method -> the 1-minute load average when it ended
COPY_ORDER=()
COPY_LABEL=()
MF_RSS=()              # per MF_W entry
loadavg() { cut -d' ' -f1 /proc/loadavg; }
# add_copy when a copy method has ended (cpu_mark before it started; lib.sh;
# the source is replica A, which every method reads).
add_copy() {
  COPY_ORDER+=("$1"); COPY_LABEL+=("$2"); COPY_S[$1]=$3; COPY_LOAD[$1]=$(loadavg)
  copy_cpu "$1"
  log "$2: $3 s (load average ${COPY_LOAD[$1]}; CPU s: source, target, tools: ${COPY_CPU[$1]})"
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ setup --
section "setup"
for t in mariadbd mariadb mariadb-dump mydumper myloader sysbench jq; do
  command -v "$t" >/dev/null || [[ -x /usr/sbin/$t ]] || die "$t is not installed (Debian: mariadb-server mariadb-client mydumper sysbench jq)"
done
for p in "$PRI_PORT" "$REPA_PORT" "$REPB_PORT" "$DST_PORT" "$REPC_PORT"; do port_free "$p" || die "port $p is in use"; done
WORK=$(mktemp -d /tmp/midflight-mybench.XXXXXX)
CPU_SRC=$WORK/repa CPU_DST=$WORK/dst   # copy_cpu (lib.sh): every method reads replica A
chmod 755 "$WORK"
log "work dir: $WORK"
if [[ -n ${MIDFLIGHT_BIN:-} ]]; then BIN=$MIDFLIGHT_BIN; else BIN=$("$ROOT/scripts/build"); fi
[[ -x $BIN ]] || die "build did not produce $BIN"
# A private copy: a rebuild by someone else during the run does not change the binary between runs.
MF=$WORK/midflight
cp "$BIN" "$MF"
log "midflight: $BIN (copied to $MF)"
log "$(mariadbd --version 2>/dev/null || /usr/sbin/mariadbd --version); $(mydumper --version 2>&1 | head -1); $(sysbench --version)"
"$TESTDB" start mariadb "$WORK/pri" "$PRI_PORT"
"$TESTDB" start mariadb-replica "$WORK/repa" "$REPA_PORT" "$WORK/pri"
b_opts=()
((REPLICA_PARALLEL > 0)) && b_opts=(--slave-parallel-threads="$REPLICA_PARALLEL")
"$TESTDB" start mariadb-replica "$WORK/repb" "$REPB_PORT" "$WORK/pri" "${b_opts[@]}"
with_c && "$TESTDB" start mariadb-replica "$WORK/repc" "$REPC_PORT" "$WORK/pri" \
  --slave-parallel-threads="$REPLICA_C_THREADS" --slave-parallel-mode=optimistic
read -r -a dst_opts <<<"$DST_OPTS"
"$TESTDB" start mariadb "$WORK/dst" "$DST_PORT" "${dst_opts[@]}"
log "primary :$PRI_PORT, replica A :$REPA_PORT (midflight's and the copies' source), replica B :$REPB_PORT (drain comparison), target :$DST_PORT"
sql_pri -e "CREATE DATABASE $DB"
SB_BASE=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$PRI_PORT" --mysql-user="$USER_PW"
         --mysql-password="$USER_PW" --mysql-db="$DB" --tables="$TABLES" --table-size="$TABLE_SIZE")
t0=$(now)
sysbench oltp_read_write "${SB_BASE[@]}" --threads=2 prepare >"$WORK/sysbench-prepare.log" 2>&1 ||
  die "sysbench prepare failed: $(tail -3 "$WORK/sysbench-prepare.log")"
PREP_S=$(since "$t0")
wait_replica "$WORK/repa"
wait_replica "$WORK/repb"
with_c && wait_replica "$WORK/repc"
for t in "${TBL[@]}"; do SRC_COUNT[$t]=$(sql_a -e "SELECT COUNT(*) FROM $DB.$t"); done
SRC_INDEXES=$(index_list "$WORK/repa" "$DB")
SRC_MB=$(sql_a -e "SELECT ROUND(SUM(DATA_LENGTH + INDEX_LENGTH) / 1048576) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$DB'")
ROWS=$((TABLES * TABLE_SIZE))
log "sysbench prepare: $TABLES tables x $TABLE_SIZE rows in $PREP_S s; both replicas caught up; $SRC_MB MB (InnoDB data + indexes)"

# ------------------------------------------------------------------- copy --
section "copy: schema + data + secondary indexes into an empty database, all reading replica A"
A_CLI=(-h127.0.0.1 -P"$REPA_PORT" -u"$USER_PW" -p"$USER_PW")
D_CLI=(-h127.0.0.1 -P"$DST_PORT" -u"$USER_PW" -p"$USER_PW")

if ! skipped dump; then
  log "mariadb-dump --single-transaction | mariadb"
  fresh_db sbtest_dump
  cpu_mark
  t0=$(now)
  mariadb-dump --no-defaults "${A_CLI[@]}" --single-transaction "$DB" 2>"$WORK/dump.log" |
    mariadb --no-defaults "${D_CLI[@]}" sbtest_dump 2>>"$WORK/dump.log" || die "mariadb-dump | mariadb failed (see $WORK/dump.log)"
  add_copy dump "mariadb-dump --single-transaction | mariadb" "$(since "$t0")"
  check_copy sbtest_dump
  drop_db sbtest_dump
fi

if ! skipped mydumper; then
  log "mydumper -t 2 + myloader -t 2"
  rm -rf "$WORK/mydumper"
  cpu_mark
  t0=$(now)
  mydumper -h 127.0.0.1 -P "$REPA_PORT" -u "$USER_PW" -p "$USER_PW" -B "$DB" -t 2 -o "$WORK/mydumper" -v 2 \
    >"$WORK/mydumper.log" 2>&1 || die "mydumper failed (see $WORK/mydumper.log)"
  myloader -h 127.0.0.1 -P "$DST_PORT" -u "$USER_PW" -p "$USER_PW" -d "$WORK/mydumper" -B sbtest_mydumper -t 2 -v 2 \
    >>"$WORK/mydumper.log" 2>&1 || die "myloader failed (see $WORK/mydumper.log)"
  add_copy mydumper "mydumper -t 2 + myloader -t 2" "$(since "$t0")"
  check_copy sbtest_mydumper
  drop_db sbtest_mydumper
  rm -rf "$WORK/mydumper"
fi

if ! skipped raw; then
  log "raw: CREATE TABLE without secondary keys, then per table (2 at a time) INTO OUTFILE, LOAD DATA INFILE, ADD KEY"
  fresh_db sbtest_raw
  mkdir -p "$WORK/raw"
  cpu_mark
  t0=$(now)
  # The schema from SHOW CREATE TABLE, secondary keys cut out and kept for an
  # ALTER TABLE after the load (sysbench prepare too creates k_1 after its INSERTs).
  declare -A RAW_KEYS=()
  ddl=
  for t in "${TBL[@]}"; do
    sql_a -r -e "SHOW CREATE TABLE $DB.\`$t\`" | cut -f2- >"$WORK/raw/$t.sql"
    RAW_KEYS[$t]=$(awk '/^  (UNIQUE |FULLTEXT |SPATIAL )?KEY / { k = $0; sub(/^  /, "", k); sub(/,$/, "", k); s = s (s == "" ? "" : ", ") "ADD " k } END { print s }' "$WORK/raw/$t.sql")
    ddl+=$(awk '/^  (UNIQUE |FULLTEXT |SPATIAL )?KEY / { next } { l[n++] = $0 }
      END { for (i = 0; i < n; i++) { s = l[i]; if (i + 1 < n && l[i + 1] ~ /^\)/) sub(/,$/, "", s); print s } }' "$WORK/raw/$t.sql")
    ddl+=$';\n'
  done
  sql_dst sbtest_raw -e "$ddl"
  raw_table() {
    local t=$1 f=$WORK/raw/$1.tsv
    sql_a -e "SELECT * INTO OUTFILE '$f' FROM $DB.\`$t\`"
    sql_dst sbtest_raw -e "SET unique_checks = 0, foreign_key_checks = 0;
      LOAD DATA INFILE '$f' INTO TABLE \`$t\` CHARACTER SET binary;
      ${RAW_KEYS[$t]:+ALTER TABLE \`$t\` ${RAW_KEYS[$t]};}"
    rm -f "$f"
  }
  COPY_PIDS=()
  for w in 0 1; do
    (for ((j = w; j < TABLES; j += 2)); do raw_table "${TBL[$j]}" || exit 1; done) >>"$WORK/raw.log" 2>&1 &
    COPY_PIDS+=($!)
  done
  for p in "${COPY_PIDS[@]}"; do wait "$p" || die "a raw copy worker failed (see $WORK/raw.log)"; done
  COPY_PIDS=()
  add_copy raw "raw INTO OUTFILE + LOAD DATA (2 in parallel)" "$(since "$t0")"
  check_copy sbtest_raw
  drop_db sbtest_raw
  rm -rf "$WORK/raw"
fi

MF_KEPT=
if ! skipped midflight; then
  for i in "${!MF_W[@]}"; do
    v=${MF_W[$i]}
    w=${v%%[!0-9]*}
    early=true; binlog=true
    [[ $v == *after* ]] && early=false
    [[ $v == *nobinlog* ]] && binlog=false
    chunk=$MF_CHUNK_ROWS
    [[ $v =~ c([0-9]+) ]] && chunk=${BASH_REMATCH[1]}
    log "midflight run (source_replica = replica A, copy_workers $w, early_indexes $early, copy_binlog $binlog) until phase replicating"
    fresh_db sbtest_new
    sql_dst -e "RESET MASTER"
    SPEC=$WORK/midflight-$i.yaml
    MF_LOG=$WORK/midflight-$i.log
    cat >"$SPEC" <<YAML
name: bench$i
source: $(uri "$PRI_PORT" "$DB")
source_replica: $(uri "$REPA_PORT" "$DB")
target: $(uri "$DST_PORT" sbtest_new)
state_dir: $WORK/midflight-state-$i
copy_workers: $w
chunk_rows: $chunk
partitions: $MF_PARTITIONS
$([[ $early == false ]] && echo "early_indexes: false")
$([[ $binlog == false ]] && echo "copy_binlog: false")
${MF_SPEC_EXTRA:-}
YAML
    cpu_mark
    t0=$(now)
    mf_start
    mf_wait_phase replicating
    secs=$(since "$t0")
    MF_RSS[i]=$(mf_peak_rss_mb)
    mf_stop
    label="midflight (copy_workers $w"
    [[ $early == false ]] && label+=", indexes after"
    [[ $binlog == false ]] && label+=", no binlog"
    [[ $chunk != "$MF_CHUNK_ROWS" ]] && label+=", chunk_rows $chunk"
    add_copy "mf$i" "$label)" "$secs"
    log "midflight peak RSS (VmHWM): ${MF_RSS[$i]} MB; target binlog $(binlog_bytes "$WORK/dst") bytes; its log: $(grep -E 'copying: done|built as their copy ended|indexes and foreign keys built' "$MF_LOG" | tr '\n' ' ')"
    check_copy sbtest_new
    if ((i == ${#MF_W[@]} - 1)); then
      MF_KEPT=1   # stopped; it resumes from its restart_pos for the drain
    else
      sql_dst -e "DELETE FROM midflight.chunks WHERE migration = 'bench$i'; DELETE FROM midflight.checkpoints WHERE migration = 'bench$i'"
      drop_db sbtest_new
      rm -rf "$WORK/midflight-state-$i"
    fi
  done
fi

# ------------------------------------------------------------------ drain --
DRAIN_DONE=
if ! skipped drain && [[ -n $MF_KEPT ]]; then
  section "drain: backlog of sysbench oltp_write_only --threads=4 --time=$DRAIN_SECONDS, midflight and replica B paused"
  # Replica A is midflight's source: it must keep replicating so that its binlog
  # holds the backlog. Replica B is the comparison: its IO thread keeps fetching
  # into its relay log, its SQL thread is stopped.
  wait_replica "$WORK/repa"
  wait_replica "$WORK/repb"
  sql_b -e "STOP SLAVE SQL_THREAD"
  if with_c; then wait_replica "$WORK/repc"; sql_c -e "STOP SLAVE SQL_THREAD"; fi
  MF_FROM=$(mf_field replication.restart_position)
  A_BYTES0=$(binlog_bytes "$WORK/repa")
  P_BYTES0=$(binlog_bytes "$WORK/pri")
  log "sysbench oltp_write_only --threads=4 --time=$DRAIN_SECONDS on the primary (midflight stopped at $(fmt_pos "$MF_FROM"), replica B SQL thread stopped)"
  sysbench oltp_write_only "${SB_BASE[@]}" --threads=4 --time="$DRAIN_SECONDS" --report-interval=0 \
    --mysql-ignore-errors=1213,1205 run >"$WORK/sysbench-drain.log" 2>&1 ||
    die "sysbench failed: $(tail -3 "$WORK/sysbench-drain.log")"
  read -r DRAIN_TX DRAIN_TPS < <(sb_field "$WORK/sysbench-drain.log")
  DRAIN_CHANGES=$((DRAIN_TX * 4))   # oltp_write_only: 2 UPDATEs, 1 DELETE, 1 INSERT per transaction
  GOAL_GTID=$(gtid_primary)
  P_BYTES=$(($(binlog_bytes "$WORK/pri") - P_BYTES0))
  log "backlog: $DRAIN_TX transactions ($DRAIN_TPS tps), $DRAIN_CHANGES row changes, $P_BYTES bytes of primary binlog, up to GTID $GOAL_GTID"
  t0=$(now)
  wait_replica "$WORK/repa"
  log "replica A caught up $(since "$t0") s after sysbench stopped (not timed: it is midflight's source)"
  wait_replica "$WORK/repb" Gtid_IO_Pos
  with_c && wait_replica "$WORK/repc" Gtid_IO_Pos
  GOAL_POS=$(my_pos "$WORK/repa")
  A_BYTES=$(($(binlog_bytes "$WORK/repa") - A_BYTES0))
  log "replica B's relay log has the whole backlog (Gtid_IO_Pos $GOAL_GTID); replica A's binlog grew $A_BYTES bytes, ends at $(fmt_pos "$GOAL_POS")"

  log "midflight: restarting; draining until restart_pos >= $(fmt_pos "$GOAL_POS") (replica A's SHOW MASTER STATUS)"
  t0=$(now)
  mf_start
  mf_wait_pos "$GOAL_POS"
  MF_DRAIN_S=$(since "$t0")
  MF_APPLIED=$(mf_field replication.changes_applied)
  log "midflight drained in $MF_DRAIN_S s ($MF_APPLIED changes applied by this process, per its status)"
  mf_stop

  # replica_drain DIR NAME: starts the SQL thread and prints the seconds until it applied the backlog.
  replica_drain() {
    local t0 have err deadline
    log "replica $2: START SLAVE SQL_THREAD; until gtid_slave_pos = $GOAL_GTID" >&2
    t0=$(now)
    sql "$1" -e "START SLAVE SQL_THREAD"
    deadline=$((SECONDS + TIMEOUT))
    while :; do
      have=$(sql "$1" -e "SELECT @@gtid_slave_pos")
      [[ $have == "$GOAL_GTID" ]] && break
      err=$(slave_field "$1" Last_Error)
      [[ -z $err ]] || die "replica $2: $err"
      ((SECONDS < deadline)) || die "replica $2 did not reach $GOAL_GTID in ${TIMEOUT}s (gtid_slave_pos $have)"
      sleep "$POLL"
    done
    since "$t0"
  }
  B_DRAIN_S=$(replica_drain "$WORK/repb" B)
  log "replica B caught up in $B_DRAIN_S s (slave_parallel_threads $(sql_b -e "SELECT @@slave_parallel_threads"))"
  # Not needed any more: one server less sharing the cores during the lag run.
  "$TESTDB" stop "$WORK/repb"
  if with_c; then
    C_DRAIN_S=$(replica_drain "$WORK/repc" C)
    log "replica C caught up in $C_DRAIN_S s (slave_parallel_threads $(sql_c -e "SELECT @@slave_parallel_threads"), mode $(sql_c -e "SELECT @@slave_parallel_mode"))"
    "$TESTDB" stop "$WORK/repc"
  fi
  DRAIN_DONE=1
fi

# ------------------------------------------------------------ steady lag --
LAG_MAX=
if [[ -n $MF_KEPT ]] && ! skipped lag; then
  section "steady lag: midflight under sysbench oltp_write_only --threads=4 --rate=$LAG_RATE --time=$LAG_SECONDS"
  mf_start
  mf_caught_up
  sysbench oltp_write_only "${SB_BASE[@]}" --threads=4 --rate="$LAG_RATE" --time="$LAG_SECONDS" --report-interval=0 \
    --mysql-ignore-errors=1213,1205 run >"$WORK/sysbench-lag.log" 2>&1 &
  LOAD_PID=$!
  : >"$WORK/lag-samples"
  LAG_BYTES_MAX=0
  while kill -0 "$LOAD_PID" 2>/dev/null; do
    sleep "$POLL" &   # one sample per $POLL s, or per status call if that is slower
    mf_check_alive "measuring lag"
    st=$(mf_status) || { wait $!; continue; }
    wait $!
    jq -r .lag_seconds <<<"$st" >>"$WORK/lag-samples"
    b=$(jq -r '.lag_bytes // 0' <<<"$st")
    ((b > LAG_BYTES_MAX)) && LAG_BYTES_MAX=$b
  done
  rc=0; wait "$LOAD_PID" || rc=$?; LOAD_PID=
  ((rc == 0)) || die "sysbench failed: $(tail -3 "$WORK/sysbench-lag.log")"
  read -r LAG_TX LAG_TPS < <(sb_field "$WORK/sysbench-lag.log")
  LAG_N=$(wc -l <"$WORK/lag-samples")
  LAG_MAX=$(sort -g "$WORK/lag-samples" | tail -1)
  LAG_P50=$(sort -g "$WORK/lag-samples" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  LAG_EVERY=$(div "$LAG_SECONDS" "$LAG_N")
  log "$LAG_N samples (one per $LAG_EVERY s): max lag $LAG_MAX s, p50 $LAG_P50 s, max $LAG_BYTES_MAX bytes ($LAG_TX transactions, $LAG_TPS tps)"
fi

# ---------------------------------------------------------------- compare --
COMPARE_RESULT=
if [[ -n $MF_KEPT ]] && ! skipped compare; then
  section "midflight compare"
  [[ -n $MF_PID ]] || mf_start
  mf_caught_up
  mf_stop
  rc=0
  out=$("$MF" compare "$SPEC" 2>&1) || rc=$?
  echo "$out"
  COMPARE_RESULT=$(tail -1 <<<"$out")
  ((rc == 0)) || COMPARE_RESULT="$COMPARE_RESULT (exit $rc)"
fi
mf_stop

# ---------------------------------------------------------------- summary --
section "summary: $TABLES tables x $TABLE_SIZE rows ($SRC_MB MB), $(nproc) cores"
mf_keys=()
for i in "${!MF_W[@]}"; do [[ -n ${COPY_S[mf$i]:-} ]] && mf_keys+=("mf$i"); done
mf=
((${#mf_keys[@]})) && mf=${COPY_S[${mf_keys[${#mf_keys[@]}-1]}]}
if ((${#COPY_ORDER[@]})); then
  echo
  echo "copy (schema + data + secondary indexes into an empty database, read from replica A; load = 1-minute load average when the method ended)"
  printf '  %-56s %9s %6s' method seconds load
  for k in "${mf_keys[@]}"; do printf ' %16s' "mf(${MF_W[${k#mf}]})/method"; done
  echo
  for j in "${!COPY_ORDER[@]}"; do
    m=${COPY_ORDER[$j]}
    printf '  %-56s %9.2f %6s' "${COPY_LABEL[$j]}" "${COPY_S[$m]}" "${COPY_LOAD[$m]}"
    for k in "${mf_keys[@]}"; do printf ' %15sx' "$(div "${COPY_S[$k]}" "${COPY_S[$m]}")"; done
    echo
  done
  for k in "${mf_keys[@]}"; do
    printf '  midflight (%s) peak RSS: %s MB\n' "${MF_W[${k#mf}]}" "${MF_RSS[${k#mf}]}"
  done
  echo
  echo "copy CPU seconds (user + system): replica A (the source), the target server, the tools (midflight's own process for midflight)"
  copy_cpu_table 58
fi
if [[ -n $DRAIN_DONE ]]; then
  echo
  echo "drain (one backlog: sysbench oltp_write_only --threads=4 --time=$DRAIN_SECONDS = $DRAIN_TX transactions at $DRAIN_TPS tps, $DRAIN_CHANGES row changes, $A_BYTES bytes of replica A's binlog)"
  printf '  %-50s %9s %11s %9s\n' consumer seconds changes/s "tx/s"
  printf '  %-50s %9.2f %11.0f %9.0f\n' "replica B (SQL thread, slave_parallel_threads $REPLICA_PARALLEL)" "$B_DRAIN_S" \
    "$(div "$DRAIN_CHANGES" "$B_DRAIN_S")" "$(div "$DRAIN_TX" "$B_DRAIN_S")"
  with_c && printf '  %-50s %9.2f %11.0f %9.0f\n' "replica C (slave_parallel_threads $REPLICA_C_THREADS, optimistic)" "$C_DRAIN_S" \
    "$(div "$DRAIN_CHANGES" "$C_DRAIN_S")" "$(div "$DRAIN_TX" "$C_DRAIN_S")"
  printf '  %-50s %9.2f %11.0f %9.0f\n' "midflight ($MF_PARTITIONS partitions, incl. start-up)" "$MF_DRAIN_S" \
    "$(div "$DRAIN_CHANGES" "$MF_DRAIN_S")" "$(div "$DRAIN_TX" "$MF_DRAIN_S")"
  printf '  drain ratio: %sx (replica B seconds / midflight seconds)\n' "$(div "$B_DRAIN_S" "$MF_DRAIN_S")"
  with_c && printf '  drain ratio against parallel replication: %sx (replica C seconds / midflight seconds)\n' "$(div "$C_DRAIN_S" "$MF_DRAIN_S")"
  [[ -n ${MF_APPLIED:-} ]] && printf '  midflight reported %s changes applied while draining\n' "$MF_APPLIED"
fi
[[ -n $LAG_MAX ]] && printf '\nsteady lag under sysbench oltp_write_only --threads=4 --rate=%s --time=%s (%s tps): max %s s, p50 %s s (%s samples, one per %s s; max %s bytes)\n' \
  "$LAG_RATE" "$LAG_SECONDS" "$LAG_TPS" "$LAG_MAX" "$LAG_P50" "$LAG_N" "$LAG_EVERY" "$LAG_BYTES_MAX"
[[ -n $COMPARE_RESULT ]] && printf '\ncompare: %s\n' "$COMPARE_RESULT"

printf '\nhost: %s cores, load average %s at the start, %s at the end\n' "$(nproc)" "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "targets (meaningful at the defaults: 8 x 1,000,000 rows; midflight: the last MF_WORKERS entry)"
r_myd=-; r_raw=-; r_drain=-
[[ -n $mf && -n ${COPY_S[mydumper]:-} ]] && r_myd=$(div "$mf" "${COPY_S[mydumper]}")
[[ -n $mf && -n ${COPY_S[raw]:-} ]] && r_raw=$(div "$mf" "${COPY_S[raw]}")
[[ -n $DRAIN_DONE ]] && r_drain=$(div "$B_DRAIN_S" "$MF_DRAIN_S")
printf '  %-52s %8s  %s\n' "copy time / mydumper+myloader's <= 0.5" "$r_myd" "$(met "$r_myd" '<=' 0.5)"
printf '  %-52s %8s  %s\n' "copy time / raw OUTFILE+LOAD DATA's <= 1.0" "$r_raw" "$(met "$r_raw" '<=' 1.0)"
printf '  %-52s %8s  %s\n' "drain: replica B seconds / midflight's >= 1.5" "$r_drain" "$(met "$r_drain" '>=' 1.5)"
with_c && [[ -n $DRAIN_DONE ]] && printf '  %-52s %8s  %s\n' "drain: replica C (parallel) seconds / midflight's" "$(div "$C_DRAIN_S" "$MF_DRAIN_S")" "(reported, no target)"
printf '  %-52s %8s  %s\n' "steady lag (max) < 1 s" "${LAG_MAX:--}" "$(met "${LAG_MAX:--}" '<' 1)"
printf '  %-52s %8s  %s\n' "steady lag (p50) < 1 s" "${LAG_P50:--}" "$(met "${LAG_P50:--}" '<' 1)"
[[ -z $COMPARE_RESULT || $COMPARE_RESULT == "source and target are equal" ]] || die "midflight compare: $COMPARE_RESULT"
