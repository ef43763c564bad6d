#!/usr/bin/env bash
# Every MariaDB column type, the JSON document pattern (a JSON column with
# stored and virtual generated columns derived from it, indexed), rows larger
# than a binlog event, a truncate, a key change and a DDL pause, through copy
# and stream, read straight from a primary (no replica). Also: a keyless table
# is refused with the reason, and an oversized row stops the copy naming its
# table and key, until the limit is raised.
source "$(dirname "$0")/mylib.sh"

port=26640
while ! port_free "$port" || ! port_free "$((port + 1))"; do port=$((port + 2)); done
PRI_DIR=$WORK/src DST_DIR=$WORK/dst
"$TESTDB" start mariadb "$PRI_DIR" "$port"
"$TESTDB" start mariadb "$DST_DIR" "$((port + 1))"
SRC=$("$TESTDB" uri "$PRI_DIR" shop)
DST=$("$TESTDB" uri "$DST_DIR" shop_new)
sql_dst -e "CREATE DATABASE shop_new"
sql_pri <<'SQL'
SET sql_mode = "NO_ENGINE_SUBSTITUTION";
CREATE DATABASE shop;
USE shop;
CREATE TABLE types (
  id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT UNSIGNED, ii INT UNSIGNED,
  bi BIGINT, bu BIGINT UNSIGNED, d DECIMAL(65,30), d2 DECIMAL(10,2), f FLOAT, db DOUBLE,
  dt DATE, tm TIME(6), tm0 TIME, dtm DATETIME(6), dtm0 DATETIME, ts TIMESTAMP(3) NULL, y YEAR,
  c CHAR(10), vc VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci, lat VARCHAR(50) CHARACTER SET latin1,
  bn BINARY(4), vb VARBINARY(100), tx TEXT, bl LONGBLOB, e ENUM('small','medium','large'), st SET('x','y','z'),
  b BIT(10), b64 BIT(64), j JSON, g GEOMETRY NULL, u UUID NULL
) ENGINE=InnoDB;
INSERT INTO types VALUES
 (1, -128, 255, -32768, 16777215, 4294967295, -9223372036854775808, 18446744073709551615,
  '-12345678901234567890123456789012345.123456789012345678901234567890', -0.05, 3.1415927, 2.718281828459045,
  '2024-02-29', '-838:59:59.000000', '12:00:00', '9999-12-31 23:59:59.999999', '1000-01-01 00:00:00',
  '2038-01-19 03:14:07.999', 2155, 'ab', 'naïve café ☕ 𝄞', 'Ærøskøbing', X'00FF0A0D', X'000102', 'tab\tnl\nbs\\q''', X'DEADBEEF',
  'large', 'x,z', b'1010101010', b'1111111111111111111111111111111111111111111111111111111111111111',
  '{"a": [1, 2.5, "x"], "b": null, "c": {"d": "é"}}', ST_GeomFromText('POINT(1 2)'), 'ac3e4b5a-8f1e-4c2a-9d3b-123456789abc'),
 (2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '0000-00-00', '00:00:00', '00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00',
  NULL, 0, '', '', '', X'00000000', X'', '', X'', 'small', '', b'0', b'0', '[]', NULL, NULL),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO types (id, d2, vc, tx) SELECT seq, seq / 7, CONCAT('row ', seq), REPEAT('x', seq % 300) FROM seq_10_to_3000;
-- The JSON document pattern: the document is the row; generated columns derived from it are indexed.
CREATE TABLE docs (
  region CHAR(2) NOT NULL,
  id BIGINT NOT NULL AUTO_INCREMENT,
  doc JSON NOT NULL,
  tenant VARCHAR(64) AS (JSON_VALUE(doc, '$.tenant')) STORED,
  kind VARCHAR(32) AS (JSON_VALUE(doc, '$.kind')) VIRTUAL,
  total DECIMAL(12,2) AS (JSON_VALUE(doc, '$.total')) STORED,
  PRIMARY KEY (id, region),
  UNIQUE KEY k_tenant_ref (tenant, id),
  KEY k_kind (kind),
  KEY k_total (total)
) ENGINE=InnoDB;
INSERT INTO docs (region, doc) SELECT IF(seq % 2, 'eu', 'us'),
  JSON_OBJECT('tenant', CONCAT('t', seq % 13), 'kind', ELT(1 + seq % 3, 'order', 'refund', 'quote'),
              'total', seq * 1.25, 'lines', JSON_ARRAY(seq, seq + 1)) FROM seq_1_to_4000;
CREATE TABLE big (id INT PRIMARY KEY, payload LONGBLOB) ENGINE=InnoDB;
INSERT INTO big VALUES (1, REPEAT('a', 100)), (2, REPEAT(X'00FF', 1000000));
CREATE TABLE audit_log (at DATETIME, msg TEXT) ENGINE=InnoDB;
-- BINARY(n) keys ending in zero bytes, which the binlog drops.
CREATE TABLE `bin keys` (k BINARY(4) PRIMARY KEY, v INT) ENGINE=InnoDB;
INSERT INTO `bin keys` VALUES (X'61620000', 1), (X'00000000', 2), (X'01020304', 3), (X'7A000000', 4), (X'41000000', 5);
SQL

write_spec ty
"$MF" run "$SPEC" >"$WORK/run.refused.log" 2>&1 && fail "a keyless table must be refused"
grep -q "table shop.audit_log has no primary key and no unique index on NOT NULL columns" "$WORK/run.refused.log" \
  || { cat "$WORK/run.refused.log"; fail "keyless refusal message"; }
log "refused: $(grep -o 'table shop.audit_log has no primary key[^:]*' "$WORK/run.refused.log")"
rm -rf "$WORK/state-ty"

write_spec ty "exclude: [audit_log]" "max_row_bytes: 1000000" "chunk_rows: 1000"
"$MF" run "$SPEC" >"$WORK/run.oversized.log" 2>&1 && fail "an oversized row must stop the copy"
grep -q "table shop.big row (id)=(2) is 2000001 bytes, over max_row_bytes 1000000" "$WORK/run.oversized.log" \
  || { cat "$WORK/run.oversized.log"; fail "oversized row message"; }
log "stopped: $(grep -o 'table shop.big row (id)=(2) is [^;]*' "$WORK/run.oversized.log")"

write_spec ty "exclude: [audit_log]" "chunk_rows: 1000"
run_mf_bg
wait_phase replicating 60
log "streaming every type, JSON documents, a 20 MB row, a key change and a truncate"
sql_pri shop <<'SQL'
UPDATE types SET ti = 127, tu = 0, f = -1.5e-30, db = 1e300, dtm = '2000-01-01 00:00:00.000001', ts = '1970-01-01 00:00:01',
  tm = '838:59:59.999999', vc = 'ünïcødé', lat = 'façade', e = 'medium', st = 'y', b = b'1', j = '{"k": "v2"}',
  g = ST_GeomFromText('LINESTRING(0 0, 1 1, 2 0)'), u = UUID() WHERE id = 1;
UPDATE types SET d = d + 1, d2 = -d2 WHERE id BETWEEN 10 AND 2000;
DELETE FROM types WHERE id % 5 = 0;
UPDATE types SET id = id + 100000 WHERE id = 1;
INSERT INTO types (id, tx, bl, j) VALUES (5000, REPEAT('é', 10000), REPEAT(X'01', 70000), '{"big": true}');
UPDATE docs SET doc = JSON_SET(doc, '$.total', 99.5, '$.kind', 'void') WHERE id % 7 = 0;
UPDATE docs SET doc = JSON_SET(doc, '$.tenant', 'moved') WHERE id = 3;
DELETE FROM docs WHERE id % 11 = 0;
INSERT INTO docs (region, doc) VALUES ('eu', '{"tenant": "new", "kind": "order", "total": 1}');
UPDATE docs SET region = 'ap' WHERE id = 4;
INSERT INTO big VALUES (3, REPEAT(X'AB', 20000000));
UPDATE big SET payload = CONCAT(payload, 'tail') WHERE id = 2;
TRUNCATE TABLE big;
INSERT INTO big VALUES (10, 'after truncate'), (11, REPEAT('z', 300000));
UPDATE `bin keys` SET v = v + 10 WHERE k = X'61620000';
DELETE FROM `bin keys` WHERE k = X'00000000';
UPDATE `bin keys` SET k = X'7A7A0000' WHERE k = X'7A000000';
INSERT INTO `bin keys` VALUES (X'42000000', 6);
DELETE FROM `bin keys` WHERE k = X'41000000';
SQL
wait_my_caught_up_direct() {
  local target i applied
  target=$(my_pos "$PRI_DIR")
  for ((i = 0; i < 480; i++)); do
    applied=$(status_field replication.restart_position)
    [[ -n $applied && $applied -ge $target ]] && { log "caught up: applied $(status_field replication.applied_position)"; return 0; }
    sleep 0.25
  done
  fail "not caught up with $target (applied $applied)"
}
wait_my_caught_up_direct
assert_equal
[[ $(sql_dst -e "SELECT LENGTH(payload) FROM shop_new.big WHERE id = 11") == 300000 ]] || fail "big row"
bin_keys=$(sql_dst -e "SELECT GROUP_CONCAT(HEX(k), '=', v ORDER BY k) FROM shop_new.\`bin keys\`")
[[ $bin_keys == "01020304=3,42000000=6,61620000=11,7A7A0000=4" ]] || fail "BINARY(4) keys ending in zero bytes: $bin_keys"
log "BINARY(4) keys ending in zero bytes: $bin_keys"

log "DDL on the source: midflight must stop and name the statement"
sql_pri shop -e "ALTER TABLE docs ADD COLUMN note VARCHAR(20) DEFAULT 'n'; UPDATE docs SET note = 'x' WHERE id = 1"
for ((i = 0; i < 120; i++)); do kill -0 "$MF_PID" 2>/dev/null || break; sleep 0.25; done
kill -0 "$MF_PID" 2>/dev/null && fail "midflight did not stop at the DDL"
wait "$MF_PID" || true
MF_PID=
grep -q "schema change on the source at binlog.*ALTER TABLE docs ADD COLUMN note VARCHAR(20) DEFAULT 'n'.* changes shop.docs" \
  "$WORK/run.$RUN_N.log" || { tail -5 "$WORK/run.$RUN_N.log"; fail "DDL message"; }
log "stopped: $(grep -o 'schema change on the source.*' "$WORK/run.$RUN_N.log" | cut -c1-160)"
sql_dst -e "ALTER TABLE shop_new.docs ADD COLUMN note VARCHAR(20) DEFAULT 'n'"
log "the operator applied the same ALTER on the target; running again"
run_mf_bg
sql_pri shop -e "UPDATE docs SET note = 'y' WHERE id = 2; INSERT INTO docs (region, doc, note) VALUES ('eu', '{\"tenant\": \"z\"}', 'after')"
wait_my_caught_up_direct
assert_equal
stop_mf
log "ok"
