#!/usr/bin/env bash
# Verification across engines: a MariaDB primary + replica as the source,
# PostgreSQL as the target (MariaDB -> PostgreSQL through the casting table),
# sysbench writing to the primary and a loop changing a table of every MySQL
# type, a JSON document table (generated columns, composite key) and a table
# whose text key is under a case-insensitive collation. Under that load
# `midflight verify` must be clean (every row hashed by each server over its
# canonical form, nothing in flight reported). Then differences planted on
# the PostgreSQL side behind midflight's back (changed values, a missing row,
# an extra row, an extra key differing only in case) must be named by table,
# key, kind and columns; `verify --repair` fixes them through the apply path;
# the next verify and the background job (`verify start`) are clean; and
# `midflight compare` says equal for every table once the load stops.
source "$(dirname "$0")/mylib.sh"
ROWS=${MIDFLIGHT_CROSS_VERIFY_ROWS:-10000}

start_my_servers 25100
"$TESTDB" stop "$DST_DIR" immediate  # mylib's MariaDB target: not used here
pgport=$(free_port 25120)
"$TESTDB" start pg "$WORK/pg" "$pgport"
psql -X -q -At "$("$TESTDB" uri "$WORK/pg")" -c "CREATE DATABASE target"
DST=$("$TESTDB" uri "$WORK/pg" target)
sql_dst() { psql -X -q -v ON_ERROR_STOP=1 -At "$DST" "$@"; }

sysbench_prepare 2 "$ROWS"
# Rows sysbench never touches (its ids are 1..ROWS): the ones planted on below.
sql_pri shop -e "INSERT INTO sbtest1 (id, k, c, pad) SELECT seq, seq, CONCAT('fixed ', seq), 'pad' FROM seq_$((ROWS + 1))_to_$((ROWS + 20))"
sql_pri <<'SQL'
SET sql_mode = 'NO_ENGINE_SUBSTITUTION';
USE shop;
CREATE TABLE types (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, flag TINYINT(1), si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT,
  mu MEDIUMINT UNSIGNED, ii INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  d DECIMAL(65,30), d2 DECIMAL(10,2), f FLOAT, db DOUBLE,
  dt DATE, dtm DATETIME(6), dtm0 DATETIME, ts TIMESTAMP(6) NULL, tm TIME(6), tm_big TIME, y YEAR,
  b1 BIT(1), b BIT(10), b64 BIT(64), e ENUM('small','medium','large'), st SET('x','y','z'), j JSON,
  g GEOMETRY NULL, bn BINARY(4), vb VARBINARY(100), bl LONGBLOB,
  c CHAR(10), vc VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci,
  lat VARCHAR(50) CHARACTER SET latin1, tx TEXT
) ENGINE=InnoDB;
INSERT INTO types VALUES
 (1, -128, 255, 1, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808,
  18446744073709551615, '-12345678901234567890123456789012345.123456789012345678901234567890', -0.05, 3.1415927,
  2.718281828459045, '2024-02-29', '9999-12-31 23:59:59.999999', '1000-01-01 00:00:00', '2038-01-19 03:14:07.999999',
  '23:59:59.999999', '-838:59:59', 2155, b'1', b'1010101010',
  b'1111111111111111111111111111111111111111111111111111111111111111', 'large', 'x,z',
  '{"b": [1, 2.50, "x"], "a": null, "c": {"d": "é", "e": 1e2}}', ST_GeomFromText('POINT(1 2)'), X'00FF0A00', X'000102',
  X'DEADBEEF00', 'ab', 'naïve café ☕ 𝄞', 'Ærøskøbing €', 'tab\tnl\nbs\\q'''),
 (2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1e20, '0000-00-00', '0000-00-00 00:00:00', '2000-01-01', NULL, '00:00:00',
  '838:59:59', 0, b'0', b'0', b'0', 'small', '', '[]', NULL, X'00000000', X'', X'', '', '', '', ''),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO types (d2, vc, tx, bu, ts, j, f, db) SELECT seq / 7, CONCAT('row ', seq), REPEAT('x', seq % 300),
  18446744073709551615 - seq, FROM_UNIXTIME(1700000000 + seq), JSON_OBJECT('n', seq, 'f', seq / 3), seq / 3, 1e-7 * seq
  FROM seq_10_to_3000;
CREATE TABLE docs (
  region CHAR(2) NOT NULL,
  id BIGINT NOT NULL AUTO_INCREMENT,
  doc JSON NOT NULL,
  tenant VARCHAR(64) AS (JSON_VALUE(doc, '$.tenant')) STORED,
  kind VARCHAR(32) AS (JSON_VALUE(doc, '$.kind')) VIRTUAL,
  PRIMARY KEY (id, region),
  KEY k_tenant (tenant)
) ENGINE=InnoDB;
INSERT INTO docs (region, doc) SELECT IF(seq % 2, 'eu', 'us'),
  JSON_OBJECT('tenant', CONCAT('t', seq % 13), 'kind', ELT(1 + seq % 3, 'order', 'refund', 'quote'), 'total', seq * 1.25)
  FROM seq_1_to_3000;
-- A text key under a case-insensitive collation: MariaDB orders 'b' < 'C' < 'd', PostgreSQL's "C" the other way.
CREATE TABLE tags (name VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL PRIMARY KEY, n INT)
  ENGINE=InnoDB;
INSERT INTO tags SELECT CONCAT(ELT(1 + seq % 6, 'a', 'B', 'c', 'D', 'é', 'Z'), seq), seq FROM seq_1_to_2500;
SQL
wait_replica

write_my_spec xv "chunk_rows: 4000" "copy_workers: 2" "partitions: 4" \
  "casting:" "  zero_dates: null" "  columns:" "    types.tm_big: interval" \
  "verify:" "  rows_per_s: 0" "  chunk_rows: 1000"
run_mf_bg
wait_phase replicating 120

log "replicating; sysbench oltp_write_only at 100 tx/s on 2 x $ROWS rows, and a writer on types, docs, tags"
start_sysbench oltp_write_only 100
(
  i=0
  while :; do
    i=$((i + 1))
    "$TESTDB" sql "$PRI_DIR" shop -e "
      UPDATE types SET d2 = d2 + 0.01, f = RAND(), db = RAND() * 1e10, ts = TIMESTAMPADD(MICROSECOND, $i, COALESCE(ts, '2020-01-01')),
        j = JSON_SET(COALESCE(j, '{}'), '\$.i', $i, '\$.x', 1.50), vc = CONCAT('é', $i), bl = UNHEX(LPAD(HEX($i), 8, '0'))
        WHERE id = 10 + $i % 2900;
      INSERT INTO types (bu, vc, tx, e, st, b, tm, dtm, vb) VALUES (18446744073709551615 - $i, '', NULL, 'medium',
        'y,z', b'11', '01:02:03.000004', '2024-06-01 10:00:00.5', X'00');
      BEGIN; DELETE FROM types WHERE id = 3000 + $i * 3; UPDATE docs SET doc = JSON_SET(doc, '\$.kind', 'refund', '\$.tenant', 't$i') WHERE id = $i % 2000 + 1; COMMIT;
      UPDATE tags SET n = n + 1 WHERE name = CONCAT(ELT(1 + $i % 6, 'a', 'B', 'c', 'D', 'é', 'Z'), $i % 2000 + 1);" \
      >/dev/null 2>&1 || true
    sleep 0.1
  done
) &
EXTRA_PIDS+=($!)
DML_PID=$!
sleep 3

verify() {  # verify OUTFILE [args...]: runs midflight verify, prints its output, returns its exit code
  local out=$1 rc=0 t0=$SECONDS; shift
  "$MF" verify "$SPEC" "$@" >"$out" 2>&1 || rc=$?
  sed 's/^/    /' "$out"
  log "(the verify command took $((SECONDS - t0)) s)"
  return $rc
}
verify_json() {  # verify_json EXPR: a Python expression over the last verification's JSON tables `t`
  python3 - "$WORK/state-xv/state.db" "$1" <<'PY'
import json, sqlite3, sys
j = json.loads(sqlite3.connect(sys.argv[1]).execute("SELECT value FROM kv WHERE key = 'verify_json'").fetchone()[0])
t = j["tables"]
print(eval(sys.argv[2]))
PY
}

for run in 1 2; do
  verify "$WORK/clean$run.out" || fail "verify run $run under load across engines is not clean"
  grep -q "verify: clean" "$WORK/clean$run.out" || fail "run $run: no clean summary"
  log "run $run under load: $(verify_json "'%d chunks, %d differing at first look, %d keys re-checked (in flight)' % \
    tuple(sum(x[k] for x in t) for k in ('chunks', 'chunks_differing_first_look', 'keys_rechecked'))"), none reported"
done

# Behind midflight's back, on PostgreSQL: rows the load does not touch.
sql_dst <<SQL
UPDATE shop.types SET d2 = 1.23, j = '{"b": [1, 2.5, "x"], "a": null, "c": {"d": "e"}}' WHERE id = 1;
UPDATE shop.types SET dtm = '2001-02-03 04:05:06' WHERE id = 2;
DELETE FROM shop.sbtest1 WHERE id = $((ROWS + 5));
INSERT INTO shop.sbtest2 (id, k, c, pad) VALUES (999999, 1, 'planted', 'planted');
INSERT INTO shop.tags VALUES ('A6', 7);  -- the source has 'a6': equal under its collation, not in PostgreSQL
SQL
log "planted on the target: types id 1 (d2, j) and 2 (dtm, a zero date read as NULL), sbtest1 id $((ROWS + 5)) deleted, sbtest2 id 999999 and tags 'A6' (the source has 'a6') inserted"
rc=0
verify "$WORK/found.out" || rc=$?
[[ $rc == 1 ]] || fail "verify exited $rc with planted differences (expected 1)"
expect_line() { grep -qF -- "$1" "$WORK/found.out" || fail "not reported: $1"; }
expect_line "shop.types (id)=(1): differs (columns d2, j)"
expect_line "shop.types (id)=(2): differs (columns dtm)"
expect_line "shop.sbtest1 (id)=($((ROWS + 5))): missing on target"
expect_line "shop.sbtest2 (id)=(999999): extra on target"
expect_line "shop.tags (name)=(A6): extra on target"
[[ $(verify_json 'sum(len(x["differences"]) for x in t)') == 5 ]] \
  || fail "the report holds $(verify_json 'sum(len(x["differences"]) for x in t)') differences, not the 5 planted"
log "verify named exactly the 5 planted differences by table, key and columns, under load"

rc=0
verify "$WORK/repair.out" --repair || rc=$?
[[ $rc == 1 ]] || fail "verify --repair exited $rc (expected 1: it found differences)"
grep -q "repaired 5 row(s) through the apply path" "$WORK/repair.out" || fail "no repair line"
verify "$WORK/after.out" || fail "verify after the repair is not clean"
[[ $(sql_dst -c "SELECT d2 FROM shop.types WHERE id = 1") != 1.23 ]] || fail "types id 1 not repaired"
[[ $(sql_dst -c "SELECT count(*) FROM shop.tags WHERE name IN ('A6', 'a6')") == 1 ]] || fail "tags 'A6' not deleted, or 'a6' with it"
log "repaired through the apply path; the next verify is clean"

# The background job: one pass, progress in the store, clean.
"$MF" verify start "$SPEC" >/dev/null || fail "verify start"
for ((i = 0; i < 240; i++)); do
  state=$("$MF" verify show "$SPEC" --json | jq -r .state)
  [[ $state == running ]] || break
  sleep 0.5
done
job=$("$MF" verify show "$SPEC" --json)
[[ $(jq -r .state <<<"$job") == done && $(jq -r .clean <<<"$job") == true ]] || fail "verify job: $job"
log "background job: $(jq -r .summary <<<"$job")"

stop_sysbench
kill "$DML_PID" 2>/dev/null; wait "$DML_PID" 2>/dev/null || true
wait_my_caught_up 90

# Continuous verification with repair: midflight restarted with it on; a
# value changed on the target is found and re-copied by a pass, the next pass is clean.
kill -TERM "$MF_PID"; wait "$MF_PID" 2>/dev/null || true
printf '%s\n' "  continuous: true" "  continuous_rows_per_s: 0" "  continuous_pause_seconds: 1" "  continuous_repair: true" >>"$SPEC"
sql_dst -c "UPDATE shop.docs SET doc = '{\"tenant\": \"t0\"}' WHERE id = 8"
run_mf_bg
wait_phase replicating 60
for ((i = 0; i < 240; i++)); do
  job=$("$MF" verify show "$SPEC" --json 2>/dev/null) || job='{}'
  jq -e '([.reports[]? | select(.kind == "continuous" and .repaired >= 1)] | length) >= 1 and
         (.reports[-1].kind == "continuous") and .reports[-1].clean' <<<"$job" >/dev/null && break
  sleep 0.5
done
jq -e '.reports[-1].clean' <<<"$job" >/dev/null || fail "continuous verification did not repair and pass clean: $job"
log "continuous: $(jq -r '[.reports[] | select(.kind == "continuous" and .repaired >= 1)][0].summary' <<<"$job"); then: $(jq -r '.reports[-1].summary' <<<"$job")"
"$MF" verify stop "$SPEC" >/dev/null || true
"$MF" compare "$SPEC" >"$WORK/compare.out" 2>&1 || { cat "$WORK/compare.out"; fail "compare across engines: not equal"; }
sed 's/^/    /' "$WORK/compare.out"
for t in types docs tags sbtest1 sbtest2; do
  grep -qE "shop\.$t +[0-9]+ rows  equal" "$WORK/compare.out" || fail "compare: table $t not equal"
done
grep -q "source and target are equal" "$WORK/compare.out" || fail "compare: no verdict"
# compare can fail too: one changed value on the target.
sql_dst -c "UPDATE shop.docs SET doc = doc || '{\"x\": 1}' WHERE id = 7"
rc=0
"$MF" compare "$SPEC" >"$WORK/compare2.out" 2>&1 || rc=$?
[[ $rc == 1 ]] && grep -q "shop.docs .*DIFFERENT" "$WORK/compare2.out" || fail "compare did not see the changed document: $(cat "$WORK/compare2.out")"
log "compare: equal on every table, and DIFFERENT on docs after one document changed on the target"
kill -TERM "$MF_PID"; wait "$MF_PID" 2>/dev/null || true; MF_PID=
assert_primary_untouched
log "ok"
