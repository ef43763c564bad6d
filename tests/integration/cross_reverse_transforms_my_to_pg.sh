#!/usr/bin/env bash
# `verify` of transformed tables after the write switch, MariaDB ->
# PostgreSQL (cross_reverse_transforms.sh is PostgreSQL -> MariaDB,
# pg_reverse_transforms.sh PostgreSQL -> PostgreSQL). `Order Lines` reaches
# PostgreSQL as shop.lines (a column named like an SQL word renamed,
# text_to_int and timestamp_to_timestamptz casts, an excluded column, a
# computed and a constant column) and `Key "Codes"` as shop."key codes", its
# key column cast int_to_text. After `switch writes --external`, PostgreSQL
# is the reference: the application's writes on it reach MariaDB through the
# inverse transforms, and verify is clean, both tables verified (MariaDB's
# rows cast and transformed forward, hashed by PostgreSQL; the computed
# columns, which the reverse flow drops, not compared; the cast key's table
# in chunks of PostgreSQL's text keys, read on MariaDB by its integers'
# text). Values changed on MariaDB behind midflight's back (sql_log_bin = 0)
# are named by their target keys; `--repair` is refused after the switch
# (repairs into MySQL are not built), naming why. `select` and v are
# VARCHAR: the twin table's varchar(n) columns cast back to MySQL (they were
# refused with "no cast to MySQL" before PgTypeBase).
source "$(dirname "$0")/mylib.sh"
source "$(dirname "$0")/reverse_transforms_lib.sh"  # switched_verify_clean, switched_verify_finds
export PGTZ=UTC

start_my_to_pg_servers 31400 31420
sql_pri <<'SQL'
USE shop;
CREATE TABLE `Order Lines` (id INT NOT NULL PRIMARY KEY, `select` VARCHAR(40), qty_text TEXT,
                            price DECIMAL(10,2), made DATETIME(3) NOT NULL, note TEXT) ENGINE=InnoDB;
INSERT INTO `Order Lines` SELECT seq, CONCAT('p', seq), seq % 9, seq + 0.25,
                                 TIMESTAMPADD(HOUR, seq, '2024-01-01 00:00:00'), CONCAT('n', seq)
  FROM seq_1_to_40;
CREATE TABLE `Key "Codes"` (id INT NOT NULL PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO `Key "Codes"` SELECT seq, CONCAT('c', seq) FROM seq_1_to_3000;
SQL

write_spec rt "partitions: 3" "cutover:" "  min_validation_seconds: 0" "  catchup_timeout_seconds: 60" \
  "verify:" "  chunk_rows: 100" \
  "transforms:" \
  "  shop.Order Lines:" \
  "    rename: lines" \
  "    exclude: [note]" \
  "    columns:" \
  "      select: {rename: pick}" \
  "      qty_text: {rename: qty, cast: text_to_int}" \
  "      made: {cast: timestamp_to_timestamptz, zone: \"+02:00\"}" \
  "    add:" \
  "      total: price * qty_text" \
  "      origin: \"'my'\"" \
  "  'shop.Key \"Codes\"':" \
  "    rename: key codes" \
  "    columns:" \
  "      id: {rename: code, cast: int_to_text}"

run_mf_bg
wait_phase replicating 90
verify_clean "replicating"

"$MF" switch reads --external "$SPEC" >/dev/null
"$MF" switch writes --external "$SPEC" >"$WORK/switch.out"
[[ $(status_field phase) == writes_switched ]] || fail "phase is not writes_switched"

# The application writes to PostgreSQL now; the computed columns get its own values.
sql_dst <<'SQL'
UPDATE shop.lines SET pick = 'it''s picked', qty = 77, total = 0, origin = 'app' WHERE id = 2;
INSERT INTO shop.lines (id, pick, qty, price, made, total, origin) VALUES (500, 'new', 4, 2.50, '2024-05-05 23:00:00+00', 10, 'app');
DELETE FROM shop.lines WHERE id = 3;
UPDATE shop."key codes" SET v = 'app' WHERE code = '10';
SQL
src_row() { sql_pri -e "SELECT CONCAT_WS('|', id, \`select\`, qty_text, price, made) FROM shop.\`Order Lines\` WHERE id = $1"; }
for _ in $(seq 120); do
  [[ $(src_row 500) == "500|new|4|2.50|2024-05-06 01:00:00.000" && $(src_row 2) == "2|it's picked|77|2.25|2024-01-01 02:00:00.000" &&
    -z $(src_row 3) && $(sql_pri -e "SELECT v FROM shop.\`Key \"Codes\"\` WHERE id = 10") == app ]] && break
  sleep 0.25
done
[[ $(src_row 500) == "500|new|4|2.50|2024-05-06 01:00:00.000" ]] || fail "PostgreSQL's insert did not reach MariaDB: $(src_row 500)"
[[ $(sql_pri -e "SELECT v FROM shop.\`Key \"Codes\"\` WHERE id = 10") == app ]] || fail "the cast key's row did not reach MariaDB"
log "PostgreSQL's writes reached MariaDB through the inverse transforms"

switched_verify_clean

sql_pri <<'SQL'
SET sql_log_bin = 0;
UPDATE shop.`Order Lines` SET `select` = 'planted', note = 'not carried' WHERE id = 7;
UPDATE shop.`Key "Codes"` SET v = 'planted' WHERE id = 2500;
SQL
switched_verify_finds

out=$("$MF" verify --repair "$SPEC" 2>&1) && fail "verify --repair after the switch succeeded: $out"
[[ $out == *"repairs back into MySQL are not built"* ]] || fail "unexpected answer to --repair: $out"
log "--repair after the switch refused: $(grep -m1 'not built' <<<"$out")"
stop_mf
log "PASS"
