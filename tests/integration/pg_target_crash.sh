#!/usr/bin/env bash
# The target crashes while midflight applies, and it runs with non-durable
# commits (the test servers run synchronous_commit = off, as teams set it on
# apply targets for speed): an immediate stop of the target, twice, under a
# pgbench write load, with midflight left running. A COMMIT the target
# returned but had not flushed is lost with the crash, so nothing may be
# confirmed to the source's slot before the target made it durable. After the
# load stops and the target caught up, every table must equal the source.
source "$(dirname "$0")/lib.sh"
start_servers 26512
[[ $(sql_dst -c "SHOW synchronous_commit") == off ]] || fail "the target should run with synchronous_commit = off"

pgbench -i -s 5 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
write_spec tcrash "partitions: 4"

run_mf_bg
wait_phase replicating
pgbench -c 4 -j 2 -T 600 -R 300 "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!
for round in 1 2; do
  sleep 4
  log "round $round: immediate stop of the target under load (midflight keeps running)"
  "$TESTDB" stop "$WORK/dst" immediate
  sleep 1
  "$TESTDB" start pg "$WORK/dst" 0
done
sleep 4
kill -0 "$MF_PID" || { cat "$WORK/run.$RUN_N.log"; fail "midflight exited after the target crashed"; }
stop_load
grep -E "number of transactions actually processed|number of failed" "$WORK/pgbench.log" || true
wait_caught_up 180
log "history rows: source $(sql_src -c 'SELECT count(*) FROM pgbench_history'), target $(sql_dst -c 'SELECT count(*) FROM pgbench_history')"
assert_equal
stop_mf
log "PASS"
