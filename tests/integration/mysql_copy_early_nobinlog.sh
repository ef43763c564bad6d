#!/usr/bin/env bash
# MySQL copy levers (schema_loader.h EarlyIndexBuilder, spec copy_binlog):
#   1. copy_binlog: false needs the right to set sql_log_bin: a target user
#      without SUPER / BINLOG ADMIN is refused up front, naming the setting;
#   2. with it, a table's secondary indexes are added as soon as its last
#      chunk commits, while other tables are still copying (their ALTER
#      TABLE is logged before the copy ends), the foreign key after the copy;
#   3. the copied rows are not in the target's binlog (no row event for a
#      migrated table), while the changes streamed afterwards are;
# then the sides are equal.
source "$(dirname "$0")/mylib.sh"

start_my_servers 25400
sysbench_prepare 3 30000
sql_pri -e "CREATE TABLE shop.child (id INT PRIMARY KEY, parent INT NOT NULL, note VARCHAR(20), KEY k_note (note),
  CONSTRAINT fk_parent FOREIGN KEY (parent) REFERENCES shop.sbtest1 (id));
  INSERT INTO shop.child SELECT id, id, CONCAT('n', id % 97) FROM shop.sbtest1 WHERE id <= 3000"
wait_replica
# Row events for the migrated tables in the target's binlog (SHOW BINLOG EVENTS of every file).
target_row_events() {
  local f n=0
  for f in $(sql_dst -e "SHOW BINARY LOGS" | cut -f1); do
    n=$((n + $(sql_dst -e "SHOW BINLOG EVENTS IN '$f'" | grep -c "Table_map.*shop_new.*\(sbtest\|child\)" || true)))
  done
  echo "$n"
}

# ---- 1. refused without the privilege ----
"$TESTDB" sql "$DST_DIR" -e "CREATE USER weak@'%' IDENTIFIED BY 'weakpass';
  GRANT ALL ON shop_new.* TO weak@'%'; GRANT ALL ON midflight.* TO weak@'%'"
DST_MF=$DST
DST="mysql://weak:weakpass@127.0.0.1:${DST#*@127.0.0.1:}"
write_my_spec weak "copy_binlog: false"
rc=0
out=$("$MF" run "$SPEC" 2>&1) || rc=$?
[[ $rc -ne 0 ]] || fail "a target user without SUPER ran with copy_binlog: false"
grep -q "target: copy_binlog: false needs SUPER or BINLOG ADMIN to set sql_log_bin = 0" <<<"$out" ||
  { echo "$out"; fail "the refusal does not name copy_binlog and sql_log_bin"; }
log "refused: $(grep -o "target: copy_binlog: false needs[^;]*" <<<"$out" | head -1 | cut -c1-110)"
[[ $(sql_dst -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop_new'") == 0 ]] ||
  fail "the refused run created tables"

# ---- 2. early indexes, no binlog ----
DST=$DST_MF
write_my_spec lev "copy_binlog: false" "chunk_rows: 3000" "copy_workers: 2" "partitions: 2"
run_mf_bg
wait_phase replicating 120
L=$WORK/run.$RUN_N.log
grep -q "the secondary indexes of 4 tables built as their copy ended" "$L" ||
  { cat "$L"; fail "no early index builds reported"; }
done_line=$(grep -n "copying: done" "$L" | head -1 | cut -d: -f1)
first_add=$(grep -n "schema: adding [0-9]* indexes to shop_new.sbtest" "$L" | head -1 | cut -d: -f1)
[[ -n $first_add && -n $done_line && $first_add -lt $done_line ]] ||
  { cat "$L"; fail "no index was added before the copy ended (first at line ${first_add:-none}, copy done at line ${done_line:-none})"; }
log "first index build at log line $first_add, copy done at line $done_line: $(sed -n "${first_add}p" "$L" | cut -c1-100)"
for t in sbtest1 sbtest2 sbtest3; do
  [[ $(sql_dst -e "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'shop_new' AND TABLE_NAME = '$t' AND INDEX_NAME = 'k_$(tr -dc 0-9 <<<"$t")'") -ge 1 ]] ||
    fail "$t has no secondary index on the target"
done
[[ $(sql_dst -e "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = 'shop_new' AND CONSTRAINT_NAME = 'fk_parent'") == 1 ]] ||
  fail "the foreign key fk_parent is missing on the target"

# ---- 3. the copy is not in the target's binlog, the stream is ----
n=$(target_row_events)
[[ $n -eq 0 ]] || fail "the target's binlog has $n row events of the migrated tables after a copy with copy_binlog: false"
log "target binlog: 0 row events of the migrated tables after the copy"
start_sysbench oltp_write_only 20
sleep 3
stop_sysbench
wait_my_caught_up 120
n=$(target_row_events)
[[ $n -gt 0 ]] || fail "the streamed changes are not in the target's binlog"
log "target binlog: $n row events of the migrated tables after streaming"
assert_equal
stop_mf
assert_primary_untouched
log "ok"
