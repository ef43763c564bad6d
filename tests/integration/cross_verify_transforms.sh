#!/usr/bin/env bash
# `verify` and `compare` of a transformed table, MariaDB -> PostgreSQL. The
# table "Order Lines" (a space in its name, a column named select) reaches
# PostgreSQL as "sales lines": renamed key (id -> line_no), a column renamed
# (select -> pick), an excluded column, casts (text_to_int, upper,
# timestamp_to_timestamptz), two computed columns and a row filter. midflight
# reads the source rows by key range, applies the transform, and PostgreSQL
# hashes the result as it hashes the target table. Under writes that move rows
# in and out of the filter, verify must be clean twice; then differences
# planted on the target (a cast value, a computed value, a deleted row, and a
# row the filter drops inserted) must each be named by the target's key,
# `--repair` must fix them through the apply path (the filtered row deleted),
# and `compare` must find the table equal once the writes stop. A table whose
# key column is cast (int_to_text) is verified and repaired too
# (verify_transforms_lib.sh check_cast_key).
source "$(dirname "$0")/mylib.sh"
source "$(dirname "$0")/verify_transforms_lib.sh"
export PGTZ=UTC

start_my_to_pg_servers 17300 17320
sql_pri <<'SQL'
USE shop;
CREATE TABLE `Order Lines` (id BIGINT NOT NULL PRIMARY KEY, `select` VARCHAR(20), qty_text VARCHAR(20),
                            price DECIMAL(10,2), status VARCHAR(20), made DATETIME(3), note TEXT, secret TEXT)
  ENGINE=InnoDB;
INSERT INTO `Order Lines` SELECT seq, CONCAT('p', seq % 13), seq % 50, seq % 100 + 0.25,
                                 IF(seq % 5 = 0, 'cancelled', 'paid'),
                                 TIMESTAMPADD(MICROSECOND, seq * 60500000, '2024-01-01 00:00:00'),
                                 IF(seq % 7 = 0, NULL, CONCAT('n', seq)), CONCAT('s', seq)
FROM seq_1_to_6000;
CREATE TABLE `Key "Codes"` (id INT NOT NULL PRIMARY KEY, v VARCHAR(400)) ENGINE=InnoDB;
INSERT INTO `Key "Codes"` SELECT seq, CONCAT('c', seq) FROM seq_1_to_20000;
CREATE TABLE plain (id INT NOT NULL PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO plain SELECT seq, CONCAT('v', seq) FROM seq_1_to_500;
SQL

vt_transform_spec shop
write_spec vt "chunk_rows: 2000" "partitions: 3" \
  "verify:" "  rows_per_s: 0" "  chunk_rows: 700" \
  "${VT_SPEC[@]}"
T='shop."sales lines"'
CK='shop."key codes"'

run_mf_bg
wait_phase replicating 120
[[ $(sql_dst -c "SELECT count(*) FROM $T") == 4800 ]] || fail "the target does not hold the 4800 rows the filter keeps"

# Writes on ids above 1000 only (the planted rows are below): rows leave and
# enter the filter, values change, rows come and go, keys move.
(
  i=0
  while :; do
    i=$((i + 1))
    "$TESTDB" sql "$PRI_DIR" shop -e "
      UPDATE \`Order Lines\` SET status = IF(status = 'cancelled', 'paid', 'cancelled') WHERE id = 1001 + ($i * 37) % 5000;
      UPDATE \`Order Lines\` SET price = price + 1, qty_text = $i % 40, note = CONCAT('u', $i), \`select\` = 'w'
        WHERE id = 1001 + ($i * 53) % 5000;
      INSERT INTO \`Order Lines\` VALUES (100000 + $i, 's', $i % 9, $i % 7, IF($i % 3 = 0, 'cancelled', 'new'), NOW(3),
        'i', 'x');
      DELETE FROM \`Order Lines\` WHERE id = 1001 + ($i * 89) % 5000;
      UPDATE \`Order Lines\` SET id = id + 1000000 WHERE id = 1001 + ($i * 97) % 5000;
      UPDATE plain SET v = CONCAT(v, '.') WHERE id = 1 + $i % 500;
      UPDATE \`Key \"Codes\"\` SET v = CONCAT(v, '.') WHERE id = 12001 + ($i * 37) % 8000;
      UPDATE \`Key \"Codes\"\` SET id = id + 1000000 WHERE id = 12001 + ($i * 53) % 8000;" >/dev/null 2>&1 || true
    sleep 0.05
  done
) &
EXTRA_PIDS+=($!)
DML_PID=$!
sleep 2

tsql() { if (($#)); then sql_dst -c "$1"; else sql_dst; fi; }
check_verify_transforms
check_cast_key

kill "$DML_PID" 2>/dev/null; wait "$DML_PID" 2>/dev/null || true
sleep 2
check_compare_transforms
stop_mf
log "PASS"
