#!/usr/bin/env bash
# Reverse replication through the spec's transforms, PostgreSQL ->
# PostgreSQL: public."Order Lines" becomes public.lines with a renamed column
# named like an SQL word ("select" -> pick), casts with an inverse (qty_text
# text_to_int, made timestamp_to_timestamptz in +02:00), two excluded columns
# (note: nullable; secret: NOT NULL with a default) and two added columns. After
# `switch writes --external`, the target's insert, update, delete and key move
# reach the source mapped back (names, text, wall-clock time in +02:00; the
# excluded columns kept on an update, defaulted on an insert), and rollback
# loses nothing. `verify` after the switch checks the transformed table
# (the target the reference, the source's rows transformed forward), names a
# difference planted on the source and repairs it through the reverse flow
# (reverse_transforms_lib.sh check_verify_after_switch). Then a cast with no
# inverse (upper) makes the switch refuse, naming the transform.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/reverse_transforms_lib.sh"
export PGTZ=UTC
start_servers 17100

create_order_lines
write_spec rt "partitions: 3" "cutover:" "  min_validation_seconds: 0" "  catchup_timeout_seconds: 60" "${SMALL_CHUNKS[@]}" "${TRANSFORMS[@]}"

run_mf_bg
wait_phase replicating 90
sql_src -c "UPDATE \"Order Lines\" SET qty_text = '5', note = 'streamed' WHERE id = 1"
wait_caught_up 90
row=$(sql_dst -c "SELECT concat_ws('|', id, pick, qty, price, made, total) FROM lines WHERE id = 1")
[[ $row == "1|p1|5|1.25|2023-12-31 23:00:00+00|6.25" ]] || fail "row 1 on the target: $row"
log "forward: row 1 on the target as the transform makes it: $row"

"$MF" verify "$SPEC" >"$WORK/verify.out" || { cat "$WORK/verify.out"; fail "verify before the switch is not clean"; }
log "before the switch: $(grep -m1 'verify:' "$WORK/verify.out")"
"$MF" switch reads --external "$SPEC" | tee "$WORK/reads.out"
# No --force: the transformed tables are verified through their transforms (the switch's gate).
"$MF" switch writes --external "$SPEC" | tee "$WORK/switch.out"
[[ $(status_field phase) == writes_switched ]] || fail "phase is not writes_switched"

# The target's session zone differs from the transform's: the instant is what counts.
sql_dst <<'SQL'
SET TimeZone = 'America/New_York';
UPDATE lines SET pick = 'it''s picked', qty = 77, made = '2024-06-30 22:59:59.5+00', total = 0 WHERE id = 2;
INSERT INTO lines (id, pick, qty, price, made, total) VALUES (500, 'new', 4, 2.50, '2024-05-05 23:00:00+00', 10);
INSERT INTO lines (id, made) VALUES (501, '2024-01-01 00:00:00.001+00');
DELETE FROM lines WHERE id = 3;
UPDATE lines SET id = 900 WHERE id = 4;
SQL
log "written on the target: an update, two inserts, a delete and a key move"
wait_src "2, 3, 4, 500, 501, 900" "$AFTER_WRITES"
log "on the source: $(src_rows "2, 500, 900")"
[[ $(sql_src -c "SELECT count(*) FROM \"Order Lines\"") == 41 ]] || fail "the source does not have 41 rows"
[[ $(src_rows 1) == "1|p1|5|1.25|2024-01-01 01:00:00|streamed|s1" ]] || fail "row 1 changed on the source: $(src_rows 1)"
check_verify_after_switch 1

sql_dst -c "UPDATE lines SET qty = 123 WHERE id = 5"
"$MF" rollback --external "$SPEC" | tee "$WORK/rollback.out"
[[ $(src_rows 5) == "5|p5|123|5.25|2024-01-01 05:00:00|n5|s5" ]] || fail "the last write on the target was lost: $(src_rows 5)"
log "rollback: the last write on the target is on the source: $(src_rows 5)"
kill -TERM "$MF_PID"; wait "$MF_PID" 2>/dev/null || true; MF_PID=

# upper has no inverse: the switch is refused, naming the transform.
sql_dst -c "CREATE DATABASE up"
DST=$("$TESTDB" uri "$WORK/dst" up) write_spec up "cutover:" "  min_validation_seconds: 0" "transforms:" "  public.Order Lines:" "    columns:" \
  "      select: {cast: upper}"
run_mf_bg
wait_phase replicating 90
# Reverse replication starts with the first switch (reads, with --external): the refusal comes there.
out=$("$MF" switch reads --external "$SPEC" 2>&1) && out=$("$MF" switch writes --external "$SPEC" 2>&1) &&
  fail "switch with an upper cast succeeded: $out"
[[ $out == *"transforms.public.Order Lines.columns.select.cast: upper cannot be reversed: the original case is gone"* ]] \
  || fail "unexpected refusal: $out"
log "refused: $(grep -m1 'cannot be reversed' <<<"$out")"
[[ $(status_field phase) != writes_switched ]] || fail "writes switched after the refusal"
kill -TERM "$MF_PID"; wait "$MF_PID" 2>/dev/null || true; MF_PID=
log "ok"
