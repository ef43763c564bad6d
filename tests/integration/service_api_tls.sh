#!/usr/bin/env bash
# The API over TLS, with a throwaway CA made by openssl:
#   `midflight serve --tls-cert --tls-key` refuses, in one line naming the
#   file or the address, a unix-socket listener, an unreadable certificate,
#   a key that does not match, and a certificate without its key ─► serves
#   https: curl --cacert reads /healthz, the dashboard and /metrics; curl
#   without the CA is refused; plain http to the TLS port gets a plain 400
#   saying to use https (and the server carries on) ─► the CLI talks to it
#   with --server https://… --tls-ca: creates a migration, which reaches
#   replicating, lists, aborts; without the CA or with another CA it refuses
#   the certificate in one line; headless Chromium, trusting only this
#   server's key, renders the dashboard polling the API over https.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/chromium.sh"

# ---- a CA, a server certificate it signs (localhost, 127.0.0.1), a stranger CA ----
tls=$WORK/tls
mkdir -p "$tls"
ossl() { openssl "$@" 2>>"$tls/openssl.log" || fail "openssl $1 failed: $(tail -3 "$tls/openssl.log")"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=midflight test CA" \
  -keyout "$tls/ca.key" -out "$tls/ca.pem"
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=someone else" \
  -keyout "$tls/other-ca.key" -out "$tls/other-ca.pem"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=midflight api" \
  -keyout "$tls/server.key" -out "$tls/server.csr"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$tls/ext.cnf"
ossl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
  -extfile "$tls/ext.cnf" -out "$tls/server.pem"
ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tls/wrong.key"
chmod 600 "$tls"/*.key

# ---- refusals, each one line naming what is wrong ----
# refused PATTERN ARGS...: `midflight serve ARGS` exits non-zero with one stderr line holding PATTERN.
refused() {
  local pattern=$1; shift
  local rc=0
  timeout 10 "$MF" serve --state-dir "$WORK/refused" "$@" >"$WORK/refused.out" 2>"$WORK/refused.err" || rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] || fail "serve $* was not refused (rc $rc)"
  [[ $(wc -l <"$WORK/refused.err") -eq 1 ]] || fail "serve $*: expected one line, got: $(cat "$WORK/refused.err")"
  grep -qF -- "$pattern" "$WORK/refused.err" || fail "serve $*: expected '$pattern', got: $(cat "$WORK/refused.err")"
  log "refused as expected: $(cat "$WORK/refused.err")"
}
REFUSED_PORT=$(free_port 30290)
refused "unix:$WORK/api.sock is a unix socket" \
  --listen "unix:$WORK/api.sock" --tls-cert "$tls/server.pem" --tls-key "$tls/server.key"
refused "cannot read the TLS certificate $tls/nosuch.pem: No such file or directory" \
  --listen "127.0.0.1:$REFUSED_PORT" --tls-cert "$tls/nosuch.pem" --tls-key "$tls/server.key"
refused "the TLS key $tls/wrong.key does not match the certificate $tls/server.pem" \
  --listen "127.0.0.1:$REFUSED_PORT" --tls-cert "$tls/server.pem" --tls-key "$tls/wrong.key"
refused "cannot load the TLS certificate $tls/server.key" \
  --listen "127.0.0.1:$REFUSED_PORT" --tls-cert "$tls/server.key" --tls-key "$tls/server.key"
refused "TLS needs both a certificate and a key file" \
  --listen "127.0.0.1:$REFUSED_PORT" --tls-cert "$tls/server.pem"
port_free "$REFUSED_PORT" || fail "a refused serve left port $REFUSED_PORT listening"

# ---- serve over https ----
start_servers 30200
sql_src -c "CREATE TABLE small (id int PRIMARY KEY, v text); INSERT INTO small SELECT g, 'x' FROM generate_series(1, 1000) g"
PORT=$(free_port 30210)
API=127.0.0.1:$PORT
export MIDFLIGHT_API_TOKEN=test-token-0123456789abcdef
unset MIDFLIGHT_SERVER
"$MF" serve --listen "$API" --state-dir "$WORK/svc" --tls-cert "$tls/server.pem" --tls-key "$tls/server.key" \
  >"$WORK/run.serve.log" 2>&1 &
MF_PID=$!
for _ in $(seq 100); do curl -sf --cacert "$tls/ca.pem" "https://$API/healthz" >/dev/null && break; sleep 0.1; done
curl -sf --cacert "$tls/ca.pem" "https://$API/healthz" >/dev/null || fail "serve did not answer over https"
grep -q "on https://$API/" "$WORK/run.serve.log" || fail "serve does not announce https: $(head -3 "$WORK/run.serve.log")"

curl -sf --cacert "$tls/ca.pem" "https://localhost:$PORT/" >"$WORK/dashboard.html" || fail "dashboard over https"
grep -qi "<html" "$WORK/dashboard.html" || fail "the dashboard page is not HTML: $(head -c 200 "$WORK/dashboard.html")"
log "dashboard over https: $(wc -c <"$WORK/dashboard.html") bytes"

rc=0; curl -s -o /dev/null "https://$API/healthz" 2>/dev/null || rc=$?
[[ $rc -eq 60 ]] || fail "curl without the CA: expected exit 60 (certificate not trusted), got $rc"
log "curl without the CA refused the certificate (exit 60)"

code=$(curl -s -o "$WORK/plain.out" -w '%{http_code}' "http://$API/healthz") || fail "plain http to the TLS port: curl failed"
[[ $code == 400 ]] && grep -q "this port speaks HTTPS: use https://$API/" "$WORK/plain.out" ||
  fail "plain http to the TLS port: got $code $(cat "$WORK/plain.out")"
log "plain http to the TLS port: $code $(cat "$WORK/plain.out")"
curl -sf --cacert "$tls/ca.pem" "https://$API/healthz" >/dev/null || fail "serve stopped answering after a plain request"

# ---- the CLI over https ----
SERVER=(--server "https://$API" --tls-ca "$tls/ca.pem")
printf 'name: tls1\nsource: %s\ntarget: %s\ntables: [public.small]\n' "$SRC" "$DST" >"$WORK/tls1.yaml"
"$MF" "${SERVER[@]}" create "$WORK/tls1.yaml" | tee "$WORK/create.out"
grep -q "migration tls1 created" "$WORK/create.out" || fail "create over https"
phase=
for _ in $(seq 150); do
  phase=$("$MF" "${SERVER[@]}" status tls1 --json | jq -r .phase)
  [[ $phase == replicating ]] && break; sleep 0.2
done
[[ $phase == replicating ]] || fail "tls1 did not reach replicating (phase $phase)"
[[ $("$MF" "${SERVER[@]}" list --json | jq -r '[.migrations[].name] | join(",")') == tls1 ]] || fail "list over https"
log "the CLI created tls1 over https; it reached $phase"
metrics=$(curl -sf --cacert "$tls/ca.pem" "https://$API/metrics") || fail "/metrics over https"
[[ $metrics == *"# TYPE midflight_"* ]] || fail "/metrics over https: $(head -c 300 <<<"$metrics")"

# The dashboard in a browser: Chromium trusts this server's public key only
# (its SPKI hash), and the page's polls go over https like the page itself.
spki=$(openssl x509 -in "$tls/server.pem" -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64)
_chromium_run "$WORK/dom.html" --ignore-certificate-errors-spki-list="$spki" --virtual-time-budget=5000 \
  --dump-dom "https://localhost:$PORT/" || fail "chromium could not load the dashboard over https"
grep -q 'data-api="ok"' "$WORK/dom.html" || fail "the dashboard could not reach the API over https"
polls=$(grep -o 'data-polls="[0-9]*"' "$WORK/dom.html" | grep -o '[0-9]*' || echo 0)
((polls >= 2)) || fail "the dashboard polled $polls times over https"
grep -q 'data-name="tls1"' "$WORK/dom.html" || fail "the dashboard does not list tls1"
log "Chromium rendered the dashboard over https: $polls polls, tls1 listed"

for args in "--server https://$API" "--server https://$API --tls-ca $tls/other-ca.pem"; do
  rc=0
  # shellcheck disable=SC2086
  "$MF" $args list >"$WORK/cli.out" 2>"$WORK/cli.err" || rc=$?
  [[ $rc -ne 0 ]] || fail "the CLI trusted the server with '$args'"
  [[ $(wc -l <"$WORK/cli.err") -eq 1 ]] && grep -q "certificate not trusted" "$WORK/cli.err" ||
    fail "the CLI with '$args': expected one line about the certificate, got: $(cat "$WORK/cli.err")"
  log "the CLI with '$args' refused: $(cat "$WORK/cli.err")"
done

"$MF" "${SERVER[@]}" abort tls1 --reason "tls test done" | tee "$WORK/abort.out"
grep -q "slot and publication dropped" "$WORK/abort.out" || fail "abort over https"
"$MF" "${SERVER[@]}" delete tls1 >/dev/null
log "PASS"
