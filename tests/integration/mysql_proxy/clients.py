#!/usr/bin/env python3
"""Client checks through the MySQL proxy, driven by mysql_proxy.sh.

  clients.py MODE PROXY_PORT [args...]

Modes print one line each and exit non-zero on a failed check:
  carry      SET variables and the schema follow a side flip (flips via the
             host's control fifo given as argv[3]).
  temp       holds a temporary table open until the file argv[3] appears, then
             drops it and waits for argv[4].
  kill       KILL QUERY through the proxy stops a SLEEP running on another session.
  gone       a client that disconnects during SELECT SLEEP(30) gets its
             statement stopped on the server (checked on SERVER_PORT argv[3]).
  mysqldb    Debian's python3-mysqldb (mysqlclient, on libmariadb; it has no
             server-side prepared statements, so its cursor with %s parameters):
             session state, a transaction and parameterised writes across two
             flips (argv[3] flips to the target, argv[4] back).
  bad        garbage, a truncated packet, a 1 GB declared length (at login and
             after it), a wrong password and a slow client each close only their
             own connection; a good session opened before stays usable.
  pipeline   in a transaction, a client that sends its next command while the
             proxy still holds a 16 MB answer it has not read yet gets that
             command answered once it reads (a raw client: drivers do not pipeline).
"""
import hashlib, os, socket, struct, sys, threading, time

import pymysql

mode, port = sys.argv[1], int(sys.argv[2])
USER, PASSWORD = "app", "apppw"


def connect(db="shop", **kw):
    return pymysql.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, database=db, autocommit=True, **kw)


def one(cur, sql):
    cur.execute(sql)
    return cur.fetchone()


def fail(msg):
    print("FAIL", msg)
    sys.exit(1)


def control(fifo_in, fifo_out, cmd):
    with open(fifo_in, "w") as f:
        f.write(cmd + "\n")
    with open(fifo_out) as f:
        return f.readline().strip()


def raw():
    """A plain socket to the proxy and its handshake payload."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    hdr = s.recv(4)
    n = hdr[0] | hdr[1] << 8 | hdr[2] << 16
    greeting = b""
    while len(greeting) < n:
        greeting += s.recv(n - len(greeting))
    return s, greeting


def native(password, scramble):
    s1 = hashlib.sha1(password.encode()).digest()
    s2 = hashlib.sha1(s1).digest()
    s3 = hashlib.sha1(scramble + s2).digest()
    return bytes(a ^ b for a, b in zip(s1, s3))


def raw_login(what):
    """A raw socket logged in with mysql_native_password (no CLIENT_DEPRECATE_EOF)."""
    s, g = raw()
    rest = g[1:]
    rest = rest[rest.index(b"\0") + 1:]
    scramble = rest[4:12]
    # part 2 of the scramble: 12 bytes + NUL after the 10 reserved bytes
    part2_at = 1 + g[1:].index(b"\0") + 1 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
    scramble += g[part2_at:part2_at + 12]
    cl = 0x0200 | 0x8000 | 0x80000 | 0x2000 | 0x200000
    resp = struct.pack("<IIB23x", cl, 1 << 24, 33) + USER.encode() + b"\0" + bytes([20]) + native(PASSWORD, scramble) + b"mysql_native_password\0"
    s.sendall(struct.pack("<I", len(resp))[:3] + b"\x01" + resp)
    ok = s.recv(1024)
    if len(ok) < 5 or ok[4] != 0:
        fail(f"{what}: raw login failed: {ok!r}")
    return s


def command(sql):
    payload = b"\x03" + sql.encode()
    return struct.pack("<I", len(payload))[:3] + b"\x00" + payload


if mode == "carry":
    flip = sys.argv[3]  # a script that flips the write side and prints the new side
    c = connect()
    cur = c.cursor()
    cur.execute("SET SESSION time_zone = '+05:00', sql_mode = 'ANSI_QUOTES', SESSION group_concat_max_len = 4321")
    cur.execute("USE shop2")
    p1 = one(cur, "SELECT @@port")[0]
    os.system(flip)
    p2, tz, mode_, gcl, db = one(cur, "SELECT @@port, @@time_zone, @@sql_mode, @@group_concat_max_len, DATABASE()")
    if p1 == p2:
        fail(f"carry: the session did not move ({p1})")
    if (tz, mode_, gcl, db) != ("+05:00", "ANSI_QUOTES", 4321, "shop2"):
        fail(f"carry: state after the move: {tz} {mode_} {gcl} {db}")
    print(f"carry ok: port {p1} -> {p2}, time_zone {tz}, sql_mode {mode_}, group_concat_max_len {gcl}, schema {db}")

elif mode == "mysqldb":
    import MySQLdb

    c = MySQLdb.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, database="shop", autocommit=True)
    cur = c.cursor()
    cur.execute("SET SESSION time_zone = %s, sql_mode = %s", ("+03:00", "ANSI_QUOTES"))
    cur.execute("SELECT @@port")
    p1 = cur.fetchone()[0]
    cur.execute("BEGIN")
    cur.execute("INSERT INTO ps_probe (v) VALUES (%s)", ("mysqldb-1",))
    cur.execute("COMMIT")
    os.system(sys.argv[3])
    cur.execute("SELECT @@port, @@time_zone, @@sql_mode, %s + 1", (41,))
    p2, tz, sm, n = cur.fetchone()
    cur.executemany("INSERT INTO ps_probe (v) VALUES (%s)", [("mysqldb-2",), ("mysqldb-3",)])
    cur.execute("SELECT COUNT(*) FROM ps_probe WHERE v LIKE %s", ("mysqldb-%",))
    here = cur.fetchone()[0]
    os.system(sys.argv[4])
    cur.execute("SELECT @@port, @@time_zone")
    p3, tz3 = cur.fetchone()
    c.close()
    if p1 == p2 or p2 == p3 or p1 != p3:
        fail(f"mysqldb: the session did not follow the flips: {p1} -> {p2} -> {p3}")
    if (tz, sm, n, tz3) != ("+03:00", "ANSI_QUOTES", 42, "+03:00"):
        fail(f"mysqldb: state after the moves: {tz} {sm} {n} {tz3}")
    if here != 2:
        fail(f"mysqldb: {here} rows written after the flip on {p2}, expected 2")
    print(f"mysqldb ok: MySQLdb {MySQLdb.__version__} (client-side parameters): port {p1} -> {p2} -> {p3}, "
          f"time_zone and sql_mode carried, a transaction before and an executemany after the flip")

elif mode == "temp":
    c = connect()
    cur = c.cursor()
    cur.execute("CREATE TEMPORARY TABLE tmp_pin (id int)")
    open(sys.argv[3] + ".created", "w").write("x")
    while not os.path.exists(sys.argv[3]):
        time.sleep(0.05)
    cur.execute("DROP TEMPORARY TABLE tmp_pin")
    open(sys.argv[3] + ".dropped", "w").write("x")
    while not os.path.exists(sys.argv[4]):
        time.sleep(0.05)
    print("temp ok")

elif mode == "kill":
    victim = connect()
    vid = victim.thread_id()
    result = {}

    def run():
        t0 = time.monotonic()
        try:
            result["value"] = one(victim.cursor(), "SELECT SLEEP(30)")[0]
        except Exception as e:  # a killed query may also come back as an error
            result["value"] = repr(e)
        result["s"] = time.monotonic() - t0

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1)
    connect().cursor().execute(f"KILL QUERY {vid}")
    t.join(20)
    if t.is_alive() or result["s"] > 5:
        fail(f"kill: SLEEP(30) not stopped: {result}")
    print(f"kill ok: SLEEP(30) of session {vid} returned {result['value']} after {result['s']:.1f}s")

elif mode == "gone":
    server_port = int(sys.argv[3])
    c = connect()
    sock = c._sock
    # Send the query and vanish without reading the answer.
    payload = b"\x03SELECT SLEEP(30) /* gone-probe */"
    sock.sendall(struct.pack("<I", len(payload))[:3] + b"\x00" + payload)
    time.sleep(1)
    sock.shutdown(socket.SHUT_RDWR)  # pymysql's makefile() keeps the descriptor open past close()
    sock.close()
    t_close = time.monotonic()
    direct = pymysql.connect(host="127.0.0.1", port=server_port, user="midflight", password="midflight", autocommit=True)
    dcur = direct.cursor()
    for i in range(40):
        dcur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%gone-probe%' AND INFO NOT LIKE '%PROCESSLIST%'")
        if dcur.fetchone()[0] == 0:
            print(f"gone ok: the statement was gone from the server's processlist {time.monotonic() - t_close:.2f}s after the client vanished")
            sys.exit(0)
        time.sleep(0.25)
    fail("gone: SLEEP(30) still running 10s after its client went away")

elif mode == "bad":
    good = connect()
    gcur = good.cursor()

    def closed(s, limit=10):
        s.settimeout(limit)
        t0 = time.monotonic()
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    return time.monotonic() - t0
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
        except socket.timeout:
            return None

    results = []
    s, _ = raw()
    s.sendall(os.urandom(64) + b"\xff" * 64)
    results.append(("garbage", closed(s)))
    s, _ = raw()
    s.sendall(b"\x40\x00\x00\x01\x8d\xa6")  # declares 64 bytes, sends 2, then goes away half-way
    s.shutdown(socket.SHUT_WR)
    results.append(("truncated", closed(s)))
    s, _ = raw()
    s.sendall(b"\xff\xff\xff\x01" + b"\x00" * 100)  # a 16 MiB login packet: the first of a 1 GB message
    results.append(("1GB-login", closed(s)))

    # Logged in properly, then a COM_QUERY declared as 1 GiB (64 full packets) that stops after 1 MiB.
    s = raw_login("bad")
    s.sendall(b"\xff\xff\xff\x00\x03SELECT '" + b"x" * (1 << 20))
    time.sleep(0.5)
    s.close()
    results.append(("1GB-command-then-client-left", 0.0))

    t0 = time.monotonic()
    try:
        pymysql.connect(host="127.0.0.1", port=port, user=USER, password="wrong", database="shop")
        fail("bad: a wrong password was accepted")
    except pymysql.err.OperationalError as e:
        if e.args[0] != 1045:
            fail(f"bad: wrong password answered {e.args}")
        results.append(("wrong-password", time.monotonic() - t0))

    s, _ = raw()
    t0 = time.monotonic()
    try:
        for b in b"\x40\x00\x00\x01\x8d\xa6\x0f\x00":
            s.send(bytes([b]))
            time.sleep(0.5)
    except OSError:
        pass
    c = closed(s, 15)
    results.append(("slow-client", None if c is None else time.monotonic() - t0))

    for name, t in results:
        if t is None:
            fail(f"bad: {name}: the proxy did not close the connection")
    if one(gcur, "SELECT 1")[0] != 1:
        fail("bad: the good session broke")
    print("bad ok: " + ", ".join(f"{n} closed in {t:.1f}s" for n, t in results) + "; a session opened before still works")
elif mode == "pipeline":
    # BEGIN and a 16 MB answer, unread for a while: the proxy's output to this
    # client fills (kernel buffers and its own bound). The next command comes
    # then, inside the transaction; it must be relayed once the client reads.
    s = raw_login("pipeline")
    s.sendall(command("BEGIN") + command("SELECT REPEAT('x', 16000000)"))
    time.sleep(1.5)
    s.sendall(command("SELECT 'third'"))
    t0 = time.monotonic()
    buf, eofs, oks, third = b"", 0, 0, False
    s.settimeout(1)
    while time.monotonic() - t0 < 15 and not third:
        try:
            d = s.recv(1 << 20)
        except socket.timeout:
            continue
        if not d:
            fail("pipeline: the proxy closed the connection")
        buf += d
        while len(buf) >= 4:
            n = buf[0] | buf[1] << 8 | buf[2] << 16
            if len(buf) < 4 + n:
                break
            p, buf = buf[4:4 + n], buf[4 + n:]
            if p[:1] == b"\xff":
                fail(f"pipeline: error {p[3:]!r}")
            if p[:1] == b"\x00" and eofs == 0:
                oks += 1
            if p[:1] == b"\xfe" and n < 9:
                eofs += 1  # two per result set (no CLIENT_DEPRECATE_EOF)
            if p.endswith(b"third") and eofs >= 3:
                third = True
    if not third:
        fail(f"pipeline: no answer to the command sent behind the unread 16 MB within 15 s ({oks} OK, {eofs} EOF packets read)")
    s.sendall(command("ROLLBACK"))
    s.close()
    print(f"pipeline ok: the command sent while the proxy held 16 MB for the client was answered {time.monotonic() - t0:.1f}s after it began reading")
else:
    fail(f"unknown mode {mode}")
