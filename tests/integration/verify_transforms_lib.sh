# The checks shared by cross_verify_transforms.sh (MariaDB -> PostgreSQL),
# pg_verify_transforms.sh (PostgreSQL -> PostgreSQL) and
# cross_verify_transforms_pg_to_my.sh (PostgreSQL -> MariaDB): one table,
# "Order Lines", reaches the target as T ("sales lines": key id renamed
# line_no, select renamed pick, qty_text cast to qty, computed total and label,
# rows with status 'cancelled' filtered out), while writes change rows above
# id 1000; and one table whose key column is cast, 'Key "Codes"' (20000 rows,
# id int_to_text renamed code), reaches it as CK ("key codes"), while writes
# change and move rows above id 12000. The caller sets SPEC, T, CK, and tsql
# (runs one statement, or stdin, on the target, printing bare values), and
# LEFT_OUT: a table the run names as not verified on purpose ("" for none).

verify() {  # verify OUTFILE [args...]: runs midflight verify, prints its output, returns its exit code
  local out=$1 rc=0 t0=$SECONDS; shift
  "$MF" verify "$SPEC" "$@" >"$out" 2>&1 || rc=$?
  sed 's/^/    /' "$out"
  log "(the verify command took $((SECONDS - t0)) s)"
  return $rc
}
verify_json() {  # verify_json EXPR: a Python expression over the last verification's JSON tables `t`
  python3 - "$WORK/state-$(basename "$SPEC" .yaml)/state.db" "$1" <<'PY'
import json, sqlite3, sys
j = json.loads(sqlite3.connect(sys.argv[1]).execute("SELECT value FROM kv WHERE key = 'verify_json'").fetchone()[0])
t = j["tables"]
print(eval(sys.argv[2]))
PY
}
others() { grep -v "${LEFT_OUT:-^$}" "$@"; }  # lines not about LEFT_OUT
verify_finds() {  # verify_finds OUTFILE PREFIX LINE...: verify exits 1 and reports each "PREFIX LINE"
  local out=$1 prefix=$2 rc=0 line
  shift 2
  verify "$out" || rc=$?
  [[ $rc == 1 ]] || fail "verify exited $rc with planted differences (expected 1)"
  for line in "$@"; do grep -qF -- "$prefix $line" "$out" || fail "not reported: $prefix $line"; done
}

# Under the writes: verify clean twice, four planted differences named by the
# target's key, repaired through the apply path, the background job clean.
check_verify_transforms() {
  local run rc rows state job i
  for run in 1 2; do
    verify "$WORK/clean$run.out" || fail "verify run $run of the transformed table under writes is not clean"
    grep -q "verify: clean" "$WORK/clean$run.out" || fail "run $run: no clean summary"
    ! others "$WORK/clean$run.out" | grep -q "not verified" || fail "run $run: a table was not verified"
    rows=$(verify_json "[x['rows'] for x in t if 'Order Lines' in x['table']][0]")
    ((rows >= 4000)) || fail "run $run: verify compared $rows rows of the transformed table"
    log "run $run under writes: clean; $rows transformed rows compared; $(verify_json "'%d chunks, %d differing at first look, %d keys re-checked (in flight)' % \
      tuple(sum(x[k] for x in t) for k in ('chunks', 'chunks_differing_first_look', 'keys_rechecked'))"), none reported"
  done

  # Behind midflight's back, on the target: a cast value, a computed value, a
  # deleted row, and a row the filter drops on the way (id 15 is cancelled).
  tsql <<SQL
UPDATE $T SET qty = qty + 1 WHERE line_no = 11;
UPDATE $T SET label = 'planted' WHERE line_no = 12;
DELETE FROM $T WHERE line_no = 13;
INSERT INTO $T (line_no, pick, qty, price, status, made, remark, total, label)
  VALUES (15, 'p2', 15, 15.25, 'cancelled', NOW(), NULL, 0, 'cancelled-15');
SQL
  log "planted on the target: line_no 11 (qty), 12 (label) changed, 13 deleted, 15 (filtered out on the source) inserted"
  verify_finds "$WORK/found.out" "Order Lines" "(line_no)=(11): differs (columns qty)" \
    "(line_no)=(12): differs (columns label)" "(line_no)=(13): missing on target" "(line_no)=(15): extra on target"
  [[ $(verify_json 'sum(len(x["differences"]) for x in t)') == 4 ]] ||
    fail "the report holds $(verify_json 'sum(len(x["differences"]) for x in t)') differences, not the 4 planted"
  log "verify named exactly the 4 planted differences by the target's key, under writes"

  rc=0
  verify "$WORK/repair.out" --repair || rc=$?
  [[ $rc == 1 ]] || fail "verify --repair exited $rc (expected 1: it found differences)"
  grep -q "repaired 4 row(s) through the apply path" "$WORK/repair.out" || fail "no repair line"
  verify "$WORK/after.out" || fail "verify after the repair is not clean"
  [[ $(tsql "SELECT COUNT(*) FROM $T WHERE line_no = 15") == 0 ]] || fail "the filtered row 15 was not deleted"
  [[ $(tsql "SELECT COUNT(*) FROM $T WHERE line_no = 13") == 1 ]] || fail "row 13 not restored"
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
}

# The table whose key column is cast (int_to_text): verified like any other,
# its chunks on the source's integer key and the target's text keys mapped
# back to it (text orders "10" before "9": ranges on the text would not
# select the same rows). Under the writes: verified clean with all its rows;
# then, behind midflight's back on the target, a changed value, a deleted
# row in the second chunk, and two rows whose keys no integer casts to
# ('0042', 'x 1'), each named by its target key; --repair fixes the first two
# through the apply path and names the two it cannot send through the
# transform; once those are deleted by hand the next verify is clean.
check_cast_key() {
  local rc rows line
  verify "$WORK/ck_clean.out" || fail "verify with the cast-key table is not clean"
  ! grep -q "Codes.*not verified" "$WORK/ck_clean.out" || fail "the cast-key table was not verified"
  rows=$(verify_json "[x['rows'] for x in t if 'Codes' in x['table']][0]")
  ((rows >= 20000)) || fail "verify compared $rows rows of the cast-key table, fewer than its 20000"
  log "cast key: clean under writes, $rows rows compared through int_to_text"

  tsql <<SQL
UPDATE $CK SET v = 'planted' WHERE code = '17';
DELETE FROM $CK WHERE code = '9000';
INSERT INTO $CK (code, v) VALUES ('0042', 'extra'), ('x 1', 'extra');
SQL
  log "planted on the target: code 17 changed, 9000 deleted, '0042' and 'x 1' inserted"
  verify_finds "$WORK/ck_found.out" 'Codes"' "(code)=(17): differs (columns v)" "(code)=(9000): missing on target" \
    "(code)=(0042): extra on target" "(code)=(x 1): extra on target"
  [[ $(verify_json "sum(len(x['differences']) for x in t if 'Codes' in x['table'])") == 4 ]] ||
    fail "the report holds other differences than the 4 planted in the cast-key table"
  log "verify named the 4 planted differences by the target's (cast) key"

  rc=0
  verify "$WORK/ck_repair.out" --repair || rc=$?
  [[ $rc == 1 ]] || fail "verify --repair exited $rc (expected 1)"
  grep -q "repaired 2 row(s) through the apply path" "$WORK/ck_repair.out" || fail "the cast-key table was not repaired"
  for line in "(code)=(0042): not repaired: no source key casts to it" "(code)=(x 1): not repaired: no source key casts to it"; do
    grep -qF -- "$line" "$WORK/ck_repair.out" || fail "not named as not repaired: $line"
  done
  tsql "DELETE FROM $CK WHERE code IN ('0042', 'x 1')"
  verify "$WORK/ck_after.out" || fail "verify after the cast-key repair is not clean"
  [[ $(tsql "SELECT COUNT(*) FROM $CK WHERE code = '9000'") == 1 ]] || fail "row 9000 not restored"
  [[ $(tsql "SELECT v FROM $CK WHERE code = '17'") == c17 ]] || fail "row 17 not repaired"
  log "cast key: 2 rows repaired through the apply path, the 2 the transform cannot reach named; clean after"
}

# Writes stopped and applied: compare finds the transformed table equal, then
# DIFFERENT after one more value changed on the target.
check_compare_transforms() {
  local out
  out=$("$MF" compare "$SPEC" 2>&1) || { echo "$out"; fail "compare failed or found differences"; }
  echo "$out" | sed 's/^/    /'
  grep -qE "Order Lines.* equal" <<<"$out" || fail "compare did not find the transformed table equal"
  ! others <<<"$out" | grep -q "not compared" || fail "compare left a table out"
  tsql "UPDATE $T SET remark = 'x' WHERE line_no = 21"
  out=$("$MF" compare "$SPEC" 2>&1) && { echo "$out"; fail "compare found no difference after one was planted"; }
  grep -qE "Order Lines.*DIFFERENT" <<<"$out" || { echo "$out"; fail "compare did not name the transformed table"; }
  log "compare: the transformed table equal, then DIFFERENT after one planted change"
}

# The spec lines of the transform every verify_transforms test runs, for the
# table "Order Lines" of schema $1: a rename, an exclude, renamed and cast
# columns, two computed columns and a filter.
vt_transform_spec() {
  VT_SPEC=("transforms:"
    "  \"$1.Order Lines\":"
    "    rename: sales lines"
    "    exclude: [secret]"
    "    columns:"
    "      id: {rename: line_no}"
    "      select: {rename: pick}"
    "      qty_text: {rename: qty, cast: text_to_int}"
    "      made: {cast: timestamp_to_timestamptz, zone: \"+02:00\"}"
    "      note: {rename: remark, cast: upper}"
    "    add:"
    "      total: price * qty_text"
    "      label: concat(status, '-', id)"
    "    filter: status <> 'cancelled'"
    "  '$1.Key \"Codes\"':"
    "    rename: key codes"
    "    columns:"
    "      id: {rename: code, cast: int_to_text}")
}

# The PostgreSQL source's tables (pg_verify_transforms, cross_verify_transforms_pg_to_my).
vt_pg_source_tables() {
  sql_src <<'SQL'
CREATE TABLE "Order Lines" (id bigint PRIMARY KEY, "select" text, qty_text text, price numeric(10,2), status text,
                            made timestamp(3), note text, secret text);
INSERT INTO "Order Lines" SELECT g, 'p' || g % 13, (g % 50)::text, (g % 100) + 0.25,
                                 CASE WHEN g % 5 = 0 THEN 'cancelled' ELSE 'paid' END,
                                 '2024-01-01'::timestamp + g * interval '1 minute 0.5 s',
                                 CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END, 's' || g
FROM generate_series(1, 6000) g;
CREATE SEQUENCE ids START 100000;
CREATE TABLE "Key ""Codes""" (id int PRIMARY KEY, v text);
INSERT INTO "Key ""Codes""" SELECT g, 'c' || g FROM generate_series(1, 20000) g;
CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO plain SELECT g, 'v' || g FROM generate_series(1, 500) g;
ANALYZE;
SQL
}
