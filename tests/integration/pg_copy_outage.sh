#!/usr/bin/env bash
# The target goes away for a while in the middle of the copy and comes back:
# the copy recovers, and the steps after it (index build, sequences,
# replication) must not fail on a connection the outage broke; any error on
# the way must say what happened, not show a bare fragment of SQL.
source "$(dirname "$0")/lib.sh"
start_servers 26542
pgbench -i -s 10 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
write_spec outage "chunk_rows: 50000" "copy_workers: 2" "knobs:" "  copy_rows_per_s: 100000"
run_mf_bg
wait_phase copying 60
sleep 2
log "target stopped during the copy"
"$TESTDB" stop "$WORK/dst" immediate
sleep 8
"$TESTDB" start pg "$WORK/dst" 0
log "target started again"
wait_phase replicating 240
grep -E "^(copying|schema):" "$WORK/run.$RUN_N.log" | sed 's/^/  /'
wait_caught_up 60
assert_equal
stop_mf
log "PASS"
