#!/usr/bin/env bash
# Across engines, the target crashing: PostgreSQL as the source under pgbench
# load, a MariaDB target running with innodb_flush_log_at_trx_commit = 0 and
# sync_binlog = 0 (commits reach the disk about once a second, so a kill -9
# loses transactions the target had acknowledged). The target's mariadbd is
# killed with kill -9 and restarted (scripts/testdb, same data directory):
#   1. during the copy, just after a chunk committed, midflight left running:
#      its copy must end with every chunk on the target, also those the
#      target had acknowledged and then lost;
#   2. while streaming, midflight left running: it must notice the lost
#      target connection and restart its flow from the target's checkpoints
#      by itself (README: "The target crashing, even with ...");
#   3. while streaming again, then midflight killed with kill -9 too and
#      restarted: the restart position comes from the target, and the slot
#      was not told a position the target had not made durable.
# At the end both sides are read through their own drivers and compared row
# by row (cross_compare.py --pg-to-my), and `midflight compare` must say equal.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3  # Debian's, with python3-pymysql and python3-psycopg2 (scripts/setup)

start_pg_to_my_servers 31100 31120 --innodb-flush-log-at-trx-commit=0 --sync-binlog=0
[[ $(sql_my -e "SELECT @@innodb_flush_log_at_trx_commit, @@sync_binlog") == "0	0" ]] \
  || fail "the target should run innodb_flush_log_at_trx_commit = 0, sync_binlog = 0"

# kill_target: kill -9 of the target's mariadbd, then the same server started
# again on its data directory and port (its args file keeps the settings).
kill_target() {
  kill_restart_mariadb "$WORK/dst"
  [[ $(sql_my -e "SELECT @@innodb_flush_log_at_trx_commit") == 0 ]] || fail "the restarted target lost its settings"
}

# pgbench scale 1 (100,000 accounts in 10 chunks), the copy held to 20,000 rows/s: long enough to be hit.
pgbench -i -s 1 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY"
write_spec tcrash "chunk_rows: 10000" "copy_workers: 2" "partitions: 4" "knobs:" "  copy_rows_per_s: 20000"

log "pgbench: scale 1; 150 tx/s against the source from now on"
pgbench -c 2 -j 2 -T 600 -R 150 "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!

# 1. The target killed during the copy, right after a chunk committed (that
# commit is then likely lost: the log reaches the disk once a second).
run_mf_bg
n=0
for ((i = 0; i < 600; i++)); do
  n=$(sql_my -e "SELECT COUNT(*) FROM midflight.chunks" 2>/dev/null || echo 0)
  ((n >= 3)) && break
  kill -0 "$MF_PID" 2>/dev/null || { cat "$WORK/run.$RUN_N.log"; fail "midflight exited during the copy"; }
  sleep 0.05
done
((n >= 3)) || fail "the copy did not record 3 chunks in 30 s"
kill_target
log "killed -9 the target during the copy, just after chunk $n committed (midflight keeps running)"
[[ $(status_field phase) == copying ]] || fail "expected the copy still running (phase $(status_field phase))"
after=$(sql_my -e "SELECT COUNT(*) FROM midflight.chunks")
log "the restarted target records $after chunks"
# The copy retries its chunks on a lost target; the same process must finish
# the copy with every chunk on the target, including any the crash took back.
wait_phase replicating 120
grep -E "^copying: " "$WORK/run.$RUN_N.log" | sed 's/^/  run 1: /' | cut -c1-220 || true
# Chunks the target acknowledged and lost must have been seen and copied again
# (before the fix the copy counted them done, and replication refused to start
# with "chunk N of T is not recorded on the target" on every run). A chunk may
# also commit between the count above and the kill, so the copy's own message
# is the count; fewer chunks than counted on the restarted target means one.
recopied=$({ grep -o "copying: the target lost [0-9]* chunk(s) it had acknowledged" "$WORK/run.$RUN_N.log" || true; } \
  | awk '{ s += $5 } END { print s + 0 }')
((after >= n || recopied > 0)) || fail "the target lost $((n - after)) acknowledged chunks and the copy did not copy them again"
log "the crash took back $recopied acknowledged chunk(s); the copy copied them again"

# 2. The target killed while streaming, midflight left running.
sleep 3
log "kill -9 of the target while streaming (midflight keeps running)"
kill_target
for ((i = 0; i < 120; i++)); do
  grep -q "the target connection was lost; restarting from the target's checkpoints" "$WORK/run.$RUN_N.log" && break
  sleep 0.25
done
kill -0 "$MF_PID" 2>/dev/null || { tail -20 "$WORK/run.$RUN_N.log"; fail "midflight exited after the target crashed while streaming"; }
grep -q "the target connection was lost; restarting from the target's checkpoints" "$WORK/run.$RUN_N.log" \
  || fail "midflight did not restart its flow after the target crashed"
sleep 2
wait_phase replicating 60

# 3. Again, then midflight killed too and restarted.
sleep 3
log "kill -9 of the target, then of midflight; midflight restarted"
kill_target
kill9_mf
run_mf_bg
wait_phase replicating 60
sleep 4
stop_load
wait_caught_up 90
grep -E "number of transactions actually processed" "$WORK/pgbench.log" | sed 's/^/  pgbench: /' || true
grep -h "target connection was lost\|slot feedback held" "$WORK"/run.*.log | sort | uniq -c | sed 's/^/  /' | cut -c1-220

MYHOST=127.0.0.1:$myport:mf:mfpass:shop
"$PY" "$(dirname "$0")/cross_compare.py" --pg-to-my "$SRC" public "$MYHOST" pgbench_accounts pgbench_branches \
  pgbench_tellers pgbench_history || fail "PostgreSQL and MariaDB differ after $KILLS target crashes"
assert_equal
hist_src=$(sql_src -c "SELECT count(*) FROM pgbench_history")
hist_dst=$(sql_my -e "SELECT COUNT(*) FROM shop.pgbench_history")
[[ $hist_src == "$hist_dst" ]] || fail "pgbench_history: $hist_src rows on the source, $hist_dst on the target"
((hist_src > 0)) || fail "pgbench wrote no history"
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts: $(status_field conflicts)"
log "$KILLS target crashes; equal row for row ($hist_src pgbench_history rows); changes applied by the last run: $(status_field replication.changes_applied)"
stop_mf
log "PASS"
