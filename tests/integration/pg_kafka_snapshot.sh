#!/usr/bin/env bash
# transport: kafka with publish_snapshot: true. The copy produces every copied
# row too (change topic: a read record in its key's partition; table topics:
# Debezium's op r event), so `midflight replay --from-offset earliest` into an
# emptied target rebuilds it.
#  1. The first run is killed (SIGKILL, crash point snapshot-chunk-published)
#     after Kafka acknowledged a chunk's rows and before the chunk's target
#     transaction committed. Rows are then deleted on the source all over
#     pgbench_accounts: the crashed chunk is copied again from a newer
#     snapshot without them, while the topic still holds the older copy's
#     rows, whose deletes the snapshot filter drops from the stream. The
#     resumed copy puts a reset record before each chunk it copies again.
#  2. The resumed run copies the rest and replicates a pgbench load (a
#     custom script on 20,000 accounts; pgbench_history given a key) and a
#     table of awkward types (text with tabs, newlines and backslashes,
#     bytea with zero bytes, numeric, timestamptz, jsonb, arrays, NULLs);
#     the target equals the source.
#  3. The target is emptied as a user rebuilding it would (its tables and
#     midflight's checkpoints truncated) and replayed from offset zero: it
#     equals the source row for row again, the deleted accounts included
#     (without the resets they would come back), and the replay applied
#     snapshot rows and chunk resets.
# Bad input: publish_snapshot with a value that is not a boolean is refused
# at load, naming the setting.
source "$(dirname "$0")/lib.sh"
start_servers 30200

P=midflight
start_kafka_mock "$P.ksnap.changes:4" "$P.public.pgbench_accounts:4" "$P.public.pgbench_tellers:4" \
  "$P.public.pgbench_branches:4" "$P.public.pgbench_history:4" "$P.public.kinds:4"
start_schema_registry 30210

# The mock cluster keeps about 5 MiB per partition: 20,000 accounts.
pgbench -i -s 1 -q "$SRC" >/dev/null 2>&1
sql_src -c "DELETE FROM pgbench_accounts WHERE aid > 20000" -c "VACUUM ANALYZE pgbench_accounts" \
  -c "ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY" \
  -c "CREATE TABLE kinds (id int PRIMARY KEY, t text, b bytea, n numeric(12,3), ts timestamptz, j jsonb,
                          arr text[], u uuid, f float8, d date)" \
  -c "INSERT INTO kinds SELECT g, E'tab\there\nnew line \\\\ back' || g, decode('00ff0a5c' || lpad(to_hex(g), 4, '0'), 'hex'),
        g * 1.125, '2024-01-02 03:04:05.25+00'::timestamptz + g * interval '1 hour', jsonb_build_object('k', g, 's', 'a\"b'),
        ARRAY['x', NULL, 'y z'], md5(g::text)::uuid, g / 3.0, DATE '2020-02-29' + g
      FROM generate_series(1, 300) g" \
  -c "INSERT INTO kinds (id) VALUES (0)"
cat >"$WORK/load.sql" <<'SQL'
\set aid random(1, 20000)
\set tid random(1, 10)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = 1;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, 1, :aid, :delta, CURRENT_TIMESTAMP);
UPDATE kinds SET n = n + 1, j = j || jsonb_build_object('d', :delta) WHERE id = :aid % 300;
END;
SQL

spec() {
  write_spec ksnap "partitions: 4" "chunk_rows: 2000" "copy_workers: 2" "transport:" "  kind: kafka" \
    "  brokers: \"$BROKERS\"" "  topic_prefix: $P" "  schema_registry: \"$REGISTRY\"" "  publish_snapshot: ${1:-true}"
}

# Bad input: one line naming the setting.
spec sometimes
rc=0
out=$("$MF" run "$SPEC" 2>&1) || rc=$?
[[ $rc -ne 0 ]] || fail "publish_snapshot: sometimes was accepted"
log "bad value: $(echo "$out" | tail -1)"
[[ $out == *"field 'transport.publish_snapshot': 'sometimes' must be true"* ]] || fail "unclear: $out"
rm -rf "$WORK/state-ksnap"

spec
pgbench -c 2 -j 2 -T 600 -R 30 -n -f "$WORK/load.sql" "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!
began=$(date +%s)
log "1. copy killed after Kafka acknowledged chunk 4's rows, before its target commit"
run_mf_crash snapshot-chunk-published=4
grep -o "copying: every copied row is published to [^ ]*" "$WORK/run.$RUN_N.log" | sed 's/^/    /'
copied=$(sql_dst -c "SELECT count(*) FROM midflight.chunks WHERE migration = 'ksnap'")
log "chunks committed on the target before the crash: $copied"
deleted=$(sql_src -c "WITH d AS (DELETE FROM pgbench_accounts WHERE aid % 97 = 0 RETURNING 1) SELECT count(*) FROM d")
sql_src -c "UPDATE pgbench_accounts SET filler = 'changed between the snapshots' WHERE aid % 89 = 0"
log "deleted $deleted accounts on the source (aid % 97 = 0) and updated some before the copy resumes"

log "2. the copy resumes (chunks copied again get a reset record first), then replicates under load"
run_mf_bg
wait_phase replicating
grep -o "copying: every copied row is published.*" "$WORK/run.$RUN_N.log" | sed 's/^/    /'
resets=$(grep -c "reset record" "$WORK/run.$RUN_N.log" || true)
log "reset records produced by the resumed copy: $resets (chunks or tables copied again)"
[[ $resets -gt 0 ]] || fail "the resumed copy produced no reset record"
sleep 8
stop_load
grep -E "number of transactions actually processed" "$WORK/pgbench.log" || true
wait_caught_up 120
assert_equal | tail -3
stop_mf
log "migration and load took $(($(date +%s) - began)) s"

log "3. the target emptied (tables and checkpoints) and rebuilt from offset zero"
sql_dst -c "TRUNCATE pgbench_accounts, pgbench_tellers, pgbench_branches, pgbench_history, kinds" \
  -c "DELETE FROM midflight.checkpoints"
[[ $(sql_dst -c "SELECT count(*) FROM pgbench_accounts") == 0 ]] || fail "the target is not empty"
replay_earliest
snap=$REPLAY_SNAP rst=$REPLAY_RESETS
src_rows=$(sql_src -c "SELECT (SELECT count(*) FROM pgbench_accounts) + (SELECT count(*) FROM pgbench_tellers) +
                             (SELECT count(*) FROM pgbench_branches) + (SELECT count(*) FROM kinds)")
log "replayed $snap snapshot rows ($src_rows rows now in the copied tables besides history) and $rst chunk resets"
[[ $snap -ge $((src_rows - 1000)) ]] || fail "too few snapshot rows replayed: $snap"
[[ $rst -gt 0 ]] || fail "no chunk reset was replayed"
resurrected=$(sql_dst -c "SELECT count(*) FROM pgbench_accounts WHERE aid % 97 = 0")
log "accounts deleted on the source between the two snapshots, on the rebuilt target: $resurrected"
[[ $resurrected == 0 ]] || fail "rows of the older copy came back"
assert_equal | tail -3
for t in pgbench_accounts pgbench_history kinds; do
  q="SELECT count(*) || ' rows, ' || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM $t x"
  s=$(sql_src -c "$q")
  d=$(sql_dst -c "$q")
  log "  $t: source $s, target $d"
  [[ $s == "$d" ]] || fail "$t differs after the replay"
done
log "PASS"
