#!/usr/bin/env bash
# Session state across write switches, one psycopg2 session through the
# proxy's read-write endpoint for the whole test:
#  - carried: settings made by SET and by set_config(..., false), and LISTEN
#    (a NOTIFY on the new server arrives; the session's own NOTIFY carries
#    the pid its driver was given);
#  - pinned: a temporary table, a cursor WITH HOLD and a session advisory
#    lock each make the next switch (rollback) refuse, naming the session and
#    the state; once they end (DROP TABLE, CLOSE, pg_advisory_unlock_all) it
#    goes through and the session follows with its settings.
# Also: a table outside `tables:` with a serial column, used on the source,
# does not stop the switch (its sequence is not carried over).
source "$(dirname "$0")/lib.sh"
# Debian's python3 (python3-psycopg2), not another python3 first on the PATH.
start_servers 21400
PROXY_PORT=$(free_port 21410)
SRC_PORT=$(cat "$WORK/src/port")
DST_PORT=$(cat "$WORK/dst/port")
sql_src -c "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one')"
sql_src -c "CREATE TABLE p (id serial PRIMARY KEY, v text); INSERT INTO p (v) VALUES ('outside tables:')"
write_spec state "partitions: 1" "tables: [public.t]" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" \
  "cutover:" "  require_verify: false" "  drain_timeout_seconds: 5"
run_mf_bg
wait_phase replicating
"$MF" switch reads "$SPEC" >/dev/null
PROXY_URI="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/postgres?sslmode=disable" \
  SRC_PORT=$SRC_PORT DST_PORT=$DST_PORT DST=$DST MF=$MF SPEC=$SPEC /usr/bin/python3 - <<'PY' || fail "session state checks failed"
import os, select, socket, subprocess, sys, time
import psycopg2

def check(ok, what):
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    if not ok:
        sys.exit(1)

def one(sql):
    cur.execute(sql)
    return cur.fetchone()[0]

def mf(*args):
    r = subprocess.run([os.environ["MF"], *args, os.environ["SPEC"]], capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()

c = psycopg2.connect(os.environ["PROXY_URI"])
c.autocommit = True
cur = c.cursor()
me = "127.0.0.1:%d" % socket.fromfd(c.fileno(), socket.AF_INET, socket.SOCK_STREAM).getsockname()[1]
check(one("SELECT inet_server_port()") == int(os.environ["SRC_PORT"]), "the session starts on the source")
cur.execute("SET statement_timeout = '12345ms'")
cur.execute("SELECT set_config('application_name', 'state_test', false), set_config('myapp.tenant', '42', false)")
cur.execute("LISTEN jobs")

rc, out = mf("switch", "writes")
check(rc == 0, "switch writes: " + out.splitlines()[-1] if out else "switch writes")
check(one("SELECT inet_server_port()") == int(os.environ["DST_PORT"]), "the session moved to the target")
check(one("SHOW statement_timeout") == "12345ms", "SET statement_timeout carried")
check(one("SELECT current_setting('application_name')") == "state_test", "set_config(application_name) carried")
check(one("SELECT current_setting('myapp.tenant')") == "42", "set_config(myapp.tenant) carried")
check(one("SELECT count(*) FROM pg_listening_channels() WHERE pg_listening_channels = 'jobs'") == 1,
      "LISTEN jobs re-issued on the target")
other = psycopg2.connect(os.environ["DST"])
other.autocommit = True
other.cursor().execute("NOTIFY jobs, 'from the target'")
deadline = time.time() + 5
while not c.notifies and time.time() < deadline:
    select.select([c], [], [], 0.5)
    c.poll()
n = c.notifies.pop(0) if c.notifies else None
check(n is not None and n.payload == "from the target", "a NOTIFY on the target arrives")
cur.execute("NOTIFY jobs, 'own'")
c.poll()
n = c.notifies.pop(0) if c.notifies else None
check(n is not None and n.pid == c.info.backend_pid, "the session's own NOTIFY carries its pid after the move")

cur.execute("CREATE TEMP TABLE t1 (x int)")
cur.execute("BEGIN; DECLARE c1 CURSOR WITH HOLD FOR SELECT 1; COMMIT")
cur.execute("SELECT pg_advisory_lock(7)")
rc, out = mf("rollback")
print("refused: " + out)
check(rc != 0 and f"{me} on the target: temporary table t1; cursor c1 WITH HOLD; session advisory lock" in out,
      "rollback refused, naming the session and its state")
check(one("SELECT inet_server_port()") == int(os.environ["DST_PORT"]), "the session stayed on the target")
cur.execute("BEGIN; DROP TABLE t1; ROLLBACK")  # rolled back: t1 is still there
rc, out = mf("rollback")
check(rc != 0 and "temporary table t1" in out, "still refused after a rolled-back DROP TABLE t1")
cur.execute("DROP TABLE t1; CLOSE c1")
rc, out = mf("rollback")
check(rc != 0 and f"{me} on the target: session advisory lock" in out, "still refused for the advisory lock: " + out)
cur.execute("SELECT pg_advisory_unlock_all()")
rc, out = mf("rollback")
check(rc == 0, "rollback once the state ended: " + (out.splitlines()[-1] if out else ""))
check(one("SELECT inet_server_port()") == int(os.environ["SRC_PORT"]), "the session moved back to the source")
check(one("SHOW statement_timeout") == "12345ms" and one("SELECT current_setting('myapp.tenant')") == "42",
      "settings carried back")
PY
[[ $(sql_src -c "SELECT count(*) FROM p") == 1 ]] || fail "table p changed"
stop_mf
log "PASS"
