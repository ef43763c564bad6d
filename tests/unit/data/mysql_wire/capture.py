#!/usr/bin/env python3
"""Recreates the MySQL wire captures next to this script from a real MariaDB.

Every session goes through a TCP relay that saves both directions, in the
order the bytes arrived, as records: 1 byte direction ('C' client to server,
'S' server to client), int<4> LE length, the bytes as one recv() returned
them. mysql_wire_test.cc replays them through the codec.

  cli.cap            the `mariadb` command-line client (Connector/C): login,
                     USE, a transaction, an error, LOAD DATA LOCAL, CALL of a
                     procedure with two result sets, multi-statements (one
                     with an error in the middle)
  raw_classic.cap    a hand-written client below, classic EOFs, no session
  raw_deprecate.cap  tracking / with CLIENT_DEPRECATE_EOF + CLIENT_SESSION_TRACK:
                     the same commands: COM_PING, COM_INIT_DB, COM_QUERY,
                     multi-statements, CALLs, COM_STMT_PREPARE / EXECUTE (with
                     and without cursors) / FETCH / SEND_LONG_DATA / RESET /
                     CLOSE, LOCAL INFILE, COM_STATISTICS, COM_FIELD_LIST,
                     COM_SET_OPTION, COM_RESET_CONNECTION, COM_CHANGE_USER, COM_QUIT
  wrong_password.cap a login refused with ERR 1045
  ed25519.cap        the `mariadb` client logging in to an ed25519 account
                     (AuthSwitchRequest to client_ed25519)

Usage: capture.py [port] [--big DIR]   (default 30801; uses ports port and port+1)
  --big DIR also writes DIR/big.cap (about 70 MB, not kept in the repository):
  a 17 MB query from the client and a 17 MB value from the server, both split
  into two packets; MysqlCapture.BigPacketsFromALiveServer replays it when
  MIDFLIGHT_MYSQL_WIRE_BIG names the file.
Starts a throwaway server with scripts/testdb in a temporary directory; user
midflight / password midflight (scripts/testdb's superuser).
"""
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../../../.."))
TESTDB = os.path.join(ROOT, "scripts/testdb")
ARGS = [a for a in sys.argv[1:]]
BIG_DIR = None
if "--big" in ARGS:
    BIG_DIR = ARGS[ARGS.index("--big") + 1]
    del ARGS[ARGS.index("--big") : ARGS.index("--big") + 2]
PORT = int(ARGS[0]) if ARGS else 30801
RELAY_PORT = PORT + 1


class Relay:
    """Accepts one client, connects it to the server, records both directions."""

    def __init__(self, out_path):
        self.out_path = out_path
        self.records = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", RELAY_PORT))
        self.listener.listen(1)
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def pump(self, src, dst, tag):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with self.lock:
                self.records.append((tag, data))
            dst.sendall(data)

    def run(self):
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", PORT))
        a = threading.Thread(target=self.pump, args=(client, server, b"C"))
        b = threading.Thread(target=self.pump, args=(server, client, b"S"))
        a.start()
        b.start()
        a.join()
        b.join()
        client.close()
        server.close()

    def finish(self):
        self.thread.join()
        self.listener.close()
        with open(self.out_path, "wb") as f:
            for tag, data in self.records:
                f.write(tag + struct.pack("<I", len(data)) + data)
        print(f"{os.path.basename(self.out_path)}: {len(self.records)} records")


def native(password, scramble):
    if not password:
        return b""
    s1 = hashlib.sha1(password.encode()).digest()
    s2 = hashlib.sha1(s1).digest()
    x = hashlib.sha1(scramble[:20] + s2).digest()
    return bytes(a ^ b for a, b in zip(s1, x))


def lenenc(n):
    if n < 0xFB:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfc" + struct.pack("<H", n)
    if n <= 0xFFFFFF:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def lstr(b):
    return lenenc(len(b)) + b


CLASSIC = (
    0x4 | 0x8 | 0x80 | 0x200 | 0x2000 | 0x8000 | (1 << 16) | (1 << 17) | (1 << 18) | (1 << 19) | (1 << 20) | (1 << 21)
)
DEPRECATE = CLASSIC | (1 << 23) | (1 << 24)


class Raw:
    """A minimal client: enough to send each command and read until the server goes quiet."""

    def __init__(self, caps, user="midflight", password="midflight", db="shop"):
        self.s = socket.create_connection(("127.0.0.1", RELAY_PORT))
        self.s.settimeout(0.3)
        self.buf = b""
        self.caps = caps
        self.password = password
        hs = self.packet()
        # Handshake v10: version, conn id, scramble 1, filler, caps, coll, status, caps hi, len, reserved, ext, scramble 2
        p = hs[1:]
        p = p[p.index(b"\0") + 1 :]
        scramble = p[4:12]
        rest = p[12 + 1 + 2 + 1 + 2 + 2 + 1 + 6 + 4 :]
        scramble += rest[:12]
        self.scramble = scramble
        attrs = lstr(b"_client_name") + lstr(b"midflight-capture") + lstr(b"_pid") + lstr(b"1")
        resp = struct.pack("<IIB", caps, 1 << 24, 45) + b"\0" * 19 + struct.pack("<I", 0)
        resp += user.encode() + b"\0" + lstr(native(password, scramble)) + db.encode() + b"\0"
        resp += b"mysql_native_password\0" + lstr(attrs)
        self.send(resp, 1)
        self.drain(auth=True)

    def recv(self):
        try:
            d = self.s.recv(1 << 20)
        except socket.timeout:
            return False
        if not d:
            raise EOFError
        self.buf += d
        return True

    def packet(self):
        while True:
            if len(self.buf) >= 4:
                n = int.from_bytes(self.buf[:3], "little")
                if len(self.buf) >= 4 + n:
                    p, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                    self.seq = None
                    return p
            if not self.recv() and len(self.buf) < 4:
                pass

    def send(self, payload, seq=0):
        # Payloads of 16 MiB - 1 or more go in parts, the last one shorter (maybe empty).
        while True:
            part, payload = payload[:0xFFFFFF], payload[0xFFFFFF:]
            self.s.sendall(len(part).to_bytes(3, "little") + bytes([seq & 0xFF]) + part)
            seq += 1
            if len(part) < 0xFFFFFF:
                return

    def drain(self, auth=False):
        """Reads packets until the server is quiet; answers an AuthSwitchRequest; returns the payloads."""
        out = []
        while True:
            while len(self.buf) >= 4 and len(self.buf) >= 4 + int.from_bytes(self.buf[:3], "little"):
                n = int.from_bytes(self.buf[:3], "little")
                seq = self.buf[3]
                p, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                out.append(p)
                if auth and p[:1] == b"\xfe" and len(p) > 1:
                    name, data = p[1:].split(b"\0", 1)
                    self.send(native(self.password, data[:20]), seq + 1)
            try:
                if not self.recv():
                    return out
            except EOFError:
                return out

    def cmd(self, payload):
        self.send(payload, 0)
        return self.drain()

    def query(self, sql):
        return self.cmd(b"\x03" + sql.encode())

    def prepare(self, sql):
        r = self.cmd(b"\x16" + sql.encode())
        if r[0][:1] != b"\x00":
            return None, 0
        stmt, cols, params = struct.unpack("<IHH", r[0][1:9])
        return stmt, params

    def execute(self, stmt, flags=0, params=None, types=None):
        p = b"\x17" + struct.pack("<IBI", stmt, flags, 1)
        if params is not None:
            p += bytes((len(params) + 7) // 8) + b"\x01"
            for t in types:
                p += struct.pack("<H", t)
            for v in params:
                p += v
        return self.cmd(p)


def run_raw(caps, name):
    relay = Relay(os.path.join(HERE, name))
    c = Raw(caps)
    c.cmd(b"\x0e")  # COM_PING
    c.cmd(b"\x02shop")  # COM_INIT_DB
    c.cmd(b"\x02nosuch_db")  # COM_INIT_DB: ERR 1049
    c.query("SET autocommit = 0")
    c.query("SET autocommit = 1")
    c.query("BEGIN")
    c.query("INSERT INTO t (v) VALUES ('r')")
    c.query("SELECT id, v, NULL AS n FROM t ORDER BY id")
    c.query("COMMIT")
    c.query("SELECT 1; SELECT 2 AS two; INSERT INTO t (v) VALUES ('m')")
    c.query("SELECT 1; SELECT * FROM nosuch; SELECT 3")
    c.query("CALL p()")
    c.query("CALL p_err()")
    c.query("BEGIN; SELECT 1")
    c.query("SELECT * FROM nosuch")  # ERR inside the transaction
    c.cmd(b"\x0e")  # COM_PING: its OK says IN_TRANS
    c.query("ROLLBACK")
    # LOAD DATA LOCAL INFILE: the server asks for the file, the client sends it and an empty packet.
    c.send(b"\x03LOAD DATA LOCAL INFILE 'rows.txt' INTO TABLE t (v)", 0)
    c.drain()
    c.send(b"l1\nl2\n", 2)
    c.send(b"", 3)
    c.drain()
    # Prepared statements.
    stmt, params = c.prepare("SELECT id, v FROM t WHERE id > ?")
    c.execute(stmt, 0, [struct.pack("<q", 0)], [8])  # no cursor
    c.execute(stmt, 1, [struct.pack("<q", 1)], [8])  # read-only cursor
    c.cmd(b"\x1c" + struct.pack("<II", stmt, 2))  # COM_STMT_FETCH 2 rows
    c.cmd(b"\x1c" + struct.pack("<II", stmt, 100))  # the rest: LAST_ROW_SENT
    c.cmd(b"\x1a" + struct.pack("<I", stmt))  # COM_STMT_RESET
    c.execute(stmt, 1, [struct.pack("<q", 0)], [8])  # a cursor left open, closed by COM_STMT_CLOSE
    c.send(b"\x19" + struct.pack("<I", stmt), 0)  # COM_STMT_CLOSE: no answer
    ins, _ = c.prepare("INSERT INTO t (v) VALUES (?)")
    c.send(b"\x18" + struct.pack("<IH", ins, 0) + b"long data", 0)  # COM_STMT_SEND_LONG_DATA: no answer
    c.execute(ins, 0, [b""], [0xFC])  # the value came as long data
    c.send(b"\x19" + struct.pack("<I", ins), 0)
    call, _ = c.prepare("CALL p()")
    c.execute(call)  # two binary result sets and the CALL's OK
    c.prepare("SELEC bad")  # ERR
    one, _ = c.prepare("SELECT 1 AS one, NOW() AS t, 2.5 AS d, 'x' AS s")
    c.execute(one, 1)  # cursor on a statement without parameters
    c.cmd(b"\x1c" + struct.pack("<II", one, 10))
    do, _ = c.prepare("DO 1")
    c.execute(do, 1)  # a cursor asked for, but no result set: OK
    c.cmd(b"\x09")  # COM_STATISTICS
    c.cmd(b"\x04t\0")  # COM_FIELD_LIST
    c.cmd(b"\x1b" + struct.pack("<H", 0))  # COM_SET_OPTION multi-statements on
    c.cmd(b"\x1f")  # COM_RESET_CONNECTION
    # COM_CHANGE_USER: the response is computed from the connection's first scramble.
    cu = b"\x11midflight\0" + bytes([20]) + native("midflight", c.scramble) + b"shop\0" + struct.pack("<H", 45)
    cu += b"mysql_native_password\0" + lstr(lstr(b"_client_name") + lstr(b"capture"))
    c.send(cu, 0)
    c.drain(auth=True)
    c.query("SELECT DATABASE()")
    c.send(b"\x01", 0)  # COM_QUIT
    c.s.close()
    relay.finish()


def run_cli(name, args, script):
    relay = Relay(os.path.join(HERE, name))
    r = subprocess.run(
        ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{RELAY_PORT}", "--protocol=tcp", "--force", "--skip-ssl"]
        + args,
        input=script.encode(),
        capture_output=True,
    )
    relay.finish()
    return r


def main():
    tmp = tempfile.mkdtemp(prefix="mysql-wire-capture.")
    d = os.path.join(tmp, "db")
    subprocess.run([TESTDB, "start", "mariadb", d, str(PORT)], check=True)
    try:
        sql = [TESTDB, "sql", d]
        setup = """CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20));
INSTALL SONAME 'auth_ed25519';
CREATE USER ed@'%' IDENTIFIED VIA ed25519 USING PASSWORD('edpass'); GRANT ALL ON shop.* TO ed@'%';
DELIMITER //
CREATE PROCEDURE shop.p() BEGIN SELECT 1 AS a; SELECT 2 AS b, 'x' AS c; END//
CREATE PROCEDURE shop.p_err() BEGIN SELECT 1 AS a; SELECT * FROM nosuch; END//
"""
        subprocess.run(sql, input=setup.encode(), check=True)
        rows = os.path.join(tmp, "rows.txt")
        with open(rows, "w") as f:
            f.write("f1\nf2\n")
        r = run_cli(
            "cli.cap",
            ["-umidflight", "-pmidflight", "--local-infile=1", "shop"],
            f"""USE shop;
INSERT INTO t (v) VALUES ('a'), ('b');
SELECT * FROM t;
BEGIN;
INSERT INTO t (v) VALUES ('c');
COMMIT;
SELECT * FROM nosuch;
LOAD DATA LOCAL INFILE '{rows}' INTO TABLE t (v);
DELIMITER //
CALL p()//
SELECT 1; SELECT 2 AS two; INSERT INTO t (v) VALUES ('m')//
SELECT 1; SELECT * FROM nosuch; SELECT 3//
DELIMITER ;
""",
        )
        print(r.stdout.decode(), r.stderr.decode())
        run_raw(CLASSIC, "raw_classic.cap")
        run_raw(DEPRECATE, "raw_deprecate.cap")
        relay = Relay(os.path.join(HERE, "wrong_password.cap"))
        Raw(CLASSIC, password="wrong").s.close()
        relay.finish()
        r = run_cli("ed25519.cap", ["-ued", "-pedpass", "shop", "-e", "SELECT CURRENT_USER()"], "")
        print(r.stdout.decode(), r.stderr.decode())
        if BIG_DIR:
            relay = Relay(os.path.join(BIG_DIR, "big.cap"))
            c = Raw(DEPRECATE)
            c.s.settimeout(2)
            c.query("SELECT LENGTH('" + "y" * 17000000 + "') AS n")
            c.query("SELECT REPEAT('x', 17000000) AS big, 1 AS one")
            c.send(b"\x01", 0)
            c.s.close()
            relay.finish()
    finally:
        subprocess.run([TESTDB, "stop", d])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
