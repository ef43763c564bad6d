#!/usr/bin/env bash
# `verify` and `compare` of a transformed table, PostgreSQL -> MariaDB
# (cross_verify_transforms.sh is MariaDB -> PostgreSQL, pg_verify_transforms.sh
# PostgreSQL -> PostgreSQL). The transform applies before the casting table;
# MariaDB hashes the transformed, cast rows in a temporary table of its
# session (no binlog), written as the applier writes. The table
# "Order Lines" (a space in its name, a column named select) reaches the
# target as `sales lines`: renamed key (id -> line_no), a column renamed
# (select -> pick), an excluded column, casts (text_to_int, upper,
# timestamp_to_timestamptz), two computed columns and a row filter. midflight
# reads the source rows by key range, applies the transform, and the target
# hashes the result as it hashes its table. Under pgbench writes that move
# rows in and out of the filter, verify must be clean twice; then differences
# planted on the target (a cast value, a computed value, a deleted row, and a
# row the filter drops inserted) must each be named by the target's key,
# `--repair` must fix them through the apply path (the filtered row deleted),
# and `compare` must find the table equal once the writes stop, and not equal
# after one more planted change.
source "$(dirname "$0")/lib.sh"
export PGTZ=UTC

start_pg_to_my_servers 17450 17470
sql_src <<'SQL'
CREATE TABLE "Order Lines" (id bigint PRIMARY KEY, "select" text, qty_text text, price numeric(10,2), status text,
                            made timestamp(3), note text, secret text);
INSERT INTO "Order Lines" SELECT g, 'p' || g % 13, (g % 50)::text, (g % 100) + 0.25,
                                 CASE WHEN g % 5 = 0 THEN 'cancelled' ELSE 'paid' END,
                                 '2024-01-01'::timestamp + g * interval '1 minute 0.5 s',
                                 CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END, 's' || g
FROM generate_series(1, 6000) g;
CREATE SEQUENCE ids START 100000;
CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO plain SELECT g, 'v' || g FROM generate_series(1, 500) g;
ANALYZE;
SQL

write_spec vt "chunk_rows: 2000" "partitions: 3" \
  "verify:" "  rows_per_s: 0" "  chunk_rows: 700" \
  "transforms:" \
  "  \"public.Order Lines\":" \
  "    rename: sales lines" \
  "    exclude: [secret]" \
  "    columns:" \
  "      id: {rename: line_no}" \
  "      select: {rename: pick}" \
  "      qty_text: {rename: qty, cast: text_to_int}" \
  "      made: {cast: timestamp_to_timestamptz, zone: \"+02:00\"}" \
  "      note: {rename: remark, cast: upper}" \
  "    add:" \
  "      total: price * qty_text" \
  "      label: concat(status, '-', id)" \
  "    filter: status <> 'cancelled'" \
  "casting:" "  columns:" "    \"sales lines.total\": DECIMAL(20,2)"
T='shop.`sales lines`'

run_mf_bg
wait_phase replicating 120
[[ $(sql_my -e "SELECT COUNT(*) FROM $T") == 4800 ]] || fail "the target does not hold the 4800 rows the filter keeps"

# Writes on ids above 1000 only (the planted rows are below): rows leave and
# enter the filter, values change, rows come and go, keys move.
cat >"$WORK/writes.sql" <<'SQL'
\set i random(1001, 6000)
\set j random(1001, 6000)
UPDATE "Order Lines" SET status = CASE WHEN status = 'cancelled' THEN 'paid' ELSE 'cancelled' END WHERE id = :i;
UPDATE "Order Lines" SET price = price + 1, qty_text = (:j % 40)::text, note = 'u' || :j, "select" = 'w' WHERE id = :j;
INSERT INTO "Order Lines" SELECT nextval('ids'), 's', (:i % 9)::text, :i % 7,
                                 CASE WHEN :i % 3 = 0 THEN 'cancelled' ELSE 'new' END, now(), 'i', 'x';
DELETE FROM "Order Lines" WHERE id = :i + 11 AND id < 6000;
UPDATE "Order Lines" SET id = id + 1000000 WHERE id = :j + 17 AND id < 6000;
UPDATE plain SET v = v || '.' WHERE id = :i % 500 + 1;
SQL
pgbench -n -c 2 -j 2 -T 600 -R 100 -f "$WORK/writes.sql" "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!
EXTRA_PIDS+=($!)
sleep 2

verify() {  # verify OUTFILE [args...]: runs midflight verify, prints its output, returns its exit code
  local out=$1 rc=0 t0=$SECONDS; shift
  "$MF" verify "$SPEC" "$@" >"$out" 2>&1 || rc=$?
  sed 's/^/    /' "$out"
  log "(the verify command took $((SECONDS - t0)) s)"
  return $rc
}
verify_json() {  # verify_json EXPR: a Python expression over the last verification's JSON tables `t`
  python3 - "$WORK/state-vt/state.db" "$1" <<'PY'
import json, sqlite3, sys
j = json.loads(sqlite3.connect(sys.argv[1]).execute("SELECT value FROM kv WHERE key = 'verify_json'").fetchone()[0])
t = j["tables"]
print(eval(sys.argv[2]))
PY
}

for run in 1 2; do
  verify "$WORK/clean$run.out" || fail "verify run $run of the transformed table under writes is not clean"
  grep -q "verify: clean" "$WORK/clean$run.out" || fail "run $run: no clean summary"
  ! grep -q "not verified" "$WORK/clean$run.out" || fail "run $run: a table was not verified"
  rows=$(verify_json "[x['rows'] for x in t if 'Order Lines' in x['table']][0]")
  ((rows >= 4000)) || fail "run $run: verify compared $rows rows of the transformed table"
  log "run $run under writes: clean; $rows transformed rows compared; $(verify_json "'%d chunks, %d differing at first look, %d keys re-checked (in flight)' % \
    tuple(sum(x[k] for x in t) for k in ('chunks', 'chunks_differing_first_look', 'keys_rechecked'))"), none reported"
done

# Behind midflight's back, on MariaDB: a cast value, a computed value, a
# deleted row, and a row the filter drops on the way (id 15 is cancelled).
sql_my <<SQL
UPDATE $T SET qty = qty + 1 WHERE line_no = 11;
UPDATE $T SET label = 'planted' WHERE line_no = 12;
DELETE FROM $T WHERE line_no = 13;
INSERT INTO $T (line_no, pick, qty, price, status, made, remark, total, label)
  VALUES (15, 'p2', 15, 15.25, 'cancelled', NOW(), NULL, 0, 'cancelled-15');
SQL
log "planted on the target: line_no 11 (qty), 12 (label) changed, 13 deleted, 15 (filtered out on the source) inserted"
rc=0
verify "$WORK/found.out" || rc=$?
[[ $rc == 1 ]] || fail "verify exited $rc with planted differences (expected 1)"
expect_line() { grep -qF -- "$1" "$WORK/found.out" || fail "not reported: $1"; }
expect_line "(line_no)=(11): differs (columns qty)"
expect_line "(line_no)=(12): differs (columns label)"
expect_line "(line_no)=(13): missing on target"
expect_line "(line_no)=(15): extra on target"
[[ $(verify_json 'sum(len(x["differences"]) for x in t)') == 4 ]] ||
  fail "the report holds $(verify_json 'sum(len(x["differences"]) for x in t)') differences, not the 4 planted"
log "verify named exactly the 4 planted differences by the target's key, under writes"

rc=0
verify "$WORK/repair.out" --repair || rc=$?
[[ $rc == 1 ]] || fail "verify --repair exited $rc (expected 1: it found differences)"
grep -q "repaired 4 row(s) through the apply path" "$WORK/repair.out" || fail "no repair line"
verify "$WORK/after.out" || fail "verify after the repair is not clean"
[[ $(sql_my -e "SELECT COUNT(*) FROM $T WHERE line_no = 15") == 0 ]] || fail "the filtered row 15 was not deleted"
[[ $(sql_my -e "SELECT COUNT(*) FROM $T WHERE line_no = 13") == 1 ]] || fail "row 13 not restored"
log "repaired through the apply path (the row the filter drops deleted); the next verify is clean"

# The background job (`verify start`) runs the same verification: clean, the
# transformed table verified (not named in the summary as left out).
"$MF" verify start "$SPEC" >/dev/null || fail "verify start"
for ((i = 0; i < 240; i++)); do
  state=$("$MF" verify show "$SPEC" --json | jq -r .state)
  [[ $state == running ]] || break
  sleep 0.5
done
job=$("$MF" verify show "$SPEC" --json)
[[ $(jq -r .state <<<"$job") == done && $(jq -r .clean <<<"$job") == true ]] || fail "verify job: $job"
[[ $(jq -r .summary <<<"$job") != *"Order Lines"* ]] || fail "the background job left the transformed table out: $job"
log "background job: $(jq -r .summary <<<"$job")"

stop_load
wait_caught_up 60
[[ $(sql_my -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'mf_verify_shadow'") == 0 ]] ||
  fail "verify's scratch table outlived its session"
"$TESTDB" sql "$WORK/dst" -N -B -e "SHOW BINLOG EVENTS" 2>/dev/null | grep -q mf_verify_shadow &&
  fail "verify's scratch table reached MariaDB's binlog"
out=$("$MF" compare "$SPEC" 2>&1) || { echo "$out"; fail "compare failed or found differences"; }
echo "$out" | sed 's/^/    /'
grep -qE "Order Lines.* equal" <<<"$out" || fail "compare did not find the transformed table equal"
[[ $out != *"not compared"* ]] || fail "compare left a table out"
# compare must see a planted difference too (it is not a verify skipped silently).
sql_my -e "UPDATE $T SET remark = 'x' WHERE line_no = 21"
out=$("$MF" compare "$SPEC" 2>&1) && { echo "$out"; fail "compare found no difference after one was planted"; }
grep -qE "Order Lines.*DIFFERENT" <<<"$out" || { echo "$out"; fail "compare did not name the transformed table"; }
stop_mf
log "PASS"
