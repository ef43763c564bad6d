#!/usr/bin/python3
"""Compares a MySQL/MariaDB database with its PostgreSQL copy row by row,
normalising each value as midflight's casting table says
(src/engines/README.md, "Casting MySQL to PostgreSQL"): both sides are read
through their own drivers (PyMySQL, psycopg2), every table of the MySQL
database in key order. Prints one line per table and each difference by key;
exits 1 when anything differs.

usage: cross_compare.py MYSQL_HOST:PORT:USER:PASSWORD:DB POSTGRES_DSN PG_SCHEMA
"""
import datetime
import decimal
import json
import struct
import sys

import psycopg2
import pymysql

def mq(name):  # a MySQL identifier, quoted
    return "`" + name.replace("`", "``") + "`"


def pq(name):  # a PostgreSQL identifier, quoted
    return '"' + name.replace('"', '""') + '"'


my_host, my_port, my_user, my_pw, my_db = sys.argv[1].split(":")
pg = psycopg2.connect(sys.argv[2])
schema = sys.argv[3]
my = pymysql.connect(host=my_host, port=int(my_port), user=my_user, password=my_pw, database=my_db,
                     charset="utf8mb4", init_command="SET time_zone = '+00:00'")


def columns(table):
    with my.cursor() as c:
        c.execute("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
                  "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (my_db, table))
        cols = list(c.fetchall())
        c.execute("SELECT CONSTRAINT_NAME FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s "
                  "AND TABLE_NAME = %s AND CHECK_CLAUSE LIKE 'json\\\\_valid(%%'", (my_db, table))
        json_cols = {r[0] for r in c.fetchall()}
        c.execute("SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                  "AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX", (my_db, table))
        key = [r[0] for r in c.fetchall()]
    return [(n, "json" if n in json_cols else t, ct) for n, t, ct in cols], key


def norm(kind, ctype, v, side):
    """One value in a form both sides agree on."""
    if v is None:
        return None
    if kind in ("date", "datetime", "timestamp") and isinstance(v, str):
        return None  # a MySQL zero date (PyMySQL gives its text): NULL on the target (casting.zero_dates: null)
    if kind == "timestamp":
        if isinstance(v, datetime.datetime) and v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.isoformat()
    if kind in ("date", "datetime"):
        return v.isoformat()
    if kind == "time":
        if isinstance(v, datetime.time):
            v = datetime.timedelta(hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond)
        return v.total_seconds()
    if kind == "float":
        return struct.unpack("f", struct.pack("f", float(v)))[0]
    if kind == "double":
        return float(v)
    if kind == "decimal":
        return str(v)
    if kind in ("tinyint", "smallint", "mediumint", "int", "bigint", "year"):
        return int(v)
    if kind == "bit":
        n = int(ctype[4:-1])
        if side == "my":
            return format(int.from_bytes(v, "big"), "0%db" % n)
        return v
    if kind == "set":
        return ",".join(sorted(v)) if isinstance(v, set) else ",".join(sorted(x for x in v.split(",") if x))
    if kind == "json":
        return json.loads(v) if isinstance(v, str) else v
    if kind in ("geometry", "point", "linestring", "polygon"):
        return bytes(v)[4:] if side == "my" else bytes(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    return v


def select(kind, name):
    if kind == "float":
        return "CAST(%s AS DOUBLE)" % mq(name)
    return mq(name)


bad = 0
with my.cursor() as c:
    c.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' "
              "ORDER BY 1", (my_db,))
    tables = [r[0] for r in c.fetchall()]
for table in tables:
    cols, key = columns(table)
    order = ", ".join(mq(k) for k in key)
    with my.cursor() as c:
        c.execute("SELECT %s FROM %s ORDER BY %s" % (", ".join(select(t, n) for n, t, _ in cols), mq(table), order))
        mrows = c.fetchall()
    with pg.cursor() as c:
        c.execute('SELECT %s FROM %s.%s ORDER BY %s' % (", ".join(pq(n) for n, _, _ in cols), pq(schema), pq(table),
                                                            ", ".join(pq(k) for k in key)))
        prows = c.fetchall()
    mnorm = {}
    for r in mrows:
        row = tuple(norm(t, ct, v, "my") for (n, t, ct), v in zip(cols, r))
        mnorm[tuple(row[[n for n, _, _ in cols].index(k)] for k in key)] = row
    pnorm = {}
    for r in prows:
        row = tuple(norm(t, ct, v, "pg") for (n, t, ct), v in zip(cols, r))
        pnorm[tuple(row[[n for n, _, _ in cols].index(k)] for k in key)] = row
    diffs = []
    for k in sorted(set(mnorm) | set(pnorm), key=repr):
        a, b = mnorm.get(k), pnorm.get(k)
        if a == b:
            continue
        if a is None or b is None:
            diffs.append("key %s: %s" % (k, "missing on PostgreSQL" if b is None else "extra on PostgreSQL"))
            continue
        for (n, _, _), x, y in zip(cols, a, b):
            if x != y:
                diffs.append("key %s column %s: MySQL %r, PostgreSQL %r" % (k, n, x, y))
    print("  %-12s MySQL %6d rows, PostgreSQL %6d rows: %s" % (table, len(mrows), len(prows),
                                                               "equal" if not diffs else "%d DIFFERENCES" % len(diffs)))
    for d in diffs[:10]:
        print("    " + d)
    bad += len(diffs)
sys.exit(1 if bad else 0)
