# Shared helpers for the integration tests: real PostgreSQL servers started by
# scripts/testdb, the real midflight binary, psql and pgbench as the clients.
# Each test sources this file, calls start_servers with its own port base,
# and is cleaned up by the EXIT trap.
set -euo pipefail

ROOT=${MIDFLIGHT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# MIDFLIGHT_BIN (set by hand, e.g. a sanitizer build) wins over the build directory's binary.
MF=${MIDFLIGHT_BIN:-${MIDFLIGHT_DEFAULT_BIN:-$ROOT/build/midflight}}
TESTDB=$ROOT/scripts/testdb
export PGPASSWORD=midflight
WORK=$(mktemp -d /tmp/midflight-it.XXXXXX)
chmod 755 "$WORK"
MF_PID=
LOAD_PID=
EXTRA_PIDS=()  # helper processes (a webhook receiver, ...) killed at exit

log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "$(basename "$0" .sh)" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

cleanup() {
  local rc=$?
  [[ -n ${LOAD_PID:-} ]] && kill "$LOAD_PID" 2>/dev/null || true
  [[ -n ${MF_PID:-} ]] && kill -9 "$MF_PID" 2>/dev/null || true
  for p in "${EXTRA_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ $rc -ne 0 && -n ${MIDFLIGHT_KEEP_FAILED:-} ]] && { log "kept $WORK (servers running)"; return; }
  for d in "$WORK"/*/; do [[ -f $d/engine ]] && "$TESTDB" stop "$d" immediate || true; done
  if [[ $rc -ne 0 ]]; then
    log "midflight output (last 40 lines):"; tail -40 "$WORK"/run*.log 2>/dev/null || true
    if [[ -n ${MIDFLIGHT_KEEP_FAILED:-} ]]; then log "kept $WORK (servers running)"; return; fi
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# A port in the kernel's ephemeral range (32768-60999) can be taken between
# this check and the server's bind by any outgoing connection (it was: a
# MariaDB failed with "Address already in use" in CI), so tests stay below it.
port_free() {
  (($1 < 32768)) || { echo "test port $1 is in the ephemeral range 32768-60999; pick a base below 32768" >&2; exit 1; }
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
# free_port BASE: the first free port from BASE.
free_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }

# start_servers PORT_BASE: source and target on the first two free ports from
# PORT_BASE (each test has its own base, below the kernel's ephemeral range
# 32768-60999, where an outgoing connection can hold a port nothing listens
# on). Sets SRC, DST (URIs).
start_servers() {
  local port=$1
  while ! port_free "$port" || ! port_free "$((port + 1))"; do port=$((port + 2)); done
  "$TESTDB" start pg "$WORK/src" "$port"
  "$TESTDB" start pg "$WORK/dst" "$((port + 1))"
  SRC=$("$TESTDB" uri "$WORK/src")
  DST=$("$TESTDB" uri "$WORK/dst")
}

# start_kafka_mock TOPIC:PARTITIONS...: librdkafka's mock cluster, served by
# tests/tools/kafka_mock_host in its own process (so topics outlive a killed
# midflight), with those topics. Its brokers listen on ports the kernel picks
# (librdkafka 2.0.2 cannot choose them). Sets BROKERS.
start_kafka_mock() {
  local host=${KAFKA_MOCK_HOST:-$(dirname "$MF")/kafka_mock_host}
  # A midflight from another build (a sanitizer's) uses the test build's mock.
  [[ -x $host || -z ${MIDFLIGHT_DEFAULT_BIN:-} ]] || host=$(dirname "$MIDFLIGHT_DEFAULT_BIN")/kafka_mock_host
  [[ -x $host ]] || fail "no $host (build the kafka_mock_host target)"
  mkfifo "$WORK/mock.in"
  "$host" 1 "$@" <"$WORK/mock.in" >"$WORK/mock.out" 2>"$WORK/mock.err" &
  EXTRA_PIDS+=($!)
  exec 9>"$WORK/mock.in"  # it stays up while its stdin is open
  local i
  for ((i = 0; i < 100; i++)); do [[ -s $WORK/mock.out ]] && break; sleep 0.1; done
  BROKERS=$(head -1 "$WORK/mock.out")
  [[ -n $BROKERS ]] || fail "the mock Kafka cluster did not start: $(cat "$WORK/mock.err")"
  log "mock Kafka cluster at $BROKERS, topics $*"
}

# start_pg_to_my_servers PG_BASE MY_BASE [MARIADBD_OPTION...]: a PostgreSQL
# source (database app: SRC) and a MariaDB target ($WORK/dst, database shop
# for user mf: DST) on the first free ports from each base (pgport, myport);
# sql_my runs the mariadb client on the target.
sql_my() { "$TESTDB" sql "$WORK/dst" -N -B "$@"; }
start_pg_to_my_servers() {
  pgport=$(free_port "$1")
  "$TESTDB" start pg "$WORK/src" "$pgport"
  psql -X -q -At "$("$TESTDB" uri "$WORK/src")" -c "CREATE DATABASE app"
  SRC=$("$TESTDB" uri "$WORK/src" app)
  myport=$(free_port "$2")
  "$TESTDB" start mariadb "$WORK/dst" "$myport" "${@:3}"
  sql_my -e "CREATE USER mf@'%' IDENTIFIED BY 'mfpass'; GRANT ALL ON *.* TO mf@'%'; CREATE DATABASE shop"
  DST="mysql://mf:mfpass@127.0.0.1:$myport/shop"
}

# kill_restart_mariadb DIR: kill -9 of the mariadbd of data directory DIR,
# then the same server started again on its data directory and port (its
# args file keeps the settings); counts in KILLS.
KILLS=0
kill_restart_mariadb() {
  local dir=$1 pid i
  pid=$(cat "$dir/mariadbd.pid")
  kill -9 "$pid"
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && fail "mariadbd $pid survived kill -9"
  KILLS=$((KILLS + 1))
  sleep 1
  "$TESTDB" start mariadb "$dir" 0
}

# kill_restart_pg DIR: kill -9 of the PostgreSQL server of data directory DIR
# (its postmaster, then the backends it had, by id: an orphaned backend would
# keep the shared memory and the restart would refuse), then the same server
# started again on its data directory and port (crash recovery); counts in KILLS.
kill_restart_pg() {
  local dir=$1 pid kids i
  pid=$(head -1 "$dir/data/postmaster.pid")
  kids=$(pgrep -P "$pid" || true)
  kill -9 "$pid"
  # shellcheck disable=SC2086  # one id per word
  [[ -z $kids ]] || kill -9 $kids 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && fail "postgres $pid survived kill -9"
  for k in $kids; do
    for ((i = 0; i < 100; i++)); do kill -0 "$k" 2>/dev/null || break; sleep 0.1; done
  done
  KILLS=$((KILLS + 1))
  sleep 1
  "$TESTDB" start pg "$dir" 0
}

# start_schema_registry PORT_BASE: tests/tools/schema_registry.py (a
# Confluent-compatible registry in memory) on the first free port from
# PORT_BASE. While $WORK/registry.refuse exists it refuses every schema with
# that file's text. Sets REGISTRY (its URL) and REGISTRY_PID.
start_schema_registry() {
  local port
  port=$(free_port "$1")
  python3 "$ROOT/tests/tools/schema_registry.py" "$port" --refuse-file "$WORK/registry.refuse" \
    >"$WORK/registry.out" 2>"$WORK/registry.err" &
  REGISTRY_PID=$!
  EXTRA_PIDS+=("$REGISTRY_PID")
  local i
  for ((i = 0; i < 100; i++)); do grep -q ready "$WORK/registry.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$WORK/registry.out" || fail "the schema registry did not start: $(cat "$WORK/registry.err")"
  REGISTRY=http://127.0.0.1:$port
  log "schema registry at $REGISTRY"
}

# need_npm NAME@VERSION...: those npm packages in $NODE_DIR (build/node, or
# MIDFLIGHT_NODE_DIR), installed when one is missing. Sets NODE_DIR.
need_npm() {
  NODE_DIR=${MIDFLIGHT_NODE_DIR:-$ROOT/build/node}
  local pkg missing=0
  for pkg in "$@"; do [[ -d $NODE_DIR/node_modules/${pkg%@*} ]] || missing=1; done
  [[ $missing == 0 ]] && return 0
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --silent "$@" >/dev/null) || fail "npm install $* failed"
}

# replay_earliest: `midflight replay $SPEC --from-offset earliest` (a
# publish_snapshot topic into an emptied target), its report indented and
# timed. Sets REPLAY_SNAP and REPLAY_RESETS (snapshot rows and chunk resets
# applied, over every partition); fails when it fails or left a table out.
replay_earliest() {
  local t0
  t0=$(date +%s%N)
  "$MF" replay "$SPEC" --from-offset earliest >"$WORK/replay.out" 2>"$WORK/replay.err" ||
    { tail -5 "$WORK/replay.err"; fail "replay failed"; }
  sed 's/^/    /' "$WORK/replay.out"
  log "replay took $(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}') s"
  REPLAY_SNAP=$(grep -o "([0-9]* snapshot rows" "$WORK/replay.out" | tr -d '(' | awk '{s += $1} END {print s + 0}')
  REPLAY_RESETS=$(grep -o "[0-9]* chunk resets" "$WORK/replay.out" | awk '{s += $1} END {print s + 0}')
  if grep -q "has no key" "$WORK/replay.out"; then fail "a table was left out of the replay"; fi
}

# kafka_left_behind RUN_LOG: the messages earlier runs produced to the topic,
# summed over the start offsets the next run logged.
kafka_left_behind() { grep -o "read from offset [0-9]*" "$1" | awk '{s += $4} END {print s + 0}'; }

# write_spec NAME [extra yaml lines...]: writes $WORK/NAME.yaml, sets SPEC.
write_spec() {
  local name=$1; shift
  SPEC=$WORK/$name.yaml
  {
    echo "name: $name"
    echo "source: $SRC"
    echo "target: $DST"
    echo "state_dir: $WORK/state-$name"
    for line in "$@"; do echo "$line"; done
  } >"$SPEC"
}

sql_src() { psql -X -q -v ON_ERROR_STOP=1 -At "$SRC" "$@"; }
sql_dst() { psql -X -q -v ON_ERROR_STOP=1 -At "$DST" "$@"; }

# run_mf_bg: starts `midflight run $SPEC` in the background (output in $WORK/run.N.log).
RUN_N=0
run_mf_bg() {
  RUN_N=$((RUN_N + 1))
  "$MF" run "$SPEC" >"$WORK/run.$RUN_N.log" 2>&1 &
  MF_PID=$!
}

# run_mf_crash POINT: runs midflight with a test crash point; it must die by SIGKILL there.
run_mf_crash() {
  RUN_N=$((RUN_N + 1))
  local rc=0
  MIDFLIGHT_CRASH_AT=$1 "$MF" run "$SPEC" >"$WORK/run.$RUN_N.log" 2>&1 || rc=$?
  [[ $rc -eq 137 ]] || { cat "$WORK/run.$RUN_N.log"; fail "expected a SIGKILL at $1, got exit $rc"; }
  grep -q "test crash point ${1%%=*}" "$WORK/run.$RUN_N.log" || fail "crash point $1 not reached"
  log "killed at $1 (phase now $(status_field phase))"
}

# crash_in_copy_and_stream: midflight killed at its crash point after 2
# copied chunks; resumed, and killed with kill -9 after 4 s of replicating;
# resumed again, replicating for 4 s.
crash_in_copy_and_stream() {
  run_mf_crash copy-chunks=2
  run_mf_bg
  wait_phase replicating 120
  sleep 4
  kill9_mf
  log "killed with kill -9 while streaming; resuming"
  run_mf_bg
  wait_phase replicating 90
  sleep 4
}

# Reverse replication after a write switch, killed and resumed
# (cross_reverse_crash.sh, cross_reverse_pg_to_my_crash.sh).
# reverse_applied_now: the changes this process's reverse flow has applied,
# from its own output (the stored status may still be a killed run's).
reverse_applied_now() {
  { grep -o 'reverse lag [0-9,]* bytes, [0-9,]* changes applied' "$WORK/run.$RUN_N.log" || true; } | tail -1 \
    | awk '{gsub(",", "", $5); print $5}'
}
# wait_reverse_applies N: this process's reverse flow has applied N changes.
wait_reverse_applies() {
  local i n
  for ((i = 0; i < 480; i++)); do
    kill -0 "$MF_PID" 2>/dev/null || { cat "$WORK/run.$RUN_N.log"; fail "midflight exited"; }
    n=$(reverse_applied_now)
    [[ -n $n && $n -ge $1 ]] && return 0
    sleep 0.25
  done
  fail "the reverse flow of run $RUN_N did not apply $1 changes in 120 s: $(status_field reverse)"
}
# wait_killed POINT: the background midflight dies by SIGKILL at its crash point.
wait_killed() {
  local i rc=0
  for ((i = 0; i < 1200; i++)); do kill -0 "$MF_PID" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$MF_PID" 2>/dev/null && fail "crash point $1 not reached in 300 s"
  wait "$MF_PID" || rc=$?
  MF_PID=
  [[ $rc -eq 137 ]] || { cat "$WORK/run.$RUN_N.log"; fail "expected a SIGKILL at $1, got exit $rc"; }
  grep -q "test crash point ${1%%=*} reached" "$WORK/run.$RUN_N.log" || fail "crash point $1 not reached"
}
# run_mf_crash_bg POINT: `midflight run $SPEC` in the background with a test
# crash point (wait_killed waits for it to die there).
run_mf_crash_bg() {
  RUN_N=$((RUN_N + 1))
  MIDFLIGHT_CRASH_AT=$1 "$MF" run "$SPEC" >"$WORK/run.$RUN_N.log" 2>&1 &
  MF_PID=$!
}
# crash_inside_rollback: the running midflight killed -9, started again
# with crash point rollback-external-caught-up, and `rollback --external`
# sent: the process dies there, once the source is carried over and before
# the phase is recorded, which stays writes_switched.
# The restarted reverse flow first reads what the target wrote meanwhile:
# the rollback's lag gate refuses ("behind the target") until it has, and is
# asked again.
crash_inside_rollback() {
  kill9_mf
  run_mf_crash_bg rollback-external-caught-up
  wait_phase writes_switched 120
  local i
  for ((i = 0; i < 60; i++)); do
    if rollback_when_ready; then fail "the rollback finished past its crash point: $out"; fi
    [[ $out == *"behind the target"* ]] && kill -0 "$MF_PID" 2>/dev/null || break
    sleep 1
  done
  kill -0 "$MF_PID" 2>/dev/null && log "rollback answered: $out"
  wait_killed rollback-external-caught-up
  [[ $(status_field phase) == writes_switched ]] || fail "phase is $(status_field phase) after the kill inside the rollback"
}
# verify_clean WHAT: `midflight verify` is clean; its summary line logged.
verify_clean() {
  local out
  out=$("$MF" verify "$SPEC" 2>&1) || { echo "$out"; fail "$1: verify not clean"; }
  log "$1: $(grep -m1 '^verify:' <<<"$out")"
}
# no_doubles_no_loops WHAT: no apply conflict in either direction (a change
# applied twice finds its row there already, or gone), and no change seen on
# the side the applications left as an application's write (the reverse
# flow's own writes looping back, or a restarted forward flow taking changes
# it had applied before the switch for new ones).
no_doubles_no_loops() {
  [[ $(status_field conflicts.total) == 0 ]] || fail "$1: apply conflicts: $(status_field conflicts)"
  [[ $(status_field reverse.old_side_writes) == 0 ]] \
    || fail "$1: $(status_field reverse.old_side_writes) old-side write(s) reported after the switch"
}
# mf_when_ready ARGS...: `midflight ARGS... $SPEC` (an operation sent to the
# running process), retried while a restarted process is still starting; its
# output in $out, its exit status returned.
mf_when_ready() {
  local i rc
  for ((i = 0; i < 240; i++)); do
    rc=0; out=$("$MF" "$@" "$SPEC" 2>&1) || rc=$?
    not_yet "$out" || return $rc
    sleep 0.25
  done
  fail "$* still refused after 60 s: $out"
}
rollback_when_ready() { mf_when_ready rollback --external; }
status_field() { "$MF" status "$SPEC" --json | jq -r ".$1"; }

# not_yet OUTPUT: the answer of an operation sent to a process still starting
# (its control API answers before replication runs): retry it.
not_yet() { [[ $1 == *"not running yet"* || $1 == *"needs the migration running and replicating"* ]]; }

# wait_phase PHASE [SECONDS]
wait_phase() {
  local want=$1 limit=${2:-120} i
  for ((i = 0; i < limit * 4; i++)); do
    [[ -n ${MF_PID:-} ]] && ! kill -0 "$MF_PID" 2>/dev/null && { cat "$WORK/run.$RUN_N.log"; fail "midflight exited while waiting for $want"; }
    [[ -f $WORK/state-$(basename "$SPEC" .yaml)/state.db ]] && [[ $(status_field phase 2>/dev/null) == "$want" ]] && return 0
    sleep 0.25
  done
  fail "phase $want not reached in ${limit}s (phase: $(status_field phase))"
}

# wait_caught_up [SECONDS]: everything committed on the source so far must be
# applied. The insert position, not the flush position: the test servers run
# with synchronous_commit = off, so a COMMIT returns before its WAL is flushed.
wait_caught_up() {
  local limit=${1:-120} target applied i
  target=$(sql_src -c "SELECT pg_current_wal_insert_lsn()")
  for ((i = 0; i < limit * 4; i++)); do
    applied=$(status_field replication.applied_position)
    if [[ -n $applied && $(sql_src -c "SELECT '$applied'::pg_lsn >= '$target'::pg_lsn") == t ]]; then
      log "caught up: applied $applied >= source $target (lag_bytes $(status_field lag_bytes))"
      return 0
    fi
    sleep 0.25
  done
  fail "not caught up with $target after ${limit}s (applied $applied)"
}

# stop_load: stops the background pgbench and waits until the source has no
# pgbench session left (a COMMIT the server already received still finishes
# after the client is gone; it must be in the position wait_caught_up takes).
stop_load() {
  kill "$LOAD_PID" 2>/dev/null || true
  wait "$LOAD_PID" 2>/dev/null || true
  LOAD_PID=
  local i
  for ((i = 0; i < 200; i++)); do
    [[ $(sql_src -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'") == 0 ]] && return 0
    sleep 0.05
  done
  fail "pgbench sessions still on the source"
}

assert_equal() {
  local out
  out=$("$MF" compare "$SPEC") || { echo "$out"; fail "source and target differ"; }
  echo "$out"
}

stop_mf() {
  kill -TERM "$MF_PID"
  local rc=0
  wait "$MF_PID" || rc=$?
  MF_PID=
  [[ $rc -eq 0 ]] || fail "midflight exited $rc on SIGTERM (expected a clean stop)"
}

kill9_mf() {
  kill -9 "$MF_PID"
  wait "$MF_PID" 2>/dev/null || true
  MF_PID=
}

# start_webhook_receiver FILE PORT_BASE: a local webhook receiver appending
# each POST body as one line to FILE; sets HOOK_URL.
start_webhook_receiver() {
  local file=$1 port
  port=$(free_port "$2")
  cat >"$WORK/hook.py" <<'PYEOF'
import http.server, sys
out = open(sys.argv[2], "a")
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out.write(body.decode() + "\n"); out.flush()
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PYEOF
  python3 "$WORK/hook.py" "$port" "$file" &
  EXTRA_PIDS+=($!)
  HOOK_URL=http://127.0.0.1:$port/hook
  for _ in $(seq 50); do port_free "$port" || return 0; sleep 0.1; done
  fail "webhook receiver did not start"
}

# start_serve STATE_DIR [PORT_BASE]: `midflight serve` in the background with
# the webhook at $HOOK_URL (if set); sets API (HOST:PORT, kept across
# restarts), MIDFLIGHT_SERVER and MIDFLIGHT_API_TOKEN; waits until it
# answers. Output in $WORK/run.serveN.log.
SVC_N=0
start_serve() {
  local dir=$1
  API=${API:-127.0.0.1:$(free_port "${2:-26960}")}
  export MIDFLIGHT_SERVER=$API MIDFLIGHT_API_TOKEN=${MIDFLIGHT_API_TOKEN:-test-token-0123456789abcdef}
  SVC_N=$((SVC_N + 1))
  "$MF" serve --listen "$API" --state-dir "$dir" ${HOOK_URL:+--webhook "$HOOK_URL"} >"$WORK/run.serve$SVC_N.log" 2>&1 &
  MF_PID=$!
  for _ in $(seq 100); do curl -sf "http://$API/healthz" >/dev/null && return; sleep 0.1; done
  fail "serve did not start"
}

# api_field NAME JQ: a field of GET /api/migrations/NAME.
api_field() { curl -sf "http://$API/api/migrations/$1" | jq -r ".$2"; }
