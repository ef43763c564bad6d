#!/usr/bin/env bash
# What other client test suites found in the PostgreSQL proxy, each checked
# with a real client against the proxy and, where PostgreSQL's own behaviour
# is the reference, against the server directly:
#  - a server that ends a session (pg_terminate_backend) gives the client
#    exactly its FATAL, once: psql prints the same as it does direct, and
#    psycopg2's error is the server's;
#  - a Terminate (or garbage) instead of a startup packet is closed without a
#    reply, as PostgreSQL does;
#  - SCRAM with a non-ASCII password (SASLprep, NFKC): psql logs in through
#    the proxy with the password as set and in another normalisation form;
#  - channel_binding=require over TLS (SCRAM-SHA-256-PLUS, tls-server-end-point
#    of a certificate signed with SHA-384);
#  - psycopg2's backend_pid is pg_backend_pid(), the session's own NOTIFY
#    carries it, and a cancel (PQcancel) still stops a pg_sleep.
source "$(dirname "$0")/lib.sh"
# Debian's python3 (python3-psycopg2), not another python3 first on the PATH.
start_servers 21300
PROXY_PORT=$(free_port 21310)
SRC_PORT=$(cat "$WORK/src/port")
sql_src -c "CREATE TABLE t (id int PRIMARY KEY)"
# A password with ä, a fullwidth p (NFKC: p) and U+00AA (NFKC: a).
PW=$'\xef\xbd\x90\xc3\xa4ss\xc2\xaa-w\xc3\xb6rd'
PW_NFKC=$'p\xc3\xa4ssa-w\xc3\xb6rd'
sql_src -c "CREATE ROLE uni LOGIN PASSWORD '$PW'; GRANT ALL ON SCHEMA public TO uni"
sql_dst -c "CREATE ROLE uni LOGIN PASSWORD '$PW'"
printf '%s\n' "$PW" >"$WORK/uni.pw"
chmod 600 "$WORK/uni.pw"
# The server itself takes both spellings (it applies SASLprep).
PGPASSWORD=$PW_NFKC psql -X -At "postgres://uni@127.0.0.1:$SRC_PORT/postgres" -c "SELECT 1" >/dev/null \
  || fail "PostgreSQL itself refuses the NFKC form of the password"
openssl req -x509 -newkey rsa:2048 -sha384 -nodes -days 1 -subj "/CN=127.0.0.1" \
  -keyout "$WORK/proxy.key" -out "$WORK/proxy.crt" >/dev/null 2>&1
write_spec clients "partitions: 1" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" \
  "  tls_cert: $WORK/proxy.crt" "  tls_key: $WORK/proxy.key" \
  "  users:" "    - {name: midflight, password: midflight}" "    - {name: uni, password_file: $WORK/uni.pw}"
run_mf_bg
wait_phase replicating
PROXY_URI="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/postgres"

log "--- a server that ends the session: its FATAL, once"
term="SELECT pg_terminate_backend(pg_backend_pid())"
direct=$(psql -X -At "$SRC" -c "$term" 2>&1) && fail "the direct session survived its termination"
proxied=$(psql -X -At "$PROXY_URI?sslmode=disable" -c "$term" 2>&1) && fail "the proxied session survived its termination"
log "direct:  $(echo $direct)"
log "proxied: $(echo $proxied)"
[[ $proxied == "$direct" ]] || fail "psql through the proxy printed something else than direct"

log "--- a Terminate, then garbage, instead of a startup packet: closed without a reply"
for packet in 'X\x00\x00\x00\x04' '\x00\x00\x00\x03garbage'; do
  for port in "$SRC_PORT" "$PROXY_PORT"; do
    reply=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; printf '$packet' >&3; cat <&3" | od -An -c | tr -s ' ')
    [[ -z $reply ]] || fail "port $port answered '$packet' with: $reply"
  done
done
log "PostgreSQL and the proxy both close without a reply"

log "--- SCRAM with a non-ASCII password (SASLprep)"
for pw in "$PW" "$PW_NFKC"; do
  out=$(PGPASSWORD=$pw psql -X -At "postgres://uni@127.0.0.1:$PROXY_PORT/postgres?sslmode=disable" \
    -c "SELECT current_user" 2>&1) || fail "uni through the proxy: $out"
  [[ $out == uni ]] || fail "uni through the proxy: $out"
done
out=$(PGPASSWORD=${PW%d} psql -X -At "postgres://uni@127.0.0.1:$PROXY_PORT/postgres?sslmode=disable" -c "SELECT 1" 2>&1) \
  && fail "a wrong non-ASCII password was accepted"
[[ $out == *'password authentication failed for user "uni"'* ]] || fail "wrong password: $out"
log "uni logs in through the proxy with both spellings; a wrong one is refused"

log "--- channel_binding=require over TLS"
out=$(psql -X -At "$PROXY_URI?sslmode=require&channel_binding=require" \
  -c "SELECT 'bound'" 2>&1) || fail "channel_binding=require through the proxy: $out"
[[ $out == bound ]] || fail "channel_binding=require: $out"
out=$(PGPASSWORD=$PW psql -X -At "postgres://uni@127.0.0.1:$PROXY_PORT/postgres?sslmode=require&channel_binding=require" \
  -c "SELECT current_user" 2>&1) || fail "uni with channel binding: $out"
out=$(PGPASSWORD=wrong psql -X -At "postgres://midflight@127.0.0.1:$PROXY_PORT/postgres?sslmode=require&channel_binding=require" \
  -c "SELECT 1" 2>&1) && fail "a wrong password with channel binding was accepted"
[[ $out == *"password authentication failed"* ]] || fail "wrong password with channel binding: $out"
log "SCRAM-SHA-256-PLUS: psql connects with channel_binding=require; a wrong password is still refused"

log "--- psycopg2: backend pid, own notifications, cancel, and a terminated session's error"
PROXY_URI=$PROXY_URI SRC=$SRC /usr/bin/python3 - <<'PY' || fail "psycopg2 checks failed"
import os, select, sys, threading, time
import psycopg2, psycopg2.extensions, psycopg2.errors

def check(ok, what):
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    if not ok:
        sys.exit(1)

c = psycopg2.connect(os.environ["PROXY_URI"] + "?sslmode=disable")
c.autocommit = True
cur = c.cursor()
cur.execute("SELECT pg_backend_pid()")
real = cur.fetchone()[0]
check(c.info.backend_pid == real, f"backend_pid {c.info.backend_pid} == pg_backend_pid() {real}")
cur.execute("LISTEN own; NOTIFY own, 'hello'")
c.poll()
n = c.notifies.pop(0) if c.notifies else None
check(n is not None and n.pid == c.info.backend_pid and n.payload == "hello",
      f"own notification carries the session's pid ({n.pid if n else None})")

def cancel_later():
    time.sleep(1)
    c.cancel()
threading.Thread(target=cancel_later).start()
t0 = time.time()
try:
    cur.execute("SELECT pg_sleep(30)")
    check(False, "pg_sleep(30) was not cancelled")
except psycopg2.errors.QueryCanceled:
    check(time.time() - t0 < 10, f"pg_sleep cancelled after {time.time() - t0:.1f} s")
cur.execute("SELECT 'still usable'")
check(cur.fetchone()[0] == "still usable", "session usable after the cancel")

# A session ended by an administrator while idle: the error its next query
# gets must be what the same client gets direct.
def terminated_error(uri):
    victim = psycopg2.connect(uri)
    victim.autocommit = True
    vcur = victim.cursor()
    vcur.execute("SELECT pg_backend_pid()")
    pid = vcur.fetchone()[0]
    admin = psycopg2.connect(os.environ["SRC"])
    admin.autocommit = True
    admin.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()
    time.sleep(0.5)
    try:
        vcur.execute("SELECT 1")
    except psycopg2.OperationalError as e:
        return str(e).strip()
    return "no error"
direct = terminated_error(os.environ["SRC"])
proxied = terminated_error(os.environ["PROXY_URI"] + "?sslmode=disable")
print("direct:  " + direct.replace("\n", " | "))
print("proxied: " + proxied.replace("\n", " | "))
check(proxied == direct, "a terminated session's error through the proxy is what it is direct")
PY
stop_mf
log "PASS"
