#!/usr/bin/env bash
# transport: kafka, apply: workers. A PostgreSQL migration under pgbench load
# whose change topic (4 partitions, librdkafka's mock cluster served by
# tests/tools/kafka_mock_host) is applied by `midflight apply-worker`
# processes in one consumer group, not by `midflight run`:
#  - two workers share the partitions; fencing: the checkpoint row of one of
#    A's partitions is made to record a far newer offset (as a newer holder
#    would), and A drops its batches of it without moving the row; A is
#    killed with SIGKILL mid-stream (the row set back first) and the other
#    takes its partitions from the target's checkpoints;
#  - `midflight run` itself is killed with SIGKILL and restarted (it produces
#    part of the stream to the topic again);
#  - a third worker joins later and the partitions are spread again;
#  - `midflight replay --from-offset earliest` re-applies the topic over the
#    live target while the load and the workers go on (pgbench_history, which
#    has no key, is left out: re-inserting its rows would duplicate them).
# A table with a transform ("Branch Notes" -> "branch notes", a column
# excluded, one computed) is written by the load too: the workers apply the
# transform as the run's own sinks do, replay included.
# At the end source and target are equal row for row (midflight compare, and
# pgbench_history's count), and each worker's holdings were printed.
# Bad input: a worker for a migration with no topic, with another partition
# count, and with an unreachable broker each stop with one line naming it.
source "$(dirname "$0")/lib.sh"
start_servers 24200

TOPIC=midflight.kwork.changes
start_kafka_mock "$TOPIC:4"

pgbench -i -s 2 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL" \
  -c "CREATE TABLE \"Branch Notes\" (id int PRIMARY KEY, note text, n int NOT NULL, secret text)" \
  -c "INSERT INTO \"Branch Notes\" SELECT g, 'n' || g, g, 's' || g FROM generate_series(1, 200) g"
write_spec kwork "partitions: 4" "transport:" "  kind: kafka" "  brokers: \"$BROKERS\"" "  apply: workers" \
  "  settings:" "    linger.ms: \"2\"" \
  "transforms:" "  public.Branch Notes:" "    rename: branch notes" "    exclude: [secret]" "    add:" "      n2: n * 2"
cat >"$WORK/notes.sql" <<'SQL'
\set i random(1, 200)
\set j random(1000, 3000)
UPDATE "Branch Notes" SET n = n + 1, note = 'u' || :i WHERE id = :i;
INSERT INTO "Branch Notes" VALUES (:j, 'new', :j, 'x') ON CONFLICT (id) DO UPDATE SET n = excluded.n + 1;
DELETE FROM "Branch Notes" WHERE id = :j + 1;
SQL

WORKER_PIDS=()
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
# The changes the workers applied: everything the source committed shows in
# the run's applied position (read from the target's checkpoints).
applied_rows() { sql_dst -c "SELECT count(*) FROM pgbench_history"; }

pgbench -c 2 -j 2 -T 600 -R 100 -b tpcb-like@4 -f "$WORK/notes.sql@1" "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!

run_mf_bg
wait_phase replicating
# The topic fills from the snapshot position on; the workers start from its beginning.
start_worker A
start_worker B
wait_holds A '^\[[0-9]' 30
wait_holds B '^\[[0-9]' 30
sleep 4
log "two workers share the partitions:"
show_holdings A B
[[ $(applied_rows) -gt 0 ]] || fail "nothing applied by the workers"
grep -q "partition 0 read from offset" "$WORK/run.1.log" && fail "the run process consumed the topic itself"

# Fencing: a newer holder's offset on one of A's partitions. A must drop its
# batches of it and leave the row alone; the row is set back when A dies.
checkpoint() { sql_dst -c "SELECT $2 FROM midflight.checkpoints WHERE migration = 'kwork' AND part = $1"; }
P=$(holds A | tr -d '[]' | cut -d, -f1)
for ((i = 0; i < 40; i++)); do [[ -n $(checkpoint "$P" kafka_offset) ]] && break; sleep 0.25; done
BUMP=1000000000
sql_dst -c "UPDATE midflight.checkpoints SET kafka_offset = kafka_offset + $BUMP WHERE migration = 'kwork' AND part = $P"
fenced=$(checkpoint "$P" "kafka_offset::text || ' ' || commit_lsn::text")
log "partition $P now records offset ${fenced% *} (a newer holder's)"
for ((i = 0; i < 80; i++)); do grep -q "apply partition $P: batch up to offset .* dropped" "$WORK/worker.A.log" && break; sleep 0.25; done
grep -m1 "apply partition $P: batch up to offset .* dropped" "$WORK/worker.A.log" | sed 's/^.*apply partition/    apply partition/' ||
  fail "worker A applied partition $P over a newer offset"
sleep 1
[[ $(checkpoint "$P" "kafka_offset::text || ' ' || commit_lsn::text") == "$fenced" ]] ||
  fail "partition $P's checkpoint moved under the newer offset: $(checkpoint "$P" "kafka_offset::text || ' ' || commit_lsn::text")"
log "worker A dropped $(grep -c "apply partition $P: batch up to offset .* dropped" "$WORK/worker.A.log") batches of partition $P"

log "kill -9 worker A mid-stream (partition $P set back to the offset A really applied)"
kill -9 "${WPID[A]}"
sql_dst -c "UPDATE midflight.checkpoints SET kafka_offset = kafka_offset - $BUMP WHERE migration = 'kwork' AND part = $P"
wait_holds B '^\[0, 1, 2, 3\]$' 40
log "worker B took A's partitions:"
show_holdings B
grep "took partition" "$WORK/worker.B.log" | tail -4 | sed 's/^/    /'

sleep 2
log "kill -9 midflight run (the producer) while streaming"
kill9_mf
sleep 1
run_mf_bg
wait_phase replicating

log "a third worker joins"
start_worker C
wait_holds C '^\[[0-9]' 40
sleep 2
show_holdings B C
[[ $(holds B) != "[0, 1, 2, 3]" ]] || fail "worker B still holds every partition after C joined"
log "status under load:"
"$MF" status "$SPEC" | sed -n '/^  partition  queued/,$p' | head -5 | sed 's/^/    /'

sleep 3
log "replay from the earliest offset kept over the live target (load and workers go on)"
# (The mock cluster keeps about 5 MiB per partition: offset 0 may be gone.)
"$MF" replay "$SPEC" --from-offset earliest >"$WORK/replay.out" 2>"$WORK/replay.err" ||
  { cat "$WORK/replay.err"; fail "replay failed"; }
sed 's/^/    /' "$WORK/replay.out"
replayed=$(grep -o "done: [0-9]* changes" "$WORK/replay.out" | awk '{print $2}')
[[ $replayed -gt 0 ]] || fail "the replay applied nothing"
grep -q "table public.pgbench_history has no key" "$WORK/replay.out" || fail "the keyless table was not left out"
sleep 3

stop_load
grep -E "number of transactions actually processed|number of failed" "$WORK/pgbench.log" || true
wait_caught_up 120
# The applied position comes from the workers' checkpoints on the target.
show_holdings B C
"$MF" status "$SPEC" | sed -n '/^  partition  queued/,$p' | head -5 | sed 's/^/    /'
# The API and /metrics show the same: each partition's holder and lags.
holders=$("$MF" status "$SPEC" --json | jq -r '[.replication.partitions[]?.worker] | join(",")')
log "holders in the API: $holders"
[[ $holders =~ ^[BC],[BC],[BC],[BC]$ ]] || fail "the API does not show the holders B and C: $holders"
curl -s --unix-socket "$WORK/state-kwork/control.sock" http://midflight/metrics >"$WORK/metrics.txt"
grep -E '^midflight_kafka_(partition_holder|consumer_lag_messages)' "$WORK/metrics.txt" | head -8 | sed 's/^/    /'
[[ $(grep -c '^midflight_kafka_partition_holder{.*worker="[BC]"' "$WORK/metrics.txt") == 4 ]] ||
  fail "/metrics does not name the holder of each partition"
assert_equal
# The transformed table, checked in SQL too: the source's rows as the
# transform makes them (no secret, n2 computed).
notes_src=$(sql_src -c "SELECT md5(string_agg(concat_ws('|', id, note, n, n * 2), ',' ORDER BY id)) FROM \"Branch Notes\"")
notes_dst=$(sql_dst -c "SELECT md5(string_agg(concat_ws('|', id, note, n, n2), ',' ORDER BY id)) FROM \"branch notes\"")
[[ $notes_src == "$notes_dst" ]] || fail "\"branch notes\" on the target is not the source's \"Branch Notes\" transformed"
[[ $(sql_dst -c "SELECT count(*) FROM information_schema.columns WHERE table_name = 'branch notes' AND column_name = 'secret'") == 0 ]] ||
  fail "the excluded column reached the target"
log "transformed table: \"branch notes\" holds $(sql_dst -c "SELECT count(*) FROM \"branch notes\"") rows, the source's through the transform"
src_hist=$(sql_src -c "SELECT count(*) FROM pgbench_history")
dst_hist=$(sql_dst -c "SELECT count(*) FROM pgbench_history")
log "pgbench_history: source $src_hist rows, target $dst_hist rows"
[[ $src_hist == "$dst_hist" ]] || fail "pgbench_history differs"
[[ $src_hist -gt 1000 ]] || fail "too little load ($src_hist history rows)"
sql_dst -c "SELECT part, kafka_offset, worker FROM midflight.checkpoints WHERE migration = 'kwork' ORDER BY part" |
  sed 's/^/    checkpoint /'

# Bad input: one line naming what is wrong.
bad_worker() { # WHAT SPEC EXPECTED: a worker that must stop with exit 1, its last line containing EXPECTED
  local rc=0 line
  timeout 60 "$MF" apply-worker "$2" --name bad >"$WORK/bad.out" 2>&1 || rc=$?
  [[ $rc -eq 1 ]] || { cat "$WORK/bad.out"; fail "$1: exit $rc, expected 1"; }
  line=$(tail -1 "$WORK/bad.out")
  log "$1: $line"
  [[ $line == *"$3"* ]] || fail "$1: unclear: $line"
}
write_spec nosuch "partitions: 4" "transport:" "  kind: kafka" "  brokers: \"$BROKERS\"" "  apply: workers"
bad_worker "no such migration" "$SPEC" "migration nosuch: kafka topic midflight.nosuch.changes does not exist"
write_spec kwork "partitions: 2" "transport:" "  kind: kafka" "  brokers: \"$BROKERS\"" "  apply: workers"
bad_worker "other partition count" "$SPEC" "kafka topic $TOPIC has 4 partitions but the spec has partitions: 2"
dead=127.0.0.1:$(free_port 24290)
write_spec kwork "partitions: 4" "transport:" "  kind: kafka" "  brokers: \"$dead\"" "  apply: workers"
bad_worker "unreachable broker" "$SPEC" "kafka brokers $dead: no answer for topic $TOPIC"
log "PASS"
