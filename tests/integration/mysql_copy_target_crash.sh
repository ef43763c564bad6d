#!/usr/bin/env bash
# MariaDB -> MariaDB, the target crashing around the copy: sysbench tables on
# a primary with a replica (midflight reads the replica), sysbench writing to
# the primary throughout, and a target running innodb_flush_log_at_trx_commit
# = 0, innodb_flush_log_at_timeout = 3 and sync_binlog = 0: its log reaches
# the disk every 3 s, so a kill -9 takes back transactions it had
# acknowledged, a copied chunk's rows together with its midflight.chunks row.
# The target's mariadbd is killed with kill -9 and restarted (same data
# directory and settings):
#   1. during the copy, after 3 chunks committed, midflight left running (it
#      may stop on the lost target: then it is started again);
#   2. the moment the copy's last chunk committed (within the flush
#      interval), midflight left running: the copy must end with every chunk
#      durably on the target, those the crash took back copied again from a
#      newer snapshot;
#   3. the moment the phase becomes replicating;
#   4. while streaming, midflight left running, then again with midflight
#      killed with kill -9 too and restarted.
# Then a second migration, of tables without secondary indexes (so no index
# build after the copy makes the target write its log out early):
#   5. the target killed the moment the phase becomes replicating, as the
#      change stream has just read the chunks the target records to know
#      what the copy holds. Before the fix this came within the flush
#      interval of the last chunk: the crash took back chunks, and the
#      migration either stopped for good ("chunk N of T is not recorded on
#      the target") or replicated without their rows.
# Each migration ends with the replica and the target compared row for row
# (each row's key and CRC32, sorted, diffed) and by `midflight compare`.
# (mysql_target_crash.sh covers the target crashing while streaming only.)
source "$(dirname "$0")/mylib.sh"
start_my_servers 31800
printf '%s\n' --innodb-flush-log-at-trx-commit=0 --innodb-flush-log-at-timeout=3 --sync-binlog=0 >"$DST_DIR/args"
"$TESTDB" restart "$DST_DIR"
[[ $(sql_dst -e "SELECT @@innodb_flush_log_at_trx_commit, @@innodb_flush_log_at_timeout, @@sync_binlog") == "0	3	0" ]] \
  || fail "the target should run innodb_flush_log_at_trx_commit = 0, innodb_flush_log_at_timeout = 3, sync_binlog = 0"

# 4 tables of 20,000 rows in chunks of 2,500 (about 32 chunks), the copy held
# to 10,000 rows/s: about 8 s, long enough to be hit, and the log written in
# 3 s stays below the target's 16 MB log buffer (a full buffer is written out).
sysbench_prepare 4 20000
wait_replica
NAME=mcopycrash
write_my_spec $NAME "chunk_rows: 2500" "copy_workers: 2" "partitions: 4" "knobs:" "  copy_rows_per_s: 10000"

kill_target() {
  kill_restart_mariadb "$DST_DIR"
  [[ $(sql_dst -e "SELECT @@innodb_flush_log_at_trx_commit") == 0 ]] || fail "the restarted target lost its settings"
}
# recorded / planned: the current migration's chunks recorded on the target / in its plan.
recorded() { sql_dst -e "SELECT COUNT(*) FROM midflight.chunks WHERE migration = '$NAME'" 2>/dev/null || echo 0; }
planned() { sqlite3 "$WORK/state-$NAME/state.db" "SELECT COUNT(*) FROM chunks" 2>/dev/null || echo 0; }
# recopied LOG: the chunks the copy saw lost and copied again, per its own message.
recopied() { { grep -o "copying: the target lost [0-9]* chunk(s) it had acknowledged" "$1" || true; } | awk '{ s += $5 } END { print s + 0 }'; }
# ensure_running: midflight may have stopped on the lost target during the copy; start it again.
ensure_running() {
  kill -0 "$MF_PID" 2>/dev/null && return 0
  wait "$MF_PID" 2>/dev/null || true
  log "midflight stopped on the lost target: $(grep -E "^(error|midflight)" "$WORK/run.$RUN_N.log" | tail -1 | cut -c1-200)"
  run_mf_bg
}

log "sysbench: 4 tables x 20,000 rows; oltp_write_only at 100 tx/s against the primary from now on"
start_sysbench oltp_write_only 100

# 1. During the copy.
run_mf_bg
n=0
for ((i = 0; i < 1200; i++)); do
  n=$(recorded)
  ((n >= 3)) && break
  kill -0 "$MF_PID" 2>/dev/null || { cat "$WORK/run.$RUN_N.log"; fail "midflight exited during the copy"; }
  sleep 0.05
done
((n >= 3)) || fail "the copy did not record 3 chunks in 60 s"
total=$(planned)
kill_target
log "1. killed -9 the target during the copy, after $n of $total chunks committed; the restarted target records $(recorded)"
sleep 2
ensure_running

# 2. The moment the last chunk committed.
for ((i = 0; i < 2400; i++)); do
  ((total > 0)) || total=$(planned)
  n=$(recorded)
  ((total > 0 && n >= total)) && break
  if ! kill -0 "$MF_PID" 2>/dev/null; then ensure_running; fi
  sleep 0.02
done
((total > 0 && n >= total)) || fail "the copy did not record its $total chunks in 120 s (recorded $n)"
kill_target
log "2. killed -9 the target as the copy's last chunk committed ($n of $total recorded)"
sleep 2
ensure_running

# 3. The moment the phase becomes replicating (midflight may stop on the lost
# target while building indexes: it is started again and copies what is missing).
for ((i = 0; i < 9000; i++)); do
  grep -q "^\[replicating\]" "$WORK/run.$RUN_N.log" && break
  kill -0 "$MF_PID" 2>/dev/null || ensure_running
  sleep 0.02
done
grep -q "^\[replicating\]" "$WORK/run.$RUN_N.log" || fail "run $RUN_N did not print [replicating] in 180 s"
kill_target
log "3. killed -9 the target as the phase became replicating; the restarted target records $(recorded) of $total chunks"
grep -E "^copying: (done|the target lost)" "$WORK"/run.*.log | sed "s|^$WORK/|  |" | cut -c1-200 || true
[[ $(recorded) == "$total" ]] || fail "the target lost chunks after the copy had ended: it records $(recorded) of $total"
again=0
for ((r = 1; r <= RUN_N; r++)); do again=$((again + $(recopied "$WORK/run.$r.log"))); done
log "the copy found $again chunk(s) the target had acknowledged and lost, and copied them again ($RUN_N runs)"
sleep 2
wait_phase replicating 120

# 4. While streaming, midflight left running; then midflight killed too.
sleep 3
log "4. kill -9 of the target while streaming (midflight keeps running)"
kill_target
for ((i = 0; i < 240; i++)); do
  grep -q "the target connection was lost; restarting from the target's checkpoints" "$WORK/run.$RUN_N.log" && break
  sleep 0.25
done
kill -0 "$MF_PID" 2>/dev/null || { tail -20 "$WORK/run.$RUN_N.log"; fail "midflight exited after the target crashed while streaming"; }
grep -q "the target connection was lost; restarting from the target's checkpoints" "$WORK/run.$RUN_N.log" \
  || fail "midflight did not restart its flow after the target crashed"
wait_phase replicating 60
sleep 3
log "kill -9 of the target, then of midflight; midflight restarted"
kill_target
kill9_mf
run_mf_bg
wait_phase replicating 120
sleep 4
stop_sysbench
wait_my_caught_up 180

# Row for row: every row's key and CRC32 on the replica (what midflight
# reads) and on the target, sorted, diffed.
# assert_rows_equal SOURCE_DB TARGET_DB TABLES...
assert_rows_equal() {
  local src_db=$1 dst_db=$2 t
  shift 2
  for t in "$@"; do
    "$TESTDB" sql "$REP_DIR" -N -B -e "SELECT '$t', id, CRC32(CONCAT_WS('|', id, k, c, pad)) FROM $src_db.$t ORDER BY id"
  done >"$WORK/rows.src"
  for t in "$@"; do
    "$TESTDB" sql "$DST_DIR" -N -B -e "SELECT '$t', id, CRC32(CONCAT_WS('|', id, k, c, pad)) FROM $dst_db.$t ORDER BY id"
  done >"$WORK/rows.dst"
  if ! diff "$WORK/rows.src" "$WORK/rows.dst" >"$WORK/rows.diff"; then
    head -20 "$WORK/rows.diff"
    fail "$NAME: replica and target differ in $(grep -c '^[<>]' "$WORK/rows.diff") row lines after $KILLS target crashes"
  fi
  assert_equal
  [[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts: $(status_field conflicts)"
  log "$NAME: $KILLS target crashes; $(wc -l <"$WORK/rows.src") rows equal row for row; changes applied by the last run: $(status_field replication.changes_applied)"
}
assert_rows_equal shop shop_new sbtest1 sbtest2 sbtest3 sbtest4
stop_mf

# 5. A second migration: 2 tables of 20,000 rows without secondary indexes,
# into another database of the same target, killed the moment it replicates.
log "5. sysbench: 2 tables x 20,000 rows without secondary indexes in database shopb"
sql_pri -e "CREATE DATABASE shopb"
sysbench oltp_read_write "${SB_OPTS[@]}" --mysql-db=shopb --tables=2 --table-size=20000 --create_secondary=off \
  --threads=2 prepare >/dev/null
wait_replica
sql_dst -e "CREATE DATABASE shopb_new"
SRC=${SRC%/shop}/shopb REP=${REP%/shop}/shopb DST=${DST%/shop_new}/shopb_new
NAME=mcopycrashb
write_my_spec $NAME "chunk_rows: 2500" "copy_workers: 2" "partitions: 4" "knobs:" "  copy_rows_per_s: 10000"
run_mf_bg
for ((i = 0; i < 9000; i++)); do
  grep -q "^\\[replicating\\]" "$WORK/run.$RUN_N.log" && break
  kill -0 "$MF_PID" 2>/dev/null || { cat "$WORK/run.$RUN_N.log"; fail "midflight exited during the copy"; }
  sleep 0.02
done
total=$(planned)
kill_target
log "5. killed -9 the target as the phase became replicating; the restarted target records $(recorded) of $total chunks"
grep -E "^copying: " "$WORK/run.$RUN_N.log" | sed 's/^/  /' | cut -c1-200 || true
[[ $(recorded) == "$total" ]] || fail "the target lost chunks after the copy had ended: it records $(recorded) of $total"
wait_phase replicating 120
sleep 3
wait_my_caught_up 180
assert_rows_equal shopb shopb_new sbtest1 sbtest2
stop_mf
log "PASS"
