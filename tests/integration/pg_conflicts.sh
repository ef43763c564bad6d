#!/usr/bin/env bash
# Apply conflicts on PostgreSQL: a row planted on the target that the source
# then inserts (insert_existing), rows deleted on the target that the source
# then updates (update_missing) or deletes (delete_missing) are counted per
# table and kind in status --json and logged with their key; what the design
# makes expected (a key deleted and inserted again, or inserted and deleted,
# within one apply batch) is not counted. With on_conflict: stop the migration
# fails naming table, key, position and kind, applies nothing of the batch,
# and continues once the target row is repaired. Status shows each apply
# partition's queued changes and lag (API, text status, /metrics).
source "$(dirname "$0")/lib.sh"
start_servers 29510
sql_src -c "CREATE TABLE items (id int PRIMARY KEY, name text);
  INSERT INTO items SELECT g, 'i' || g FROM generate_series(1, 100) g;
  CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
  INSERT INTO pairs SELECT g, 'b' || g, g FROM generate_series(1, 10) g;"
write_spec conflicts
run_mf_bg
wait_phase replicating

sql_dst -c "INSERT INTO items VALUES (1001, 'planted'); DELETE FROM items WHERE id IN (5, 6);
  INSERT INTO pairs VALUES (7, 'x', 0); DELETE FROM pairs WHERE a = 3"
sql_src -c "INSERT INTO items VALUES (1001, 'from source'); UPDATE items SET name = 'u5' WHERE id = 5;
  DELETE FROM items WHERE id = 6; INSERT INTO pairs VALUES (7, 'x', 7); DELETE FROM pairs WHERE a = 3"
# Not conflicts: each key's changes within one transaction (so one batch).
sql_src -c "BEGIN; DELETE FROM items WHERE id = 10; INSERT INTO items VALUES (10, 'again');
  INSERT INTO items VALUES (2000, 'brief'); DELETE FROM items WHERE id = 2000;
  INSERT INTO items VALUES (3000, 'new'); UPDATE items SET name = 'newer' WHERE id = 3000;
  UPDATE items SET name = 'plain' WHERE id = 20; COMMIT"
wait_caught_up 60

st=$("$MF" status "$SPEC" --json)
got=$(jq -c '.conflicts.tables' <<<"$st")
want='{"public.items":{"delete_missing":1,"insert_existing":1,"update_missing":1},"public.pairs":{"delete_missing":1,"insert_existing":1,"update_missing":0}}'
[[ $(jq -cS . <<<"$got") == $(jq -cS . <<<"$want") ]] || fail "conflicts per table: got $got, want $want"
[[ $(jq '.conflicts.total' <<<"$st") == 5 ]] || fail "total conflicts: $(jq '.conflicts' <<<"$st")"
log "status --json conflicts: $(jq -c .conflicts <<<"$st")"
for line in "insert_existing on public.items key (id)=(1001)" "update_missing on public.items key (id)=(5)" \
  "delete_missing on public.items key (id)=(6)" "insert_existing on public.pairs key (a, b)=(7,x)" \
  "delete_missing on public.pairs key (a, b)=(3,b3)"; do
  grep -qF "apply conflict: $line at " "$WORK/run.$RUN_N.log" || { grep conflict "$WORK/run.$RUN_N.log" || true; fail "not logged: $line"; }
done
"$MF" status "$SPEC" | grep -q "APPLY CONFLICTS: 5 (insert_existing 2, update_missing 1, delete_missing 2)" \
  || { "$MF" status "$SPEC"; fail "status text should show the conflicts"; }
curl -s --unix-socket "$WORK/state-conflicts/control.sock" http://midflight/metrics >"$WORK/metrics.txt"
grep -qF 'midflight_apply_conflicts_total{migration="conflicts",kind="update_missing",table="public.items"} 1' \
  "$WORK/metrics.txt" || { grep conflicts "$WORK/metrics.txt" || true; fail "/metrics: conflicts by table and kind"; }
# Per-partition lag on the embedded path: one entry per apply partition in
# the API, the text status and /metrics; nothing queued once caught up.
parts=$(jq -c '[.replication.partitions[]? | [.partition, .queued_changes, .lag_seconds]]' <<<"$st")
log "status --json partitions [partition, queued changes, lag s]: $parts"
[[ $parts =~ ^\[\[0,0,0\],\[1,0,0\](,\[[0-9]+,0,0\])*\]$ ]] || fail "per-partition lag in the API: $parts"
"$MF" status "$SPEC" | grep -qE "^ +1 +0 +0\.0$" || { "$MF" status "$SPEC"; fail "status text: no partition lines"; }
grep -qE '^midflight_partition_queued_changes\{migration="conflicts",partition="1"\} 0$' "$WORK/metrics.txt" &&
  grep -qE '^midflight_partition_lag_seconds\{migration="conflicts",partition="0"\} 0$' "$WORK/metrics.txt" ||
  { grep partition "$WORK/metrics.txt" || true; fail "/metrics: per-partition lag"; }
# overwrite: the source's images win; the update of a missing row inserted it.
[[ $(sql_dst -c "SELECT name FROM items WHERE id = 1001") == "from source" ]] || fail "insert_existing not overwritten"
[[ $(sql_dst -c "SELECT name FROM items WHERE id = 5") == "u5" ]] || fail "update_missing: full image not written"
assert_equal
stop_mf

# on_conflict: stop
write_spec conflicts "on_conflict: stop"
run_mf_bg
wait_phase replicating
sql_dst -c "DELETE FROM items WHERE id = 50"
sql_src -c "UPDATE items SET name = 'before' WHERE id = 49; UPDATE items SET name = 'lost?' WHERE id = 50"
rc=0; wait "$MF_PID" || rc=$?; MF_PID=
[[ $rc -eq 1 ]] || { cat "$WORK/run.$RUN_N.log"; fail "expected midflight to stop with exit 1, got $rc"; }
grep -qE "apply conflict: update_missing on public.items key \(id\)=\(50\) at [0-9A-F]+/[0-9A-F]+#[0-9]+: the target has no row with this key; on_conflict is stop" \
  "$WORK/run.$RUN_N.log" || { cat "$WORK/run.$RUN_N.log"; fail "the stop should name kind, table, key and position"; }
[[ $(status_field phase) == failed ]] || fail "phase should be failed"
status_field error | grep -qF "update_missing on public.items key (id)=(50)" || fail "status error: $(status_field error)"
log "stopped: $(status_field error | cut -c1-160)"
[[ -z $(sql_dst -c "SELECT 1 FROM items WHERE id = 50") ]] || fail "the conflicting batch must be rolled back"
[[ $(status_field conflicts.tables.\"public.items\".update_missing) == 2 ]] || fail "the stop is counted"

# The operator repairs the row; running again continues.
sql_dst -c "INSERT INTO items VALUES (50, 'i50')"
run_mf_bg
wait_phase replicating
wait_caught_up 60
assert_equal
[[ $(sql_dst -c "SELECT name FROM items WHERE id = 50") == "lost?" ]] || fail "row 50 not updated after the repair"
stop_mf
log "PASS"
