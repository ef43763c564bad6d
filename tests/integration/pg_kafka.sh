#!/usr/bin/env bash
# transport: kafka. A PostgreSQL migration under pgbench load whose partition
# logs are a Kafka topic (4 partitions) on librdkafka's mock cluster, served
# by tests/tools/kafka_mock_host in its own process: midflight reaches it
# over TCP as it would a real cluster, and the topic outlives midflight.
# midflight is killed with SIGKILL mid-stream and resumed; the topic then
# holds messages of the killed run that the new run must not read, and the
# changes the source resends must be applied once. At the end every table
# equals the source's, with no apply conflict.
source "$(dirname "$0")/lib.sh"
start_servers 30400

TOPIC=midflight.kafka.changes
start_kafka_mock "$TOPIC:4"

pgbench -i -s 2 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
write_spec kafka "partitions: 4" "transport:" "  kind: kafka" "  brokers: \"$BROKERS\"" "  topic_prefix: midflight" \
  "  max_message_bytes: 100000" "  settings:" "    linger.ms: \"2\""

pgbench -c 2 -j 2 -T 600 -R 100 "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!

run_mf_bg
wait_phase replicating
sleep 5
grep -q "kafka: $TOPIC partition 0 read from offset" "$WORK/run.1.log" || fail "the first run did not open the Kafka log"
log "kill -9 while streaming through Kafka"
kill9_mf

run_mf_bg
wait_phase replicating
sleep 5
# The killed run produced to the topic: the new run starts after what it left.
grep "read from offset" "$WORK/run.2.log" | sed 's/^/    /'
produced=$(kafka_left_behind "$WORK/run.2.log")
log "messages the killed run produced (the new run reads after them): $produced"
[[ $produced -gt 0 ]] || fail "the first run produced nothing to Kafka"
stop_load
grep -E "number of transactions actually processed|number of failed" "$WORK/pgbench.log" || true
wait_caught_up 180
assert_equal
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts: $(status_field conflicts)"
grep -h "apply conflict" "$WORK"/run.*.log && fail "apply conflicts logged"

# A later run asking another partition count is refused with the reason.
stop_mf
write_spec kafka "partitions: 2" "transport:" "  kind: kafka" "  brokers: \"$BROKERS\"" "  topic_prefix: midflight"
run_mf_bg
rc=0
wait "$MF_PID" || rc=$?
MF_PID=
[[ $rc -ne 0 ]] || fail "a run asking 2 partitions instead of 4 was not refused"
grep -q "this migration started with 4 and its Kafka topic $TOPIC is split so" "$WORK/run.$RUN_N.log" ||
  { tail -5 "$WORK/run.$RUN_N.log"; fail "the refusal does not give the reason"; }
log "refused: $(grep -o 'the spec asks for 2 partitions.*' "$WORK/run.$RUN_N.log" | head -1)"
log "PASS"
