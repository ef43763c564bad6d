#!/usr/bin/env bash
# pgbench -i -s 10, a pgbench write load running the whole time, and
# midflight killed with SIGKILL at five points (after the schema, in the
# middle of the copy, before the index build, while streaming, and at an
# arbitrary moment); each run resumes. After the load stops and the target
# has applied the source's last position, every table must equal the source.
source "$(dirname "$0")/lib.sh"
start_servers 26432

pgbench -i -s 10 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
write_spec crash "chunk_rows: 50000" "copy_workers: 2" "partitions: 4"

pgbench -c 4 -j 2 -T 600 -R 300 "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!
sleep 1

run_mf_crash after-pre-data
run_mf_crash copy-chunks=3
chunks_done=$(sql_dst -c "SELECT count(*) FROM midflight.chunks")
log "chunks recorded on the target after the mid-copy kill: $chunks_done"
[[ $chunks_done -ge 3 ]] || fail "expected at least 3 chunks recorded, got $chunks_done"
run_mf_crash before-post-data
grep -q "copying: " "$WORK/run.$RUN_N.log" && log "resumed copy: $(grep 'copying: [0-9]' "$WORK/run.$RUN_N.log")"
run_mf_crash apply-changes=2000

run_mf_bg
wait_phase replicating
sleep 4
log "kill -9 at an arbitrary moment while streaming"
kill9_mf

run_mf_bg
wait_phase replicating
sleep 5
stop_load
grep -E "number of transactions actually processed|number of failed" "$WORK/pgbench.log" || true
wait_caught_up 180
"$MF" status "$SPEC"
assert_equal
# Killed at every point, resumed, and no change ever met a row it should not:
# replaying after a crash and the copy/stream overlap are not apply conflicts.
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts after crashes: $(status_field conflicts)"
grep -h "apply conflict" "$WORK"/run.*.log && fail "apply conflicts logged"
log "apply conflicts: $(status_field conflicts.total)"
stop_mf
log "PASS"
