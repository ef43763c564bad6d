#!/usr/bin/env bash
# transport: kafka with a schema registry. Besides its change topic,
# midflight publishes every table's changes as Debezium Avro events (Confluent
# wire format) to <prefix>.<schema>.<table>, registering the schemas in a
# Confluent-compatible registry (tests/tools/schema_registry.py). A consumer
# no one on this project wrote (Node.js kafkajs + @kafkajs/confluent-schema-
# registry from npm) reads those topics from the start under a pgbench load
# and checks envelopes, ops, tombstones, per-key order and the final rows
# against the source (kafka_avro_consumer.js), a TRUNCATE (op t in every
# partition) and a key change that leaves a TOASTed value unchanged (delete,
# tombstone, create with Debezium's placeholder).
# Bad input first, each a clear one-line error and nothing lost: a row too
# large for a message (refused at preflight), an unreachable registry, a registry that refuses the schema; at the end a run
# asking another partition count than the one recorded is refused.
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
start_servers 23200

P=midflight
start_kafka_mock "$P.avro.changes:4" "$P.public.pgbench_accounts:4" "$P.public.pgbench_tellers:4" \
  "$P.public.pgbench_branches:4" "$P.public.pgbench_history:4" "$P.public.items:4" "$P.public.docs:4"
start_schema_registry 23210

need_npm kafkajs@2.2.4 @kafkajs/confluent-schema-registry@4.1.0

pgbench -i -s 1 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL" \
  -c "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), seen timestamptz, doc jsonb,
                          day date, tags text[])" \
  -c "CREATE TABLE docs (id int PRIMARY KEY, body text)" -c "ALTER TABLE docs ALTER body SET STORAGE EXTERNAL"
spec() {
  write_spec avro "partitions: ${2:-4}" "transport:" "  kind: kafka" "  brokers: \"$BROKERS\"" "  topic_prefix: $P" \
    "  schema_registry: \"$1\"" "${@:3}"
}
# wait_exit SECONDS: midflight must stop by itself, with an error.
wait_exit() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do kill -0 "$MF_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$MF_PID" 2>/dev/null && fail "midflight kept running: $(tail -3 "$WORK/run.$RUN_N.log")"
  local rc=0
  wait "$MF_PID" || rc=$?
  MF_PID=
  [[ $rc -ne 0 ]] || fail "midflight exited 0"
}

# 0. Preflight refuses a row too large for a change message (over half of
# max_message_bytes as text), naming table, key and limit.
sql_src -c "INSERT INTO items (id, name) VALUES (-7, repeat('x', 600000))"
spec "$REGISTRY"
RUN_N=$((RUN_N + 1))
rc=0
"$MF" run "$SPEC" >"$WORK/run.$RUN_N.log" 2>&1 || rc=$?
[[ $rc -ne 0 ]] || fail "preflight passed with a 600000-byte row"
grep -q "table public.items key -7: the row is 6000[0-9][0-9] bytes as text, over 500000 (half of transport.max_message_bytes 1000000" \
  "$WORK/run.$RUN_N.log" || { tail -5 "$WORK/run.$RUN_N.log"; fail "preflight did not name the oversized row"; }
log "preflight: $(grep -o 'table public.items key -7[^;]*' "$WORK/run.$RUN_N.log" | head -1)"
sql_src -c "DELETE FROM items WHERE id = -7"

# 1. An unreachable registry: a connection refused may be a registry that
# restarts, so the flow starts again from the target's checkpoints with
# backoff, naming the registry each time, and the run ends only after the
# knob fail_after_seconds (4 s here).
DEAD=http://127.0.0.1:$(free_port 23220)
spec "$DEAD" 4 "knobs:" "  fail_after_seconds: 4"
run_mf_bg
wait_phase replicating
sql_src -c "INSERT INTO items VALUES (0, 'zero', 9.99, '2024-01-02 03:04:05.25+00', '{\"a\": 1}', '2024-02-29', '{x,y}')"
wait_exit 60
grep -q "schema registry $DEAD: POST /subjects/$P.public.items-key/versions" "$WORK/run.$RUN_N.log" ||
  { tail -5 "$WORK/run.$RUN_N.log"; fail "the error does not name the unreachable registry"; }
grep -q "restarting from the target's checkpoints" "$WORK/run.$RUN_N.log" ||
  { tail -5 "$WORK/run.$RUN_N.log"; fail "the run did not try again after the registry refused the connection"; }
grep -q "still failing after [0-9]* s (knob fail_after_seconds)" "$WORK/run.$RUN_N.log" ||
  { tail -5 "$WORK/run.$RUN_N.log"; fail "the run did not end on fail_after_seconds"; }
log "unreachable: $(grep -o "schema registry $DEAD: POST[^;]*" "$WORK/run.$RUN_N.log" | head -1)"

# 2. A registry that refuses the schema: the run stops with its message.
echo "test registry: refusing every schema" >"$WORK/registry.refuse"
spec "$REGISTRY"
run_mf_bg
wait_exit 60
grep -q "subject $P.public.items-key refused the schema: test registry: refusing every schema" "$WORK/run.$RUN_N.log" ||
  { tail -5 "$WORK/run.$RUN_N.log"; fail "the refusal does not name the subject and the registry's message"; }
log "refused: $(grep -o "schema registry $REGISTRY: subject.*" "$WORK/run.$RUN_N.log" | head -1)"
rm "$WORK/registry.refuse"

# 3. The registry takes them: streaming under pgbench load, plus a scripted
# history of items (updates, a key change, a delete, a NULL).
run_mf_bg
wait_phase replicating
pgbench -c 2 -j 2 -T 600 -R 60 "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!
sql_src -c "INSERT INTO items VALUES (1, 'one', 1.50, now(), '[]', '2000-01-01', '{}')" \
  -c "INSERT INTO items VALUES (2, 'two', 2.00, now(), null, null, null)"
for _ in 1 2 3; do sql_src -c "UPDATE items SET price = price + 1 WHERE id = 1"; done
sql_src -c "UPDATE items SET id = 20 WHERE id = 2" -c "DELETE FROM items WHERE id = 1" \
  -c "INSERT INTO items (id, name) VALUES (3, 'three')"
# A key change leaving the TOASTed body unchanged (not in the WAL record), then a truncate.
sql_src -c "INSERT INTO docs VALUES (1, repeat('d', 5000))" -c "UPDATE docs SET id = 101 WHERE id = 1" \
  -c "TRUNCATE docs" -c "INSERT INTO docs VALUES (2, 'short')"
sleep 8
stop_load
grep -E "number of transactions actually processed" "$WORK/pgbench.log" || true
wait_caught_up 180
assert_equal
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts: $(status_field conflicts)"
grep -q "kafka: table public.items to topic $P.public.items (Avro" "$WORK/run.$RUN_N.log" ||
  fail "the run did not publish items to its table topic"

# What the consumer must find: the source's rows.
{
  echo "{"
  for t in accounts:aid:abalance tellers:tid:tbalance branches:bid:bbalance; do
    IFS=: read -r name key col <<<"$t"
    echo "\"pgbench_$name\": $(sql_src -c "SELECT coalesce(json_object_agg($key, $col), '{}') FROM pgbench_$name"),"
    echo "\"pgbench_${name}_changed\": $(sql_src -c "SELECT coalesce(json_agg($key), '[]') FROM pgbench_$name WHERE $col <> 0"),"
  done
  echo "\"history_count\": $(sql_src -c "SELECT count(*) FROM pgbench_history"),"
  echo '"items": {"0": "c:9.99", "1": "c:1.50 u:2.50 u:3.50 u:4.50 d", "2": "c:2.00 d", "20": "c:2.00", "3": "c:null"},'
  echo '"docs": {"1": "c d t", "101": "c:unavailable t", "2": "c"}, "partitions": 4'
  echo "}"
} >"$WORK/expected.json"
[[ $(sql_src -c "SELECT count(*) FROM pgbench_history") -gt 100 ]] || fail "the load made too few changes"
out=$(NODE_PATH=$NODE_DIR/node_modules timeout 150 node "$HERE/kafka_avro_consumer.js" "$BROKERS" "$REGISTRY" "$P" \
  "$WORK/expected.json") || fail "${out:-the consumer failed}"
log "kafkajs: $out"
subjects=$(curl -sf "$REGISTRY/subjects" | jq -r 'join(" ")')
log "registry subjects: $subjects"
[[ $subjects == *"$P.public.pgbench_history-value"* && $subjects != *"$P.public.pgbench_history-key"* ]] ||
  fail "history (no key) should have a value subject and no key subject"

# 4. A later run asking another partition count than the recorded one.
stop_mf
spec "$REGISTRY" 2
run_mf_bg
wait_exit 60
grep -q "this migration started with 4 and its Kafka topic" "$WORK/run.$RUN_N.log" ||
  { tail -5 "$WORK/run.$RUN_N.log"; fail "the refusal does not give the reason"; }
log "refused: $(grep -o 'the spec asks for 2 partitions[^;]*' "$WORK/run.$RUN_N.log" | head -1)"
log "PASS"
