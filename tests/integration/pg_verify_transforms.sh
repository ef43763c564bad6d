#!/usr/bin/env bash
# `verify` and `compare` of a transformed table, PostgreSQL -> PostgreSQL
# (cross_verify_transforms.sh is MariaDB -> PostgreSQL). The table
# "Order Lines" (a space in its name, a column named select) reaches the
# target as "sales lines": renamed key (id -> line_no), a column renamed
# (select -> pick), an excluded column, casts (text_to_int, upper,
# timestamp_to_timestamptz), two computed columns and a row filter. midflight
# reads the source rows by key range, applies the transform, and the target
# hashes the result as it hashes its table. Under pgbench writes that move
# rows in and out of the filter, verify must be clean twice; then differences
# planted on the target (a cast value, a computed value, a deleted row, and a
# row the filter drops inserted) must each be named by the target's key,
# `--repair` must fix them through the apply path (the filtered row deleted),
# and `compare` must find the table equal once the writes stop, and not equal
# after one more planted change. A table whose key column is cast
# (int_to_text) is verified too, its keys mapped through the cast
# (verify_transforms_lib.sh check_cast_key).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/verify_transforms_lib.sh"
export PGTZ=UTC

start_servers 17350
vt_pg_source_tables

vt_transform_spec public
write_spec vt "chunk_rows: 2000" "partitions: 3" \
  "verify:" "  rows_per_s: 0" "  chunk_rows: 700" \
  "${VT_SPEC[@]}"
T='public."sales lines"'
CK='public."key codes"'

run_mf_bg
wait_phase replicating 120
[[ $(sql_dst -c "SELECT count(*) FROM $T") == 4800 ]] || fail "the target does not hold the 4800 rows the filter keeps"

# Writes on ids above 1000 only (the planted rows are below): rows leave and
# enter the filter, values change, rows come and go, keys move.
cat >"$WORK/writes.sql" <<'SQL'
\set i random(1001, 6000)
\set j random(1001, 6000)
UPDATE "Order Lines" SET status = CASE WHEN status = 'cancelled' THEN 'paid' ELSE 'cancelled' END WHERE id = :i;
UPDATE "Order Lines" SET price = price + 1, qty_text = (:j % 40)::text, note = 'u' || :j, "select" = 'w' WHERE id = :j;
INSERT INTO "Order Lines" SELECT nextval('ids'), 's', (:i % 9)::text, :i % 7,
                                 CASE WHEN :i % 3 = 0 THEN 'cancelled' ELSE 'new' END, now(), 'i', 'x';
DELETE FROM "Order Lines" WHERE id = :i + 11 AND id < 6000;
UPDATE "Order Lines" SET id = id + 1000000 WHERE id = :j + 17 AND id < 6000;
UPDATE plain SET v = v || '.' WHERE id = :i % 500 + 1;
UPDATE "Key ""Codes""" SET v = v || '.' WHERE id = :i + 11000;
UPDATE "Key ""Codes""" SET id = id + 1000000 WHERE id = :j + 11017 AND id < 20000;
SQL
pgbench -n -c 2 -j 2 -T 600 -R 100 -f "$WORK/writes.sql" "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!
EXTRA_PIDS+=($!)
sleep 2

tsql() { if (($#)); then sql_dst -c "$1"; else sql_dst; fi; }
check_verify_transforms
check_cast_key

stop_load
wait_caught_up 60
check_compare_transforms
stop_mf
log "PASS"
