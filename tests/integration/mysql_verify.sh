#!/usr/bin/env bash
# Live verification of a MariaDB migration (read from a replica) while
# sysbench oltp_write_only writes to the primary and a second writer changes
# a table of many types with odd names (composite key with a case-insensitive
# string column, char/binary/bit/float/double/decimal/datetime(6)/timestamp/
# json/enum/set/blob/utf8mb4 text, NULL next to '' and 'NULL'). Several
# verifications under load must be clean: nothing in flight is ever reported.
# Then rows are changed, deleted and inserted on the target behind midflight's
# back: verify must name exactly those (table, key, kind, columns), --repair
# must fix them through the apply path, the next verify must be clean, and
# `midflight compare` must agree. The rate knob is shown slowing it down
# (printed, not asserted). MIDFLIGHT_MY_VERIFY_ROWS rows per sysbench table.
source "$(dirname "$0")/mylib.sh"
ROWS=${MIDFLIGHT_MY_VERIFY_ROWS:-200000}
ODD='`line items "v2"`'

start_my_servers 21600
sysbench_prepare 2 "$ROWS"
# Rows sysbench never touches (its ids are 1..ROWS): the ones planted on below.
for t in 1 2; do
  sql_pri shop -e "INSERT INTO sbtest$t (id, k, c, pad) SELECT seq, seq, CONCAT('fixed ', seq), 'pad' FROM seq_$((ROWS + 1))_to_$((ROWS + 20))"
done
sql_pri shop <<SQL
CREATE TABLE $ODD (
  \`select\` INT NOT NULL,
  \`from key\` VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL,
  \`it's\` CHAR(10), bn BINARY(4), b BIT(10), f FLOAT, d DOUBLE, dc DECIMAL(20,6), dt DATETIME(6),
  ts TIMESTAMP(3) NULL, j JSON, e ENUM('small','medium','large'), s SET('x','y','z'), bl BLOB,
  tx TEXT CHARACTER SET utf8mb4, \`NULL\` VARCHAR(10),
  PRIMARY KEY (\`select\`, \`from key\`)
) ENGINE=InnoDB;
INSERT INTO $ODD SELECT seq, ELT(1 + seq % 3, 'x', 'Ü', 'ab c'), IF(seq % 7 = 0, NULL, CONCAT('c', seq % 10)),
  UNHEX(LPAD(HEX(seq % 65536), 4, '0')), seq % 1024, seq / 3, seq / 7, seq / 9, FROM_UNIXTIME(1700000000 + seq, '%Y-%m-%d %H:%i:%s.123456'),
  FROM_UNIXTIME(1700000000 + seq), JSON_OBJECT('n', seq, 's', 'é ☕'), ELT(1 + seq % 3, 'small', 'medium', 'large'),
  ELT(1 + seq % 4, '', 'x', 'y,z', 'x,y,z'), IF(seq % 5 = 0, X'', UNHEX(REPEAT('00ff', seq % 50))),
  REPEAT('ü𝄞', seq % 20), ELT(1 + seq % 3, NULL, '', 'NULL')
FROM seq_1_to_1200;
CREATE TABLE ci_keys (k VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci PRIMARY KEY, v INT) ENGINE=InnoDB;
INSERT INTO ci_keys VALUES ('a', 1), ('b', 2);
INSERT INTO ci_keys SELECT CONCAT('k', seq), seq FROM seq_1_to_3000;
SQL
wait_replica  # midflight reads the replica: every table must be there when it starts
write_my_spec myv "partitions: 4" "copy_workers: 2" "verify:" "  rows_per_s: 0" "  chunk_rows: 10000"
run_mf_bg
wait_phase replicating 300
log "replicating; sysbench oltp_write_only at 100 tx/s on 2 x $ROWS rows, and a writer on $ODD"
start_sysbench oltp_write_only 100
(
  i=0
  while :; do
    i=$((i + 1)); id=$((1 + RANDOM % 1000))
    sql_pri shop -e "UPDATE $ODD SET f = RAND(), d = RAND() * 1e10, j = JSON_SET(j, '\$.n', $i), ts = NOW(3), \`NULL\` = ELT(1 + $i % 3, NULL, '', 'NULL'), b = $i % 1024 WHERE \`select\` = $id;
      BEGIN; DELETE FROM $ODD WHERE \`select\` = $((id + 1)); INSERT INTO $ODD (\`select\`, \`from key\`, tx, e, s) VALUES ($((id + 1)), 'x', 'reinserted', 'large', 'x,z'); COMMIT;
      UPDATE ci_keys SET v = v + 1 WHERE k = 'k$id'" 2>/dev/null || true
    sleep 0.1
  done
) &
EXTRA_PIDS+=($!)
sleep 3

verify() {  # verify OUTFILE [args...]: runs midflight verify, prints its output, returns its exit code
  local out=$1 rc=0; shift
  "$MF" verify "$SPEC" "$@" >"$out" 2>&1 || rc=$?
  sed 's/^/  | /' "$out"
  return $rc
}

# verify_json EXPR: a Python expression over the last verification's JSON
# report `j` (kept in the state store), printed.
verify_json() {
  python3 - "$WORK/state-myv/state.db" "$1" <<'PY'
import json, sqlite3, sys
j = json.loads(sqlite3.connect(sys.argv[1]).execute("SELECT value FROM kv WHERE key = 'verify_json'").fetchone()[0])
t = j["tables"]
print(eval(sys.argv[2]))
PY
}

for run in 1 2 3; do
  verify "$WORK/clean$run.out" || fail "verify run $run under load is not clean"
  grep -q "verify: clean" "$WORK/clean$run.out" || fail "run $run: no clean summary"
  log "run $run under load: $(grep -o '[0-9]* tables, [0-9]* rows in [^)]*)' "$WORK/clean$run.out"); $(verify_json \
    "sum(x['chunks'] for x in t)") chunks, $(verify_json "sum(x['chunks_differing_first_look'] for x in t)") differing at first look, $(verify_json "sum(x['keys_rechecked'] for x in t)") keys re-checked (in flight), none reported"
done
grep -q "4 tables, $((2 * (ROWS + 20) + 1200 + 3002)) rows" "$WORK/clean3.out" || fail "not every row was hashed"

log "changing the target behind midflight's back"
A=$((ROWS + 5)) B=$((ROWS + 6)) C=$((ROWS + 1000))
sql_dst shop_new <<SQL
UPDATE sbtest1 SET c = 'planted' WHERE id = $A;
DELETE FROM sbtest2 WHERE id = $B;
INSERT INTO sbtest1 (id, k, c, pad) VALUES ($C, 1, 'extra', 'extra');
UPDATE $ODD SET j = '{"planted": true}' WHERE \`select\` = 1102 AND \`from key\` = 'Ü';
UPDATE $ODD SET \`NULL\` = '' WHERE \`select\` = 1104 AND \`from key\` = 'x';
UPDATE $ODD SET f = f * (1 + 1e-6) WHERE \`select\` = 1103 AND \`from key\` = 'ab c';
UPDATE ci_keys SET k = 'A' WHERE k = 'a';
SQL
[[ $(sql_pri shop -e "SELECT \`NULL\` IS NULL FROM $ODD WHERE \`select\` = 1104") == 1 ]] || fail "row 1104 should hold NULL"
expected=(
  "shop.sbtest1 (id)=($A): differs (columns c)"
  "shop.sbtest2 (id)=($B): missing on target"
  "shop.sbtest1 (id)=($C): extra on target"
  "shop.line items \"v2\" (select, from key)=(1102, Ü): differs (columns j)"
  "shop.line items \"v2\" (select, from key)=(1104, x): differs (columns NULL)"
  "shop.line items \"v2\" (select, from key)=(1103, ab c): differs (columns f)"
  "shop.ci_keys (k)=(a): missing on target"
  "shop.ci_keys (k)=(A): extra on target"
)
check_found() {
  local out=$1 line n
  for line in "${expected[@]}"; do grep -qxF "  $line" "$out" || fail "not reported: $line"; done
  n=$(grep -cE "^  shop\..*: (differs.*|missing on target|extra on target)$" "$out" || true)
  [[ $n == "${#expected[@]}" ]] || fail "$n differences reported, expected exactly ${#expected[@]}"
  grep -q "8 differences (2 missing on target, 2 extra on target, 4 differ), 0 unsettled" "$out" || fail "summary"
}
rc=0
verify "$WORK/found.out" || rc=$?
[[ $rc == 1 ]] || fail "verify exited $rc with planted differences (expected 1)"
check_found "$WORK/found.out"
[[ $(verify_json 'sum(len(x["differences"]) for x in t)') == 8 ]] || fail "the JSON report does not hold 8 differences"
[[ $(verify_json '[d["columns"] for x in t for d in x["differences"] if d["kind"] == "differs"]') == "[['j'], ['f'], ['NULL'], ['c']]" ]] \
  || fail "JSON columns: $(verify_json '[d.get("columns") for x in t for d in x["differences"]]')"
log "verify named exactly the 8 planted differences, under load"

rc=0
verify "$WORK/repair.out" --repair || rc=$?
check_found "$WORK/repair.out"
# The 'A' row is replaced by the upsert of 'a' (a delete of 'A' by the
# case-insensitive key would remove 'a' too): 7 repairs for 8 differences.
grep -q "repaired 7 row(s) through the apply path" "$WORK/repair.out" || fail "repair count"
[[ $(sql_dst shop_new -e "SELECT COUNT(*) FROM ci_keys WHERE k = 'a' AND BINARY k = 'a'") == 1 ]] || fail "ci_keys 'a' not repaired"
[[ $(sql_dst shop_new -e "SELECT c FROM sbtest1 WHERE id = $A") == "fixed $A" ]] || fail "sbtest1 $A not repaired"

verify "$WORK/after.out" || fail "verify after the repair is not clean"
log "clean after the repair, under load"

log "the rate knob: unlimited (spec verify.rows_per_s: 0), then knob verify_rows_per_s=20000"
verify "$WORK/unlimited.out" || fail "not clean (unlimited)"
"$MF" knobs set "$SPEC" verify_rows_per_s=20000 >/dev/null
verify "$WORK/slow.out" || fail "not clean (verify_rows_per_s=20000)"
log "unlimited: $(grep -o '([0-9]* rows/s)' "$WORK/unlimited.out"); verify_rows_per_s=20000: $(grep -o '([0-9]* rows/s)' "$WORK/slow.out")"

kill "${EXTRA_PIDS[@]}" 2>/dev/null || true
wait "${EXTRA_PIDS[@]}" 2>/dev/null || true
EXTRA_PIDS=()
stop_sysbench
wait_my_caught_up 120
assert_equal
stop_mf
assert_primary_untouched
log "PASS"
