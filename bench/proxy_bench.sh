#!/usr/bin/env bash
# midflight proxy benchmark: read-only pgbench throughput through midflight's
# PostgreSQL proxy, PgBouncer (transaction pooling) and directly, side by side
# on the same server, interleaved; then the MySQL half: sysbench
# oltp_point_select directly against MariaDB and through midflight's MySQL
# proxy. Whatever core the proxies run on (thread per session or event
# loops), the script only talks to their listeners and reads /proc.
#
#   bench/proxy_bench.sh
#
#   setup: two throwaway PostgreSQL 15 servers (source, target), pgbench -i -s
#          $SCALE on the source; one pgbouncer (transaction pooling, one
#          [databases] entry per pool size, all pointing at the source);
#          `midflight run` with a proxy, until phase "replicating" (the
#          read-write endpoint routes to the source, so every path below ends
#          at the same server)
#   1. simple protocol: pgbench -S -c 8 -j 2 -T $DURATION -M simple against
#        direct     the source itself
#        pgb<N>     pgbouncer, pool_size N (for each N in $BOUNCER_POOLS)
#        midflight  midflight's read-write endpoint
#      $ROUNDS rounds, interleaved (the order rotates each round); median tps
#   2. prepared protocol: the same with -M prepared, direct and midflight only
#      (pgbouncer 1.18 cannot keep prepared statements in transaction pooling),
#      $PREPARED_ROUNDS rounds
#   CPU time (utime + stime from /proc/PID/stat) of the pgbouncer and the
#   midflight process is taken before and after every run.
#   3. MySQL (unless MYSQL=0): two throwaway MariaDB 10.11 servers, sysbench
#      oltp_point_select prepare ($MY_TABLES x $MY_TABLE_SIZE rows) on the
#      source, `midflight run` of a MySQL migration with a proxy until
#      "replicating"; then sysbench oltp_point_select --threads=$MY_THREADS
#      --time=$DURATION, direct and through midflight's read-write endpoint,
#      $ROUNDS interleaved rounds with server-side prepared statements
#      (sysbench's default, --db-ps-mode=auto) and $PREPARED_ROUNDS with the
#      text protocol (--db-ps-mode=disable). No PgBouncer counterpart
#      (ProxySQL is not in Debian).
#
# Knobs (environment):
#   DURATION=20 ROUNDS=3 PREPARED_ROUNDS=1   seconds per pgbench run, rounds (median of them)
#   CLIENTS=8 THREADS=2  pgbench -c, -j
#   SCALE=10             pgbench -i -s (10 = 1 M rows in pgbench_accounts)
#   BOUNCER_POOLS=8,16   pgbouncer pool sizes; each is a [databases] entry "pgb<N>"
#   WARMUP=5             seconds of pgbench per path before the rounds (also checks each path works)
#   PORT_BASE=27600      the ports below are PORT_BASE + 0..7 unless set one by one
#   SRC_PORT=27600 DST_PORT=27601 BOUNCER_PORT=27602 PROXY_PORT=27603   (27600-27620)
#   MYSQL=1              0: the PostgreSQL half only
#   PROXY_LOOPS=0        the proxies' event-loop threads (spec proxy.loops; 0: one per two cores)
#   MY_THREADS=8 MY_TABLES=4 MY_TABLE_SIZE=100000   sysbench --threads, --tables, --table-size
#   MY_SRC_PORT=27605 MY_DST_PORT=27606 MY_PROXY_PORT=27607
#   TIMEOUT=600 (seconds, per wait) KEEP=1 (keep the temp dir; processes are stopped anyway)
#   MIDFLIGHT_BIN=path   the binary (default: build/midflight; this script does not build)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTDB=$ROOT/scripts/testdb
source "$ROOT/bench/lib.sh"
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
PREPARED_ROUNDS=${PREPARED_ROUNDS:-1}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
SCALE=${SCALE:-10}
BOUNCER_POOLS=${BOUNCER_POOLS:-8,16}
WARMUP=${WARMUP:-5}
PORT_BASE=${PORT_BASE:-27600}
[[ $PORT_BASE =~ ^[0-9]+$ ]] && ((PORT_BASE + 7 < 32768)) || { echo "proxy_bench.sh: PORT_BASE '$PORT_BASE' must be a number, with PORT_BASE+7 below 32768" >&2; exit 2; }
SRC_PORT=${SRC_PORT:-$PORT_BASE}
DST_PORT=${DST_PORT:-$((PORT_BASE + 1))}
BOUNCER_PORT=${BOUNCER_PORT:-$((PORT_BASE + 2))}
PROXY_PORT=${PROXY_PORT:-$((PORT_BASE + 3))}
TIMEOUT=${TIMEOUT:-600}
KEEP=${KEEP:-}
MIDFLIGHT_BIN=${MIDFLIGHT_BIN:-$ROOT/build/midflight}
MYSQL=${MYSQL:-1}
MY_THREADS=${MY_THREADS:-8}
MY_TABLES=${MY_TABLES:-4}
MY_TABLE_SIZE=${MY_TABLE_SIZE:-100000}
MY_SRC_PORT=${MY_SRC_PORT:-$((PORT_BASE + 5))}
MY_DST_PORT=${MY_DST_PORT:-$((PORT_BASE + 6))}
MY_PROXY_PORT=${MY_PROXY_PORT:-$((PORT_BASE + 7))}
TARGET_DIRECT=0.85
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
POLL=0.2
TARGET_RATIO=1.2
export PGAPPNAME=midflight-bench PGCONNECT_TIMEOUT=10

IFS=, read -r -a POOLS <<<"$BOUNCER_POOLS"
for n in "${POOLS[@]}" "$DURATION" "$ROUNDS" "$PREPARED_ROUNDS" "$CLIENTS" "$THREADS" "$SCALE" "$WARMUP" "$MY_THREADS" "$MY_TABLES" "$MY_TABLE_SIZE"; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "proxy_bench.sh: '$n' is not a number (DURATION, ROUNDS, PREPARED_ROUNDS, CLIENTS, THREADS, SCALE, WARMUP, BOUNCER_POOLS)" >&2; exit 2; }
done
((ROUNDS >= 1 && DURATION >= 1 && ${#POOLS[@]} >= 1)) || { echo "proxy_bench.sh: ROUNDS, DURATION and BOUNCER_POOLS need at least 1" >&2; exit 2; }

# ---------------------------------------------------------------- helpers --
median() {  # numbers... -> median, rounded ("-" for none)
  (($#)) || { echo -; return 0; }
  printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) print "-"; else if (NR % 2) printf "%.0f", a[(NR + 1) / 2]; else printf "%.0f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {  # PID -> utime + stime of the whole process (all threads, also exited ones), in ticks
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return 0; }
  s=${s##*) }   # drop "pid (comm) "; utime and stime are then fields 12 and 13
  set -- $s
  echo $((${12} + ${13}))
}
host_busy() {  # -> "busy total" jiffies of all cores from /proc/stat
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
port_in_use() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

WORK=
MF_PID=
BOUNCER_PID=
LOAD_PID=
cleanup() {
  local rc=$?
  set +e
  [[ -n $LOAD_PID ]] && kill "$LOAD_PID" 2>/dev/null
  if [[ -n $MF_PID ]]; then
    kill -TERM "$MF_PID" 2>/dev/null
    for ((i = 0; i < 100; i++)); do kill -0 "$MF_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$MF_PID" 2>/dev/null
  fi
  if [[ -n $BOUNCER_PID ]]; then
    kill -TERM "$BOUNCER_PID" 2>/dev/null
    for ((i = 0; i < 50; i++)); do kill -0 "$BOUNCER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$BOUNCER_PID" 2>/dev/null
  fi
  cleanup_work "$WORK/src" "$WORK/dst" "$WORK/mysrc" "$WORK/mydst"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sql_src() { psql_to "$SRC" "$@"; }
wait_sql() {  # URI WHAT PID LOG: until SELECT 1 answers through URI (PID must stay alive)
  local out="" deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    kill -0 "$3" 2>/dev/null || { tail -20 "$4" >&2; die "$2 exited while starting (log above: $4)"; }
    out=$(psql -X -At "$1" -c "SELECT 1" 2>&1) && [[ $out == 1 ]] && return 0
    sleep "$POLL"
  done
  die "$2 did not answer SELECT 1 in ${TIMEOUT}s: $out"
}

# midflight
bouncer_stop() {
  [[ -n $BOUNCER_PID ]] || return 0
  kill -TERM "$BOUNCER_PID" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do kill -0 "$BOUNCER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$BOUNCER_PID" 2>/dev/null || true
  wait "$BOUNCER_PID" 2>/dev/null || true
  BOUNCER_PID=
}

# paths: key -> label, URI
declare -A LABEL=() URI=()
PATHS=()            # the -M simple paths, in base order
BOUNCER_KEYS=()

# results, per key and mode ("key/simple", "key/prepared")
declare -A TPS=()     # space-separated tps of each run
declare -A TX=()      # transactions, summed over runs
declare -A SECS=()    # wall seconds of the pgbench runs, summed
declare -A BCPU=()    # pgbouncer ticks during the runs
declare -A MCPU=()    # midflight ticks during the runs
declare -A FAILED=()  # pgbench failed transactions + error lines, summed
declare -A BADRUNS=() # runs with a non-zero pgbench exit status
FIRST_ERROR=()

bench_run() {  # KEY MODE SECONDS [warmup]: one pgbench run, results recorded unless warmup
  # A pgbench killed by a signal (not ours: another job on a shared machine) is run again.
  local attempt
  for ((attempt = 1; attempt <= 3; attempt++)); do
    KILLED=
    bench_once "$@"
    [[ -n $KILLED ]] || return 0
    log "WARNING: pgbench was killed by signal $((KILLED - 128)) from outside this script; running it again"
    RERUNS=$((RERUNS + 1))
  done
  die "pgbench through ${LABEL[$1]} was killed 3 times"
}
KILLED=
RERUNS=0
bench_once() {
  local key=$1 mode=$2 secs=$3 warm=${4:-} out b0 m0 b1 m1 h0 h1 ht0 ht1 t0 wall rc=0 tps tx failed errs conn
  out=$WORK/pgbench-$key-$mode-$((++RUN_NO)).log
  b0=$(cpu_ticks "$BOUNCER_PID"); m0=$(cpu_ticks "$MF_PID"); read -r h0 ht0 < <(host_busy)
  t0=$(now)
  pgbench -S -c "$CLIENTS" -j "$THREADS" -T "$secs" -M "$mode" -n "${URI[$key]}" >"$out" 2>&1 &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=
  wall=$(since "$t0")
  b1=$(cpu_ticks "$BOUNCER_PID"); m1=$(cpu_ticks "$MF_PID"); read -r h1 ht1 < <(host_busy)
  kill -0 "$MF_PID" 2>/dev/null || mf_check_alive "pgbench ran against ${LABEL[$key]}"
  kill -0 "$BOUNCER_PID" 2>/dev/null || die "pgbouncer exited during a run (see $WORK/pgbouncer.log)"
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | head -1)
  tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
  conn=$(sed -n 's/^initial connection time = \([0-9.]*\) ms/\1/p' "$out")
  errs=$(grep -ci 'error\|abort\|FATAL' "$out" || true)
  log "$(printf '%-40s %-8s %9.0f tps  %8s tx  conn %6s ms  pgbouncer %5.2f s cpu  midflight %5.2f s cpu  host busy %3.0f%%%s%s' \
    "${LABEL[$key]}" "$mode" "${tps:-0}" "${tx:-0}" "${conn:--}" \
    "$(awk -v t=$((b1 - b0)) -v c="$CLK_TCK" 'BEGIN { print t / c }')" \
    "$(awk -v t=$((m1 - m0)) -v c="$CLK_TCK" 'BEGIN { print t / c }')" \
    "$(awk -v b=$((h1 - h0)) -v t=$((ht1 - ht0)) 'BEGIN { print t ? 100 * b / t : 0 }')" \
    "${warm:+  (warm-up)}" "$( ((rc != 0 || errs > 0)) && echo "  pgbench exit $rc, $errs error lines: $out")")"
  if ((rc > 128)) && [[ -z $tps ]]; then KILLED=$rc; return 0; fi
  if ((rc != 0 || errs > 0)); then
    FIRST_ERROR+=("${LABEL[$key]} -M $mode: exit $rc: $(grep -i -m1 'error\|abort\|FATAL' "$out" || tail -1 "$out")")
  fi
  if [[ -n $warm ]]; then
    ((rc == 0)) && [[ -n $tps ]] || { cat "$out" >&2; die "pgbench through ${LABEL[$key]} (${URI[$key]/:$PG_PASS@/:***@}) failed (exit $rc)"; }
    return 0
  fi
  local k=$key/$mode
  if [[ -z $tps ]]; then   # no result: counted as a failed run, not in the median
    BADRUNS[$k]=$((${BADRUNS[$k]:-0} + 1))
    return 0
  fi
  TPS[$k]="${TPS[$k]:-} ${tps:-0}"
  TX[$k]=$((${TX[$k]:-0} + ${tx:-0}))
  SECS[$k]=$(awk -v a="${SECS[$k]:-0}" -v b="$wall" 'BEGIN { print a + b }')
  BCPU[$k]=$((${BCPU[$k]:-0} + b1 - b0))
  MCPU[$k]=$((${MCPU[$k]:-0} + m1 - m0))
  FAILED[$k]=$((${FAILED[$k]:-0} + ${failed:-0} + errs))
  ((rc == 0)) || BADRUNS[$k]=$((${BADRUNS[$k]:-0} + 1))
}
RUN_NO=0

# ------------------------------------------------------------------ setup --
section "setup"
for t in pgbench psql jq ss "$PGBOUNCER"; do command -v "$t" >/dev/null || die "$t is not installed"; done
if [[ $MYSQL == 1 ]]; then
  for t in sysbench mariadb; do command -v "$t" >/dev/null || die "$t is not installed (Debian: sysbench mariadb-client; or MYSQL=0)"; done
fi
[[ -x $MIDFLIGHT_BIN ]] || die "no midflight binary at $MIDFLIGHT_BIN (build it with scripts/build, or set MIDFLIGHT_BIN)"
MY_PORTS=()
[[ $MYSQL == 1 ]] && MY_PORTS=("$MY_SRC_PORT" "$MY_DST_PORT" "$MY_PROXY_PORT")
for p in "$SRC_PORT" "$DST_PORT" "$BOUNCER_PORT" "$PROXY_PORT" "${MY_PORTS[@]}"; do
  port_in_use "$p" && die "port $p is already in use (set SRC_PORT, DST_PORT, BOUNCER_PORT, PROXY_PORT, MY_*_PORT)"
done
read -r h0 ht0 < <(host_busy); sleep 2; read -r h1 ht1 < <(host_busy)
BG_BUSY=$(awk -v b=$((h1 - h0)) -v t=$((ht1 - ht0)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }')
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
log "host: $(nproc) cores; before starting anything: CPU ${BG_BUSY}% busy (2 s sample); uptime:$(uptime)"
WORK=$(mktemp -d /tmp/midflight-proxy-bench.XXXXXX)
chmod 755 "$WORK"
log "work dir: $WORK"
# A private copy: a rebuild during the run cannot change the binary under test.
MF=$WORK/midflight
cp "$MIDFLIGHT_BIN" "$MF"
log "midflight: $MIDFLIGHT_BIN; $("$PGBOUNCER" --version | head -1); $(pgbench --version)"

"$TESTDB" start pg "$WORK/src" "$SRC_PORT"
"$TESTDB" start pg "$WORK/dst" "$DST_PORT"
SRC=$("$TESTDB" uri "$WORK/src")
DST=$("$TESTDB" uri "$WORK/dst")
PG_USER=$(sed -E 's|^postgres://([^:]*):.*|\1|' <<<"$SRC")
PG_PASS=$(sed -E 's|^postgres://[^:]*:([^@]*)@.*|\1|' <<<"$SRC")
log "source ${SRC/:$PG_PASS@/:***@}, target ${DST/:$PG_PASS@/:***@}"
t0=$(now)
pgbench -i -s "$SCALE" -q "$SRC" >"$WORK/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(tail -3 "$WORK/pgbench-init.log")"
# midflight refuses a table without a key or replica identity.
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
sql_src -c "VACUUM ANALYZE"
ROWS=$(sql_src -c "SELECT count(*) FROM pgbench_accounts")
SRC_SIZE=$(sql_src -c "SELECT pg_size_pretty(pg_database_size(current_database()))")
log "pgbench -i -s $SCALE: $ROWS rows in pgbench_accounts, database $SRC_SIZE, in $(since "$t0") s"

# pgbouncer: one [databases] entry per pool size, all the source's database.
log "pgbouncer on 127.0.0.1:$BOUNCER_PORT, pool_mode transaction, pool sizes ${POOLS[*]}"
mkdir -p "$WORK/pgbouncer"
{
  echo "[databases]"
  for n in "${POOLS[@]}"; do echo "pgb$n = host=127.0.0.1 port=$SRC_PORT dbname=postgres pool_size=$n"; done
  cat <<INI
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/pgbouncer/userlist.txt
pool_mode = transaction
default_pool_size = ${POOLS[0]}
max_client_conn = 100
ignore_startup_parameters = extra_float_digits
logfile =
pidfile =
INI
} >"$WORK/pgbouncer/pgbouncer.ini"
# Plaintext: pgbouncer does SCRAM with the client and with the server from it.
printf '"%s" "%s"\n' "$PG_USER" "$PG_PASS" >"$WORK/pgbouncer/userlist.txt"
chmod 755 "$WORK/pgbouncer"
chmod 644 "$WORK/pgbouncer/pgbouncer.ini" "$WORK/pgbouncer/userlist.txt"
BOUNCER_USER=()
[[ $(id -u) -eq 0 ]] && BOUNCER_USER=(-u nobody)   # pgbouncer refuses to run as root
"$PGBOUNCER" "${BOUNCER_USER[@]}" "$WORK/pgbouncer/pgbouncer.ini" >"$WORK/pgbouncer.log" 2>&1 &
BOUNCER_PID=$!
for n in "${POOLS[@]}"; do
  k=pgb$n
  BOUNCER_KEYS+=("$k")
  LABEL[$k]="pgbouncer (transaction, pool $n)"
  URI[$k]="postgres://$PG_USER:$PG_PASS@127.0.0.1:$BOUNCER_PORT/$k"
  wait_sql "${URI[$k]}" "pgbouncer" "$BOUNCER_PID" "$WORK/pgbouncer.log"
done
log "pgbouncer pid $BOUNCER_PID answers"

# midflight with its proxy
SPEC=$WORK/spec.yaml
MF_LOG=$WORK/midflight.log
cat >"$SPEC" <<YAML
name: bench
source: $SRC
target: $DST
state_dir: $WORK/state
partitions: 2
proxy:
  listen: 127.0.0.1:$PROXY_PORT
  loops: ${PROXY_LOOPS:-0}
YAML
log "midflight run (proxy on 127.0.0.1:$PROXY_PORT) until phase replicating"
t0=$(now)
"$MF" run "$SPEC" >"$MF_LOG" 2>&1 &
MF_PID=$!
mf_wait_phase replicating
log "midflight pid $MF_PID replicating after $(since "$t0") s"
LABEL[mf]="midflight proxy"
URI[mf]="postgres://$PG_USER:$PG_PASS@127.0.0.1:$PROXY_PORT/postgres"
wait_sql "${URI[mf]}" "midflight" "$MF_PID" "$MF_LOG"
LABEL[direct]="direct (no proxy)"
URI[direct]=$SRC
PATHS=(direct "${BOUNCER_KEYS[@]}" mf)

# The same server behind every path?
for k in "${PATHS[@]}"; do
  port=$(psql -X -At "${URI[$k]}" -c "SELECT current_setting('port')" 2>&1) || die "${LABEL[$k]}: $port"
  [[ $port == "$SRC_PORT" ]] || die "${LABEL[$k]} reaches the server on port $port, not the source ($SRC_PORT)"
done
log "every path reaches the source (port $SRC_PORT)"

# --------------------------------------------------------------- warm-up --
section "warm-up: pgbench -S -T $WARMUP through every path (also checks each works)"
for k in "${PATHS[@]}"; do bench_run "$k" simple "$WARMUP" warmup; done
bench_run mf prepared "$WARMUP" warmup
bench_run direct prepared "$WARMUP" warmup

# ----------------------------------------------------------------- simple --
section "pgbench -S -c $CLIENTS -j $THREADS -T $DURATION -M simple: $ROUNDS round(s), order rotating"
n=${#PATHS[@]}
for ((r = 0; r < ROUNDS; r++)); do
  log "round $((r + 1))/$ROUNDS"
  for ((i = 0; i < n; i++)); do bench_run "${PATHS[$(((i + r) % n))]}" simple "$DURATION"; done
done

# --------------------------------------------------------------- prepared --
if ((PREPARED_ROUNDS > 0)); then
  section "pgbench -S -c $CLIENTS -j $THREADS -T $DURATION -M prepared (direct and midflight): $PREPARED_ROUNDS round(s)"
  PREP=(direct mf)
  for ((r = 0; r < PREPARED_ROUNDS; r++)); do
    for ((i = 0; i < 2; i++)); do bench_run "${PREP[$(((i + r) % 2))]}" prepared "$DURATION"; done
  done
fi

LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
mf_check_alive "finishing"
MF_STATE=$(mf_status | jq -r '"phase \(.phase), lag \(.lag_bytes) bytes, error: \(if .error == "" then "none" else .error end)"' || echo "status unavailable")
mf_stop
bouncer_stop
MF_WARN=$(grep -ciE 'warn|error|fail' "$MF_LOG" || true)
# The distinct messages, client addresses and times taken out, with their counts.
MF_WARN_KINDS=$(grep -iE 'warn|error|fail' "$MF_LOG" | sed -E 's/^[0-9:.]+ +//; s/127\.0\.0\.1:[0-9]+/ADDR/g' |
  sort | uniq -c | sort -rn | head -5 || true)
BOUNCER_WARN=$(grep -cE 'WARNING|ERROR|FATAL' "$WORK/pgbouncer.log" || true)

# ------------------------------------------------------------ MySQL half --
declare -A MY_TPS=() MY_TX=() MY_SECS=() MY_MCPU=() MY_ERR=() MY_BAD=() MYPORT=() MYUSER=() MYLABEL=()
my_run() {  # KEY MODE SECONDS [warmup]: one sysbench oltp_point_select run, recorded unless warmup
  local key=$1 mode=$2 secs=$3 warm=${4:-} out m0 m1 t0 wall rc=0 tx tps errs
  out=$WORK/sysbench-$key-$mode-$((++RUN_NO)).log
  m0=$(cpu_ticks "$MF_PID"); t0=$(now)
  sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="${MYPORT[$key]}" \
    --mysql-user="${MYUSER[$key]}" --mysql-password="${MYUSER[$key]}" --mysql-db=sbtest --tables="$MY_TABLES" \
    --table-size="$MY_TABLE_SIZE" --threads="$MY_THREADS" --time="$secs" --report-interval=0 \
    --db-ps-mode="$mode" run >"$out" 2>&1 &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=
  wall=$(since "$t0"); m1=$(cpu_ticks "$MF_PID")
  mf_check_alive "sysbench ran against ${MYLABEL[$key]}"
  read -r tx tps < <(awk '/^ *transactions:/ { gsub(/[()]/, "", $3); printf "%s %.0f\n", $2, $3; f = 1 } END { if (!f) print "0 0" }' "$out")
  errs=$(( $(awk '/^ *ignored errors:/ { print $3; f = 1 } END { if (!f) print 0 }' "$out") + $(grep -c 'FATAL' "$out" || true) ))
  log "$(printf '%-40s %-8s %9s tps  %8s tx  midflight %5.2f s cpu%s%s' "${MYLABEL[$key]}" "$mode" "$tps" "$tx" \
    "$(awk -v t=$((m1 - m0)) -v c="$CLK_TCK" 'BEGIN { print t / c }')" "${warm:+  (warm-up)}" \
    "$( ((rc != 0 || errs > 0)) && echo "  sysbench exit $rc, $errs errors: $out")")"
  if [[ -n $warm ]]; then
    ((rc == 0 && tx > 0)) || { tail -5 "$out" >&2; die "sysbench through ${MYLABEL[$key]} failed (exit $rc)"; }
    return 0
  fi
  local k=$key/$mode
  ((rc != 0 || errs > 0)) && FIRST_ERROR+=("${MYLABEL[$key]} --db-ps-mode=$mode: exit $rc: $(grep -m1 -i 'FATAL\|error' "$out" || tail -1 "$out")")
  if ((tx == 0)); then MY_BAD[$k]=$((${MY_BAD[$k]:-0} + 1)); return 0; fi
  MY_TPS[$k]="${MY_TPS[$k]:-} $tps"
  MY_TX[$k]=$((${MY_TX[$k]:-0} + tx))
  MY_SECS[$k]=$(awk -v a="${MY_SECS[$k]:-0}" -v b="$wall" 'BEGIN { print a + b }')
  MY_MCPU[$k]=$((${MY_MCPU[$k]:-0} + m1 - m0))
  MY_ERR[$k]=$((${MY_ERR[$k]:-0} + errs))
  ((rc == 0)) || MY_BAD[$k]=$((${MY_BAD[$k]:-0} + 1))
}

if [[ $MYSQL == 1 ]]; then
  section "MySQL: setup"
  "$TESTDB" start mariadb "$WORK/mysrc" "$MY_SRC_PORT"
  "$TESTDB" start mariadb "$WORK/mydst" "$MY_DST_PORT"
  for d in mysrc mydst; do "$TESTDB" sql "$WORK/$d" -e "CREATE DATABASE sbtest"; done
  t0=$(now)
  sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$MY_SRC_PORT" \
    --mysql-user=midflight --mysql-password=midflight --mysql-db=sbtest --tables="$MY_TABLES" \
    --table-size="$MY_TABLE_SIZE" --threads=2 prepare >"$WORK/sysbench-prepare.log" 2>&1 ||
    die "sysbench prepare failed: $(tail -3 "$WORK/sysbench-prepare.log")"
  log "sysbench prepare: $MY_TABLES x $MY_TABLE_SIZE rows in $(since "$t0") s; $(mariadbd --version 2>/dev/null || /usr/sbin/mariadbd --version); $(sysbench --version)"
  # The proxy logs in to the servers with the spec's URIs' account and
  # authenticates the clients itself (user bench); one schema name on both
  # sides (sessions move by name).
  SPEC=$WORK/spec-mysql.yaml
  MF_LOG=$WORK/midflight-mysql.log
  cat >"$SPEC" <<YAML
name: benchmy
source: mysql://midflight:midflight@127.0.0.1:$MY_SRC_PORT/sbtest
target: mysql://midflight:midflight@127.0.0.1:$MY_DST_PORT/sbtest
state_dir: $WORK/state-mysql
partitions: 2
proxy:
  listen: 127.0.0.1:$MY_PROXY_PORT
  loops: ${PROXY_LOOPS:-0}
  users:
    - name: bench
      password: bench
YAML
  log "midflight run (MySQL proxy on 127.0.0.1:$MY_PROXY_PORT) until phase replicating"
  t0=$(now)
  "$MF" run "$SPEC" >"$MF_LOG" 2>&1 &
  MF_PID=$!
  mf_wait_phase replicating
  log "midflight pid $MF_PID replicating after $(since "$t0") s"
  MYLABEL[mydirect]="direct (no proxy)"; MYPORT[mydirect]=$MY_SRC_PORT; MYUSER[mydirect]=midflight
  MYLABEL[mymf]="midflight proxy"; MYPORT[mymf]=$MY_PROXY_PORT; MYUSER[mymf]=bench
  for k in mydirect mymf; do
    port=""
    for _ in $(seq 50); do
      port=$(mariadb --no-defaults -h 127.0.0.1 -P "${MYPORT[$k]}" -u "${MYUSER[$k]}" -p"${MYUSER[$k]}" -N -B \
        -e "SELECT @@port" 2>&1) && break
      sleep "$POLL"
    done
    [[ $port == "$MY_SRC_PORT" ]] || die "${MYLABEL[$k]} reaches '$port', not the MySQL source ($MY_SRC_PORT)"
  done
  log "both MySQL paths reach the source (port $MY_SRC_PORT)"
  section "MySQL warm-up: sysbench oltp_point_select --time=$WARMUP through both paths"
  for k in mydirect mymf; do my_run "$k" auto "$WARMUP" warmup; my_run "$k" disable "$WARMUP" warmup; done
  MY_PATHS=(mydirect mymf)
  section "sysbench oltp_point_select --threads=$MY_THREADS --time=$DURATION --db-ps-mode=auto (prepared): $ROUNDS round(s)"
  for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < 2; i++)); do my_run "${MY_PATHS[$(((i + r) % 2))]}" auto "$DURATION"; done
  done
  if ((PREPARED_ROUNDS > 0)); then
    section "sysbench oltp_point_select --threads=$MY_THREADS --time=$DURATION --db-ps-mode=disable (text): $PREPARED_ROUNDS round(s)"
    for ((r = 0; r < PREPARED_ROUNDS; r++)); do
      for ((i = 0; i < 2; i++)); do my_run "${MY_PATHS[$(((i + r) % 2))]}" disable "$DURATION"; done
    done
  fi
  MY_LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
  mf_check_alive "finishing the MySQL half"
  MY_MF_STATE=$(mf_status | jq -r '"phase \(.phase), error: \(if .error == "" then "none" else .error end)"' || echo "status unavailable")
  mf_stop
  MY_MF_WARN=$(grep -ciE 'warn|error|fail' "$MF_LOG" || true)
fi

# ---------------------------------------------------------------- summary --
section "summary: SCALE=$SCALE ($ROWS rows in pgbench_accounts, $SRC_SIZE), $(nproc) cores"
declare -A MED=()
for k in "${PATHS[@]}"; do
  # shellcheck disable=SC2086
  MED[$k/simple]=$(median ${TPS[$k/simple]:-})
  MED[$k/prepared]=$(median ${TPS[$k/prepared]:-})
done
BEST=${BOUNCER_KEYS[0]}
for k in "${BOUNCER_KEYS[@]}"; do
  [[ ${MED[$k/simple]} != - ]] && { [[ ${MED[$BEST/simple]} == - ]] || ((${MED[$k/simple]} > ${MED[$BEST/simple]})); } && BEST=$k
done

cores() { awk -v t="$1" -v c="$CLK_TCK" -v s="$2" 'BEGIN { if (s + 0 == 0) print "-"; else printf "%.2f", t / c / s }'; }
us_per_tx() { awk -v t="$1" -v c="$CLK_TCK" -v n="$2" 'BEGIN { if (n + 0 == 0) print "-"; else printf "%.1f", t / c / n * 1e6 }'; }
table() {  # MODE KEYS...
  local mode=$1 k; shift
  printf '  %-36s %10s   %-26s %8s\n' path "median tps" "runs (tps)" "/direct"
  for k in "$@"; do
    [[ -n ${TPS[$k/$mode]:-}${BADRUNS[$k/$mode]:-} ]] || continue
    printf '  %-36s %10s   %-26s %7sx' "${LABEL[$k]}" "${MED[$k/$mode]}" \
      "$(for t in ${TPS[$k/$mode]:-}; do printf '%.0f ' "$t"; done)" "$(div "${MED[$k/$mode]}" "${MED[direct/$mode]}")"
    ((${FAILED[$k/$mode]:-0} + ${BADRUNS[$k/$mode]:-0} > 0)) &&
      printf '   %s failed tx / error lines, %s runs with errors' "${FAILED[$k/$mode]:-0}" "${BADRUNS[$k/$mode]:-0}"
    echo
  done
}
echo
echo "pgbench -S -c $CLIENTS -j $THREADS -T $DURATION -M simple, median of $ROUNDS interleaved rounds"
table simple "${PATHS[@]}"
R_BOUNCER=$(div "${MED[mf/simple]}" "${MED[$BEST/simple]}")
printf '  midflight / pgbouncer (best pool, %s): %sx\n' "${BEST#pgb}" "$R_BOUNCER"
for k in "${BOUNCER_KEYS[@]}"; do
  [[ $k == "$BEST" ]] || printf '  midflight / pgbouncer (pool %s): %sx\n' "${k#pgb}" "$(div "${MED[mf/simple]}" "${MED[$k/simple]}")"
done
printf '  midflight / direct: %sx\n' "$(div "${MED[mf/simple]}" "${MED[direct/simple]}")"

if ((PREPARED_ROUNDS > 0)); then
  echo
  echo "pgbench -S -c $CLIENTS -j $THREADS -T $DURATION -M prepared ($PREPARED_ROUNDS round$( ((PREPARED_ROUNDS > 1)) && echo s); pgbouncer 1.18 cannot run it in transaction pooling)"
  table prepared direct mf
  printf '  midflight / direct: %sx\n' "$(div "${MED[mf/prepared]}" "${MED[direct/prepared]}")"
fi

echo
echo "process CPU during the runs (utime + stime from /proc/PID/stat; cores = CPU seconds per second of run)"
printf '  %-10s %-44s %6s %15s\n' process "during" cores "us/transaction"
for k in "${BOUNCER_KEYS[@]}"; do
  printf '  %-10s %-44s %6s %15s\n' pgbouncer "${LABEL[$k]} -M simple" "$(cores "${BCPU[$k/simple]:-0}" "${SECS[$k/simple]:-0}")" \
    "$(us_per_tx "${BCPU[$k/simple]:-0}" "${TX[$k/simple]:-0}")"
done
for mode in simple prepared; do
  [[ -n ${TPS[mf/$mode]:-} ]] || continue
  printf '  %-10s %-44s %6s %15s\n' midflight "midflight proxy -M $mode" "$(cores "${MCPU[mf/$mode]:-0}" "${SECS[mf/$mode]:-0}")" \
    "$(us_per_tx "${MCPU[mf/$mode]:-0}" "${TX[mf/$mode]:-0}")"
done
printf '  %-10s %-44s %6s %15s\n' midflight "direct runs (proxy idle)" "$(cores "${MCPU[direct/simple]:-0}" "${SECS[direct/simple]:-0}")" "-"

echo
echo "host: $(nproc) cores, load average $LOADAVG before the run, $LOADAVG_END after; CPU ${BG_BUSY}% busy before anything of this run started"
printf 'midflight at the end: %s; %s log lines matching warn/error/fail\n' "$MF_STATE" "$MF_WARN"
[[ -n $MF_WARN_KINDS ]] && sed 's/^/  /' <<<"$MF_WARN_KINDS"
printf 'pgbouncer log: %s WARNING/ERROR/FATAL lines\n' "$BOUNCER_WARN"
((RERUNS == 0)) || echo "$RERUNS pgbench run(s) killed by a signal from outside this script and run again"
if ((${#FIRST_ERROR[@]})); then
  echo "pgbench errors:"
  printf '  %s\n' "${FIRST_ERROR[@]:0:10}"
fi

echo
echo "target"
met=$(awk -v v="$R_BOUNCER" -v lim="$TARGET_RATIO" 'BEGIN { if (v == "-") print "n/a"; else if (v + 0 >= lim + 0) print "met"; else print "MISSED" }')
printf '  %-52s %8s  %s\n' "midflight proxy tps / pgbouncer's >= $TARGET_RATIO" "$R_BOUNCER" "$met"
printf '  %-52s %8s  %s\n' "midflight proxy tps / direct >= $TARGET_DIRECT (-M simple)" "$(div "${MED[mf/simple]}" "${MED[direct/simple]}")" \
  "$(met "$(div "${MED[mf/simple]}" "${MED[direct/simple]}")" ">=" "$TARGET_DIRECT")"

if [[ $MYSQL == 1 ]]; then
  declare -A MY_MED=()
  for k in mydirect mymf; do
    for mode in auto disable; do
      # shellcheck disable=SC2086
      MY_MED[$k/$mode]=$(median ${MY_TPS[$k/$mode]:-})
    done
  done
  echo
  echo "MySQL: sysbench oltp_point_select --threads=$MY_THREADS --time=$DURATION ($MY_TABLES x $MY_TABLE_SIZE rows), median of interleaved rounds"
  printf '  %-36s %-9s %10s   %-26s %8s %15s\n' path ps-mode "median tps" "runs (tps)" "/direct" "us cpu/tx (mf)"
  for mode in auto disable; do
    for k in mydirect mymf; do
      [[ -n ${MY_TPS[$k/$mode]:-}${MY_BAD[$k/$mode]:-} ]] || continue
      printf '  %-36s %-9s %10s   %-26s %7sx %15s' "${MYLABEL[$k]}" "$mode" "${MY_MED[$k/$mode]}" \
        "$(for t in ${MY_TPS[$k/$mode]:-}; do printf '%s ' "$t"; done)" "$(div "${MY_MED[$k/$mode]}" "${MY_MED[mydirect/$mode]}")" \
        "$([[ $k == mymf ]] && us_per_tx "${MY_MCPU[$k/$mode]:-0}" "${MY_TX[$k/$mode]:-0}" || echo -)"
      ((${MY_ERR[$k/$mode]:-0} + ${MY_BAD[$k/$mode]:-0} > 0)) &&
        printf '   %s errors, %s bad runs' "${MY_ERR[$k/$mode]:-0}" "${MY_BAD[$k/$mode]:-0}"
      echo
    done
  done
  printf '  midflight proxy CPU: %s cores while serving (prepared), %s (text)\n' \
    "$(cores "${MY_MCPU[mymf/auto]:-0}" "${MY_SECS[mymf/auto]:-0}")" "$(cores "${MY_MCPU[mymf/disable]:-0}" "${MY_SECS[mymf/disable]:-0}")"
  printf '  midflight at the end: %s; %s log lines matching warn/error/fail\n' "$MY_MF_STATE" "$MY_MF_WARN"
  for mode in auto disable; do
    r=$(div "${MY_MED[mymf/$mode]}" "${MY_MED[mydirect/$mode]}")
    printf '  %-52s %8s  %s\n' "MySQL midflight proxy tps / direct >= $TARGET_DIRECT ($mode)" "$r" "$(met "$r" ">=" "$TARGET_DIRECT")"
  done
  echo "  load average at the end of the MySQL half: $MY_LOADAVG_END"
fi
echo
echo "uptime at the end:$(uptime)"
echo "(a shared $(nproc)-core machine: other jobs ran beside this benchmark; read the figures with the load above)"
