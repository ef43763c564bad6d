#!/usr/bin/env bash
# Across engines, after the write switch: MariaDB -> PostgreSQL with reverse
# replication PostgreSQL -> MariaDB (no proxy: `--external`). sysbench tables
# and a table of awkward types (tinyint(1), bigint unsigned, decimal, double,
# datetime(6), timestamp(6), time, year, bit, enum, set, json, binary, blob,
# latin1 text, a stored generated column) are copied and streamed; verify is
# clean. The writer stops; `switch reads --external` (reverse starts) and
# `switch writes --external`. Inserts (identity values carried from
# AUTO_INCREMENT), updates and deletes made on PostgreSQL reach MariaDB, none
# of the forward flow's own rows comes back, and verify (PostgreSQL the
# reference) is clean. `rollback --external`; writes on MariaDB reach
# PostgreSQL. `complete` drops the reverse slot, publication and origins.
# Row-for-row equality (cross_compare.py, each value normalised as the
# casting table says, and `midflight compare`) at every step.
source "$(dirname "$0")/mylib.sh"
PY=/usr/bin/python3  # Debian's, with python3-pymysql and python3-psycopg2 (scripts/setup)

start_my_to_pg_servers 30600 30620

sysbench_prepare 2 5000
sql_pri <<'SQL'
SET sql_mode = 'NO_ENGINE_SUBSTITUTION';
USE shop;
CREATE TABLE types (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  flag TINYINT(1), tu TINYINT UNSIGNED, bu BIGINT UNSIGNED, d DECIMAL(30,10), db DOUBLE, f FLOAT,
  dtm DATETIME(6), ts TIMESTAMP(6) NULL, tm TIME(6), y YEAR, b BIT(10),
  e ENUM('small','medium','large'), st SET('x','y','z'), j JSON, bn BINARY(4), bl LONGBLOB,
  lat VARCHAR(50) CHARACTER SET latin1, tx TEXT,
  total DECIMAL(31,10) AS (d * 2) STORED
) ENGINE=InnoDB;
INSERT INTO types (flag, tu, bu, d, db, f, dtm, ts, tm, y, b, e, st, j, bn, bl, lat, tx) VALUES
 (1, 255, 18446744073709551615, -12345678901234567890.0123456789, 2.718281828459045, 3.25,
  '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '23:59:59.999999', 2155, b'1010101010',
  'large', 'x,z', '{"a": [1, 2.5, "x"], "c": {"d": "é"}}', X'00FF0A00', X'DEADBEEF00', 'Ærøskøbing €', 'tab\tnl\nq'''),
 (0, 0, 0, 0, 0, 0, '1000-01-01 00:00:00', '1970-01-01 00:00:01', '00:00:00', 1901, b'0', 'small', '', '[]',
  X'00000000', X'', '', ''),
 (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO types (d, tx, bu, ts, j, e) SELECT seq / 7, REPEAT('x', seq % 300), 18446744073709551615 - seq,
  FROM_UNIXTIME(1700000000 + seq), JSON_OBJECT('n', seq), ELT(1 + seq % 3, 'small', 'medium', 'large')
  FROM seq_10_to_600;
SQL

write_spec rev "partitions: 4" "chunk_rows: 2000" "cutover:" "  min_validation_seconds: 0" \
  "  catchup_timeout_seconds: 30"

# equal WHAT [compare]: MariaDB and PostgreSQL hold the same rows (read
# through their own drivers, each value normalised per the casting table;
# with `compare`, also midflight's own canonical comparison, offline).
equal() {
  "$PY" "$(dirname "$0")/cross_compare.py" "127.0.0.1:$myport:mf:mfpass:shop" "$DST" shop >"$WORK/cmp.out" 2>&1 \
    || { cat "$WORK/cmp.out"; fail "$1: MariaDB and PostgreSQL differ"; }
  local also=""
  if [[ ${2:-} == compare ]]; then
    "$MF" compare "$SPEC" >"$WORK/compare.out" 2>&1 || { cat "$WORK/compare.out"; fail "$1: midflight compare"; }
    also="; midflight compare: $(grep -c ' rows  equal$' "$WORK/compare.out") tables equal"
  fi
  log "$1: equal row for row ($(sql_pri -e "SELECT (SELECT COUNT(*) FROM shop.sbtest1) + (SELECT COUNT(*) FROM
    shop.sbtest2) + (SELECT COUNT(*) FROM shop.types)") rows$also)"
}
# verify_clean WHAT: a live `midflight verify` (it waits until the flow from
# the side writes go to has applied that side's snapshot position).

run_mf_bg
wait_phase replicating 90
log "sysbench oltp_write_only at 100 tx/s on MariaDB for 4 s"
start_sysbench oltp_write_only 100
sleep 4
stop_sysbench
sql_pri -e "UPDATE shop.types SET e = 'medium', st = 'y', j = JSON_SET(j, '$.m', 1), d = d + 1 WHERE id = 2"
verify_clean "replicating"
equal "replicating" compare

# Switch: the applications stopped writing to MariaDB (above); they now write to PostgreSQL.
"$MF" switch reads --external "$SPEC" >/dev/null
out=$("$MF" switch writes "$SPEC" 2>&1) && fail "switch writes without a proxy and without --external succeeded"
[[ $out == *"--external"* ]] || fail "unexpected refusal: $out"
[[ $(sql_dst -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'midflight_rev_rev'") == 1 ]] \
  || fail "no reverse slot on PostgreSQL after switch reads --external"
"$MF" switch writes --external "$SPEC" | tee "$WORK/switch.out"
[[ $(status_field phase) == writes_switched ]] || fail "phase is not writes_switched"
binlog_before=$(sql_pri -e "SHOW MASTER STATUS" | cut -f2)
forward_before=$(status_field replication.changes_applied)

# Writes on PostgreSQL: inserts (ids from the identity, restarted at
# MariaDB's next AUTO_INCREMENT by the switch), updates and deletes, with
# awkward values of the casting table.
sql_dst <<'SQL'
SET search_path = shop;
INSERT INTO sbtest1 (k, c, pad) SELECT g, 'pg-' || g, 'pad' FROM generate_series(1, 200) g;
UPDATE sbtest1 SET k = k + 1, c = 'updated on pg' WHERE id % 10 = 3;
DELETE FROM sbtest2 WHERE id % 17 = 0;
INSERT INTO types (flag, tu, bu, d, db, f, dtm, ts, tm, y, b, e, st, j, bn, bl, lat, tx, total) VALUES
 (1, 7, 18446744073709551614, 0.0000000001, 1e-300, -1.5, '2024-02-29 12:00:00.000001', '2024-06-30 23:59:59.5+02',
  '12:34:56.789', 2024, B'0000000011', 'medium', 'y,z', '{"z": 1, "a": "ü"}', '\x01020304', '\x00ff', 'façade €',
  E'multi\nline', 0.0000000002),
 (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE types SET e = 'small', st = 'x,y,z', j = '{"k": [true, null]}', lat = 'Ærø', b = B'1111111111',
  ts = '2001-02-03 04:05:06.7+00', bu = 42, d = d * 3, total = d * 6 WHERE id IN (1, 20, 30);
UPDATE types SET tx = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g) WHERE id = 40;
UPDATE types SET flag = 0 WHERE id = 40;
DELETE FROM types WHERE id IN (2, 50, 51);
SQL
log "written on PostgreSQL: 200 inserts, $(sql_dst -c "SELECT count(*) FROM shop.sbtest1 WHERE c = 'updated on pg'") updates of sbtest1, deletes; typed rows"
verify_clean "writes on PostgreSQL"
equal "writes on PostgreSQL"
new_id=$(sql_pri -e "SELECT id FROM shop.types WHERE lat = 'façade €'")
[[ -n $new_id ]] || fail "the row inserted on PostgreSQL is not on MariaDB"
typed="SET time_zone = '+00:00'; SELECT CONCAT_WS('|', e, st, HEX(bn), b + 0, ts, total, bu) FROM shop.types WHERE id = $new_id"
[[ $(sql_pri -e "$typed") == "medium|y,z|01020304|3|2024-06-30 21:59:59.500000|0.0000000002|18446744073709551614" ]] \
  || fail "typed row on MariaDB: $(sql_pri -e "$typed")"
[[ $(sql_pri -e "SELECT LENGTH(tx) FROM shop.types WHERE id = 40") == 12800 ]] \
  || fail "the TOASTed text left unchanged by an update on PostgreSQL did not survive on MariaDB"
# Nothing looped: the forward flow applied nothing of what reverse wrote (skip_replication).
[[ $(status_field replication.changes_applied) == "$forward_before" ]] \
  || fail "the forward flow applied $(( $(status_field replication.changes_applied) - forward_before )) change(s) after the switch: reverse writes looped"
log "reverse: $(status_field reverse.changes_applied) changes applied to MariaDB; forward applied none of them back"
ai=$(sql_pri -e "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'sbtest1'")
max=$(sql_pri -e "SELECT MAX(id) FROM shop.sbtest1")
((ai > max)) || fail "MariaDB AUTO_INCREMENT $ai is not above the highest id $max written by reverse replication"

# Rollback: writes go back to MariaDB; what PostgreSQL committed is there first.
sql_dst -c "UPDATE shop.sbtest1 SET c = 'last on pg' WHERE id = 1"
"$MF" rollback --external "$SPEC" | tee "$WORK/rollback.out"
[[ $(status_field phase) == reads_switched ]] || fail "phase is not reads_switched after rollback"
[[ $(sql_pri -e "SELECT c FROM shop.sbtest1 WHERE id = 1") == "last on pg" ]] || fail "the last write on PostgreSQL was lost"
sql_pri <<'SQL'
USE shop;
INSERT INTO sbtest2 (k, c, pad) SELECT seq, CONCAT('my-', seq), 'pad' FROM seq_1_to_100;
UPDATE sbtest1 SET c = 'back on mariadb' WHERE id % 10 = 7;
DELETE FROM sbtest1 WHERE id % 23 = 0;
INSERT INTO types (flag, bu, e, st, j, lat, b, ts, d) VALUES (1, 18446744073709551615, 'large', 'x', '{"r": 1}', 'über', b'101', '2030-01-01 00:00:00', 5.5);
UPDATE types SET e = 'large', j = '{"after": "rollback"}' WHERE id = 1;
DELETE FROM types WHERE id = 60;
SQL
verify_clean "writes on MariaDB after the rollback"
equal "writes on MariaDB after the rollback"

# Switch again, then complete: the reverse slot, publication and origins go.
"$MF" switch writes --external "$SPEC" >/dev/null
sql_dst -c "INSERT INTO shop.sbtest1 (k, c, pad) VALUES (1, 'final', 'x')"
verify_clean "switched again"
"$MF" complete "$SPEC" | tee "$WORK/complete.out"
[[ $(status_field phase) == completed ]] || fail "phase is not completed"
[[ $(sql_dst -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'midflight_rev_rev'") == 0 ]] \
  || fail "the reverse slot is still on PostgreSQL"
[[ $(sql_dst -c "SELECT count(*) FROM pg_publication WHERE pubname = 'midflight_rev_rev'") == 0 ]] \
  || fail "the reverse publication is still on PostgreSQL"
[[ $(sql_dst -c "SELECT count(*) FROM pg_replication_origin WHERE roname LIKE 'midflight\_rev\_%'") == 0 ]] \
  || fail "replication origins are still on PostgreSQL"
[[ $(sql_pri -e "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'midflight'") == 0 ]] \
  || fail "the reverse checkpoints are still on MariaDB"
equal "completed" compare
kill -TERM "$MF_PID"; wait "$MF_PID" 2>/dev/null || true; MF_PID=
log "ok"
