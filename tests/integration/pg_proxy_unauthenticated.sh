#!/usr/bin/env bash
# Sockets that connect to the proxy and never log in (2,000 idle ones, and
# one that trickles its startup packet a byte at a time) must not lock a real
# client out: connections still authenticating are limited apart from
# authenticated sessions (proxy.max_unauthenticated, the oldest evicted for a
# newcomer) and cut at proxy.auth_timeout_seconds (default 10). midflight is
# started with a soft open-file limit of 1024 and must raise it itself.
source "$(dirname "$0")/lib.sh"
IDLE=2000
start_servers 31000
PROXY_PORT=$(free_port 31004)
sql_src -c "CREATE TABLE t (id int PRIMARY KEY)"
write_spec unauth "partitions: 2" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT"
HARD=$(ulimit -Hn)
[[ $HARD == unlimited || $HARD -ge $((IDLE + 200)) ]] || fail "the hard open-file limit $HARD is below $((IDLE + 200))"
ulimit -Sn 1024  # midflight inherits this and must raise it
run_mf_bg
wait_phase replicating
PROXY_URI="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/postgres?connect_timeout=5"
psql -X -At "$PROXY_URI" -c "SELECT 1" >/dev/null || fail "the proxy does not answer before the test"
limit=$(grep -o "open-file limit [0-9]*" "$WORK/run.$RUN_N.log" | head -1 | awk '{print $3}') || true
[[ $limit == "$HARD" ]] || fail "midflight did not raise its open-file limit from 1024 to $HARD (it logs '${limit:-nothing}')"
log "midflight raised its open-file limit from 1024 to $limit"

(ulimit -Sn "$HARD"; exec python3 "$(dirname "$0")/idle_sockets.py" 127.0.0.1 "$PROXY_PORT" "$IDLE" "$WORK/idle.ready" 25) \
  >"$WORK/idle.json" 2>"$WORK/idle.err" &
IDLE_PID=$!
EXTRA_PIDS+=("$IDLE_PID")
for _ in $(seq 200); do [[ -f $WORK/idle.ready ]] && break; sleep 0.1; done
[[ -f $WORK/idle.ready ]] || { cat "$WORK/idle.err"; fail "could not open $IDLE sockets to the proxy"; }
sleep 1.5  # the idle sockets are all past the eviction age
log "$IDLE idle sockets and one slowloris open; midflight has $(awk '/^Threads/ {print $2}' /proc/$MF_PID/status) threads, $(ls /proc/$MF_PID/fd | wc -l) descriptors"
t0=$(date +%s.%N)
out=$(psql -X -At "$PROXY_URI" -c "SELECT 'in'" 2>&1) || fail "a real client was refused while $IDLE idle sockets are open: $out"
[[ $out == in ]] || fail "unexpected answer: $out"
log "a real client got in in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"

wait "$IDLE_PID" || { cat "$WORK/idle.err"; fail "idle_sockets.py failed"; }
summary=$(cat "$WORK/idle.json")
log "sockets: $summary"
[[ $(jq .closed <<<"$summary") == "$IDLE" ]] || fail "not every idle socket was closed by the proxy within 25 s"
jq -e '.closed_max_s <= 12' <<<"$summary" >/dev/null || fail "an idle socket stayed open past the 10 s authentication timeout"
# Alone (not evicted by a flood), a client trickling its startup packet is cut at the deadline.
summary=$(python3 "$(dirname "$0")/idle_sockets.py" 127.0.0.1 "$PROXY_PORT" 0 "$WORK/slow.ready" 25)
log "slowloris alone: $summary"
jq -e '.slowloris_closed_s != null and .slowloris_closed_s >= 9 and .slowloris_closed_s <= 12' <<<"$summary" >/dev/null \
  || fail "the slowloris connection was not cut at the 10 s authentication timeout"
log "midflight now has $(awk '/^Threads/ {print $2}' /proc/$MF_PID/status) threads, $(ls /proc/$MF_PID/fd | wc -l) descriptors"
psql -X -At "$PROXY_URI" -c "SELECT 1" >/dev/null || fail "the proxy does not answer after the test"
stop_mf
log "PASS"
