#!/usr/bin/env python3
"""Logs COUNT PostgreSQL clients in to HOST:PORT (startup, SCRAM-SHA-256 or
MD5, up to ReadyForQuery) over raw sockets, a few at a time, and keeps them
open and idle. Writes READY_FILE when all are in, waits for RELEASE_FILE,
then sends one query on every connection and checks each answers, and prints
one JSON line: {"connected": N, "answered": K, "connect_s": T}.
Usage: idle_clients.py HOST PORT USER PASSWORD DATABASE COUNT READY_FILE RELEASE_FILE"""
import base64, concurrent.futures, hashlib, hmac, json, os, socket, struct, sys, time

host, port, user, password, database = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
count, ready_file, release_file = int(sys.argv[6]), sys.argv[7], sys.argv[8]


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise IOError("connection closed by the proxy")
        buf += chunk
    return buf


def recv_msg(s):
    head = recv_exact(s, 5)
    length = struct.unpack("!i", head[1:])[0]
    return head[:1], recv_exact(s, length - 4)


def send_msg(s, kind, body):
    s.sendall(kind + struct.pack("!i", len(body) + 4) + body)


_salted = {}


def salted_password(salt, iterations):
    # The proxy keeps one salt per user (as PostgreSQL does): derived once
    # here, so the test measures the proxy rather than this script.
    key = (salt, iterations)
    if key not in _salted:
        _salted[key] = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), iterations)
    return _salted[key]


def login():
    s = socket.create_connection((host, port), timeout=60)
    params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0application_name\0idle\0\0"
    s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    nonce, first_bare = None, None
    while True:
        kind, body = recv_msg(s)
        if kind == b"E":
            raise IOError("login refused: " + body.decode(errors="replace"))
        if kind == b"Z":
            return s
        if kind != b"R":
            continue
        code = struct.unpack("!i", body[:4])[0]
        if code == 5:  # MD5
            inner = hashlib.md5((password + user).encode()).hexdigest()
            outer = "md5" + hashlib.md5(inner.encode() + body[4:8]).hexdigest()
            send_msg(s, b"p", outer.encode() + b"\0")
        elif code == 10:  # SASL
            nonce = base64.b64encode(os.urandom(18)).decode()
            first_bare = "n=,r=" + nonce
            first = ("n,," + first_bare).encode()
            send_msg(s, b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
        elif code == 11:  # SASLContinue
            server_first = body[4:].decode()
            attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
            salted = salted_password(attrs["s"], int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
            stored = hashlib.sha256(client_key).digest()
            final_bare = "c=biws,r=" + attrs["r"]
            auth_message = ",".join([first_bare, server_first, final_bare]).encode()
            signature = hmac.new(stored, auth_message, hashlib.sha256).digest()
            proof = bytes(a ^ b for a, b in zip(client_key, signature))
            send_msg(s, b"p", (final_bare + ",p=" + base64.b64encode(proof).decode()).encode())
        elif code in (0, 12):
            continue
        else:
            raise IOError("unexpected authentication request %d" % code)


t0 = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    socks = list(pool.map(lambda _: login(), range(count)))
connect_s = time.monotonic() - t0
open(ready_file, "w").write("ready\n")
while not os.path.exists(release_file):
    time.sleep(0.2)

answered = 0
for s in socks:
    send_msg(s, b"Q", b"SELECT 1\0")
for s in socks:
    while True:
        kind, body = recv_msg(s)
        if kind == b"E":
            raise IOError("query failed: " + body.decode(errors="replace"))
        if kind == b"Z":
            answered += 1
            break
    send_msg(s, b"X", b"")
    s.close()
print(json.dumps({"connected": len(socks), "answered": answered, "connect_s": round(connect_s, 1)}))
