#!/usr/bin/env bash
# The source and then the target restart while midflight streams under a
# pgbench load: midflight reconnects with backoff and loses nothing.
source "$(dirname "$0")/lib.sh"
start_servers 26472
pgbench -i -s 2 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
write_spec restart
run_mf_bg
wait_phase replicating

load() { pgbench -n -c 2 -T "$1" -R 200 "$SRC" >>"$WORK/pgbench.log" 2>&1 || true; }
load 4
log "restarting the source"
"$TESTDB" restart "$WORK/src"
load 4
log "restarting the target"
"$TESTDB" restart "$WORK/dst"
load 4
log "stopping the target for 3 s under load"
"$TESTDB" stop "$WORK/dst"
load 3
"$TESTDB" start pg "$WORK/dst" "$(cat "$WORK/dst/port")"
load 3
wait_caught_up 120
kill -0 "$MF_PID" || fail "midflight died"
grep -E "reconnecting|retrying" "$WORK/run.$RUN_N.log" | head -4 || true
assert_equal
stop_mf
log "PASS"
