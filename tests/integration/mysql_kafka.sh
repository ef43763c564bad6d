#!/usr/bin/env bash
# transport: kafka for MariaDB: primary + replica as the source, sysbench
# oltp_read_write on the primary, the partition logs a 4-partition topic on
# librdkafka's mock cluster in its own process. midflight is killed with
# SIGKILL while streaming and resumed; then every table equals the source's,
# with no apply conflict.
source "$(dirname "$0")/mylib.sh"

start_my_servers 30500
TOPIC=midflight.sbk.changes
start_kafka_mock "$TOPIC:4"
sysbench_prepare 2 5000
write_my_spec sbk "partitions: 4" "transport:" "  kind: kafka" "  brokers: \"$BROKERS\"" "  topic_prefix: midflight"
start_sysbench oltp_read_write 50

run_mf_bg
wait_phase replicating 120
sleep 5
grep -q "kafka: $TOPIC partition 0 read from offset" "$WORK/run.1.log" || fail "the first run did not open the Kafka log"
log "kill -9 while streaming through Kafka"
kill9_mf
run_mf_bg
wait_phase replicating 60
sleep 5
produced=$(kafka_left_behind "$WORK/run.2.log")
log "messages the killed run produced (the new run reads after them): $produced"
[[ $produced -gt 0 ]] || fail "the first run produced nothing to Kafka"
stop_sysbench
wait_my_caught_up 120
assert_equal
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts: $(status_field conflicts)"
grep -h "apply conflict" "$WORK"/run.*.log && fail "apply conflicts logged"
stop_mf
log "PASS"
