#!/usr/bin/env bash
# midflight benchmark: the change drain through Kafka against the embedded
# partition log and against native logical replication, in one run, on the
# same pgbench data and the same two throwaway PostgreSQL 15 servers.
#
#   bench/kafka_bench.sh
#
# Kafka here is librdkafka's MOCK CLUSTER (tests/tools/kafka_mock_host: a
# Kafka-protocol broker inside one process on this machine, reached over TCP,
# nothing written to disk, one replica), not a real Kafka: a real cluster
# adds the network, replication to its followers and disk writes.
#
# Consumers, each with its own target database, copied once before the rounds:
#   embedded  midflight, transport: memory (the default, in-process partition log)
#   json      midflight, transport: kafka (the change topic <prefix>.kjson.changes)
#   avro      midflight, transport: kafka + schema_registry: the change topic and, per
#             table, Debezium's Avro events (Confluent wire format) in <prefix>.public.<table>,
#             schemas registered in tests/tools/schema_registry.py
#   native    CREATE SUBSCRIPTION (disabled between drains)
# Each round: every consumer paused (midflight stopped, subscription disabled),
# one `pgbench -c 4 -t BACKLOG_TX` builds the backlog (with its start-up
# VACUUM and TRUNCATE pgbench_history, as pg_bench.sh's drain), the source's
# flush position after it is the goal; then each consumer alone, in an order
# that rotates from round to round, is started and timed until it applied up to
# the goal (midflight: process start-up included), stopped, and its 4 tables
# are checked equal to the source's (count and a checksum of every row's text).
# For the Kafka consumers every message the drain produced is read back
# (bench/kafka_topic_bytes.js, node + kafkajs): messages, key and value bytes.
#
# Knobs (environment):
#   SCALE=5            pgbench scale (5 = 500,000 rows in pgbench_accounts)
#   BACKLOG_TX=800     pgbench transactions per client (-c 4 -t): 4 x 800 x 4 = 12,800 row changes
#   ROUNDS=3           drains per consumer
#   PARTITIONS=4       midflight apply partitions = topic partitions (embedded too)
#   SKIP=              comma list of: embedded,json,avro,native
#   MF_SPEC_EXTRA=     extra YAML lines for every midflight spec
#   SRC_PORT=29200 DST_PORT=29201 REGISTRY_PORT=29210 TIMEOUT=1800 (seconds, per wait) KEEP=1
#   MIDFLIGHT_BIN=path  use this binary instead of building; KAFKA_MOCK_HOST=path the mock host
#                       (default: kafka_mock_host beside the binary)
#   BASELINE_BIN=path  also drain with this midflight binary, embedded log (consumer "baseline":
#                       e.g. a build from before the Kafka code, to see whether the embedded path got slower)
#   MIDFLIGHT_NODE_DIR=build/node  where kafkajs is (npm install kafkajs@2.2.4 there if missing)
#
# The mock cluster keeps about 5 MiB per partition in memory and drops the
# oldest messages beyond that; midflight's consumer lags the producer during
# a drain, so a backlog too large for PARTITIONS x 5 MiB would lose messages
# before they are applied (midflight then stops: "the messages to read are
# gone"). The script fails when any partition of any topic no longer holds a
# message of the round it measures, and prints the largest partition's bytes.
# The shares are uneven: pgbench_history has no key, so all its changes go to
# one partition; at BACKLOG_TX=1000 the largest held 4.3 MB, at 800 3.4 MB.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTDB=$ROOT/scripts/testdb
source "$ROOT/bench/lib.sh"
SCALE=${SCALE:-5}
BACKLOG_TX=${BACKLOG_TX:-800}
ROUNDS=${ROUNDS:-3}
PARTITIONS=${PARTITIONS:-4}
SKIP=${SKIP:-}
SRC_PORT=${SRC_PORT:-29200}
DST_PORT=${DST_PORT:-29201}
REGISTRY_PORT=${REGISTRY_PORT:-29210}
TIMEOUT=${TIMEOUT:-1800}
KEEP=${KEEP:-}
NODE_DIR=${MIDFLIGHT_NODE_DIR:-$ROOT/build/node}
POLL=0.2
TABLES=(pgbench_accounts pgbench_branches pgbench_tellers pgbench_history)
PREFIX=midflight
export PGPASSWORD=midflight PGAPPNAME=midflight-bench

known="embedded json avro native"
for s in ${SKIP//,/ }; do
  [[ " $known " == *" $s "* ]] || { echo "kafka_bench.sh: SKIP: unknown '$s' (known: ${known// /,})" >&2; exit 2; }
done
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }
CONSUMERS=()
for c in embedded json avro native; do skipped "$c" || CONSUMERS+=("$c"); done
[[ -n ${BASELINE_BIN:-} ]] && CONSUMERS+=(baseline)
((${#CONSUMERS[@]})) || { echo "kafka_bench.sh: SKIP leaves nothing to run" >&2; exit 2; }
declare -A LABEL=([embedded]="midflight, embedded log" [json]="midflight, Kafka (mock) JSON"
  [avro]="midflight, Kafka (mock) JSON+Avro" [native]="native logical replication"
  [baseline]="midflight BASELINE_BIN, embedded log")
declare -A MF_NAME=([embedded]=kmem [json]=kjson [avro]=kavro [baseline]=kbase)

WORK=
MF_PID=
MOCK_PID=
REGISTRY_PID=
cleanup() {
  local rc=$?
  set +e
  if [[ -n $MF_PID ]]; then kill -TERM "$MF_PID" 2>/dev/null; sleep 1; kill -9 "$MF_PID" 2>/dev/null; fi
  [[ -n $MOCK_PID ]] && kill "$MOCK_PID" 2>/dev/null
  [[ -n $REGISTRY_PID ]] && kill "$REGISTRY_PID" 2>/dev/null
  cleanup_work "$WORK/src" "$WORK/dst"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sql_src() { psql_to "$SRC" "$@"; }
dst_uri() { "$TESTDB" uri "$WORK/dst" "$1"; }
db_of() { echo "bench_$1"; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }
# table_sums URI: per table its row count and the sum of a 60-bit hash of
# every row's text, one line per table (equal lines: equal tables, up to a
# hash collision).
table_sums() {
  local t
  for t in "${TABLES[@]}"; do
    psql_to "$1" -c "SELECT '$t', count(*), coalesce(sum(('x' || substr(md5(r::text), 1, 15))::bit(60)::bigint), 0) FROM $t r"
  done
}
check_equal() {  # CONSUMER WHEN
  local got
  got=$(table_sums "$(dst_uri "$(db_of "$1")")")
  if [[ $got != "$SRC_SUMS" ]]; then
    diff <(echo "$SRC_SUMS") <(echo "$got") | sed 's/^/    /' >&2 || true
    die "${LABEL[$1]}: the target differs from the source $2 (< source, > target)"
  fi
  log "${LABEL[$1]}: target equal to the source $2 ($(awk -F'|' '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }' <<<"$got") rows)"
}
topics_of() {  # CONSUMER: the Kafka topics its drain produces to
  case $1 in
    json) echo "$PREFIX.kjson.changes" ;;
    avro) echo "$PREFIX.kavro.changes" "${TABLES[@]/#/$PREFIX.public.}" ;;
  esac
}
use_mf() {  # CONSUMER: sets SPEC, MF_LOG, MF for it
  SPEC=$WORK/${MF_NAME[$1]}.yaml
  MF_LOG=$WORK/${MF_NAME[$1]}.log
  MF=$MF_MAIN
  [[ $1 == baseline ]] && MF=$BASELINE_BIN
  return 0
}
write_mf_spec() {  # CONSUMER
  use_mf "$1"
  {
    echo "name: ${MF_NAME[$1]}"
    echo "source: $SRC"
    echo "target: $(dst_uri "$(db_of "$1")")"
    echo "state_dir: $WORK/state-${MF_NAME[$1]}"
    echo "partitions: $PARTITIONS"
    if [[ $1 == json || $1 == avro ]]; then
      echo "transport:"
      echo "  kind: kafka"
      echo "  brokers: \"$BROKERS\""
      echo "  topic_prefix: $PREFIX"
      [[ $1 == avro ]] && echo "  schema_registry: \"$REGISTRY\""
    fi
    echo "${MF_SPEC_EXTRA:-}"
  } >"$SPEC"
}
native_sql() { psql_to "$(dst_uri "$(db_of native)")" "$@"; }

# ------------------------------------------------------------------ setup --
section "setup"
for cmd in psql pgbench jq node python3; do command -v "$cmd" >/dev/null || die "$cmd is not installed"; done
if [[ -n ${MIDFLIGHT_BIN:-} ]]; then MF_BUILT=$MIDFLIGHT_BIN; else MF_BUILT=$("$ROOT/scripts/build"); fi
[[ -x $MF_BUILT ]] || die "build did not produce $MF_BUILT"
MOCK_HOST=${KAFKA_MOCK_HOST:-$(dirname "$MF_BUILT")/kafka_mock_host}
[[ -x $MOCK_HOST ]] || die "no $MOCK_HOST (build the kafka_mock_host target)"
if [[ ! -d $NODE_DIR/node_modules/kafkajs ]]; then
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --silent kafkajs@2.2.4 >/dev/null) || die "npm install kafkajs failed"
fi
export NODE_PATH=$NODE_DIR/node_modules
WORK=$(mktemp -d /tmp/midflight-kbench.XXXXXX)
chmod 755 "$WORK"
# Copies: a rebuild during the run changes nothing.
cp "$MF_BUILT" "$WORK/midflight"
cp "$MOCK_HOST" "$WORK/kafka_mock_host"
MF_MAIN=$WORK/midflight
MF=$MF_MAIN
log "midflight: $MF_BUILT ($(git -C "$ROOT" log -1 --format='%h %s' 2>/dev/null | cut -c1-70)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ', src modified'))"
[[ -n ${BASELINE_BIN:-} ]] && log "baseline: $BASELINE_BIN"
log "work dir: $WORK"
log "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

"$TESTDB" start pg "$WORK/src" "$SRC_PORT"
# The target holds a replication origin per midflight partition and
# migration, plus native replication's: more than the default 16.
"$TESTDB" start pg "$WORK/dst" "$DST_PORT" max_replication_slots=64
SRC=$("$TESTDB" uri "$WORK/src")
DST=$("$TESTDB" uri "$WORK/dst")
log "source ${SRC/:midflight@/:***@}, target ${DST/:midflight@/:***@}"

# The mock cluster, in its own process (it stays up while its stdin is open).
mock_topics=("$PREFIX.kjson.changes:$PARTITIONS" "$PREFIX.kavro.changes:$PARTITIONS")
for t in "${TABLES[@]}"; do mock_topics+=("$PREFIX.public.$t:$PARTITIONS"); done
mkfifo "$WORK/mock.in"
"$WORK/kafka_mock_host" 1 "${mock_topics[@]}" <"$WORK/mock.in" >"$WORK/mock.out" 2>"$WORK/mock.log" &
MOCK_PID=$!
exec 9>"$WORK/mock.in"
for ((i = 0; i < 100; i++)); do [[ -s $WORK/mock.out ]] && break; sleep 0.1; done
BROKERS=$(head -1 "$WORK/mock.out")
[[ -n $BROKERS ]] || die "the mock Kafka cluster did not start: $(cat "$WORK/mock.log")"
log "librdkafka mock cluster (in-process broker, not a real Kafka) at $BROKERS, ${#mock_topics[@]} topics of $PARTITIONS partitions"
python3 "$ROOT/tests/tools/schema_registry.py" "$REGISTRY_PORT" >"$WORK/registry.out" 2>"$WORK/registry.log" &
REGISTRY_PID=$!
for ((i = 0; i < 100; i++)); do grep -q ready "$WORK/registry.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/registry.out" || die "the schema registry did not start: $(cat "$WORK/registry.log")"
REGISTRY=http://127.0.0.1:$REGISTRY_PORT
log "schema registry (tests/tools/schema_registry.py) at $REGISTRY"

t0=$(now)
pgbench -i -s "$SCALE" -q "$SRC" >"$WORK/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(tail -3 "$WORK/pgbench-init.log")"
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
ROWS=$(sql_src -c "SELECT count(*) FROM pgbench_accounts")
log "pgbench -i -s $SCALE: $ROWS rows in pgbench_accounts in $(since "$t0") s"
SRC_SUMS=$(table_sums "$SRC")

# ------------------------------------------------------------------- copy --
section "copy (not timed for the comparison): every consumer gets the data, then is paused"
for c in "${CONSUMERS[@]}"; do
  psql_to "$DST" -c "DROP DATABASE IF EXISTS $(db_of "$c") WITH (FORCE)" -c "CREATE DATABASE $(db_of "$c")"
  t0=$(now)
  if [[ $c == native ]]; then
    native_subscribe "$(dst_uri "$(db_of native)")" "${TABLES[@]}"
    native_sql -c "ALTER SUBSCRIPTION bench_sub DISABLE"
  else
    write_mf_spec "$c"
    mf_start
    mf_wait_phase replicating
    mf_wait_applied "$(flush_lsn)"
    mf_stop
  fi
  log "${LABEL[$c]}: copied in $(since "$t0") s"
  check_equal "$c" "after the copy"
done

# ----------------------------------------------------------------- rounds --
declare -A SECS=() LOADS=() MSGS=() KEYB=() VALB=() MAXPB=() APPLIED=()
TX=()
WAL=()
drain() {  # CONSUMER ROUND GOAL
  local c=$1 r=$2 goal=$3 t0
  if [[ $c == native ]]; then
    t0=$(now)
    native_drain "$goal"
    SECS[$c,$r]=$(since "$t0")
    native_sql -c "ALTER SUBSCRIPTION bench_sub DISABLE"
  else
    use_mf "$c"
    t0=$(now)
    mf_start
    mf_wait_applied "$goal"
    SECS[$c,$r]=$(since "$t0")
    APPLIED[$c,$r]=$(mf_status | jq -r '.replication.changes_applied // "-"')
    mf_stop
  fi
  LOADS[$c,$r]=$(loadavg)
  log "${LABEL[$c]}: drained in ${SECS[$c,$r]} s (load average ${LOADS[$c,$r]})"
  check_equal "$c" "after round $r's drain"
  if [[ $c == json || $c == avro ]]; then
    node "$ROOT/bench/kafka_topic_bytes.js" "$BROKERS" bytes "$WORK/mark-$c-$r.json" >"$WORK/bytes-$c-$r.txt" 2>>"$WORK/node.log" ||
      die "reading back the messages of $c's drain failed: $(tail -2 "$WORK/node.log")"
    while read -r topic n kb vb maxp lost; do
      ((lost == 0)) || die "$topic: $lost messages of round $r are no longer held by the mock cluster (over its ~5 MiB per partition): lower BACKLOG_TX or raise PARTITIONS"
      local kind=changes
      [[ $topic == *.changes ]] || kind=avro
      MSGS[$c,$kind,$r]=$((${MSGS[$c,$kind,$r]:-0} + n))
      KEYB[$c,$kind,$r]=$((${KEYB[$c,$kind,$r]:-0} + kb))
      VALB[$c,$kind,$r]=$((${VALB[$c,$kind,$r]:-0} + vb))
      ((maxp > ${MAXPB[$c,$r]:-0})) && MAXPB[$c,$r]=$maxp
      log "  $topic: $n messages, $kb key + $vb value bytes, largest partition $maxp bytes"
    done <"$WORK/bytes-$c-$r.txt"
  fi
}

for ((r = 1; r <= ROUNDS; r++)); do
  section "round $r of $ROUNDS: backlog of pgbench -c 4 -t $BACKLOG_TX with every consumer paused"
  for c in json avro; do
    [[ " ${CONSUMERS[*]} " == *" $c "* ]] || continue
    # shellcheck disable=SC2046 # topic names are words
    node "$ROOT/bench/kafka_topic_bytes.js" "$BROKERS" offsets $(topics_of "$c") >"$WORK/mark-$c-$r.json" 2>>"$WORK/node.log" ||
      die "reading the topics' offsets failed: $(tail -2 "$WORK/node.log")"
  done
  before=$(flush_lsn)
  pgbench -c 4 -j 2 -t "$BACKLOG_TX" "$SRC" >"$WORK/pgbench-$r.log" 2>&1 || die "pgbench failed: $(tail -3 "$WORK/pgbench-$r.log")"
  GOAL=$(flush_lsn)
  read -r "TX[r]" tps < <(pgbench_field "$WORK/pgbench-$r.log")
  WAL[r]=$(sql_src -c "SELECT pg_wal_lsn_diff('$GOAL', '$before')::bigint")
  SRC_SUMS=$(table_sums "$SRC")
  log "backlog: ${TX[$r]} transactions ($tps tps), $((TX[r] * 4)) row changes, ${WAL[$r]} bytes of WAL, goal $GOAL"
  n=${#CONSUMERS[@]}
  order=()
  for ((i = 0; i < n; i++)); do order+=("${CONSUMERS[(i + r - 1) % n]}"); done
  log "order: ${order[*]}"
  for c in "${order[@]}"; do drain "$c" "$r" "$GOAL"; done
done

# ---------------------------------------------------------------- summary --
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
join_round() {  # ARRAY-NAME KEY-PREFIX: the rounds' values, space separated
  local -n a=$1
  local r out=()
  for ((r = 1; r <= ROUNDS; r++)); do out+=("${a[$2,$r]:--}"); done
  echo "${out[*]}"
}
declare -A MED=()
for c in "${CONSUMERS[@]}"; do MED[$c]=$(join_round SECS "$c" | tr ' ' '\n' | median); done
CHANGES=$((TX[1] * 4))
section "summary: SCALE=$SCALE ($ROWS rows in pgbench_accounts), $ROUNDS rounds, $PARTITIONS partitions, $(nproc) cores"
echo
echo "drain (per round one backlog, the same for every consumer: pgbench -c 4 -t $BACKLOG_TX = ${TX[*]} transactions, $CHANGES row changes"
echo "       per round, WAL bytes ${WAL[*]}; each consumer alone, order rotating per round; midflight's time includes its start-up)"
printf '  %-40s %8s %10s   %-26s %s\n' consumer "median s" changes/s "seconds per round" "load average per round"
for c in "${CONSUMERS[@]}"; do
  printf '  %-40s %8.2f %10.0f   %-26s %s\n' "${LABEL[$c]}" "${MED[$c]}" "$(div "$CHANGES" "${MED[$c]}")" \
    "$(join_round SECS "$c")" "$(join_round LOADS "$c")"
done
ratio_line() {  # A B: "A / B: median ratio (per round: ...)"
  local a=$1 b=$2 r per=()
  [[ -n ${MED[$a]:-} && -n ${MED[$b]:-} ]] || return 0
  for ((r = 1; r <= ROUNDS; r++)); do per+=("$(div "${SECS[$a,$r]}" "${SECS[$b,$r]}")"); done
  printf '  %-68s %5sx  (per round: %s)\n' "${LABEL[$a]} / ${LABEL[$b]}" "$(div "${MED[$a]}" "${MED[$b]}")" "${per[*]}"
}
echo
echo "drain time ratios (seconds / seconds, medians; above 1 = slower than the other)"
for k in json avro; do ratio_line "$k" embedded; ratio_line "$k" native; done
ratio_line embedded native
ratio_line baseline embedded
for c in "${CONSUMERS[@]}"; do
  [[ $c == native ]] && continue
  printf '  %s: changes applied per its status, per round: %s\n' "${LABEL[$c]}" "$(join_round APPLIED "$c")"
done

produced_line() {  # CONSUMER KIND LABEL
  local c=$1 k=$2 r m=() kb=() vb=() rate=()
  for ((r = 1; r <= ROUNDS; r++)); do
    [[ -n ${MSGS[$c,$k,$r]:-} ]] || return 0
    m+=("${MSGS[$c,$k,$r]}")
    kb+=("$(div "${KEYB[$c,$k,$r]}" "${MSGS[$c,$k,$r]}")")
    vb+=("$(div "${VALB[$c,$k,$r]}" "${MSGS[$c,$k,$r]}")")
    rate+=("$(div "${MSGS[$c,$k,$r]}" "${SECS[$c,$r]}")")
  done
  printf '  %-44s %-22s %11.0f %9.1f %11.1f %9.1f\n' "$3" "${m[*]}" "$(printf '%s\n' "${rate[@]}" | median)" \
    "$(printf '%s\n' "${kb[@]}" | median)" "$(printf '%s\n' "${vb[@]}" | median)" \
    "$(awk -v k="$(printf '%s\n' "${kb[@]}" | median)" -v v="$(printf '%s\n' "${vb[@]}" | median)" 'BEGIN { print k + v }')"
  BPC[$c,$k]=$(awk -v k="$(printf '%s\n' "${kb[@]}" | median)" -v v="$(printf '%s\n' "${vb[@]}" | median)" 'BEGIN { print k + v }')
}
declare -A BPC=()
if [[ " ${CONSUMERS[*]} " == *" json "* || " ${CONSUMERS[*]} " == *" avro "* ]]; then
  echo
  echo "produced during the drains (every message read back from the mock cluster; bytes = key + value as produced, no compression)"
  printf '  %-44s %-22s %11s %9s %11s %9s\n' "topics" "messages per round" "msgs/s" "key B/msg" "value B/msg" "B/msg"
  produced_line json changes "JSON change topic (json run)"
  produced_line avro changes "JSON change topic (avro run)"
  produced_line avro avro "Avro table topics (avro run, 4 topics)"
  if [[ -n ${BPC[avro,avro]:-} && -n ${BPC[avro,changes]:-} ]]; then
    printf '  Avro / JSON bytes per message: %sx (Avro table-topic message / JSON change-topic message, same changes)\n' \
      "$(div "${BPC[avro,avro]}" "${BPC[avro,changes]}")"
  fi
  for c in json avro; do
    [[ -n ${MAXPB[$c,1]:-} ]] && printf '  %s: largest partition per round (bytes; the mock keeps ~5 MiB = 5242880): %s\n' "${LABEL[$c]}" "$(join_round MAXPB "$c")"
  done
  [[ -n ${BPC[avro,avro]:-} ]] &&
    echo "  (the avro run produces both: every change to the change topic, which midflight's appliers read, and to its table's topic)"
fi
echo
echo "every drain ended with each target table equal to the source's (row count and a checksum of every row's text)"
printf 'host: %s cores; load average %s at the start, %s at the end\n' "$(nproc)" "$START_LOAD" "$(cut -d' ' -f1-3 /proc/loadavg)"
