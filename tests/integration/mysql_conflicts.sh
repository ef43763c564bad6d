#!/usr/bin/env bash
# Apply conflicts on MariaDB: a row planted on the target that the source then
# inserts (insert_existing), rows deleted on the target that the source then
# updates (update_missing) or deletes (delete_missing) are counted per table
# and kind in status --json and logged with their key; a key deleted and
# inserted again within one transaction is not counted. With on_conflict:
# stop the migration fails naming table, key, position and kind, applies
# nothing of the batch, and continues once the target row is repaired.
source "$(dirname "$0")/mylib.sh"
start_my_servers 29530
sql_pri -e "USE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(40));
  INSERT INTO shop.items SELECT seq, CONCAT('i', seq) FROM seq_1_to_100;
  CREATE TABLE shop.pairs (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b));
  INSERT INTO shop.pairs SELECT seq, CONCAT('b', seq), seq FROM seq_1_to_10"
write_my_spec myconf
run_mf_bg
wait_phase replicating

sql_dst -e "INSERT INTO shop_new.items VALUES (1001, 'planted'); DELETE FROM shop_new.items WHERE id IN (5, 6);
  INSERT INTO shop_new.pairs VALUES (7, 'x', 0); DELETE FROM shop_new.pairs WHERE a = 3"
sql_pri -e "INSERT INTO shop.items VALUES (1001, 'from source'); UPDATE shop.items SET name = 'u5' WHERE id = 5;
  DELETE FROM shop.items WHERE id = 6; INSERT INTO shop.pairs VALUES (7, 'x', 7); DELETE FROM shop.pairs WHERE a = 3"
sql_pri -e "BEGIN; DELETE FROM shop.items WHERE id = 10; INSERT INTO shop.items VALUES (10, 'again');
  INSERT INTO shop.items VALUES (2000, 'brief'); DELETE FROM shop.items WHERE id = 2000;
  UPDATE shop.items SET name = 'plain' WHERE id = 20; COMMIT"
wait_my_caught_up 60
sleep 0.5  # status is saved every 200 ms

st=$("$MF" status "$SPEC" --json)
got=$(jq -c '.conflicts.tables' <<<"$st")
want='{"shop.items":{"delete_missing":1,"insert_existing":1,"update_missing":1},"shop.pairs":{"delete_missing":1,"insert_existing":1,"update_missing":0}}'
[[ $(jq -cS . <<<"$got") == $(jq -cS . <<<"$want") ]] || { grep conflict "$WORK/run.$RUN_N.log" || true; fail "conflicts per table: got $got, want $want"; }
log "status --json conflicts: $(jq -c .conflicts <<<"$st")"
for line in "insert_existing on shop.items key (id)=(1001)" "update_missing on shop.items key (id)=(5)" \
  "delete_missing on shop.items key (id)=(6)" "insert_existing on shop.pairs key (a, b)=(7,x)" \
  "delete_missing on shop.pairs key (a, b)=(3,b3)"; do
  grep -qF "apply conflict: $line at " "$WORK/run.$RUN_N.log" || { grep conflict "$WORK/run.$RUN_N.log" || true; fail "not logged: $line"; }
done
[[ $(sql_dst -e "SELECT name FROM shop_new.items WHERE id = 1001") == "from source" ]] || fail "insert_existing not overwritten"
assert_equal
stop_mf

write_my_spec myconf "on_conflict: stop"
run_mf_bg
wait_phase replicating
sql_dst -e "DELETE FROM shop_new.items WHERE id = 50"
sql_pri -e "UPDATE shop.items SET name = 'lost?' WHERE id = 50"
rc=0; wait "$MF_PID" || rc=$?; MF_PID=
[[ $rc -eq 1 ]] || { cat "$WORK/run.$RUN_N.log"; fail "expected midflight to stop with exit 1, got $rc"; }
grep -qF "apply conflict: update_missing on shop.items key (id)=(50) at " "$WORK/run.$RUN_N.log" \
  || { cat "$WORK/run.$RUN_N.log"; fail "the stop should name kind, table, key and position"; }
[[ $(status_field phase) == failed ]] || fail "phase should be failed"
log "stopped: $(status_field error | cut -c1-160)"
[[ -z $(sql_dst -e "SELECT 1 FROM shop_new.items WHERE id = 50") ]] || fail "the conflicting batch must be rolled back"
[[ $(status_field conflicts.tables.\"shop.items\".update_missing) == 2 ]] || fail "the stop is counted"

sql_dst -e "INSERT INTO shop_new.items VALUES (50, 'i50')"
run_mf_bg
wait_phase replicating
wait_my_caught_up 60
assert_equal
[[ $(sql_dst -e "SELECT name FROM shop_new.items WHERE id = 50") == "lost?" ]] || fail "row 50 not updated after the repair"
stop_mf
log "PASS"
