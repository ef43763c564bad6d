#!/usr/bin/env bash
# The MariaDB target runs with innodb_flush_log_at_trx_commit = 0 (commits
# reach the disk about once a second) and is killed with kill -9 under a
# sysbench write load while midflight applies: transactions the target had
# acknowledged are lost with it. midflight, left running, must notice that
# its target went away, reload the target's checkpoints and read the binlog
# again from what the target really holds; then it is killed and restarted
# after a second target crash (the restart position comes from the target,
# not from midflight's local state). The target must end equal to the source.
source "$(dirname "$0")/mylib.sh"
start_my_servers 26640
echo "--innodb-flush-log-at-trx-commit=0" >"$DST_DIR/args"
"$TESTDB" restart "$DST_DIR"
[[ $(sql_dst -e "SELECT @@innodb_flush_log_at_trx_commit") == 0 ]] || fail "target should run innodb_flush_log_at_trx_commit = 0"

sysbench_prepare 4 5000
wait_replica
write_my_spec mtcrash "partitions: 4"

kill_target() {
  kill -9 "$(cat "$DST_DIR/mariadbd.pid")"
  local i
  for ((i = 0; i < 100; i++)); do sql_dst -e "SELECT 1" >/dev/null 2>&1 || break; sleep 0.1; done
  sleep 1
  "$TESTDB" start mariadb "$DST_DIR" 0
}

run_mf_bg
wait_phase replicating
start_sysbench oltp_write_only 200
sleep 4
log "kill -9 of the target under load (midflight keeps running)"
kill_target
sleep 5
kill -0 "$MF_PID" || { cat "$WORK/run.$RUN_N.log"; fail "midflight exited after the target crashed"; }
log "kill -9 of the target, then of midflight; midflight restarted"
kill_target
kill9_mf
run_mf_bg
wait_phase replicating
sleep 4
stop_sysbench
wait_my_caught_up 180
assert_equal
grep -q "the target connection was lost; restarting from the target's checkpoints" "$WORK/run.1.log" \
  || fail "the first run did not restart its flow after the target crash"
grep -h "target connection was lost\|replicating: binlog" "$WORK"/run.*.log | sed 's/^/  /'
stop_mf
log "PASS"
