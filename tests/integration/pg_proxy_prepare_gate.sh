#!/usr/bin/env bash
# A prepare outside a transaction passes the write gate. libpq's PQprepare
# (Parse + Sync) is synchronous: pgbench -M prepared calls it for a new
# connection's statements, and blocks the thread that also drives its other
# connections. Held at the gate, it kept another connection of that thread
# from finishing the transaction the pause's drain waited for: a deadlock
# until the drain timeout (pg_cutover.sh's prepared phase, now and then).
# Here one thread does the same: connection A holds a transaction, a switch
# starts (its drain waits for A), connection B prepares (answered at once,
# the switch still waiting), then A commits and the switch goes through; B's
# statement runs on the target, replayed there when B moved. Connection C is
# new: it connects during the pause (a pool reconnecting; its server session
# starts on the side writes still go to), prepares and describes (Parse,
# Describe, Sync) while the switch still waits, and its first write waits
# for the gate and runs on the target.
source "$(dirname "$0")/lib.sh"
start_servers 23700
PROXY_PORT=$(free_port 23710)
DST_PORT=$(cat "$WORK/dst/port")
sql_src -c "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one'), (2, 'two')"
write_spec gate "partitions: 1" "tables: [public.t]" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" \
  "cutover:" "  require_verify: false" "  drain_timeout_seconds: 20"
run_mf_bg
wait_phase replicating
"$MF" switch reads "$SPEC" >/dev/null
PROXY_URI="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/postgres?sslmode=disable" \
  DST_PORT=$DST_PORT MF=$MF SPEC=$SPEC /usr/bin/python3 - <<'PY' || fail "prepare at the gate"
import ctypes, os, subprocess, sys, threading, time
import psycopg2

def check(ok, what):
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    if not ok:
        sys.exit(1)

pq = ctypes.CDLL("libpq.so.5")
pq.PQconnectdb.restype = ctypes.c_void_p
pq.PQconnectdb.argtypes = [ctypes.c_char_p]
pq.PQstatus.argtypes = [ctypes.c_void_p]
pq.PQprepare.restype = ctypes.c_void_p
pq.PQprepare.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
pq.PQexecPrepared.restype = ctypes.c_void_p
pq.PQexecPrepared.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p),
                              ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
pq.PQresultStatus.argtypes = [ctypes.c_void_p]
pq.PQdescribePrepared.restype = ctypes.c_void_p
pq.PQdescribePrepared.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
pq.PQnparams.argtypes = [ctypes.c_void_p]
pq.PQexec.restype = ctypes.c_void_p
pq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
pq.PQgetvalue.restype = ctypes.c_char_p
pq.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
pq.PQerrorMessage.restype = ctypes.c_char_p
pq.PQerrorMessage.argtypes = [ctypes.c_void_p]
pq.PQclear.argtypes = [ctypes.c_void_p]
pq.PQfinish.argtypes = [ctypes.c_void_p]
PGRES_COMMAND_OK = 1

a = psycopg2.connect(os.environ["PROXY_URI"])
b = pq.PQconnectdb(os.environ["PROXY_URI"].encode())
check(pq.PQstatus(b) == 0, "connection B through the proxy")
cur = a.cursor()
cur.execute("UPDATE t SET v = 'a' WHERE id = 1")  # A: inside a transaction
switch = subprocess.Popen([os.environ["MF"], "switch", "writes", os.environ["SPEC"]],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
time.sleep(1.5)
check(switch.poll() is None, "the switch waits for A's transaction")
t0 = time.time()
r = pq.PQprepare(b, b"s1", b"UPDATE t SET v = $1 WHERE id = 1", 0, None)
took = time.time() - t0
ok = pq.PQresultStatus(r) == PGRES_COMMAND_OK
pq.PQclear(r)
check(ok and took < 1.0 and switch.poll() is None,
      "B's prepare answered during the pause in %.2f s (the switch still waiting)" % took)

# C: a new connection during the pause (startup, then Parse/Describe/Sync).
t0 = time.time()
c = pq.PQconnectdb(os.environ["PROXY_URI"].encode())
connected = pq.PQstatus(c) == 0
r = pq.PQprepare(c, b"c1", b"UPDATE t SET v = $1 WHERE id = 2", 0, None)
ok = pq.PQresultStatus(r) == PGRES_COMMAND_OK
pq.PQclear(r)
r = pq.PQdescribePrepared(c, b"c1")
ok = ok and pq.PQresultStatus(r) == PGRES_COMMAND_OK and pq.PQnparams(r) == 1
pq.PQclear(r)
took = time.time() - t0
check(connected and ok and switch.poll() is None,
      "C connected, prepared and described during the pause in %.2f s (the switch %s)" %
      (took, "still waiting" if switch.poll() is None else "ended: " + switch.communicate()[0].strip()))
c_result = []
def c_write():
    p = (ctypes.c_char_p * 1)(b"c")
    r = pq.PQexecPrepared(c, b"c1", 1, p, None, None, 0)
    c_result.append(pq.PQresultStatus(r) == PGRES_COMMAND_OK or pq.PQerrorMessage(c).decode())
    pq.PQclear(r)
writer = threading.Thread(target=c_write)
writer.start()
time.sleep(1.0)
check(not c_result and switch.poll() is None, "C's first write waits for the gate (the switch still waiting)")

a.commit()
out, _ = switch.communicate(timeout=30)
check(switch.returncode == 0, "the switch went through once A committed: " + out.strip().splitlines()[-1])
params = (ctypes.c_char_p * 1)(b"b")
r = pq.PQexecPrepared(b, b"s1", 1, params, None, None, 0)
ok = pq.PQresultStatus(r) == PGRES_COMMAND_OK
pq.PQclear(r)
check(ok, "B's prepared statement runs after the switch (replayed on the target)")
cur.execute("SELECT v, inet_server_port() FROM t WHERE id = 1")
v, port = cur.fetchone()
check(v == "b" and port == int(os.environ["DST_PORT"]), "the row is B's on the target: %s on :%d" % (v, port))
writer.join(30)
check(c_result == [True], "C's first write went through after the switch: %s" % c_result)
r = pq.PQexec(c, b"SELECT v || ' on :' || inet_server_port() FROM t WHERE id = 2")
where = pq.PQgetvalue(r, 0, 0).decode()
pq.PQclear(r)
check(where == "c on :%s" % os.environ["DST_PORT"], "C's row is on the target: " + where)
pq.PQfinish(c)
pq.PQfinish(b)
a.close()
PY
stop_mf
log PASS
