#!/usr/bin/env bash
# Proxy CPU per transaction of two midflight builds, side by side in one run:
# the figure to compare on a loaded machine, where throughput is not.
#
#   A=path/to/old/midflight B=path/to/new/midflight bench/proxy_ab.sh
#
# Starts one PostgreSQL source (pgbench -i -s $SCALE) with a target per
# build, and (unless MYSQL=0) one MariaDB source (sysbench
# oltp_point_select prepare) with a target per build; runs `midflight run`
# of each build with a proxy on each source (migrations "aba"/"abb", ...),
# until replicating. Then $ROUNDS rounds of, each workload run by A and B
# back to back (the order flips every round):
#   pgbench -S -c $CLIENTS -j $THREADS -T $DURATION -M simple, and -M prepared
#   sysbench oltp_point_select --threads=$MY_THREADS --db-ps-mode=auto, and =disable
# and prints, per build and workload, the proxy process's CPU per
# transaction (the CPU time of its threads from /proc/PID/task/*/schedstat,
# in ns: finer than /proc/PID/stat's 10 ms ticks for short runs), every
# run's figure, the median of the B/A ratios of the pairs (the figure that
# load from the rest of the machine disturbs least), and the load average.
#
# Knobs: A, B (binaries; copied to the work dir first), DURATION=10 ROUNDS=3
# SCALE=1 CLIENTS=8 THREADS=2 MY_THREADS=8 MY_TABLES=4 MY_TABLE_SIZE=10000
# PROXY_LOOPS=0 (spec proxy.loops; LOOPS_A, LOOPS_B set it per build) MYSQL=1 PG=1 PORT_BASE=18300 (uses
# PORT_BASE+0..9) TIMEOUT=600 KEEP=1 PERF=1 (perf record -g each build's
# proxy during its first run of each workload; reports in the work dir,
# which is then kept).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTDB=$ROOT/scripts/testdb
source "$ROOT/bench/lib.sh"
A=${A:?set A to the first midflight binary}
B=${B:?set B to the second midflight binary}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-1}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
MY_THREADS=${MY_THREADS:-8}
MY_TABLES=${MY_TABLES:-4}
MY_TABLE_SIZE=${MY_TABLE_SIZE:-10000}
PROXY_LOOPS=${PROXY_LOOPS:-0}
MYSQL=${MYSQL:-1}
PG=${PG:-1}
PORT_BASE=${PORT_BASE:-18300}
TIMEOUT=${TIMEOUT:-600}
KEEP=${KEEP:-}
PERF=${PERF:-}
[[ -n $PERF ]] && KEEP=1
POLL=0.2
export PGCONNECT_TIMEOUT=10

cpu_ns() {  # PID -> CPU time of the process's live threads, in ns (schedstat: finer than stat's ticks)
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%.0f", t }'
}

WORK=
PIDS=()
cleanup() {
  local rc=$? p
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  cleanup_work "$WORK/pgsrc" "$WORK/pgdstA" "$WORK/pgdstB" "$WORK/mysrc" "$WORK/mydstA" "$WORK/mydstB"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WORK=$(mktemp -d /tmp/midflight-proxy-ab.XXXXXX)
chmod 755 "$WORK"
cp "$A" "$WORK/mfA"
cp "$B" "$WORK/mfB"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "work dir $WORK; A=$A B=$B; load average $LOAD_START"

declare -A MFPID=() PORT=() TX=() CPUNS=() RUNS=()
start_mf() {  # BUILD ENGINE SPEC LOG
  MF=$WORK/mf$1 SPEC=$3 MF_LOG=$4
  "$MF" run "$SPEC" >"$MF_LOG" 2>&1 &
  MF_PID=$!
  PIDS+=("$MF_PID")
  mf_wait_phase replicating
  MFPID[$1/$2]=$MF_PID
  log "build $1 ($2): pid $MF_PID replicating"
}

record() {  # BUILD WORKLOAD TX CPU_NS
  TX[$1/$2]=$((${TX[$1/$2]:-0} + $3))
  CPUNS[$1/$2]=$((${CPUNS[$1/$2]:-0} + $4))
  RUNS[$1/$2]="${RUNS[$1/$2]:-} $(awk -v t="$4" -v n="$3" 'BEGIN { if (n == 0) print "-"; else printf "%.1f", t / n / 1e3 }')"
}

perf_start() {  # BUILD WORKLOAD PID -> PERF_PID
  PERF_PID=
  [[ -n $PERF && -z ${PERFED[$1/$2]:-} ]] || return 0
  PERFED[$1/$2]=1
  perf record -g -p "$3" -o "$WORK/perf-$1-$2.data" -- sleep "$((DURATION - 1))" >/dev/null 2>&1 &
  PERF_PID=$!
  perf stat -e context-switches,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_futex \
    -p "$3" -o "$WORK/perfstat-$1-$2.txt" -- sleep "$((DURATION - 1))" >/dev/null 2>&1 &
  PERF_PIDS+=("$PERF_PID" "$!")
}
declare -A PERFED=()
PERF_PIDS=()

pg_run() {  # BUILD MODE
  local b=$1 mode=$2 pid=${MFPID[$1/pg]} out t0 t1 tx
  out=$WORK/pgbench-$b-$mode-$((++RUN_NO)).log
  t0=$(cpu_ns "$pid")
  perf_start "$b" "pg-$mode" "$pid"
  pgbench -S -c "$CLIENTS" -j "$THREADS" -T "$DURATION" -M "$mode" -n \
    "postgres://$PG_USER:$PG_PASS@127.0.0.1:${PORT[$b/pg]}/postgres" >"$out" 2>&1 || die "pgbench through $b failed: $(tail -3 "$out")"
  t1=$(cpu_ns "$pid")
  ((${#PERF_PIDS[@]})) && { wait "${PERF_PIDS[@]}" || true; PERF_PIDS=(); }
  tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
  record "$b" "pg-$mode" "${tx:-0}" $((t1 - t0))
  log "$(printf 'build %s  pgbench -M %-8s %8s tx  %6.2f s cpu  %6.1f us/tx  load %s' "$b" "$mode" "$tx" \
    "$(awk -v t=$((t1 - t0)) 'BEGIN { print t / 1e9 }')" \
    "$(awk -v t=$((t1 - t0)) -v n="${tx:-0}" 'BEGIN { print n ? t / n / 1e3 : 0 }')" "$(cut -d' ' -f1 /proc/loadavg)")"
}

my_run() {  # BUILD PSMODE
  local b=$1 mode=$2 pid=${MFPID[$1/my]} out t0 t1 tx
  out=$WORK/sysbench-$b-$mode-$((++RUN_NO)).log
  t0=$(cpu_ns "$pid")
  perf_start "$b" "my-$mode" "$pid"
  sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="${PORT[$b/my]}" \
    --mysql-user=bench --mysql-password=bench --mysql-db=sbtest --tables="$MY_TABLES" \
    --table-size="$MY_TABLE_SIZE" --threads="$MY_THREADS" --time="$DURATION" --report-interval=0 \
    --db-ps-mode="$mode" run >"$out" 2>&1 || die "sysbench through $b failed: $(tail -3 "$out")"
  t1=$(cpu_ns "$pid")
  ((${#PERF_PIDS[@]})) && { wait "${PERF_PIDS[@]}" || true; PERF_PIDS=(); }
  tx=$(awk '/^ *transactions:/ { print $2 }' "$out")
  record "$b" "my-$mode" "${tx:-0}" $((t1 - t0))
  log "$(printf 'build %s  sysbench %-8s %8s tx  %6.2f s cpu  %6.1f us/tx  load %s' "$b" "$mode" "$tx" \
    "$(awk -v t=$((t1 - t0)) 'BEGIN { print t / 1e9 }')" \
    "$(awk -v t=$((t1 - t0)) -v n="${tx:-0}" 'BEGIN { print n ? t / n / 1e3 : 0 }')" "$(cut -d' ' -f1 /proc/loadavg)")"
}
RUN_NO=0

if [[ $PG == 1 ]]; then
  "$TESTDB" start pg "$WORK/pgsrc" "$PORT_BASE"
  "$TESTDB" start pg "$WORK/pgdstA" "$((PORT_BASE + 1))"
  "$TESTDB" start pg "$WORK/pgdstB" "$((PORT_BASE + 2))"
  SRC=$("$TESTDB" uri "$WORK/pgsrc")
  PG_USER=$(sed -E 's|^postgres://([^:]*):.*|\1|' <<<"$SRC")
  PG_PASS=$(sed -E 's|^postgres://[^:]*:([^@]*)@.*|\1|' <<<"$SRC")
  pgbench -i -s "$SCALE" -q "$SRC" >"$WORK/pgbench-init.log" 2>&1 || die "pgbench -i failed"
  psql_to "$SRC" -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
  for b in A B; do
    off=0; [[ $b == B ]] && off=1
    PORT[$b/pg]=$((PORT_BASE + 3 + off))
    cat >"$WORK/spec-pg$b.yaml" <<YAML
name: ab$(tr A-Z a-z <<<"$b")
source: $SRC
target: $("$TESTDB" uri "$WORK/pgdst$b")
state_dir: $WORK/state-pg$b
partitions: 1
proxy:
  listen: 127.0.0.1:${PORT[$b/pg]}
  loops: $(eval echo "\${LOOPS_$b:-$PROXY_LOOPS}")
YAML
    start_mf "$b" pg "$WORK/spec-pg$b.yaml" "$WORK/mf-pg$b.log"
  done
fi
if [[ $MYSQL == 1 ]]; then
  "$TESTDB" start mariadb "$WORK/mysrc" "$((PORT_BASE + 5))"
  "$TESTDB" start mariadb "$WORK/mydstA" "$((PORT_BASE + 6))"
  "$TESTDB" start mariadb "$WORK/mydstB" "$((PORT_BASE + 7))"
  for d in mysrc mydstA mydstB; do "$TESTDB" sql "$WORK/$d" -e "CREATE DATABASE sbtest"; done
  sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$((PORT_BASE + 5))" \
    --mysql-user=midflight --mysql-password=midflight --mysql-db=sbtest --tables="$MY_TABLES" \
    --table-size="$MY_TABLE_SIZE" --threads=2 prepare >"$WORK/sysbench-prepare.log" 2>&1 || die "sysbench prepare failed"
  for b in A B; do
    off=0; [[ $b == B ]] && off=1
    PORT[$b/my]=$((PORT_BASE + 8 + off))
    cat >"$WORK/spec-my$b.yaml" <<YAML
name: abmy$(tr A-Z a-z <<<"$b")
source: mysql://midflight:midflight@127.0.0.1:$((PORT_BASE + 5))/sbtest
target: mysql://midflight:midflight@127.0.0.1:$((PORT_BASE + 6 + off))/sbtest
state_dir: $WORK/state-my$b
partitions: 1
proxy:
  listen: 127.0.0.1:${PORT[$b/my]}
  loops: $(eval echo "\${LOOPS_$b:-$PROXY_LOOPS}")
  users:
    - name: bench
      password: bench
YAML
    start_mf "$b" my "$WORK/spec-my$b.yaml" "$WORK/mf-my$b.log"
  done
fi

# Warm-up (also checks every path works).
for b in A B; do
  [[ $PG == 1 ]] && pgbench -S -c "$CLIENTS" -j "$THREADS" -T 2 -n "postgres://$PG_USER:$PG_PASS@127.0.0.1:${PORT[$b/pg]}/postgres" >/dev/null
  [[ $MYSQL == 1 ]] && sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="${PORT[$b/my]}" \
    --mysql-user=bench --mysql-password=bench --mysql-db=sbtest --tables="$MY_TABLES" --table-size="$MY_TABLE_SIZE" \
    --threads="$MY_THREADS" --time=2 run >/dev/null
done

# Each workload runs A and B back to back (the order flips every round), so
# a pair sees the same load from the rest of the machine.
for ((r = 0; r < ROUNDS; r++)); do
  order=(A B)
  ((r % 2)) && order=(B A)
  if [[ $PG == 1 ]]; then
    for b in "${order[@]}"; do pg_run "$b" simple; done
    for b in "${order[@]}"; do pg_run "$b" prepared; done
  fi
  if [[ $MYSQL == 1 ]]; then
    for b in "${order[@]}"; do my_run "$b" auto; done
    for b in "${order[@]}"; do my_run "$b" disable; done
  fi
done

echo
echo "proxy CPU per transaction (us; CPU time of the midflight process's threads from /proc/PID/task/*/schedstat, over $ROUNDS runs of ${DURATION} s each)"
printf '  %-34s %10s %10s   %s\n' workload A B "per run (A | B)"
for w in pg-simple pg-prepared my-auto my-disable; do
  [[ -n ${TX[A/$w]:-} ]] || continue
  printf '  %-34s %10s %10s   %s |%s\n' "$w" \
    "$(awk -v t="${CPUNS[A/$w]}" -v n="${TX[A/$w]}" 'BEGIN { printf "%.1f", n ? t / n / 1e3 : 0 }')" \
    "$(awk -v t="${CPUNS[B/$w]}" -v n="${TX[B/$w]}" 'BEGIN { printf "%.1f", n ? t / n / 1e3 : 0 }')" \
    "${RUNS[A/$w]}" "${RUNS[B/$w]}"
done
echo "  B/A per pair (same round), median: $(for w in pg-simple pg-prepared my-auto my-disable; do
  [[ -n ${TX[A/$w]:-} ]] || continue
  printf '%s %s  ' "$w" "$(paste -d' ' <(tr ' ' '\n' <<<"${RUNS[A/$w]}" | grep .) <(tr ' ' '\n' <<<"${RUNS[B/$w]}" | grep .) |
    awk '$1 > 0 { print $2 / $1 }' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) printf "%.2f", a[(NR + 1) / 2]; else printf "%.2f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }')"
done)"
echo "  transactions (A / B): $(for w in pg-simple pg-prepared my-auto my-disable; do [[ -n ${TX[A/$w]:-} ]] && printf '%s %s/%s  ' "$w" "${TX[A/$w]}" "${TX[B/$w]}"; done)"
echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(nproc) cores"
if [[ -n $PERF ]]; then
  for f in "$WORK"/perf-*.data; do
    perf report -i "$f" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 >"${f%.data}.txt" || true
  done
  echo "perf reports: $WORK/perf-*.txt"
fi
