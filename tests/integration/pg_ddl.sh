#!/usr/bin/env bash
# A schema change on the source while streaming: midflight stops with one line
# naming the table and its new columns, loses nothing, and once the operator
# has applied the same change to the target, running again continues.
source "$(dirname "$0")/lib.sh"
start_servers 26482
sql_src -c "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'i' || g FROM generate_series(1, 100) g;"
write_spec ddl
run_mf_bg
wait_phase replicating
sql_src -c "UPDATE items SET name = 'before' WHERE id <= 10"
sql_src -c "ALTER TABLE items ADD COLUMN price numeric(10,2) DEFAULT 0"
sql_src -c "INSERT INTO items VALUES (101, 'after', 9.99); UPDATE items SET price = 1.50 WHERE id <= 5"
rc=0; wait "$MF_PID" || rc=$?; MF_PID=
[[ $rc -eq 1 ]] || fail "expected midflight to stop with exit 1, got $rc"
grep -q "schema change on the source: public.items now has columns (id, name, price)" "$WORK/run.$RUN_N.log" \
  || { cat "$WORK/run.$RUN_N.log"; fail "message should name the table and its columns"; }
log "stopped: $(grep 'schema change' "$WORK/run.$RUN_N.log" | tail -1)"
[[ $(status_field phase) == failed ]] || fail "phase should be failed"
[[ $(sql_dst -c "SELECT count(*) FROM items WHERE name = 'before'") == 10 ]] || fail "changes before the DDL must be applied"

# Running again before the target has the column stops the same way, nothing lost.
rc=0; "$MF" run "$SPEC" >"$WORK/again.log" 2>&1 || rc=$?
[[ $rc -eq 1 ]] && grep -q "schema change on the source: public.items" "$WORK/again.log" || fail "second run: exit $rc"

sql_dst -c "ALTER TABLE items ADD COLUMN price numeric(10,2) DEFAULT 0"
run_mf_bg
wait_phase replicating
wait_caught_up 30
assert_equal
stop_mf
log "PASS"
