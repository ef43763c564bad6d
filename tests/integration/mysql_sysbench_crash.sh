#!/usr/bin/env bash
# MariaDB primary + replica as the source, a third server as the target.
# sysbench oltp_read_write runs against the primary for the whole migration;
# midflight reads only from the replica and is killed (SIGKILL) at five
# points: after the schema, after 3 copied chunks, before the index build,
# while streaming after 1,000 applied changes, and once at an arbitrary
# moment. Each run resumes. The replica and the target are restarted while
# streaming. Then every table must be equal, and the primary's general log
# must hold no connection by midflight.
source "$(dirname "$0")/mylib.sh"

start_my_servers 26600
sysbench_prepare 4 30000
write_my_spec sb "chunk_rows: 5000" "copy_workers: 2" "partitions: 4"
log "sysbench: 4 tables x 30,000 rows; oltp_read_write at 150 tx/s against the primary from now on"
start_sysbench oltp_read_write 150

run_mf_crash after-pre-data
run_mf_crash copy-chunks=3
[[ $(sql_dst -e "SELECT COUNT(*) FROM midflight.chunks") -ge 3 ]] || fail "expected 3 chunks recorded on the target"
run_mf_crash before-post-data
run_mf_crash apply-changes=1000
run_mf_bg
wait_phase replicating 60
sleep 3
kill9_mf
log "killed with kill -9 while streaming"
run_mf_bg
sleep 2
log "restarting the replica (midflight's source)"
"$TESTDB" restart "$REP_DIR"
sleep 3
log "restarting the target"
"$TESTDB" restart "$DST_DIR"
sleep 3
stop_sysbench
wait_my_caught_up 120
grep -h "resum\|reconnect" "$WORK"/run.*.log | sed 's/^/  /' | head -8 || true
assert_equal
# Killed and resumed, and no change ever met a row it should not.
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts after crashes: $(status_field conflicts)"
grep -h "apply conflict" "$WORK"/run.*.log && fail "apply conflicts logged"
log "apply conflicts: $(status_field conflicts.total)"
stop_mf
assert_primary_untouched
log "ok"
