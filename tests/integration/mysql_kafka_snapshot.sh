#!/usr/bin/env bash
# transport: kafka with publish_snapshot: true from MariaDB to MariaDB (primary
# + replica as the source). The copy produces every copied row too (change
# topic: a read record in its key's partition; table topics: Debezium's op r
# event with MySQL's source record, snapshot "true"/"last" and the binlog
# file/pos the chunk's snapshot is consistent with), so `midflight replay
# --from-offset earliest` into an emptied target rebuilds it.
#  1. The first run copies under sysbench load and is killed (SIGKILL, crash
#     point snapshot-chunk-published) after Kafka acknowledged a chunk's rows
#     and before the chunk's target transaction committed. Rows are then
#     deleted on the source all over sbtest1 and codes (a table keyed by a
#     string: copied whole): the chunks are copied again from newer snapshots
#     without them, while the topic still holds the older copy's rows, whose
#     deletes the snapshot filter drops from the stream. The resumed copy
#     puts a reset record before each chunk it copies again.
#  2. The resumed run copies the rest and replicates sysbench oltp_read_write
#     and a table of awkward types (enum, set, bit, decimal, datetime,
#     timestamp, JSON, text with tabs, newlines and backslashes, a blob with
#     zero bytes, latin1 text, a generated column, NULLs); the target equals
#     the source.
#  3. kafkajs with @kafkajs/confluent-schema-registry (npm) reads the table
#     topics from the start: op r events with source.snapshot "true", one
#     "last", MySQL's file/pos, and every sbtest1 key ends as the source's row (a key deleted between the two
#     copy attempts may keep its older copy's event: the table topics have no
#     reset, as documented).
#  4. The target is emptied as a user rebuilding it would (its tables and
#     midflight's checkpoints). With a spec that does not set publish_snapshot
#     a replay from offset zero is refused (the topic would hold no snapshot),
#     naming the setting. Replayed from offset zero: it equals the
#     source row for row again, the deleted rows included (without the resets
#     they would come back), and the replay applied snapshot rows and chunk
#     resets.
source "$(dirname "$0")/mylib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

start_my_servers 28200
P=midflight
start_kafka_mock "$P.mks.changes:4" "$P.shop.sbtest1:4" "$P.shop.sbtest2:4" "$P.shop.kinds:4" "$P.shop.codes:4"
start_schema_registry 28210

need_npm kafkajs@2.2.4 @kafkajs/confluent-schema-registry@4.1.0

# The mock cluster keeps about 5 MiB per partition: 2 x 4,000 sysbench rows.
sysbench_prepare 2 4000
sql_pri -D shop -e "CREATE TABLE kinds (id int PRIMARY KEY, color enum('red','green','blue'), marks set('a','b','c'),
    bits bit(10), amount decimal(12,3), at datetime(3), ts timestamp(6) NULL, doc json, note text, raw blob,
    lat varchar(20) CHARACTER SET latin1, f float, twice int AS (id * 2) STORED) DEFAULT CHARSET utf8mb4;
  SET time_zone = '+00:00';
  INSERT INTO kinds (id, color, marks, bits, amount, at, ts, doc, note, raw, lat, f)
    SELECT seq, ELT(1 + seq % 3, 'red', 'green', 'blue'), ELT(1 + seq % 4, '', 'a', 'a,c', 'b,c'), seq % 1024,
      seq * 1.125, '2024-02-29 13:14:15.250' + INTERVAL seq HOUR, '2024-01-02 03:04:05.000250' + INTERVAL seq MINUTE,
      JSON_OBJECT('k', seq, 's', 'a\"b'), CONCAT('tab\there\nnew line \\\\ back', seq), UNHEX(CONCAT('00FF0A5C', HEX(seq))),
      _latin1 X'636166E9', seq / 3
    FROM seq_1_to_300;
  INSERT INTO kinds (id) VALUES (0);
  CREATE TABLE codes (code varchar(20) PRIMARY KEY, v int NOT NULL);
  INSERT INTO codes SELECT CONCAT('c', seq), seq FROM seq_1_to_1500"
wait_replica

write_my_spec mks "partitions: 4" "chunk_rows: 1000" "copy_workers: 2" "transport:" "  kind: kafka" \
  "  brokers: \"$BROKERS\"" "  topic_prefix: $P" "  schema_registry: \"$REGISTRY\"" "  publish_snapshot: true"

began=$(date +%s)
start_sysbench oltp_read_write 30
log "1. copy killed after Kafka acknowledged chunk 3's rows, before its target commit (sysbench running)"
run_mf_crash snapshot-chunk-published=3
grep -o "copying: every copied row is published to [^ ]*" "$WORK/run.$RUN_N.log" | sed 's/^/    /'
copied=$(sql_dst -e "SELECT count(*) FROM midflight.chunks WHERE migration = 'mks'")
log "chunks committed on the target before the crash: $copied"
# sysbench paused: its transactions would wait on (or deadlock with) the scans.
stop_sysbench
deleted=$(sql_pri -D shop -e "SELECT GROUP_CONCAT(id) FROM sbtest1 WHERE id % 97 = 0")
sql_pri -D shop -e "DELETE FROM sbtest1 WHERE id % 97 = 0; DELETE FROM codes WHERE v % 89 = 0;
  UPDATE sbtest1 SET c = 'changed between the snapshots' WHERE id % 89 = 0"
log "deleted sbtest1 ids $deleted and codes v % 89 = 0 on the source before the copy resumes"

log "2. the copy resumes (chunks copied again get a reset record first), then replicates under load"
start_sysbench oltp_read_write 30
run_mf_bg
wait_phase replicating 300
grep -o "copying: every copied row is published.*" "$WORK/run.$RUN_N.log" | sed 's/^/    /'
resets=$(grep -c "reset record" "$WORK/run.$RUN_N.log" || true)
log "reset records produced by the resumed copy: $resets (chunks or tables copied again)"
[[ $resets -gt 0 ]] || fail "the resumed copy produced no reset record"
grep -q "shop.codes copied again from the snapshot at .*of the whole table" "$WORK/run.$RUN_N.log" ||
  fail "codes (copied whole) got no reset of the whole table"
sql_pri -D shop -e "UPDATE kinds SET amount = amount + 1, color = 'blue', marks = 'a,b', bits = b'1111111111',
  doc = JSON_SET(doc, '\$.d', 1) WHERE id % 7 = 0; DELETE FROM kinds WHERE id % 11 = 0;
  INSERT INTO kinds (id, note, raw) VALUES (1000, 'new\\\\row', UNHEX('000102'))"
sleep 8
stop_sysbench
wait_my_caught_up 180
assert_equal | tail -3
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts: $(status_field conflicts)"
stop_mf
log "migration and load took $(($(date +%s) - began)) s"

log "3. an outside consumer (kafkajs) reads the table topics from the start (sbtest1 checked key by key)"
{
  echo "{\"tables\": [\"sbtest1\", \"sbtest2\", \"kinds\", \"codes\"], \"string_keys\": [\"codes\"],"
  echo "\"snapshot\": true, \"stale\": [${deleted}],"
  echo "\"sbtest1\": $(sql_pri -D shop -e "SELECT JSON_OBJECTAGG(id, k) FROM sbtest1"),"
  echo "\"sbtest1_min_keys\": 1000}"
} >"$WORK/expected.json"
out=$(NODE_PATH=$NODE_DIR/node_modules timeout 150 node "$HERE/kafka_avro_my_consumer.js" "$BROKERS" "$REGISTRY" "$P" \
  shop 4 "$WORK/expected.json") || fail "${out:-the consumer failed}"
log "kafkajs: $out"

log "4. the target emptied (tables and checkpoints) and rebuilt from offset zero"
sql_dst -D shop_new -e "TRUNCATE sbtest1; TRUNCATE sbtest2; TRUNCATE kinds; TRUNCATE codes;
  DELETE FROM midflight.checkpoints"
[[ $(sql_dst -D shop_new -e "SELECT count(*) FROM sbtest1") == 0 ]] || fail "the target is not empty"
# A spec without publish_snapshot says the topic holds no snapshot: a replay
# from offset zero into the emptied target is refused, applying nothing.
sed 's/publish_snapshot: true/publish_snapshot: false/' "$SPEC" >"$WORK/mks-nosnap.yaml"
rc=0
out=$("$MF" replay "$WORK/mks-nosnap.yaml" --from-offset earliest 2>&1) || rc=$?
[[ $rc -ne 0 ]] || fail "a replay from zero without the snapshot into an emptied target was accepted"
log "without publish_snapshot: $(echo "$out" | grep -o "replay: topic.*" | head -1)"
[[ $out == *"replay: topic $P.mks.changes holds no snapshot (migration mks does not set transport.publish_snapshot)"* ]] ||
  fail "unclear refusal: $out"
[[ $(sql_dst -D shop_new -e "SELECT count(*) FROM sbtest1") == 0 ]] || fail "the refused replay applied rows"
replay_earliest
snap=$REPLAY_SNAP rst=$REPLAY_RESETS
src_rows=$(sql_pri -D shop -e "SELECT (SELECT count(*) FROM sbtest1) + (SELECT count(*) FROM sbtest2) +
                                      (SELECT count(*) FROM kinds) + (SELECT count(*) FROM codes)")
log "replayed $snap snapshot rows ($src_rows rows now on the source) and $rst chunk resets"
[[ $snap -ge $((src_rows - 500)) ]] || fail "too few snapshot rows replayed: $snap"
[[ $rst -gt 0 ]] || fail "no chunk reset was replayed"
resurrected=$(sql_dst -D shop_new -e "SELECT count(*) FROM sbtest1 WHERE id IN ($deleted)")
back=$(sql_pri -D shop -e "SELECT count(*) FROM sbtest1 WHERE id IN ($deleted)")
log "sbtest1 rows deleted between the two snapshots: $resurrected on the rebuilt target, $back on the source (sysbench re-inserts)"
[[ $resurrected == "$back" ]] || fail "rows of the older copy came back"
assert_equal | tail -3
for t in sbtest1 sbtest2 kinds codes; do
  s=$(sql_pri -D shop -e "SELECT count(*) FROM $t")/$(sql_pri -e "CHECKSUM TABLE shop.$t" | awk '{print $2}')
  d=$(sql_dst -D shop_new -e "SELECT count(*) FROM $t")/$(sql_dst -e "CHECKSUM TABLE shop_new.$t" | awk '{print $2}')
  log "  $t: source $s, target $d (rows/checksum)"
  [[ $s == "$d" ]] || fail "$t differs after the replay"
done
log "PASS"
