#!/usr/bin/env bash
# Reverse replication through the spec's transforms, PostgreSQL -> MariaDB:
# public."Order Lines" becomes shop.lines with a renamed column named like an
# SQL word ("select" -> pick), a cast with an inverse (qty_text text_to_int,
# made timestamp_to_timestamptz in +02:00), two excluded columns (note:
# nullable; secret: NOT NULL with a default) and two added columns (total
# computed, origin constant). After `switch writes --external`, MariaDB's
# insert, update, delete and key move reach PostgreSQL mapped back: the
# table and column names of the source, qty as text, made as the wall-clock
# time in +02:00, the added columns dropped, and the excluded columns kept
# on an update and left to their default (NULL, 'none') on an insert.
# `verify` after the switch checks the transformed table (MariaDB the
# reference, PostgreSQL's rows transformed and cast forward) and names a
# difference planted on PostgreSQL (check_verify_after_switch). Then a
# migration with a row filter is refused the switch, naming the transform,
# and creates nothing for reverse.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/reverse_transforms_lib.sh"
export PGTZ=UTC

start_pg_to_my_servers 17000 17020
sql_my -e "CREATE DATABASE filt"

create_order_lines
write_spec rt "partitions: 3" "cutover:" "  min_validation_seconds: 0" "  catchup_timeout_seconds: 60" "${SMALL_CHUNKS[@]}" \
  "${TRANSFORMS[@]}" "casting:" "  columns:" "    lines.total: DECIMAL(20,2)"

run_mf_bg
wait_phase replicating 90
sql_src -c "UPDATE \"Order Lines\" SET qty_text = '5', note = 'streamed' WHERE id = 1"
wait_caught_up 90
row=$(sql_my -e "SELECT CONCAT_WS('|', id, pick, qty, price, made, total, origin) FROM shop.\`lines\` WHERE id = 1")
[[ $row == "1|p1|5|1.25|2023-12-31 23:00:00.000|6.25|pg" ]] || fail "row 1 on MariaDB: $row"
log "forward: row 1 on MariaDB as the transform makes it: $row"

"$MF" verify "$SPEC" >"$WORK/verify.out" || { cat "$WORK/verify.out"; fail "verify before the switch is not clean"; }
log "before the switch: $(grep -m1 'verify:' "$WORK/verify.out")"
"$MF" switch reads --external "$SPEC" | tee "$WORK/reads.out"
# No --force: the transformed tables are verified through their transforms (the switch's gate).
"$MF" switch writes --external "$SPEC" | tee "$WORK/switch.out"
[[ $(status_field phase) == writes_switched ]] || fail "phase is not writes_switched"

# The application writes to MariaDB now: the table as the transform made it
# (`lines` is a reserved word in MariaDB: quoted).
sql_my <<'SQL'
USE shop;
UPDATE `lines` SET pick = 'it''s picked', qty = 77, made = '2024-06-30 22:59:59.5', total = 0, origin = 'app' WHERE id = 2;
INSERT INTO `lines` (id, pick, qty, price, made, total, origin) VALUES (500, 'new', 4, 2.50, '2024-05-05 23:00:00', 10, 'app');
INSERT INTO `lines` (id, pick, qty, price, made) VALUES (501, NULL, NULL, NULL, '2024-01-01 00:00:00.001');
DELETE FROM `lines` WHERE id = 3;
UPDATE `lines` SET id = 900 WHERE id = 4;
SQL
log "written on MariaDB: an update, two inserts, a delete and a key move"
wait_src "2, 3, 4, 500, 501, 900" "$AFTER_WRITES"
log "on PostgreSQL: $(src_rows "2, 500, 900")"
log "MariaDB's update, inserts, delete and key move reached \"Order Lines\" mapped back (excluded columns kept on the update, defaulted on the inserts and the moved key)"
[[ $(sql_src -c "SELECT count(*) FROM \"Order Lines\"") == 41 ]] || fail "the source has $(sql_src -c "SELECT count(*) FROM \"Order Lines\"") rows, not 41"
[[ $(src_rows 1) == "1|p1|5|1.25|2024-01-01 01:00:00|streamed|s1" ]] || fail "row 1 changed on the source: $(src_rows 1)"
[[ $(sql_src -c "SELECT count(*) FROM pg_tables WHERE tablename = 'lines'") == 0 ]] || fail "the source got a table named lines"
check_verify_after_switch 0
log "reverse: $(status_field reverse.changes_applied) changes applied to PostgreSQL"

# Rollback: the last write on MariaDB is on PostgreSQL first. A key taken
# and freed on MariaDB (1000) leaves its AUTO_INCREMENT past every key in
# use: the identity sequence of "Order Lines" (shop.lines there) goes past
# it too, so PostgreSQL's next key is not one MariaDB handed out.
sql_my -e "INSERT INTO shop.\`lines\` (id, made) VALUES (1000, '2024-01-01'); DELETE FROM shop.\`lines\` WHERE id = 1000"
sql_my -e "UPDATE shop.\`lines\` SET qty = 123 WHERE id = 5"
"$MF" rollback --external "$SPEC" | tee "$WORK/rollback.out"
[[ $(src_rows 5) == "5|p5|123|5.25|2024-01-01 05:00:00|n5|s5" ]] || fail "the last write on MariaDB was lost: $(src_rows 5)"
log "rollback: the last write on MariaDB is on PostgreSQL: $(src_rows 5)"
next=$(sql_src -c "SELECT nextval(pg_get_serial_sequence('\"Order Lines\"', 'id'))")
((next > 1000)) || fail "the identity of \"Order Lines\" gives $next after the rollback: not past MariaDB's AUTO_INCREMENT of shop.lines (1001)"
log "rollback: the identity of \"Order Lines\" continues at $next, past MariaDB's AUTO_INCREMENT"
kill -TERM "$MF_PID"; wait "$MF_PID" 2>/dev/null || true; MF_PID=

# A row filter has no inverse: the switch is refused, naming the transform,
# and nothing is created for reverse.
DST="mysql://mf:mfpass@127.0.0.1:$myport/filt" write_spec filt "cutover:" "  min_validation_seconds: 0" \
  "transforms:" "  public.Order Lines:" "    filter: price > 10"
run_mf_bg
wait_phase replicating 90
out=$("$MF" switch reads --external "$SPEC" 2>&1) && fail "switch with a filtered table succeeded: $out"
[[ $out == *"transforms.public.Order Lines.filter: 'price > 10' cannot be reversed"* ]] || fail "unexpected refusal: $out"
log "refused: $(grep -m1 'cannot be reversed' <<<"$out")"
[[ $(sql_src -c "SELECT count(*) FROM pg_replication_origin WHERE roname LIKE 'midflight\_filt\_r%'") == 0 ]] \
  || fail "reverse origins were created for a refused switch"
[[ $(status_field phase) == replicating ]] || fail "phase $(status_field phase) after the refused switch"
kill -TERM "$MF_PID"; wait "$MF_PID" 2>/dev/null || true; MF_PID=
log "ok"
