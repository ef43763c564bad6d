#!/usr/bin/env bash
# transport: kafka with a schema registry, from MariaDB (primary + replica as
# the source). midflight publishes every table's changes as Debezium Avro
# events to <prefix>.<db>.<table>; a consumer no one on this project wrote
# (Node.js kafkajs + @kafkajs/confluent-schema-registry from npm) reads them
# from the start after a sysbench load and a scripted history of a table of
# the types Debezium encodes specially (decimal, unsigned, datetime,
# timestamp, date, time, JSON, enum, set, bit, binary(n) ending in zero
# bytes, which the binlog strips), with a key change, a delete
# and a TRUNCATE, and checks envelopes, op codes (c u d t), tombstones,
# per-key order and the final rows against the source
# (kafka_avro_my_consumer.js).
# First, preflight refuses a row too large for a change message, naming the
# table, the key and the limit.
source "$(dirname "$0")/mylib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

start_my_servers 23900
P=midflight
start_kafka_mock "$P.mya.changes:4" "$P.shop.sbtest1:4" "$P.shop.kinds:4"
start_schema_registry 23910

need_npm kafkajs@2.2.4 @kafkajs/confluent-schema-registry@4.1.0

sysbench_prepare 1 2000
sql_pri -D shop -e "CREATE TABLE kinds (id int unsigned PRIMARY KEY, amount decimal(12,3), big bigint unsigned,
  at datetime(3), ts timestamp(6) NULL, day date, tm time, doc json, color enum('red','green'),
  marks set('a','b','c'), one bit(1), bits bit(10), tiny tinyint unsigned, small smallint unsigned,
  name varchar(20), note text, fx binary(4)) DEFAULT CHARSET utf8mb4"
# 20000 bytes per message: a row of more than 10000 bytes as text cannot fit.
sql_pri -D shop -e "INSERT INTO kinds (id, note) VALUES (999, REPEAT('x', 15000))"
wait_replica
write_my_spec mya "partitions: 4" "transport:" "  kind: kafka" "  brokers: \"$BROKERS\"" "  topic_prefix: $P" \
  "  schema_registry: \"$REGISTRY\"" "  max_message_bytes: 20000"

# 1. Preflight: the oversized row, by table and key, naming the limit.
RUN_N=$((RUN_N + 1))
rc=0
"$MF" run "$SPEC" >"$WORK/run.$RUN_N.log" 2>&1 || rc=$?
[[ $rc -ne 0 ]] || fail "preflight passed with a 15000-byte row"
grep -q "table shop.kinds key 999: the row is 150[0-9][0-9] bytes as text, over 10000 (half of transport.max_message_bytes 20000" \
  "$WORK/run.$RUN_N.log" || { tail -5 "$WORK/run.$RUN_N.log"; fail "preflight did not name the oversized row"; }
log "preflight: $(grep -o 'table shop.kinds key 999[^;]*' "$WORK/run.$RUN_N.log" | head -1)"
sql_pri -D shop -e "DELETE FROM kinds WHERE id = 999"
wait_replica

# 2. Streaming: sysbench, and kinds' scripted history.
run_mf_bg
wait_phase replicating 120
start_sysbench oltp_read_write 40
sql_pri -D shop -e "SET time_zone = '+00:00';
  INSERT INTO kinds (id, amount) VALUES (1, 10.5), (2, -1234.5), (3, 0.001);
  UPDATE kinds SET amount = amount + 1 WHERE id = 1;
  UPDATE kinds SET amount = amount + 1 WHERE id = 1;
  UPDATE kinds SET id = 22 WHERE id = 2;
  DELETE FROM kinds WHERE id = 3;
  TRUNCATE kinds;
  INSERT INTO kinds VALUES (4, -1234.5, 18446744073709551615, '2024-02-29 13:14:15.250', '2024-01-02 03:04:05.000250',
    '2024-02-29', '-01:02:03', '{\"a\": [1, 2]}', 'green', 'a,c', b'1', b'1000000001', 255, 65535, 'é1', NULL, 0x42000000)"
sleep 8
stop_sysbench
wait_my_caught_up 120
assert_equal
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts: $(status_field conflicts)"

{
  echo "{\"sbtest1\": $(sql_pri -D shop -e "SELECT JSON_OBJECTAGG(id, k) FROM sbtest1"),"
  echo "\"sbtest1_min_keys\": 20,"
  echo '"kinds": {"1": "c:10.500 u:11.500 u:12.500 t", "2": "c:-1234.500 d t", "22": "c:-1234.500 t",'
  echo '          "3": "c:0.001 d t", "4": "c:-1234.500"}}'
} >"$WORK/expected.json"
out=$(NODE_PATH=$NODE_DIR/node_modules timeout 150 node "$HERE/kafka_avro_my_consumer.js" "$BROKERS" "$REGISTRY" "$P" \
  shop 4 "$WORK/expected.json") || fail "${out:-the consumer failed}"
log "kafkajs: $out"
log "registry subjects: $(curl -sf "$REGISTRY/subjects" | jq -r 'join(" ")')"
stop_mf
log "PASS"
