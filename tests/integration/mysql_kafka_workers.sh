#!/usr/bin/env bash
# transport: kafka, apply: workers, MariaDB -> MariaDB. sysbench
# oltp_read_write on the primary, midflight reading the replica, the change
# topic (4 partitions, librdkafka's mock cluster served by
# tests/tools/kafka_mock_host) applied by `midflight apply-worker`
# processes in one consumer group, not by `midflight run`:
#  - two workers share the partitions;
#  - fencing: the target's checkpoint row of one of B's partitions is made to
#    record a far newer offset (as a newer holder would): B's batches of it
#    are dropped, one line each, and the row does not move;
#  - B is killed with SIGKILL mid-stream (the row set back first) and A takes
#    its partitions from the target's checkpoints;
#  - `midflight run` (the producer) is killed with SIGKILL and resumed;
#  - a third worker joins later and the partitions are spread again.
# At the end every table equals the source's (midflight compare).
# publish_snapshot is on: the copy produced every row as a read record (the
# workers skip them), so `midflight replay --from-offset earliest` into the
# emptied target rebuilds it equal. A table keyed by MariaDB's UUID with
# INET6 and INET4 columns goes through the copy, the workers and the replay
# (the binlog carries their stored bytes; the published rows must too). A
# table with a transform (`order notes` -> notes, a column excluded, one
# computed) is applied by the workers through it, rebuild included.
source "$(dirname "$0")/mylib.sh"

start_my_servers 30400
TOPIC=midflight.mkw.changes
start_kafka_mock "$TOPIC:4"
# The mock cluster keeps about 5 MiB per partition, and the replay reads the
# topic from its start: the snapshot and the stream must fit.
sysbench_prepare 2 3000
sql_pri -D shop -e "CREATE TABLE \`net hosts\` (\`key\` uuid PRIMARY KEY, \`from\` inet6, \`to\` inet4 NULL, \`order\` int);
  INSERT INTO \`net hosts\` SELECT UUID(), CONCAT('2001:db8::', HEX(seq)), CONCAT('10.0.', seq DIV 256, '.', seq % 256), seq
    FROM seq_1_to_300;
  INSERT INTO \`net hosts\` VALUES ('123e4567-e89b-42d3-a456-426614174000', '::ffff:10.1.2.3', NULL, 0)"
wait_replica
sql_pri -D shop -e "CREATE TABLE \`order notes\` (id INT PRIMARY KEY, note VARCHAR(40), n INT NOT NULL, secret TEXT);
  INSERT INTO \`order notes\` SELECT seq, CONCAT('n', seq), seq, 's' FROM seq_1_to_300"
wait_replica
write_my_spec mkw "partitions: 4" "transport:" "  kind: kafka" "  brokers: \"$BROKERS\"" "  apply: workers" \
  "  publish_snapshot: true" "  settings:" "    linger.ms: \"2\"" \
  "transforms:" "  shop.order notes:" "    rename: notes" "    exclude: [secret]" "    add:" "      n2: n * 2"
# notes_write I: changes to the transformed table (an update, an insert, a delete).
notes_write() {
  sql_pri -D shop -e "UPDATE \`order notes\` SET n = n + $1, note = 'u$1' WHERE id % 13 = $1 % 13;
    INSERT INTO \`order notes\` VALUES (1000 + $1, 'new', $1, 'x'); DELETE FROM \`order notes\` WHERE id = $1 + 100"
}
# notes_equal: the target's notes is the source's `order notes` transformed (checked in SQL).
notes_equal() {
  local src dst
  wait_replica
  src=$(sql_pri -D shop -e "SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, note, n, n * 2) ORDER BY id)) FROM \`order notes\`")
  dst=$(sql_dst -D shop_new -e "SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, note, n, n2) ORDER BY id)) FROM notes")
  [[ $src == "$dst" ]] || fail "notes on the target is not the source's \`order notes\` transformed ($1)"
  log "notes: $(sql_dst -D shop_new -e "SELECT COUNT(*) FROM notes") rows, the source's through the transform ($1)"
}

declare -A WPID
start_worker() {
  "$MF" apply-worker "$SPEC" --name "$1" >"$WORK/worker.$1.log" 2>&1 &
  WPID[$1]=$!
  EXTRA_PIDS+=($!)
}
# holds NAME: the partitions the worker last said it holds ("[0, 2]").
holds() { grep -o "holds partitions \[.*\]" "$WORK/worker.$1.log" | tail -1 | sed 's/holds partitions //'; }
show_holdings() { for w in "$@"; do log "  worker $w holds $(holds "$w")"; done; }
# wait_holds NAME PATTERN SECONDS
wait_holds() {
  local i
  for ((i = 0; i < $3 * 4; i++)); do [[ $(holds "$1") =~ $2 ]] && return 0; sleep 0.25; done
  show_holdings A B C
  fail "worker $1 does not hold $2 after $3 s"
}
checkpoint() { # PART COLUMN
  sql_dst -e "SELECT $2 FROM midflight.checkpoints WHERE migration = 'mkw' AND partition_id = $1"
}

start_sysbench oltp_read_write 30
run_mf_bg
wait_phase replicating 120
grep -o "copying: every copied row is published to [^ ]*" "$WORK/run.1.log" | sed 's/^/    /' ||
  fail "the copy did not publish its rows"
start_worker A
start_worker B
wait_holds A '^\[[0-9]' 30
wait_holds B '^\[[0-9]' 30
sql_pri -D shop -e "UPDATE \`net hosts\` SET \`to\` = '192.168.1.1', \`from\` = 'fe80::1' WHERE \`order\` % 7 = 0;
  DELETE FROM \`net hosts\` WHERE \`order\` % 11 = 0;
  INSERT INTO \`net hosts\` VALUES (UUID(), '::', '0.0.0.0', 1000)"
notes_write 1
sleep 3
log "two workers share the partitions:"
show_holdings A B
grep -q "partition 0 read from offset" "$WORK/run.1.log" && fail "the run process consumed the topic itself"
[[ $(sql_dst -e "SELECT COUNT(*) FROM midflight.checkpoints WHERE migration = 'mkw' AND kafka_offset IS NOT NULL") -gt 0 ]] ||
  fail "no checkpoint row records a topic offset"

# Fencing: a newer holder's offset on one of B's partitions. B must drop its
# batches of it and leave the row alone.
P=$(holds B | tr -d '[]' | cut -d, -f1)
for ((i = 0; i < 40; i++)); do [[ $(checkpoint "$P" "COALESCE(kafka_offset, '')") != "" ]] && break; sleep 0.25; done
BUMP=1000000000
sql_dst -e "UPDATE midflight.checkpoints SET kafka_offset = kafka_offset + $BUMP WHERE migration = 'mkw' AND partition_id = $P"
fenced_offset=$(checkpoint "$P" kafka_offset)
fenced_pos=$(checkpoint "$P" commit_pos)
log "partition $P now records offset $fenced_offset (a newer holder's)"
for ((i = 0; i < 80; i++)); do grep -q "apply partition $P: batch up to offset .* dropped" "$WORK/worker.B.log" && break; sleep 0.25; done
grep -m1 "apply partition $P: batch up to offset .* dropped" "$WORK/worker.B.log" | sed 's/^.*apply partition/    apply partition/' ||
  fail "worker B applied partition $P over a newer offset"
sleep 2
dropped=$(grep -c "apply partition $P: batch up to offset .* dropped" "$WORK/worker.B.log")
log "worker B dropped $dropped batches of partition $P"
[[ $(checkpoint "$P" kafka_offset) == "$fenced_offset" && $(checkpoint "$P" commit_pos) == "$fenced_pos" ]] ||
  fail "partition $P's checkpoint moved under the newer offset: $(checkpoint "$P" 'kafka_offset, commit_pos, worker')"
grep -q "apply partition [0-9]*: batch up to offset .* dropped" "$WORK/worker.A.log" &&
  fail "worker A dropped batches: no one applied past it"

log "kill -9 worker B mid-stream (partition $P set back to the offset B really applied)"
kill -9 "${WPID[B]}"
sql_dst -e "UPDATE midflight.checkpoints SET kafka_offset = kafka_offset - $BUMP WHERE migration = 'mkw' AND partition_id = $P"
wait_holds A '^\[0, 1, 2, 3\]$' 40
log "worker A took B's partitions:"
show_holdings A
grep "took partition" "$WORK/worker.A.log" | tail -4 | sed 's/^.*apply worker/    apply worker/'

sleep 2
log "kill -9 midflight run (the producer) while streaming"
kill9_mf
sleep 1
run_mf_bg
wait_phase replicating 60

notes_write 2
log "a third worker joins"
start_worker C
wait_holds C '^\[[0-9]' 40
sleep 2
show_holdings A C
[[ $(holds A) != "[0, 1, 2, 3]" ]] || fail "worker A still holds every partition after C joined"

stop_sysbench
wait_my_caught_up 120
show_holdings A C
holders=$("$MF" status "$SPEC" --json | jq -r '[.replication.partitions[]?.worker] | join(",")')
log "holders in the API: $holders"
[[ $holders =~ ^[AC],[AC],[AC],[AC]$ ]] || fail "the API does not show the holders A and C: $holders"
assert_equal
notes_equal "streamed by the workers"
# The workers' conflict probes compare the UUID key's bytes as a UUID.
grep -h "apply conflict: .* on shop.net hosts" "$WORK"/worker.*.log && fail "false apply conflicts on shop.net hosts"
sql_dst -e "SELECT partition_id, commit_pos, kafka_offset, worker, restart_pos FROM midflight.checkpoints WHERE migration = 'mkw' ORDER BY partition_id" |
  sed 's/^/    checkpoint /'
[[ $(sql_dst -e "SELECT MAX(restart_pos) FROM midflight.checkpoints WHERE migration = 'mkw'") -gt 0 ]] ||
  fail "the run process recorded no restart marker"
for w in A C; do kill -TERM "${WPID[$w]}"; done
for w in A C; do wait "${WPID[$w]}" || fail "worker $w exited $? on SIGTERM"; done
stop_mf

log "the target emptied (tables and checkpoints) and rebuilt from offset zero"
sql_dst -D shop_new -e "TRUNCATE sbtest1; TRUNCATE sbtest2; TRUNCATE \`net hosts\`; TRUNCATE notes; DELETE FROM midflight.checkpoints"
replay_earliest
src_rows=$(sql_pri -D shop -e "SELECT (SELECT count(*) FROM sbtest1) + (SELECT count(*) FROM sbtest2) +
                                      (SELECT count(*) FROM \`net hosts\`)")
log "replayed $REPLAY_SNAP snapshot rows ($src_rows rows now on the source)"
[[ $REPLAY_SNAP -ge 6000 ]] || fail "too few snapshot rows replayed: $REPLAY_SNAP"
assert_equal
notes_equal "rebuilt by the replay"
log "PASS"
