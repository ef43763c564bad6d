#!/usr/bin/env bash
# 2,000 idle PostgreSQL clients logged in through the proxy (each with its
# server session behind it, as PostgreSQL sessions need) and held open while
# pgbench runs through it: midflight's thread count and RSS are printed; the
# RSS added per idle connection must stay well under 100 kB, the thread
# count must not grow with the connections (the proxy serves sessions on a
# fixed pool of event loops), every idle client must still answer, and
# pgbench must finish without a failed transaction.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IDLE=${IDLE_CLIENTS:-2000}
HARD=$(ulimit -Hn)
[[ $HARD == unlimited || $HARD -ge $((IDLE + 500)) ]] || fail "the hard open-file limit $HARD is below $((IDLE + 500))"
ulimit -Sn "$HARD"

port=$(free_port 23600)
while ! port_free "$((port + 1))"; do port=$(free_port $((port + 2))); done
# Every idle client holds a server session on the source.
"$TESTDB" start pg "$WORK/src" "$port" "max_connections = $((IDLE + 100))"
"$TESTDB" start pg "$WORK/dst" "$((port + 1))"
SRC=$("$TESTDB" uri "$WORK/src")
DST=$("$TESTDB" uri "$WORK/dst")
pgbench -i -s 1 -q "$SRC" >/dev/null 2>&1 || fail "pgbench -i failed"
sql_src -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"
PROXY_PORT=$(free_port 23610)
write_spec idle "partitions: 2" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" "  max_clients: $((IDLE + 50))"
run_mf_bg
wait_phase replicating
URI="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/postgres"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$MF_PID/status"; }
threads() { awk '/^Threads/ {print $2}' "/proc/$MF_PID/status"; }

# A short warm-up, so the baseline includes what serving traffic allocates.
pgbench -n -S -c 4 -j 2 -T 3 "$URI" >/dev/null 2>&1 || fail "pgbench through the proxy failed before the test"
base=$(rss)
base_threads=$(threads)
log "midflight pid $MF_PID: baseline RSS $base kB, $base_threads threads"

python3 "$(dirname "${BASH_SOURCE[0]}")/pg_proxy/idle_clients.py" 127.0.0.1 "$PROXY_PORT" midflight midflight postgres \
  "$IDLE" "$WORK/ready" "$WORK/release" >"$WORK/idle.json" 2>"$WORK/idle.err" &
IDLE_PID=$!
EXTRA_PIDS+=("$IDLE_PID")
t0=$(date +%s)
for _ in $(seq 1200); do [[ -f $WORK/ready ]] && break; kill -0 "$IDLE_PID" 2>/dev/null || break; sleep 0.1; done
[[ -f $WORK/ready ]] || fail "the idle clients did not all log in: $(tail -3 "$WORK/idle.err")"
log "$IDLE idle clients logged in through the proxy in $(($(date +%s) - t0)) s"
# pgbench while they are held.
pgbench -n -S -c 4 -j 2 -T 20 "$URI" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!
sleep 10
with=$(rss)
with_threads=$(threads)
per=$(((with - base) * 1024 / IDLE))
servers=$(sql_src -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'idle'")
log "with $IDLE idle clients ($servers idle server sessions on the source) and pgbench running: RSS $with kB," \
  "$with_threads threads, $per bytes per idle connection"
wait "$LOAD_PID" || { tail -20 "$WORK/pgbench.log"; fail "pgbench failed through the proxy"; }
LOAD_PID=
touch "$WORK/release"
wait "$IDLE_PID" || fail "idle clients: $(tail -3 "$WORK/idle.err")"
summary=$(cat "$WORK/idle.json")
log "idle clients: $summary"
grep -E "number of transactions actually processed|number of failed transactions|^tps" "$WORK/pgbench.log" | sed 's/^/    /'
[[ $(jq .answered <<<"$summary") == "$IDLE" ]] || fail "not every idle client answered after the wait"
[[ $servers == "$IDLE" ]] || fail "expected $IDLE idle server sessions on the source, found $servers"
! grep -q "number of failed transactions: [1-9]" "$WORK/pgbench.log" || fail "pgbench had failed transactions"
((per < 100 * 1024)) || fail "RSS per idle connection is $per bytes (limit 100 kB)"
((with_threads <= base_threads + 2)) || fail "midflight's threads grew from $base_threads to $with_threads with $IDLE clients"
stop_mf
log "PASS"
