#!/usr/bin/env bash
# A client that disconnects while its query runs through the proxy: the
# server's query is cancelled at once, not left running to its end.
source "$(dirname "$0")/lib.sh"
start_servers 26572
PROXY_PORT=$(free_port 26576)
sql_src -c "CREATE TABLE t (id int PRIMARY KEY)"
write_spec disc "partitions: 2" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT"
run_mf_bg
wait_phase replicating
PROXY_URI="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/postgres"
running() { sql_src -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND state = 'active'"; }
for how in "kill -9" "kill -TERM"; do
  psql -X -At "$PROXY_URI" -c "SELECT pg_sleep(60) /* $how */" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 40); do [[ $(running) == 1 ]] && break; sleep 0.1; done
  [[ $(running) == 1 ]] || fail "the query did not start through the proxy"
  $how "$pid"
  wait "$pid" 2>/dev/null || true
  t0=$(date +%s.%N)
  for _ in $(seq 50); do [[ $(running) == 0 ]] && break; sleep 0.1; done
  [[ $(running) == 0 ]] || fail "client gone ($how), its query still runs on the source after 5 s"
  log "client gone ($how): the server's query ended $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s later"
done
stop_mf
log "PASS"
