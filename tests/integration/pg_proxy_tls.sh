#!/usr/bin/env bash
# TLS from the proxy to the servers, as the URIs' sslmode says (libpq's
# meaning): a throwaway CA made here, servers with ssl = on and that CA's
# certificate for 127.0.0.1. verify-full with the right CA connects through
# the proxy (and the server sees TLS); a certificate from another CA, or one
# for another host name, is refused with a one-line error naming the server
# and the reason; sslmode=disable against a hostssl-only server fails clearly.
# The certificate and pg_hba.conf are swapped under the running migration
# (whose own connections are already open), so that only the proxy's new
# server connections meet them.
source "$(dirname "$0")/lib.sh"
TLS=$WORK/tls
mkdir -p "$TLS"
cert() {  # cert NAME CA SAN: NAME.crt and NAME.key signed by CA
  openssl req -new -newkey rsa:2048 -nodes -keyout "$TLS/$1.key" -out "$TLS/$1.csr" -subj "/CN=$1" 2>/dev/null
  openssl x509 -req -in "$TLS/$1.csr" -CA "$TLS/$2.crt" -CAkey "$TLS/$2.key" -CAcreateserial -days 2 \
    -out "$TLS/$1.crt" -extfile <(printf 'subjectAltName=%s\n' "$3") 2>/dev/null
}
for ca in ca other-ca; do
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TLS/$ca.key" -out "$TLS/$ca.crt" -days 2 -subj "/CN=midflight test $ca" 2>/dev/null
done
cert good ca "DNS:localhost,IP:127.0.0.1"
cert untrusted other-ca "DNS:localhost,IP:127.0.0.1"
cert wronghost ca "DNS:db.example.invalid"
[[ $(id -u) -eq 0 ]] && chown -R postgres "$TLS"
chmod 600 "$TLS"/*.key
chmod 755 "$TLS"

# Each server reads server.crt/server.key from its own directory: the test swaps them.
port=31020
while ! port_free "$port" || ! port_free "$((port + 1))"; do port=$((port + 2)); done
for side in src dst; do
  mkdir -p "$WORK/$side-tls"
  cp -p "$TLS/good.crt" "$WORK/$side-tls/server.crt"
  cp -p "$TLS/good.key" "$WORK/$side-tls/server.key"
  [[ $(id -u) -eq 0 ]] && chown -R postgres "$WORK/$side-tls"
  "$TESTDB" start pg "$WORK/$side" "$port" "ssl = on" "ssl_cert_file = '$WORK/$side-tls/server.crt'" \
    "ssl_key_file = '$WORK/$side-tls/server.key'"
  port=$((port + 1))
done
SRC_PLAIN=$("$TESTDB" uri "$WORK/src")
DST_PLAIN=$("$TESTDB" uri "$WORK/dst")
SRC_PORT=$(cat "$WORK/src/port")
VERIFY="sslmode=verify-full&sslrootcert=$TLS/ca.crt"
SRC="$SRC_PLAIN?$VERIFY"
DST="$DST_PLAIN?$VERIFY"
sql_src -c "CREATE TABLE t (id int PRIMARY KEY)"
PROXY_PORT=$(free_port 31024)
PROXY_URI="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/postgres"
use_cert() {  # use_cert NAME: the source server now presents NAME's certificate
  cp -p "$TLS/$1.crt" "$WORK/src-tls/server.crt"
  cp -p "$TLS/$1.key" "$WORK/src-tls/server.key"
  psql -X -At "$SRC_PLAIN?sslmode=disable" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.5
}
through_proxy() { psql -X -At "$PROXY_URI" -c "$1" 2>&1; }

write_spec tlsfull "partitions: 2" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT"
run_mf_bg
wait_phase replicating
out=$(through_proxy "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()") || fail "verify-full with the right CA: $out"
[[ $out == t\|TLS* ]] || fail "the proxy's server connection does not use TLS: $out"
log "verify-full, right CA: connected through the proxy; the server sees ssl|version = $out"

use_cert untrusted
out=$(through_proxy "SELECT 1") && fail "a certificate from another CA was accepted: $out"
log "verify-full, certificate from another CA: $out"
[[ $(wc -l <<<"$out") == 1 ]] || fail "the error is not one line"
grep -q "source server: 127.0.0.1:$SRC_PORT: TLS: the server's certificate is not trusted (sslmode=verify-full" <<<"$out" \
  || fail "the error does not name the server and the reason"

use_cert wronghost
out=$(through_proxy "SELECT 1") && fail "a certificate for another host name was accepted: $out"
log "verify-full, certificate for another host: $out"
[[ $(wc -l <<<"$out") == 1 ]] || fail "the error is not one line"
grep -q "source server: 127.0.0.1:$SRC_PORT: TLS: the server's certificate is not for host \"127.0.0.1\"" <<<"$out" \
  || fail "the error does not name the server and the host"
use_cert good
out=$(through_proxy "SELECT 'back'") || fail "the right certificate again: $out"
stop_mf

# sslmode=disable, and the source takes only TLS connections (hostssl) from now on.
SRC="$SRC_PLAIN?sslmode=disable"
DST="$DST_PLAIN?sslmode=disable"
sql_dst -c "DROP TABLE t"  # a new migration needs an empty target
write_spec tlsoff "partitions: 2" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT"
run_mf_bg
wait_phase replicating
out=$(through_proxy "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") || fail "sslmode=disable: $out"
[[ $out == f ]] || fail "sslmode=disable used TLS: $out"
sed -i 's/^host\(\s\)/hostssl\1/' "$WORK/src/data/pg_hba.conf"
psql -X -At "$SRC_PLAIN?sslmode=require" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
out=$(through_proxy "SELECT 1") && fail "sslmode=disable reached a hostssl-only server: $out"
log "sslmode=disable, hostssl-only server: $out"
grep -q "source server: 127.0.0.1:$SRC_PORT: .*no pg_hba.conf entry.*no encryption" <<<"$out" || fail "unclear error"
stop_mf
log "PASS"
