#!/usr/bin/env bash
# The MySQL proxy on the event-loop core, against two real MariaDB servers
# (no migration around it: tests/tools/mysql_proxy_host plays the cutover).
# sysbench oltp_read_write runs through the read-write endpoint while the
# write side flips back and forth (pause, side, resume); then the mariadb
# client (source of a file, LOAD DATA LOCAL INFILE), Python (pymysql: session
# state carried across a flip, KILL QUERY, a vanished client, bad input, a
# command sent behind an unread 16 MB answer; mysqlclient: its cursor across
# two flips) and
# Node.js mysql2 (binary-protocol prepared statements across a flip); a
# temporary table pins its session; the read-only endpoint.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PY=${PYTHON:-/usr/bin/python3}  # Debian's, which has python3-pymysql
HOST=${MYSQL_PROXY_HOST:-$(dirname "$MF")/mysql_proxy_host}
[[ -x $HOST ]] || fail "no $HOST (build the mysql_proxy_host target)"
"$PY" -c "import pymysql" 2>/dev/null || fail "python3-pymysql is missing (scripts/setup)"
"$PY" -c "import MySQLdb" 2>/dev/null || fail "python3-mysqldb is missing (scripts/setup)"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/mysql_proxy

A=$(free_port 21000)
B=$(free_port $((A + 1)))
"$TESTDB" start mariadb "$WORK/a" "$A" --max-allowed-packet=64M >/dev/null
"$TESTDB" start mariadb "$WORK/b" "$B" --max-allowed-packet=64M >/dev/null
for d in a b; do
  "$TESTDB" sql "$WORK/$d" -e "CREATE DATABASE shop; CREATE DATABASE shop2;
    CREATE TABLE shop.ps_probe (id int auto_increment primary key, v varchar(20));
    CREATE TABLE shop.loaded (id int primary key, name varchar(40));
    CREATE TABLE shop.big (id int primary key, v longtext)"
done
SB=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-db=shop --tables=2 --table-size=5000)
for p in "$A" "$B"; do
  sysbench oltp_read_write "${SB[@]}" --mysql-port="$p" --mysql-user=midflight --mysql-password=midflight prepare >/dev/null
done

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 1 \
  -subj /CN=localhost >/dev/null 2>&1 || fail "openssl could not make a test certificate"
RW=$(free_port $((B + 1)))
RO=$(free_port $((RW + 1)))
coproc HOSTP { exec "$HOST" --rw "127.0.0.1:$RW" --ro "127.0.0.1:$RO" --source "127.0.0.1:$A" --target "127.0.0.1:$B" \
  --user app:apppw --auth-timeout-ms 3000 --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" 2>"$WORK/host.err"; }
EXTRA_PIDS+=("$HOSTP_PID")
exec {HOST_IN}>&"${HOSTP[1]}" {HOST_OUT}<&"${HOSTP[0]}"
read -r -t 10 line <&"$HOST_OUT" || fail "the proxy host did not start: $(cat "$WORK/host.err")"
log "proxy: $line (source :$A, target :$B)"
ctl() {
  echo "$*" >&"$HOST_IN"
  read -r -t 60 REPLY <&"$HOST_OUT" || fail "no answer from the proxy host to '$*'"
  echo "$REPLY"
}
# flip SIDE: what the cutover does: pause (drain), point, resume; prints the pause in ms.
flip() {
  local t0 t1 r
  t0=$(date +%s%N)
  r=$(ctl pause 5000)
  [[ $r == "ok paused"* ]] || fail "pause: $r"
  ctl side "$1" >/dev/null
  ctl resume >/dev/null
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}
# A flip for the client scripts (which cannot reach the coproc): a fifo served below.
mkfifo "$WORK/flip"
serve_flips() { while read -r side <"$WORK/flip"; do flip "$side" >/dev/null; echo done >"$WORK/flip.done"; done; }
my() { mariadb -h127.0.0.1 -P"$RW" -uapp -papppw shop -N -B "$@"; }

# 1. Routing: which server a new transaction hits.
[[ $(my -e "SELECT @@port") == "$A" ]] || fail "read-write endpoint does not start on the source"
flip target >/dev/null
[[ $(my -e "SELECT @@port") == "$B" ]] || fail "after side target, a new transaction does not reach the target"
flip source >/dev/null
[[ $(my -e "SELECT @@port") == "$A" ]] || fail "after side source, a new transaction does not reach the source"
log "routing: SELECT @@port follows the write side ($A -> $B -> $A)"
tls=$(mariadb -h127.0.0.1 -P"$RW" -uapp -papppw --ssl shop -e status | grep -i "^SSL:")
[[ $tls == *"Cipher in use"* ]] || fail "no TLS from the client to the proxy: $tls"
[[ $(mariadb -h127.0.0.1 -P"$RW" -uapp -papppw --ssl shop -N -B -e "SELECT @@port") == "$A" ]] || fail "query over TLS failed"
log "TLS: ${tls//$'\t'/ }"

# 2. sysbench through the read-write endpoint while the write side flips.
sysbench oltp_read_write "${SB[@]}" --mysql-port="$RW" --mysql-user=app --mysql-password=apppw \
  --threads=4 --time=20 --report-interval=5 run >"$WORK/sb.log" 2>&1 &
LOAD_PID=$!
sleep 2
"$PY" "$HERE/clients.py" bad "$RW" >"$WORK/bad.log" 2>&1 &
BAD_PID=$!
longest=0 flips=0 side=source
for i in $(seq 1 8); do
  sleep 1.5
  [[ $side == source ]] && side=target || side=source
  ms=$(flip "$side")
  flips=$((flips + 1))
  ((ms > longest)) && longest=$ms
done
wait "$BAD_PID" || { cat "$WORK/bad.log"; fail "bad input checks failed"; }
log "$(cat "$WORK/bad.log")"
wait "$LOAD_PID" || { tail -20 "$WORK/sb.log"; fail "sysbench failed through the proxy"; }
LOAD_PID=
grep -E "transactions:|errors:|reconnects:" "$WORK/sb.log" | sed 's/^ */    /'
grep -q "reconnects: *0 " "$WORK/sb.log" || fail "sysbench reconnected"
grep -q "FATAL" "$WORK/sb.log" && fail "sysbench reported a FATAL error"
log "sysbench: $flips write-side flips, longest pause ${longest} ms; $(ctl stats)"

# 3. The mariadb client: source of a file, LOAD DATA LOCAL INFILE.
cat >"$WORK/script.sql" <<'SQL'
CREATE TABLE shop.sourced (id int primary key, v text);
INSERT INTO shop.sourced VALUES (1, 'one'), (2, 'two');
BEGIN; UPDATE shop.sourced SET v = 'TWO' WHERE id = 2; COMMIT;
SELECT COUNT(*), GROUP_CONCAT(v ORDER BY id) FROM shop.sourced;
SQL
[[ $(my -e "source $WORK/script.sql") == "2	one,TWO" ]] || fail "mariadb: source of a file gave the wrong result"
seq 1 20000 | awk '{print $1 "\tname-" $1}' >"$WORK/rows.tsv"
my --local-infile=1 -e "LOAD DATA LOCAL INFILE '$WORK/rows.tsv' INTO TABLE loaded"
[[ $(my -e "SELECT COUNT(*), SUM(id) FROM loaded") == "20000	200010000" ]] || fail "LOAD DATA LOCAL INFILE: wrong rows"
[[ $("$TESTDB" sql "$WORK/a" -N -B -e "SELECT COUNT(*) FROM shop.loaded") == 20000 ]] || fail "LOAD DATA LOCAL went elsewhere"
log "mariadb client: source of a file and LOAD DATA LOCAL INFILE (20,000 rows) through the proxy"
# Messages over 16 MiB both ways (split into packets): a 20 MB literal in, the value back out.
"$PY" -c "import sys; sys.stdout.write(\"INSERT INTO big VALUES (1, '\" + 'abcdefghij' * 2000000 + \"');\\n\")" >"$WORK/big.sql"
my --max-allowed-packet=64M -e "source $WORK/big.sql" 2>"$WORK/big.err" || fail "the 20 MB statement failed: $(tail -c 300 "$WORK/big.err")"
want=$("$PY" -c "import hashlib; print(hashlib.md5(b'abcdefghij' * 2000000).hexdigest())")
[[ $(my -e "SELECT LENGTH(v), MD5(v) FROM big") == "20000000	$want" ]] || fail "the 20 MB value arrived wrong"
got=$(my --max-allowed-packet=64M -e "SELECT v FROM big" | tr -d '\n' | md5sum | cut -d' ' -f1)
[[ $got == "$want" ]] || fail "the 20 MB value came back wrong ($got)"
log "a 20 MB statement in and a 20 MB value out (packets split at 16 MiB) through the proxy"

# 4. Session state carried across a flip (pymysql); prepared statements across a flip (Node.js mysql2).
serve_flips &
FLIP_PID=$!
EXTRA_PIDS+=("$FLIP_PID")
flip_cmd() { echo "sh -c 'rm -f $WORK/flip.done; echo $1 > $WORK/flip; while [ ! -f $WORK/flip.done ]; do sleep 0.05; done'"; }
out=$("$PY" "$HERE/clients.py" carry "$RW" "$(flip_cmd target)") || fail "$out"
log "$out"
NODE_DIR=${MIDFLIGHT_NODE_DIR:-$ROOT/build/node}
if [[ ! -d $NODE_DIR/node_modules/mysql2 ]]; then
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --silent mysql2@3 >/dev/null) || fail "npm install mysql2 failed"
fi
out=$(NODE_PATH=$NODE_DIR/node_modules node "$HERE/prepared.js" "$RW" "$(flip_cmd source)") || fail "$out"
log "$out"
out=$("$PY" "$HERE/clients.py" mysqldb "$RW" "$(flip_cmd target)" "$(flip_cmd source)") || fail "$out"
log "$out"

# 5. KILL QUERY through the proxy; a client that vanishes mid-query; a client
# that sends its next command before reading a large answer.
out=$("$PY" "$HERE/clients.py" kill "$RW") || fail "$out"
log "$out"
out=$("$PY" "$HERE/clients.py" gone "$RW" "$A") || fail "$out"
log "$out"
# A command that arrives, inside a transaction, while the client has not yet
# read a 16 MB answer (the proxy's output to it full) is answered once it reads.
out=$("$PY" "$HERE/clients.py" pipeline "$RW") || fail "$out"
log "$out"

# 6. A temporary table pins its session; the pin is listed, then gone after DROP.
"$PY" "$HERE/clients.py" temp "$RW" "$WORK/drop" "$WORK/end" >"$WORK/temp.log" 2>&1 &
TEMP_PID=$!
for i in $(seq 100); do [[ -f $WORK/drop.created ]] && break; sleep 0.1; done
pinned=$(ctl pinned source)
[[ $pinned == "pinned 1: "*"on the source: temporary table tmp_pin" ]] || fail "temporary table not pinned: $pinned"
log "while the temporary table exists: $pinned"
touch "$WORK/drop"
for i in $(seq 100); do [[ -f $WORK/drop.dropped ]] && break; sleep 0.1; done
sleep 0.2
pinned=$(ctl pinned source)
[[ $pinned == "pinned 0" ]] || fail "still pinned after DROP TEMPORARY TABLE: $pinned"
touch "$WORK/end"
wait "$TEMP_PID" || fail "$(cat "$WORK/temp.log")"
log "after DROP TEMPORARY TABLE: $pinned"
# SQL-level PREPARE pins too (the named statement lives on one server).
mkfifo "$WORK/sql.in"
mariadb -h127.0.0.1 -P"$RW" -uapp -papppw shop -N -B -n <"$WORK/sql.in" >"$WORK/sql.out" 2>&1 &
SQL_PID=$!
exec {SQL_IN}>"$WORK/sql.in"
answer() { for i in $(seq 100); do grep -q "^$1\$" "$WORK/sql.out" && return 0; sleep 0.1; done; fail "mariadb: no '$1' ($(cat "$WORK/sql.out"))"; }
echo "PREPARE named_q FROM 'SELECT 1'; SELECT 'prepared';" >&"$SQL_IN"
answer prepared
pinned=$(ctl pinned source)
[[ $pinned == *"SQL prepared statement named_q"* ]] || fail "SQL PREPARE not pinned: $pinned"
echo "DEALLOCATE PREPARE named_q; SELECT 'gone';" >&"$SQL_IN"
answer gone
[[ $(ctl pinned source) == "pinned 0" ]] || fail "still pinned after DEALLOCATE PREPARE"
exec {SQL_IN}>&-
wait "$SQL_PID" || true
log "SQL PREPARE: $pinned; none after DEALLOCATE PREPARE"

# 7. The read-only endpoint: read-only transactions, canary percentage.
ro() { mariadb -h127.0.0.1 -P"$RO" -uapp -papppw shop -N -B "$@"; }
[[ $(ro -e "SELECT @@port") == "$A" ]] || fail "read-only endpoint at 0% does not read the source"
ro -e "INSERT INTO ps_probe (v) VALUES ('ro')" 2>"$WORK/ro.err" && fail "the read-only endpoint took a write"
grep -q "READ ONLY" "$WORK/ro.err" || fail "read-only refusal: $(cat "$WORK/ro.err")"
ctl percent 100 >/dev/null
[[ $(ro -e "SELECT @@port") == "$B" ]] || fail "read-only endpoint at 100% does not read the target"
ctl percent 50 >/dev/null
hits=$(for i in $(seq 40); do echo "SELECT @@port;"; done | ro | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}')
[[ $hits == *"$A:"* && $hits == *"$B:"* ]] || fail "50% canary did not reach both servers: $hits"
log "read-only endpoint: writes refused (25006); 0% -> :$A, 100% -> :$B, 50% over 40 transactions of one session -> $hits"
log "final $(ctl stats)"
echo quit >&"$HOST_IN"
log "PASS"
