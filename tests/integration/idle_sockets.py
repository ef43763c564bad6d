#!/usr/bin/env python3
"""Opens COUNT TCP connections to HOST:PORT that never send a byte, and one
"slowloris" that trickles a startup packet one byte every half second; writes
READY_FILE once they are all open, then watches when the server closes each
one (for up to WATCH seconds) and prints a summary as one JSON line:
  {"opened": N, "closed": K, "closed_max_s": T, "slowloris_closed_s": S, "slowloris_sent": B}
closed_max_s: the longest time from open to close among the closed ones."""
import json, select, socket, struct, sys, time

host, port, count, ready_file, watch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
opened, socks = {}, []
for _ in range(count):
    s = socket.create_connection((host, port))
    s.setblocking(False)
    socks.append(s)
    opened[s.fileno()] = time.monotonic()
slow = socket.create_connection((host, port))
slow_opened = time.monotonic()
params = b"user\0midflight\0database\0postgres\0\0"
startup = struct.pack("!ii", 8 + len(params), 196608) + params
open(ready_file, "w").write("ready\n")

closed, closed_max, slow_closed, sent = 0, 0.0, None, 0
pending = {s.fileno(): s for s in socks}
poller = select.poll()
for fd in pending:
    poller.register(fd, select.POLLIN)
poller.register(slow.fileno(), select.POLLIN)
deadline = time.monotonic() + watch
next_byte = time.monotonic()
while time.monotonic() < deadline and (pending or slow_closed is None):
    now = time.monotonic()
    if slow_closed is None and now >= next_byte:
        try:
            slow.send(startup[sent % len(startup) : sent % len(startup) + 1])
            sent += 1
        except OSError:
            slow_closed = now - slow_opened
            poller.unregister(slow.fileno())
        next_byte = now + 0.5
    for fd, _ in poller.poll(100):
        if fd == slow.fileno():
            try:
                data = slow.recv(4096)
            except OSError:
                data = b""
            if data == b"" or data[:1] == b"E":
                slow_closed = time.monotonic() - slow_opened
                poller.unregister(fd)
            continue
        s = pending[fd]
        try:
            data = s.recv(4096)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if data == b"" or data[:1] == b"E":  # closed, or an error before the close
            closed += 1
            closed_max = max(closed_max, time.monotonic() - opened[fd])
            poller.unregister(fd)
            del pending[fd]
            s.close()
print(json.dumps({"opened": count, "closed": closed, "closed_max_s": round(closed_max, 2),
                  "slowloris_closed_s": None if slow_closed is None else round(slow_closed, 2),
                  "slowloris_sent": sent}))
