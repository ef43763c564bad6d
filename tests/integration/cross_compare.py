#!/usr/bin/python3
"""Compares a MySQL/MariaDB database with its PostgreSQL copy row by row,
normalising each value as midflight's casting table says
(src/engines/README.md, "Casting MySQL to PostgreSQL" and "Casting
PostgreSQL to MySQL"): both sides are read through their own drivers
(PyMySQL, psycopg2), every table of the source in key order. Prints one line
per table and each difference by key; exits 1 when anything differs.

usage: cross_compare.py MYSQL_HOST:PORT:USER:PASSWORD:DB POSTGRES_DSN PG_SCHEMA
       cross_compare.py --pg-to-my POSTGRES_DSN PG_SCHEMA MYSQL_HOST:PORT:USER:PASSWORD:DB [TABLE...]
         (PostgreSQL the source: its tables, or the ones named, against their MySQL twins)
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


PG_TO_MY = sys.argv[1] == "--pg-to-my"
if PG_TO_MY:
    pg_dsn, schema, my_spec, only = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
else:
    my_spec, pg_dsn, schema, only = sys.argv[1], sys.argv[2], sys.argv[3], []
my_host, my_port, my_user, my_pw, my_db = my_spec.split(":")
pg = psycopg2.connect(pg_dsn)
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


def pg_columns(table):
    """(name, kind, detail) of the PostgreSQL table's columns that its MySQL twin has, and its key."""
    with my.cursor() as c:
        c.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                  "ORDER BY ORDINAL_POSITION", (my_db, table))
        on_my = [r[0] for r in c.fetchall()]
    with pg.cursor() as c:
        c.execute("SELECT a.attname, format_type(coalesce(nullif(t.typbasetype, 0), a.atttypid), NULL), "
                  "coalesce(bt.typtype, t.typtype), coalesce(bt.typcategory, t.typcategory), "
                  "format_type(a.atttypid, a.atttypmod) "
                  "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                  "LEFT JOIN pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd' "
                  "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                  (pq(schema) + "." + pq(table),))
        cols = [(n, t, tt, cat, full) for n, t, tt, cat, full in c.fetchall() if n in on_my]
        c.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                  "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                  (pq(schema) + "." + pq(table),))
        key = [r[0] for r in c.fetchall()]
    return cols, key


def pg_select(col):
    """How each side reads a PostgreSQL-typed column: (PostgreSQL expression, MySQL expression)."""
    name, base, typtype, cat, full = col
    p, m = pq(name), mq(name)
    if base == "real":
        return p + "::float8", "CAST(%s AS DOUBLE)" % m
    if cat == "A":
        return "array_to_json(%s)::text" % p, m
    if base in ("interval", "bit varying", "uuid", "json", "jsonb") or typtype == "e":  # (inet: its output form, not ::text)
        return p + "::text", m
    if base == "bit":
        return p + "::text", "BIN(%s)" % m
    if base.startswith("time without"):  # 24:00:00 is a time in both, not in Python
        return p + "::text", "CAST(%s AS CHAR)" % m
    return p, m


def pg_norm(col, v, side):
    """One value of a PostgreSQL-typed column in a form both sides agree on."""
    name, base, typtype, cat, full = col
    if v is None:
        return None
    if cat == "A" or base in ("json", "jsonb"):
        return json.loads(v)
    if base == "real":
        return struct.unpack("f", struct.pack("f", float(v)))[0]
    if base == "double precision":
        return float(v)
    if base == "boolean":
        return bool(int(v)) if side == "my" else v
    if base == "character":
        return v.rstrip(" ")  # MySQL's CHAR comes back without the padding
    if base == "bit":
        n = int(full[4:-1])
        return v.zfill(n)  # BIN() drops leading zeros
    if base == "timestamp with time zone" and isinstance(v, datetime.datetime) and v.tzinfo is not None:
        return v.astimezone(datetime.timezone.utc).replace(tzinfo=None).isoformat()
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if base.startswith("time without"):
        h, mi, sec = v.split(":")
        return (int(h) * 60 + int(mi)) * 60 + decimal.Decimal(sec)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    return v


def compare_pg_to_my():
    bad = 0
    with pg.cursor() as c:
        c.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1", (schema,))
        tables = [r[0] for r in c.fetchall() if not only or r[0] in only]
    for table in tables:
        cols, key = pg_columns(table)
        sel = [pg_select(col) for col in cols]
        with pg.cursor() as c:
            c.execute("SELECT %s FROM %s.%s" % (", ".join(p for p, _ in sel), pq(schema), pq(table)))
            prows = c.fetchall()
        with my.cursor() as c:
            c.execute("SELECT %s FROM %s" % (", ".join(m for _, m in sel), mq(table)))
            mrows = c.fetchall()
        names = [col[0] for col in cols]
        def keyed(rows, side):
            out = {}
            for r in rows:
                row = tuple(pg_norm(col, v, side) for col, v in zip(cols, r))
                out[tuple(repr(row[names.index(k)]) for k in key)] = row
            return out
        pnorm, mnorm = keyed(prows, "pg"), keyed(mrows, "my")
        diffs = []
        for k in sorted(set(mnorm) | set(pnorm)):
            a, b = pnorm.get(k), mnorm.get(k)
            if a == b:
                continue
            if a is None or b is None:
                diffs.append("key %s: %s" % (k, "missing on MySQL" if b is None else "extra on MySQL"))
                continue
            for n, x, y in zip(names, a, b):
                if x != y:
                    diffs.append("key %s column %s: PostgreSQL %r, MySQL %r" % (k, n, x, y))
        print("  %-18s PostgreSQL %6d rows, MySQL %6d rows: %s" % (
            table, len(prows), len(mrows), "equal" if not diffs else "%d DIFFERENCES" % len(diffs)))
        for d in diffs[:10]:
            print("    " + d)
        bad += len(diffs)
    return bad


if PG_TO_MY:
    sys.exit(1 if compare_pg_to_my() else 0)

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
