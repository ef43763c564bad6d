#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/ from the fixtures.

pgoutput: the captured messages in tests/unit/pgoutput_test.cc, alone and
          inside XLogData frames, and a keepalive frame.
pg_types: a type index byte and a value's text form, one per type the target knows.
binlog:   the captured binlog files in tests/unit/data/binlog.
pg_wire:  client and server streams built here as libpq and PostgreSQL send them.
http:     a few requests as curl and midflight's own client send them, and responses.
spec:     the example specs of README.md and tests/unit/spec_test.cc.

Run it from anywhere: python3 tests/fuzz/make_corpus.py. The files are named
by content, so running it again adds nothing new.
"""
import hashlib
import pathlib
import re
import shutil
import struct

root = pathlib.Path(__file__).resolve().parents[2]
out = root / "tests/fuzz/corpus"


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


# ---- pgoutput: Hex("...") constants of the unit test ----
test = (root / "tests/unit/pgoutput_test.cc").read_text()
for m in re.finditer(r"const Bytes (k\w+) = Hex\(((?:\s*\"[0-9a-fA-F]*\"(?:\s*//[^\n]*)?)+)\s*\);", test):
    hexdigits = "".join(re.findall(r"\"([0-9a-fA-F]*)\"", m.group(2)))
    msg = bytes.fromhex(hexdigits)
    write("pgoutput", msg)
    header = bytes.fromhex("77" "0000000001532d98" "0000000001532ed0" "0002b0ec8515f340")
    write("pgoutput", header + msg)
# The TOASTed update of the FULL identity table (Cat/Repeat in the test), shortened.
write("pgoutput", bytes.fromhex("550000400f4f00037400000001317400000005666972737474000000c8") + b"y" * 200 +
      bytes.fromhex("4e000374000000013174000000067365636f6e6475"))
write("pgoutput", bytes.fromhex("6b" "0000000001536198" "fffffffffffffffe" "01"))

# ---- binlog ----
for f in sorted((root / "tests/unit/data/binlog").glob("*.binlog")):
    (out / "binlog").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(f, out / "binlog" / f.name)


# ---- pg_wire ----
def msg(t, body):
    return t.encode() + struct.pack(">i", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def untyped(body):
    return struct.pack(">i", len(body) + 4) + body


startup = untyped(struct.pack(">i", 196608) + cstr("user") + cstr("app") + cstr("database") + cstr("shop") +
                  cstr("application_name") + cstr("psql") + b"\0")
ssl = untyped(struct.pack(">i", 80877103))
gss = untyped(struct.pack(">i", 80877104))
cancel = untyped(struct.pack(">iii", 80877102, 4242, 123456789))
newer = untyped(struct.pack(">i", 196610) + cstr("user") + cstr("app") + cstr("_pq_.x") + cstr("1") + b"\0")
query = msg("Q", cstr("SET search_path TO app, public"))
extended = (msg("P", cstr("s1") + cstr("SELECT $1::int, $2") + struct.pack(">hii", 2, 23, 25)) +
            msg("B", cstr("") + cstr("s1") + struct.pack(">hhh", 1, 0, 2) + struct.pack(">i", 1) + b"7" +
                struct.pack(">i", -1) + struct.pack(">hh", 1, 1)) +
            msg("D", b"P" + cstr("")) + msg("E", cstr("") + struct.pack(">i", 0)) + msg("C", b"S" + cstr("s1")) +
            msg("S", b"") + msg("H", b""))
sasl = (msg("p", cstr("SCRAM-SHA-256") + struct.pack(">i", 32) + b"n,,n=,r=rOprNGfwEbeRWgbNEkqO%hvY") +
        msg("p", b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
write("pg_wire", startup + query + msg("X", b""))
write("pg_wire", ssl + startup + extended)
write("pg_wire", gss + ssl + newer + msg("p", cstr("md5a3556571e93b0d20722ba62be61e8c2d")) + query)
write("pg_wire", startup + sasl + msg("Q", cstr("PREPARE q(int) AS SELECT $1; DEALLOCATE q; /* c */ RESET ALL")))
write("pg_wire", cancel)
server = (msg("R", struct.pack(">i", 10) + cstr("SCRAM-SHA-256") + cstr("SCRAM-SHA-256-PLUS") + b"\0") +
          msg("R", struct.pack(">i", 11) + b"r=abc,s=c2FsdA==,i=4096") +
          msg("R", struct.pack(">i", 12) + b"v=abc=") + msg("R", struct.pack(">i", 0)) +
          msg("S", cstr("server_version") + cstr("15.4")) + msg("K", struct.pack(">ii", 4242, 99)) +
          msg("Z", b"I") + msg("C", cstr("SELECT 1")) +
          msg("E", b"S" + cstr("ERROR") + b"V" + cstr("ERROR") + b"C" + cstr("42P01") + b"M" +
              cstr("relation \"x\" does not exist") + b"\0") +
          msg("N", b"S" + cstr("NOTICE") + b"M" + cstr("hi") + b"\0"))
write("pg_wire", startup + server)
write("pg_wire", startup + msg("R", struct.pack(">i", 5) + b"\x01\x02\x03\x04") + msg("R", struct.pack(">i", 3)))

# ---- http ----
for r in [
    "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    "POST /v1/switch?mode=writes&force=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    "Content-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"force\":true}\n",
    "\r\nGET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: [::1]:8080\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
    "GET http://localhost:8080/v1/events?since=12&name=a%20b+c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n",
]:
    write("http", r)

# ---- spec: fenced yaml blocks of the README, the specs of spec_test.cc ----
readme = (root / "README.md").read_text()
for block in re.findall(r"```yaml\n(.*?)```", readme, re.S):
    write("spec", block)
spec_test = (root / "tests/unit/spec_test.cc").read_text()
for block in re.findall(r"R\"\((.*?)\)\"", spec_test, re.S):
    write("spec", block)
for s in re.findall(r"ParseSpec\(\"((?:[^\"\\]|\\.)*)\"", spec_test):
    write("spec", s.encode().decode("unicode_escape"))
# Inputs that once crashed a target, kept as seeds so that a regression shows at once.
write("spec", "? [a]\n: 1\n")
write("spec", "name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\nproxy:\n  listen: h:1\n"
              "  users: [{name: [u], password: p}]\nknobs: {[x]: 1}\n")
write("pg_types", bytes([19]) + b"2--0401-02 03:04:05.678901+00")
write("pg_types", bytes([30]) + b"{7e48,-Inf,999}")
write("pg_wire", startup + msg("Q", cstr("PREPARE")) + msg("P", cstr("") + cstr("prepare;") + b"\0\0"))

# ---- pg_types: (index into the target's type table, text) ----
for i, t in [(0, "t"), (1, "-32768"), (2, "42"), (3, "9223372036854775807"), (4, "4294967295"), (5, "-12.50"),
             (6, "NaN"), (7, "3.1415927"), (8, "1e+300"), (9, "widget"), (10, "x"), (11, "\\xdeadbeef"),
             (12, '{"a": 1}'), (13, '{"b": [true, null]}'), (14, "2024-02-29"), (14, "infinity"),
             (15, "12:34:56.5"), (16, "12:34:56.123+05:30"), (17, "2024-01-02 03:04:05.678901"),
             (18, "0044-03-15 12:00:00 BC"), (19, "2024-01-02 03:04:05.678901+00"), (19, "2024-03-01 12:34:56+05:30"),
             (20, "1 day 02:03:04"), (21, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), (22, "happy"),
             (23, "{1,2,NULL,4}"), (24, '{"a,b","c\\"d",NULL,"NULL"}'), (25, "{1.5,NaN}"),
             (26, "{2024-01-01,infinity}"), (27, '{"2024-01-02 03:04:05+00"}'), (28, '{"\\\\xdead"}'),
             (29, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"), (30, "{1.5,-Infinity}"), (31, "(1,2)")]:
    write("pg_types", bytes([i]) + t.encode())
