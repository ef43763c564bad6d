#!/usr/bin/env bash
# 2,000 idle client connections held open through the MySQL proxy (500 of
# them with a server session behind them) while sysbench runs through it: the
# proxy's thread count and RSS are printed; the RSS it adds per idle
# connection must stay under 100 kB, the idle connections must all still
# answer, and sysbench must finish without errors or reconnects.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PY=${PYTHON:-/usr/bin/python3}  # Debian's, which has python3-pymysql
HOST=${MYSQL_PROXY_HOST:-$(dirname "$MF")/mysql_proxy_host}
[[ -x $HOST ]] || fail "no $HOST (build the mysql_proxy_host target)"
"$PY" -c "import pymysql" 2>/dev/null || fail "python3-pymysql is missing (scripts/setup)"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/mysql_proxy
IDLE=${IDLE_CLIENTS:-2000}
ACTIVE=${IDLE_ACTIVE:-500}
(( $(ulimit -n) >= IDLE + 200 )) || ulimit -n $((IDLE + 1000)) || fail "need $((IDLE + 200)) file descriptors"

A=$(free_port 21100)
B=$(free_port $((A + 1)))
"$TESTDB" start mariadb "$WORK/a" "$A" --max-connections=$((ACTIVE + 200)) >/dev/null
"$TESTDB" start mariadb "$WORK/b" "$B" >/dev/null
"$TESTDB" sql "$WORK/a" -e "CREATE DATABASE shop"
SB=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-db=shop --tables=2 --table-size=5000)
sysbench oltp_read_write "${SB[@]}" --mysql-port="$A" --mysql-user=midflight --mysql-password=midflight prepare >/dev/null

RW=$(free_port $((B + 1)))
coproc HOSTP { exec "$HOST" --rw "127.0.0.1:$RW" --source "127.0.0.1:$A" --target "127.0.0.1:$B" --user app:apppw \
  --max-clients $((IDLE + 100)) 2>"$WORK/host.err"; }
EXTRA_PIDS+=("$HOSTP_PID")
read -r line <&"${HOSTP[0]}" || fail "the proxy host did not start: $(cat "$WORK/host.err")"
PID=$HOSTP_PID
rss() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
threads() { awk '/^Threads/ {print $2}' "/proc/$PID/status"; }

# A short warm-up, so the baseline includes what serving traffic allocates.
sysbench oltp_read_write "${SB[@]}" --mysql-port="$RW" --mysql-user=app --mysql-password=apppw --threads=4 --time=3 run >/dev/null
base=$(rss)
log "proxy pid $PID: baseline RSS ${base} kB, $(threads) threads"

sysbench oltp_read_write "${SB[@]}" --mysql-port="$RW" --mysql-user=app --mysql-password=apppw \
  --threads=4 --time=40 run >"$WORK/sb.log" 2>&1 &
LOAD_PID=$!
t0=$(date +%s)
"$PY" "$HERE/idle_clients.py" "$RW" "$IDLE" "$ACTIVE" "$WORK/ready" "$WORK/release" >"$WORK/idle.log" 2>&1 &
IDLE_PID=$!
EXTRA_PIDS+=("$IDLE_PID")
for i in $(seq 600); do [[ -f $WORK/ready ]] && break; kill -0 "$IDLE_PID" 2>/dev/null || break; sleep 0.1; done
[[ -f $WORK/ready ]] || fail "idle clients did not all connect: $(tail -3 "$WORK/idle.log")"
log "$IDLE idle clients connected in $(($(date +%s) - t0)) s"
sleep 2
with=$(rss)
per=$(( (with - base) * 1024 / IDLE ))
log "with $IDLE idle connections ($ACTIVE holding a server session) and sysbench running: RSS ${with} kB, $(threads) threads, $per bytes per idle connection"
touch "$WORK/release"
wait "$IDLE_PID" || fail "$(cat "$WORK/idle.log")"
log "$(tail -1 "$WORK/idle.log")"
wait "$LOAD_PID" || { tail -20 "$WORK/sb.log"; fail "sysbench failed through the proxy"; }
LOAD_PID=
grep -E "transactions:|reconnects:" "$WORK/sb.log" | sed 's/^ */    /'
grep -q "reconnects: *0 " "$WORK/sb.log" || fail "sysbench reconnected"
(( per < 100 * 1024 )) || fail "RSS per idle connection is $per bytes (limit 100 kB)"
log "PASS"
