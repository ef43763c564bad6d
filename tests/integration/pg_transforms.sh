#!/usr/bin/env bash
# Spec transforms, PostgreSQL -> PostgreSQL: public.orders becomes public.sales
# with a renamed table, renamed and cast columns (text_to_int, upper,
# timestamp_to_timestamptz), an excluded column, two computed columns and a
# row filter, while public.plain is copied as it is. Checked on the snapshot
# (with a kill -9 during the copy) and on streamed changes under a pgbench
# load that moves rows in and out of the filter, moves keys and deletes (with
# a kill -9 while applying), by comparing the target with the same transform
# written in SQL on the source; then a row the transform cannot convert stops
# the migration naming table, key, column and value.
source "$(dirname "$0")/lib.sh"
export PGTZ=UTC
start_servers 24800
sql_src <<'SQL'
CREATE TABLE orders (id bigint PRIMARY KEY, qty_text text, price numeric(10,2), status text,
                     made timestamp(3), note text, secret text);
INSERT INTO orders SELECT g, (g % 50)::text, (g % 100) + 0.25, CASE WHEN g % 5 = 0 THEN 'cancelled' ELSE 'paid' END,
                          '2024-01-01'::timestamp + g * interval '1 minute 0.5 s', 'n' || g, 's' || g
FROM generate_series(1, 20000) g;
UPDATE orders SET note = NULL WHERE id % 7 = 0;
CREATE SEQUENCE ids START 100000;
CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO plain SELECT g, 'v' || g FROM generate_series(1, 1000) g;
ANALYZE;
SQL

TRANSFORMS=(
  "transforms:"
  "  public.orders:"
  "    rename: sales"
  "    exclude: [secret]"
  "    columns:"
  "      qty_text: {rename: qty, cast: text_to_int}"
  "      made: {cast: timestamp_to_timestamptz, zone: \"+02:00\"}"
  "      note: {rename: remark, cast: upper}"
  "    add:"
  "      total: price * qty_text"
  "      label: concat(status, '-', id)"
  "    filter: status <> 'cancelled' and price >= 3"
)

# The same transform in SQL, on the source; and the target's rows.
EXPECTED="SELECT id, qty_text::bigint, price, status, (made::text || '+02:00')::timestamptz, upper(note),
                 price * qty_text::bigint, concat(status, '-', id)
          FROM orders WHERE status <> 'cancelled' AND price >= 3 ORDER BY id"
ACTUAL="SELECT id, qty, price, status, made, remark, total, label FROM sales ORDER BY id"
check_rows() {  # check_rows WHAT
  local want got n
  want=$(sql_src -c "SELECT count(*) || ' ' || md5(string_agg(t::text, '|')) FROM ($EXPECTED) t")
  got=$(sql_dst -c "SELECT count(*) || ' ' || md5(string_agg(t::text, '|')) FROM ($ACTUAL) t")
  if [[ $want != "$got" ]]; then
    sql_src -c "$EXPECTED" >"$WORK/want.txt"
    sql_dst -c "$ACTUAL" >"$WORK/got.txt"
    diff "$WORK/want.txt" "$WORK/got.txt" | head -20
    fail "$1: target rows differ from the transformed source rows (source $want, target $got)"
  fi
  n=$(sql_dst -c "SELECT count(*) FROM plain")
  [[ $n == $(sql_src -c "SELECT count(*) FROM plain") ]] || fail "$1: plain has $n rows on the target"
  log "$1: ${want%% *} transformed rows equal the source's through the same transform in SQL"
}

# Spec problems are named before anything runs.
write_spec tr "chunk_rows: 2000" "copy_workers: 2" "${TRANSFORMS[@]}"
sed "s/and price >= 3/and and price/" "$SPEC" >"$WORK/bad.yaml"
out=$("$MF" schema "$WORK/bad.yaml" --dry-run 2>&1) && fail "a bad filter was accepted"
[[ $out == *"transforms.public.orders.filter: 'status <> 'cancelled' and and price': unexpected 'and' at offset 26"* ]] ||
  fail "bad filter: $out"
sed "s/exclude: \[secret\]/exclude: [id]/" "$SPEC" >"$WORK/badkey.yaml"
out=$("$MF" schema "$WORK/badkey.yaml" --dry-run 2>&1) && fail "excluding a key column was accepted"
[[ $out == *"transforms.public.orders.exclude: key column 'id' of public.orders cannot be left out"* ]] ||
  fail "excluded key: $out"
log "spec problems named: bad filter, excluded key"

ddl=$("$MF" schema "$SPEC" --dry-run)
echo "$ddl"
for want in 'CREATE TABLE IF NOT EXISTS "public"."sales"' '"qty" bigint' '"made" timestamp(3) with time zone' \
  '"remark" text' '"total" numeric' '"label" text' 'PRIMARY KEY ("id")' '--   secret left out' \
  "--   rows where status <> 'cancelled' and price >= 3"; do
  [[ $ddl == *"$want"* ]] || fail "schema --dry-run lacks '$want'"
done
[[ $ddl != *'"secret"'* ]] || fail "the excluded column is in the DDL"

cat >"$WORK/writes.sql" <<'SQL'
\set i random(1, 20000)
\set j random(1, 20000)
UPDATE orders SET status = CASE WHEN status = 'cancelled' THEN 'paid' ELSE 'cancelled' END WHERE id = :i;
UPDATE orders SET price = price + 1, qty_text = (:j % 40)::text, note = 'u' || :j WHERE id = :j;
UPDATE orders SET price = 1.5 WHERE id = :j + 3;
INSERT INTO orders SELECT nextval('ids'), (:i % 9)::text, :i % 7, CASE WHEN :i % 3 = 0 THEN 'cancelled' ELSE 'new' END,
                          now(), 'i' || :i, 'x';
DELETE FROM orders WHERE id = :i + 11;
UPDATE orders SET id = id + 1000000 WHERE id = :j + 17 AND id < 1000000;
UPDATE plain SET v = v || '.' WHERE id = :i % 1000 + 1;
SQL
pgbench -n -c 2 -j 2 -T 600 -R 150 -f "$WORK/writes.sql" "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!

run_mf_crash copy-chunks=4
run_mf_bg
wait_phase replicating 90
sleep 3
# Killed while applying the stream, resumed from the checkpoints.
kill9_mf
log "killed -9 while streaming; resuming"
run_mf_crash apply-changes=400
run_mf_bg
wait_phase replicating 60
sleep 4
stop_load
wait_caught_up 60
check_rows "snapshot and stream under load, two kill -9"
moved=$(sql_src -c "SELECT count(*) FROM orders WHERE id >= 1000000")
log "pgbench wrote to orders: $(sql_src -c "SELECT n_tup_ins - 20000 || ' inserts, ' || n_tup_upd || ' updates, ' || n_tup_del || ' deletes' FROM pg_stat_user_tables WHERE relname = 'orders'") ($moved keys moved)"

# Rows moving in and out of the filter, one by one.
sql_src <<'SQL'
UPDATE orders SET status = 'paid' WHERE id = (SELECT min(id) FROM orders WHERE status = 'cancelled' AND price >= 3);
UPDATE orders SET status = 'cancelled' WHERE id = (SELECT min(id) FROM orders WHERE status = 'paid' AND price >= 3);
UPDATE orders SET price = 1 WHERE id = (SELECT max(id) FROM orders WHERE status = 'paid' AND price >= 3);
INSERT INTO orders VALUES (900001, '3', 10, 'cancelled', '2024-05-05 05:05:05.123', 'never', 's'),
                          (900002, ' 4 ', 10.5, 'paid', '2024-05-05 05:05:05.123', 'Mixed Case', 's');
SQL
wait_caught_up 30
check_rows "rows entering and leaving the filter"
[[ $(sql_dst -c "SELECT count(*) FROM sales WHERE id = 900001") == 0 ]] || fail "a filtered insert reached the target"
row=$(sql_dst -c "SELECT qty, total, remark, label, made FROM sales WHERE id = 900002")
[[ $row == "4|42.00|MIXED CASE|paid-900002|2024-05-05 03:05:05.123+00" ]] || fail "row 900002 on the target: $row"
[[ $(sql_dst -c "SELECT count(*) FROM information_schema.columns WHERE table_name = 'sales' AND column_name = 'secret'") == 0 ]] ||
  fail "the excluded column is on the target"
[[ $(sql_dst -c "SELECT to_regclass('public.orders') IS NULL") == t ]] || fail "the target has public.orders"

# compare and verify check the transformed table through its transform (the
# source's rows transformed by midflight, hashed by the target's SQL).
out=$("$MF" compare "$SPEC") || { echo "$out"; fail "compare failed"; }
echo "$out"
grep -qE "public\.orders +.*equal" <<<"$out" || fail "compare: the transformed table is not equal"
out=$("$MF" verify "$SPEC" 2>&1) || { echo "$out"; fail "verify failed"; }
echo "$out"
[[ $out == *"verify: clean"* && $out != *"not verified"* ]] || fail "verify did not check the transformed table"

# A value the cast cannot convert stops the migration, naming it.
bad=$(sql_dst -c "SELECT min(id) FROM sales")
sql_src -c "UPDATE orders SET qty_text = 'twelve' WHERE id = $bad"
for _ in $(seq 120); do kill -0 "$MF_PID" 2>/dev/null || break; sleep 0.25; done
kill -0 "$MF_PID" 2>/dev/null && fail "midflight still runs after an unconvertible value"
wait "$MF_PID" 2>/dev/null || true
MF_PID=
grep -h "transform of table public.orders key (id)=($bad) column qty_text: 'twelve' is not an integer (cast text_to_int)" \
  "$WORK/run.$RUN_N.log" | head -1 || { tail -20 "$WORK/run.$RUN_N.log"; fail "the failure does not name the row"; }
[[ $(status_field phase) == failed ]] || fail "phase $(status_field phase) after the failure"
log "PASS"
