#!/usr/bin/env bash
# Spec transforms on MariaDB -> MariaDB: a primary + replica as the source
# (midflight reads the replica), a third server as the target.
#
# Migration 1: shop.`order lines` becomes shop_new.`line items`: the table and
# its key renamed, a column with a space renamed and cast (text_to_int), an
# SQL-word column (`select`) renamed, a quoted name (`it's`) cast (upper), a
# column excluded, a computed and a constant column, a row filter; the
# sysbench tables are copied as they are. sysbench and a scripted writer
# (rows moving in and out of the filter, inserts, deletes, key moves) run
# during the copy and the stream; midflight is killed after 2 copied chunks
# and with kill -9 while streaming. Then: the target row for row against the
# same transform written in SQL on the source, compare and verify clean (the
# transformed table named, not counted), reverse replication refused at the
# read switch naming the filter, and a value the cast cannot convert stopping
# the migration, naming table, key, column and value.
#
# Migration 2: shop.accounts becomes shop_rev.`client accounts` through an
# invertible transform (rename, exclude, int_to_text, a computed column).
# After `switch writes --external`, verify checks the transformed table with
# the target the reference. AUTO_INCREMENT of the renamed table is
# carried, and the target's inserts, updates and deletes reach the source
# primary through the inverse (the excluded column keeps its value, or its
# default for a new row).
source "$(dirname "$0")/mylib.sh"

start_my_servers 18000
# Migration 2's reverse replication writes to the primary (not binlogged: the
# replica has its own mf user).
sql_pri -e "SET sql_log_bin = 0; CREATE USER mf@'%' IDENTIFIED BY 'mfpass'; GRANT ALL ON *.* TO mf@'%'"
sysbench_prepare 2 5000
N=20000
sql_pri <<SQL
USE shop;
CREATE TABLE shop.\`order lines\` (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  \`qty text\` VARCHAR(20) NOT NULL,
  \`select\` VARCHAR(40),
  \`order\` INT NOT NULL DEFAULT 0,
  \`it's\` VARCHAR(40) CHARACTER SET utf8mb4,
  price DECIMAL(10,2) NOT NULL,
  status VARCHAR(12) NOT NULL,
  secret VARCHAR(20),
  KEY k_order (\`order\`)
) ENGINE=InnoDB;
INSERT INTO shop.\`order lines\` (id, \`qty text\`, \`select\`, \`order\`, \`it's\`, price, status, secret)
  SELECT seq, IF(seq % 11 = 0, CONCAT(' ', seq % 50, ' '), seq % 50), IF(seq % 7 = 0, NULL, CONCAT('pick ', seq)),
         seq % 100, CONCAT('it''s ', seq), (seq % 100) + 0.25, IF(seq % 5 = 0, 'cancelled', 'paid'), CONCAT('s', seq)
  FROM seq_1_to_$N;
CREATE TABLE shop.accounts (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(40) NOT NULL,
  balance INT NOT NULL,
  note VARCHAR(40) NOT NULL DEFAULT 'none',
  \`key\` INT NOT NULL DEFAULT 0
) ENGINE=InnoDB;
INSERT INTO shop.accounts (name, balance, note, \`key\`) SELECT CONCAT('acc ', seq), seq * 10, CONCAT('n', seq), seq % 3
  FROM seq_1_to_50;
ANALYZE TABLE shop.\`order lines\`, shop.accounts;
SQL
wait_replica

TRANSFORMS=(
  "transforms:"
  "  \"order lines\":"
  "    rename: \"line items\""
  "    exclude: [secret]"
  "    columns:"
  "      id: {rename: line_id}"
  "      \"qty text\": {rename: qty, cast: text_to_int}"
  "      \"select\": {rename: choice}"
  "      \"it's\": {cast: upper}"
  "    add:"
  "      total: price * \"qty text\""
  "      origin: \"'maria-1'\""
  "    filter: status <> 'cancelled'"
)
# The same transform in SQL on the source (the replica, once it caught up),
# and the target's rows.
EXPECTED="SELECT id, CAST(TRIM(\`qty text\`) AS SIGNED), COALESCE(\`select\`, '<null>'), \`order\`,
                 COALESCE(UPPER(\`it's\`), '<null>'), price, status,
                 CAST(price * CAST(TRIM(\`qty text\`) AS SIGNED) AS DECIMAL(65,30)), 'maria-1'
          FROM shop.\`order lines\` WHERE status <> 'cancelled' ORDER BY id"
ACTUAL="SELECT line_id, qty, COALESCE(choice, '<null>'), \`order\`, COALESCE(\`it's\`, '<null>'), price, status, total,
               origin FROM shop_new.\`line items\` ORDER BY line_id"
check_rows() {  # check_rows WHAT
  wait_replica
  sql_rep -e "$EXPECTED" >"$WORK/want.txt"
  sql_dst -e "$ACTUAL" >"$WORK/got.txt"
  if ! cmp -s "$WORK/want.txt" "$WORK/got.txt"; then
    diff "$WORK/want.txt" "$WORK/got.txt" | head -20
    fail "$1: the target's rows differ from the source's through the same transform"
  fi
  [[ -s $WORK/want.txt ]] || fail "$1: no rows pass the filter"
  log "$1: $(wc -l <"$WORK/want.txt") transformed rows equal, row by row, the source's through the same transform in SQL"
}

# The scripted writer: rows in and out of the filter, quantities and names
# changed, inserts (keys from 500000), deletes, key moves (+2000000).
writer() {
  local i=0 a b
  while :; do
    i=$((i + 1)) a=$((RANDOM % N + 1)) b=$((RANDOM % N + 1))
    sql_pri -e "
      UPDATE shop.\`order lines\` SET status = IF(status = 'cancelled', 'paid', 'cancelled') WHERE id = $a;
      UPDATE shop.\`order lines\` SET price = price + 1, \`qty text\` = '$((b % 40))', \`select\` = 'u$i',
        \`it's\` = 'it''s \"quoted\" $i' WHERE id = $b;
      INSERT INTO shop.\`order lines\` (id, \`qty text\`, \`select\`, \`order\`, \`it's\`, price, status, secret)
        VALUES ($((500000 + i)), ' $((i % 9)) ', NULL, $i, 'new''s $i', $((i % 7)).5, IF($i % 3 = 0, 'cancelled', 'new'), 'x');
      DELETE FROM shop.\`order lines\` WHERE id = $((a + 11));
      UPDATE shop.\`order lines\` SET id = id + 2000000 WHERE id = $((b + 17)) AND id < 500000;" 2>/dev/null || true
    sleep 0.05
  done
}
start_load() {
  start_sysbench oltp_write_only 50
  SB_PID=$LOAD_PID
  writer &
  WRITER_PID=$!
}
stop_load() {
  kill "$WRITER_PID" 2>/dev/null || true
  wait "$WRITER_PID" 2>/dev/null || true
  LOAD_PID=$SB_PID
  stop_sysbench
}

# A true/false column has no MySQL type: named before anything runs.
write_my_spec bad "transforms:" "  \"order lines\":" "    add:" "      flag: \"true\""
out=$("$MF" schema "$SPEC" --dry-run 2>&1) && fail "a true/false computed column was accepted"
[[ $out == *"transforms.order lines: column flag would be boolean, which has no column type on a mysql:// target"* ]] ||
  fail "unexpected refusal: $out"
log "refused: $out"

write_my_spec tr "tables: [\"order lines\", sbtest1, sbtest2]" "chunk_rows: 2000" "copy_workers: 2" "partitions: 3" \
  "cutover:" "  require_verify: false" "  min_validation_seconds: 0" "${TRANSFORMS[@]}"
"$MF" schema "$SPEC" --dry-run >"$WORK/ddl.sql"
sed 's/^/    /' "$WORK/ddl.sql"
for want in '-- shop.order lines -> shop_new.line items' 'CREATE TABLE IF NOT EXISTS `shop_new`.`line items`' \
  '`line_id` int(11) NOT NULL AUTO_INCREMENT' '`qty` BIGINT NOT NULL' '`choice` varchar(40)' '`total` DECIMAL(65,30)' \
  '`origin` LONGTEXT' 'PRIMARY KEY (`line_id`)' "--   rows where status <> 'cancelled'"; do
  grep -qF -- "$want" "$WORK/ddl.sql" || fail "schema --dry-run lacks '$want'"
done
grep -qF '`secret`' "$WORK/ddl.sql" && fail "the excluded column is in the DDL"
log "sysbench oltp_write_only at 50 tx/s and the scripted writer on the primary from now on"
start_load
crash_in_copy_and_stream
stop_load
wait_my_caught_up 120
check_rows "snapshot and stream under load, two kills"
moved=$(sql_rep -e "SELECT COUNT(*) FROM shop.\`order lines\` WHERE id >= 2000000")
inserted=$(sql_rep -e "SELECT COUNT(*) FROM shop.\`order lines\` WHERE id BETWEEN 500000 AND 1999999")
log "the writer inserted $inserted rows and moved $moved keys"
((moved > 0 && inserted > 0)) || fail "the load did not insert and move keys"
[[ $(sql_dst -e "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop_new' AND TABLE_NAME = 'line items' AND COLUMN_NAME = 'secret'") == 0 ]] ||
  fail "the excluded column is on the target"
[[ $(sql_dst -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop_new' AND TABLE_NAME = 'order lines'") == 0 ]] ||
  fail "the target has the table under its source name"
sql_dst -e "SHOW CREATE TABLE shop_new.\`line items\`" | sed 's/\\n/\n/g; s/^/    /'

# Rows entering and leaving the filter, one by one.
in_id=$(sql_rep -e "SELECT MIN(id) FROM shop.\`order lines\` WHERE status = 'cancelled'")
out_id=$(sql_rep -e "SELECT MIN(id) FROM shop.\`order lines\` WHERE status <> 'cancelled'")
sql_pri -e "UPDATE shop.\`order lines\` SET status = 'paid' WHERE id = $in_id;
            UPDATE shop.\`order lines\` SET status = 'cancelled' WHERE id = $out_id"
wait_my_caught_up 60
check_rows "rows entering and leaving the filter"
[[ $(sql_dst -e "SELECT COUNT(*) FROM shop_new.\`line items\` WHERE line_id = $out_id") == 0 ]] || fail "row $out_id left the filter but is on the target"
[[ $(sql_dst -e "SELECT COUNT(*) FROM shop_new.\`line items\` WHERE line_id = $in_id") == 1 ]] || fail "row $in_id entered the filter but is not on the target"
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts: $(status_field conflicts)"

# verify_every_table_clean WHAT: verify is clean and leaves no table out.
verify_every_table_clean() {
  out=$("$MF" verify "$SPEC" 2>&1) || { echo "$out"; fail "$1: verify failed"; }
  echo "$out" | sed 's/^/    /'
  [[ $out == *"verify: clean"* && $out != *"not verified"* ]] || fail "$1: verify is not clean over every table"
}
# verify_names LINE WHAT: verify finds a difference and names it with LINE.
verify_names() {
  out=$("$MF" verify "$SPEC" 2>&1) && { echo "$out"; fail "$2: verify is clean with a planted value"; }
  echo "$out" | sed 's/^/    /'
  grep -q "$1" <<<"$out" || fail "$2: verify does not name $1"
}
# compare and verify check every table, the transformed one through its
# transform (the source's rows transformed by midflight, hashed by the target).
out=$("$MF" compare "$SPEC" 2>&1) || { echo "$out"; fail "compare failed or found differences"; }
echo "$out" | sed 's/^/    /'
for t in "order lines" sbtest1 sbtest2; do grep -qE "shop\.$t +.*equal" <<<"$out" || fail "compare: $t not equal"; done
verify_every_table_clean "replicating"
# A difference on the target's table is found, named by the target's key.
sql_dst -e "SET sql_log_bin = 0; UPDATE shop_new.\`line items\` SET choice = 'tampered' WHERE line_id = $in_id"
verify_names "shop.order lines (line_id)=($in_id): differs (columns choice)" "replicating"
# --repair sends the source's row through the flow, and its transform.
out=$("$MF" verify --repair "$SPEC" 2>&1) || true
echo "$out" | sed 's/^/    /'
grep -q "shop.order lines (line_id)=($in_id): differs (columns choice)" <<<"$out" || fail "verify --repair does not name the tampered row"
sleep 2
wait_my_caught_up 60
check_rows "after verify --repair"
verify_clean "after verify --repair"

# Reverse replication cannot carry a filter back: refused when it would start.
out=$("$MF" switch reads --external "$SPEC" 2>&1) && fail "switch reads started reverse replication through a filter"
[[ $out == *"reverse replication cannot start: transforms.order lines.filter: 'status <> 'cancelled'' cannot be reversed"* ]] ||
  fail "unexpected refusal: $out"
log "refused: $out"
[[ $(status_field phase) == replicating ]] || fail "phase $(status_field phase) after the refused switch"

# A value the cast cannot convert stops the migration, naming it.
bad=$(sql_dst -e "SELECT MIN(line_id) FROM shop_new.\`line items\`")
sql_pri -e "UPDATE shop.\`order lines\` SET \`qty text\` = 'twelve' WHERE id = $bad"
for _ in $(seq 240); do kill -0 "$MF_PID" 2>/dev/null || break; sleep 0.25; done
kill -0 "$MF_PID" 2>/dev/null && fail "midflight still runs after an unconvertible value"
wait "$MF_PID" 2>/dev/null || true
MF_PID=
grep -h "transform of table shop.order lines key (id)=($bad) column qty text: 'twelve' is not an integer (cast text_to_int)" \
  "$WORK/run.$RUN_N.log" | head -1 || { tail -20 "$WORK/run.$RUN_N.log"; fail "the failure does not name the row"; }
[[ $(status_field phase) == failed ]] || fail "phase $(status_field phase) after the failure"

# ---- Migration 2: reverse replication through an invertible transform.
SRC="mysql://mf:mfpass@127.0.0.1:$APP_PORT/shop"
DST="mysql://mf:mfpass@127.0.0.1:$(cat "$DST_DIR/port")/shop_rev"
sql_dst -e "CREATE DATABASE shop_rev"
write_my_spec rev "tables: [accounts]" "partitions: 2" "cutover:" "  require_verify: false" \
  "  min_validation_seconds: 0" "  catchup_timeout_seconds: 30" \
  "transforms:" "  accounts:" "    rename: \"client accounts\"" "    exclude: [note]" "    columns:" \
  "      name: {rename: \"full name\"}" "      balance: {cast: int_to_text}" "    add:" \
  "      label: concat(name, '#', \"key\")"
run_mf_bg
wait_phase replicating 120
sql_pri -e "UPDATE shop.accounts SET balance = balance + 1 WHERE id <= 10;
            INSERT INTO shop.accounts (name, balance, note, \`key\`) VALUES ('late one', 5, 'late', 2);
            ALTER TABLE shop.accounts AUTO_INCREMENT = 7000"
wait_my_caught_up 60
# The forward rows, through the transform.
want=$(sql_rep -e "SELECT id, name, balance, \`key\`, CONCAT(name, '#', \`key\`) FROM shop.accounts ORDER BY id" | md5sum)
got=$(sql_dst -e "SELECT id, \`full name\`, balance, \`key\`, label FROM shop_rev.\`client accounts\` ORDER BY id" | md5sum)
[[ $want == "$got" ]] || fail "migration 2: the target's rows differ from the source's through the transform"
"$MF" switch reads --external "$SPEC"
"$MF" switch writes --external "$SPEC" | tee "$WORK/switch.out"
[[ $(status_field phase) == writes_switched ]] || fail "phase is not writes_switched"
ai=$(sql_dst -e "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop_rev' AND TABLE_NAME = 'client accounts'")
[[ $ai -ge 7000 ]] || fail "AUTO_INCREMENT of the renamed table not carried: $ai"
log "AUTO_INCREMENT of shop_rev.\`client accounts\` after the switch: $ai"
# The application now writes to the target, in the target's shape.
sql_dst -e "INSERT INTO shop_rev.\`client accounts\` (\`full name\`, balance, \`key\`, label) VALUES ('made on target', '77', 5, 'x');
            UPDATE shop_rev.\`client accounts\` SET balance = '99', \`full name\` = 'it''s renamed' WHERE id = 3;
            DELETE FROM shop_rev.\`client accounts\` WHERE id = 4"
new_id=$(sql_dst -e "SELECT id FROM shop_rev.\`client accounts\` WHERE \`full name\` = 'made on target'")
[[ $new_id -ge 7000 ]] || fail "the target's insert took key $new_id, below the source's AUTO_INCREMENT"
for _ in $(seq 120); do
  [[ $(sql_pri -e "SELECT COUNT(*) FROM shop.accounts WHERE id = $new_id") == 1 ]] && break
  sleep 0.25
done
sleep 1
want=$(sql_dst -e "SELECT id, \`full name\`, balance, \`key\` FROM shop_rev.\`client accounts\` ORDER BY id" | md5sum)
got=$(sql_pri -e "SELECT id, name, balance, \`key\` FROM shop.accounts ORDER BY id" | md5sum)
[[ $want == "$got" ]] || {
  sql_pri -e "SELECT * FROM shop.accounts ORDER BY id" | tail -5
  fail "reverse: the source primary's rows differ from the target's through the inverse transform"
}
row=$(sql_pri -e "SELECT CONCAT_WS('|', name, balance, note, \`key\`) FROM shop.accounts WHERE id = 3")
[[ $row == "it's renamed|99|n3|0" ]] || fail "reverse: row 3 on the source is $row"
row=$(sql_pri -e "SELECT CONCAT_WS('|', name, balance, note, \`key\`) FROM shop.accounts WHERE id = $new_id")
[[ $row == "made on target|77|none|5" ]] || fail "reverse: the target's insert on the source is $row"
[[ $(sql_pri -e "SELECT COUNT(*) FROM shop.accounts WHERE id = 4") == 0 ]] || fail "reverse: the target's delete not applied"
log "reverse through the inverse transform: the source primary holds the target's rows (insert $new_id: $row)"
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts: $(status_field conflicts)"
# verify after the switch: the target is the reference, the primary's rows
# transformed forward (label, computed and written 'x' on the target, is
# not compared); a value changed on the primary behind midflight's back
# (sql_log_bin = 0) is named by its key; --repair is refused.
verify_every_table_clean "after the switch"
sql_pri -e "SET sql_log_bin = 0; UPDATE shop.accounts SET name = 'planted' WHERE id = 5"
verify_names "(id)=(5): differs" "after the switch"
out=$("$MF" verify --repair "$SPEC" 2>&1) && fail "verify --repair after the switch ran: $out"
[[ $out == *"repairs into the source are not built"* ]] || fail "unexpected --repair refusal: $out"
log "after the switch: verify clean, then the planted value named; --repair refused"
stop_mf
log "ok"
