#!/usr/bin/env bash
# The MySQL proxy's authentication and server-side TLS, against real MariaDB
# servers and real clients (tests/tools/mysql_proxy_host plays the cutover):
# - caching_sha2_password towards clients: the mariadb client and PyMySQL on
#   the fast path, PyMySQL's full authentication over TLS and with the proxy's
#   RSA key (auth.py); client_ed25519 with the mariadb client;
# - TLS from the proxy to a MariaDB started with ssl: verify-identity against
#   the test CA (Ssl_cipher through the proxy), refused with another CA, and
#   ssl-mode=required against a server without TLS named in the error;
# - COM_CHANGE_USER (Node.js mysql2 changeUser) and SELECT CONNECTION_ID().
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PY=${PYTHON:-/usr/bin/python3}
HOST=${MYSQL_PROXY_HOST:-$(dirname "$MF")/mysql_proxy_host}
[[ -x $HOST ]] || fail "no $HOST (build the mysql_proxy_host target)"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/mysql_proxy

# A CA and a server certificate for 127.0.0.1 (verify-identity checks the IP), and a second, unrelated CA.
cd "$WORK"
for ca in ca other; do
  openssl req -x509 -newkey rsa:2048 -nodes -keyout $ca.key -out $ca.pem -days 1 -subj "/CN=midflight test $ca" >/dev/null 2>&1
done
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile san.ext >/dev/null 2>&1 \
  || fail "openssl could not sign the server certificate"
cd - >/dev/null

A=$(free_port 22400)
B=$(free_port $((A + 1)))
"$TESTDB" start mariadb "$WORK/a" "$A" --ssl-cert="$WORK/server.pem" --ssl-key="$WORK/server.key" --ssl-ca="$WORK/ca.pem" >/dev/null
"$TESTDB" start mariadb "$WORK/b" "$B" >/dev/null
for d in a b; do
  "$TESTDB" sql "$WORK/$d" -e "CREATE DATABASE shop; CREATE DATABASE shop2; CREATE TABLE shop.ps_probe (id int auto_increment primary key, v varchar(20))"
done
[[ -n $("$TESTDB" sql "$WORK/a" -N -B -e "SELECT @@have_ssl='YES'") ]] || fail "MariaDB :$A has no TLS"

# start_host NAME ARGS...: a proxy host driven through two fifos; its read-write port in RW_<NAME>.
declare -A HIN=() HOUT=()
NEXT_PORT=$((B + 1))
start_host() {
  local name=$1 in out rw; shift
  rw=$(free_port "$NEXT_PORT")
  NEXT_PORT=$((rw + 1))
  mkfifo "$WORK/$name.in" "$WORK/$name.out"
  "$HOST" --rw "127.0.0.1:$rw" --source "127.0.0.1:$A" --target "127.0.0.1:$B" --user app:apppw --user other:otherpw \
    "$@" <"$WORK/$name.in" >"$WORK/$name.out" 2>"$WORK/host_$name.err" &
  EXTRA_PIDS+=($!)
  exec {in}>"$WORK/$name.in" {out}<"$WORK/$name.out"
  HIN[$name]=$in HOUT[$name]=$out
  read -r -t 20 line <&"$out" || fail "proxy host $name did not start: $(cat "$WORK/host_$name.err")"
  printf -v "RW_$name" '%s' "$rw"
}
ctl() {
  echo "${*:2}" >&"${HIN[$1]}"
  read -r -t 60 REPLY <&"${HOUT[$1]}" || fail "no answer from proxy host $1 to '${*:2}'"
  echo "$REPLY"
}
flip() { [[ $(ctl "$1" pause 5000) == "ok paused"* ]] || fail "pause"; ctl "$1" side "$2" >/dev/null; ctl "$1" resume >/dev/null; }

# 1. caching_sha2_password; TLS to the source verified against the CA, none to the target.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/px.key" -out "$WORK/px.pem" -days 1 -subj /CN=localhost >/dev/null 2>&1
start_host sha2 --client-auth caching_sha2_password --tls-cert "$WORK/px.pem" --tls-key "$WORK/px.key" \
  --source-ssl-mode verify-identity --source-ssl-ca "$WORK/ca.pem"
my() { mariadb -h127.0.0.1 -P"$RW_sha2" -uapp -papppw shop -N -B "$@"; }
[[ $(my -e "SELECT @@port") == "$A" ]] || fail "mariadb client over caching_sha2_password: no answer"
mariadb -h127.0.0.1 -P"$RW_sha2" -uapp -pwrong shop -e "SELECT 1" 2>"$WORK/denied.err" && fail "a wrong password got in (caching_sha2)"
grep -q "ERROR 1045" "$WORK/denied.err" || fail "wrong password: $(cat "$WORK/denied.err")"
log "mariadb client: caching_sha2_password fast path in, a wrong password refused (1045)"
out=$("$PY" "$HERE/auth.py" "$RW_sha2") || fail "$out"
log "$out"
cipher=$(my -e "SHOW STATUS LIKE 'Ssl_cipher'" | cut -f2)
[[ -n $cipher ]] || fail "the proxy's session on the source (ssl-mode=verify-identity) is not encrypted"
version=$(my -e "SHOW STATUS LIKE 'Ssl_version'" | cut -f2)
flip sha2 target
[[ $(my -e "SELECT @@port, (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher')") == "$B	" ]] \
  || fail "the target session (ssl-mode disabled) is not plain TCP"
flip sha2 source
log "TLS to the source (verify-identity, test CA): Ssl_cipher $cipher ($version) through the proxy; the target session plain"

# 2. COM_CHANGE_USER (mysql2 changeUser) and CONNECTION_ID().
NODE_DIR=${MIDFLIGHT_NODE_DIR:-$ROOT/build/node}
if [[ ! -d $NODE_DIR/node_modules/mysql2 ]]; then
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --silent mysql2@3 >/dev/null) || fail "npm install mysql2 failed"
fi
start_host native  # the source's plugin: mysql_native_password
mkfifo "$WORK/pin.req" "$WORK/pin.ans"
(while read -r h <"$WORK/pin.req"; do ctl "$h" pinned source >"$WORK/pin.ans"; done) &
EXTRA_PIDS+=($!)
changeuser() {
  NODE_PATH=$NODE_DIR/node_modules node "$HERE/changeuser.js" "$1" "sh -c 'echo $2 > $WORK/pin.req; cat $WORK/pin.ans'" "$3"
}
out=$(changeuser "$RW_native" native 1045) || fail "$out"
log "mysql_native_password: $out"
out=$(changeuser "$RW_sha2" sha2 1045,PUBLIC_KEY_RETRIEVAL_NOT_ALLOWED) || fail "$out"
log "caching_sha2_password: $out"
status=$(mariadb -h127.0.0.1 -P"$RW_sha2" -uapp -papppw shop -e "status; SELECT CONNECTION_ID(); SELECT CONNECTION_ID() AS id; SELECT @@pseudo_thread_id")
hs_id=$(grep -i "^Connection id:" <<<"$status" | awk '{print $NF}')
ids=$(grep -E "^[0-9]+$" <<<"$status" | tr '\n' ' ')
set -- $ids
[[ -n $hs_id && $1 == "$hs_id" && $2 == "$hs_id" && $3 != "$hs_id" ]] \
  || fail "CONNECTION_ID() ($1, $2) is not the proxy's id from the handshake ($hs_id; server thread $3)"
grep -q "^CONNECTION_ID()$" <<<"$status" && grep -q "^id$" <<<"$status" || fail "CONNECTION_ID() column names: $status"
log "SELECT CONNECTION_ID() answers the proxy's id $hs_id (the handshake's, which KILL takes; the server's thread is $3)"

# 3. client_ed25519 (the mariadb client's plugin, after an AuthSwitchRequest).
start_host ed --client-auth client_ed25519
[[ $(mariadb -h127.0.0.1 -P"$RW_ed" -uapp -papppw shop -N -B -e "SELECT 'ed25519 in'") == "ed25519 in" ]] \
  || fail "mariadb client over client_ed25519: no answer ($(cat "$WORK/host_ed.err"))"
mariadb -h127.0.0.1 -P"$RW_ed" -uapp -pwrong shop -e "SELECT 1" 2>"$WORK/denied.err" && fail "a wrong password got in (ed25519)"
grep -q "ERROR 1045" "$WORK/denied.err" || fail "wrong password (ed25519): $(cat "$WORK/denied.err")"
log "mariadb client: client_ed25519 in, a wrong password refused (1045)"

# 4. TLS refusals: a certificate from another CA; ssl-mode=required against a server without TLS.
start_host badca --source-ssl-mode verify-ca --source-ssl-ca "$WORK/other.pem" --target-ssl-mode required
mariadb -h127.0.0.1 -P"$RW_badca" -uapp -papppw shop -e "SELECT 1" 2>"$WORK/badca.err" && fail "verify-ca with another CA connected"
grep -q "certificate verify failed" "$WORK/badca.err" || fail "verify-ca with another CA: $(cat "$WORK/badca.err")"
log "verify-ca with another CA: $(grep ERROR "$WORK/badca.err")"
flip badca target
mariadb -h127.0.0.1 -P"$RW_badca" -uapp -papppw shop -e "SELECT 1" 2>"$WORK/plain.err" && fail "ssl-mode=required reached a server without TLS"
grep -q "does not offer TLS" "$WORK/plain.err" || fail "ssl-mode=required without TLS: $(cat "$WORK/plain.err")"
log "ssl-mode=required, server without TLS: $(grep ERROR "$WORK/plain.err")"
for h in sha2 native ed badca; do echo quit >&"${HIN[$h]}"; done

# 5. midflight's own connections (copy, stream, compare) read the same URI settings.
ssl_accepts() { "$TESTDB" sql "$WORK/a" -N -B -e "SHOW GLOBAL STATUS LIKE 'Ssl_accepts'" | cut -f2; }
DST="mysql://midflight:midflight@127.0.0.1:$B/shop"
before=$(ssl_accepts)
SRC="mysql://midflight:midflight@127.0.0.1:$A/shop?ssl-mode=verify-identity&ssl-ca=$WORK/ca.pem"
write_spec tls_ok
out=$("$MF" compare "$SPEC" 2>&1) || true
grep -q "connecting to" <<<"$out" && fail "midflight compare over verify-identity: $out"
after=$(ssl_accepts)
((after > before)) || fail "midflight compare with ssl-mode=verify-identity made no TLS connection (Ssl_accepts $before -> $after): $out"
SRC="mysql://midflight:midflight@127.0.0.1:$A/shop?ssl-mode=verify-identity&ssl-ca=$WORK/other.pem"
write_spec tls_badca
out=$("$MF" compare "$SPEC" 2>&1) && fail "midflight compare trusted a certificate from another CA"
grep -q -i "certificate" <<<"$out" || fail "midflight compare with another CA: $out"
SRC="mysql://midflight:midflight@127.0.0.1:$B/shop?ssl-mode=required"
write_spec tls_plain
out=$("$MF" compare "$SPEC" 2>&1) && fail "midflight compare with ssl-mode=required reached a server without TLS"
grep -q -i "ssl\|tls" <<<"$out" || fail "midflight compare, ssl-mode=required without TLS: $out"
log "midflight compare: verify-identity over TLS (Ssl_accepts $before -> $after); another CA and a server without TLS refused: $(grep -i -m1 "ssl\|tls" <<<"$out" | cut -c1-160)"
log "PASS"
