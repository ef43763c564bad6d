#!/usr/bin/env python3
"""Holds COUNT authenticated client connections to the MySQL proxy open and
idle; the first ACTIVE of them run one statement first (so they hold a server
session too). Writes READY_FILE when all are open, waits for RELEASE_FILE,
then pings every one (COM_PING, no reconnect) and prints one line:
  idle ok: COUNT open, ACTIVE with a server session, COUNT answered a ping"""
import os, sys, time

import pymysql

port, count, active, ready, release = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
conns = []
for i in range(count):
    # autocommit=None: pymysql sends nothing after the login.
    c = pymysql.connect(host="127.0.0.1", port=port, user="app", password="apppw", database="shop", autocommit=None)
    if i < active:
        with c.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    conns.append(c)
open(ready, "w").write("ready\n")
while not os.path.exists(release):
    time.sleep(0.1)
ok = 0
for c in conns:
    try:
        c.ping(reconnect=False)
        ok += 1
    except Exception as e:
        print("ping failed:", e)
print(f"idle ok: {count} open, {active} with a server session, {ok} answered a ping")
sys.exit(0 if ok == count else 1)
