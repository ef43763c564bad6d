# Helpers the benchmarks share (sourced by pg_bench.sh, mysql_bench.sh,
# proxy_bench.sh, cross_bench.sh and kafka_bench.sh). Each script sets
# TESTDB, WORK, KEEP, TIMEOUT, POLL, MF, MF_PID, MF_LOG and SPEC before it
# calls the ones that use them.

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*"; }
section() { printf '\n=== %s ===\n' "$*"; }
die() { log "FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# A / B to two places; "-" when either is "-" or B is 0.
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
# met VALUE OP LIMIT: "met", "MISSED", or "n/a" without a value.
met() { awk -v v="$1" -v lim="$3" -v op="$2" 'BEGIN { if (v == "-" || v == "") print "n/a"; else if ((op == "<=" && v + 0 <= lim + 0) || (op == ">=" && v + 0 >= lim + 0) || (op == "<" && v + 0 < lim + 0)) print "met"; else print "MISSED" }'; }
# CPU accounting (clock ticks, user + system), for "where the time goes":
# shell_child_ticks: every process this shell has waited for (the tools,
#   midflight once mf_stop has reaped it);
# pg_server_ticks DIR: a PostgreSQL server of scripts/testdb, its postmaster
#   and every backend, ended (reaped by the postmaster) or alive.
stat_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 + (ENVIRON["WITH_CHILDREN"] ? $14 + $15 : 0) }' "/proc/$1/stat" 2>/dev/null || echo 0; }
shell_child_ticks() { awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$$/stat"; }
pg_server_ticks() {
  local pm t c
  pm=$(head -1 "$1/data/postmaster.pid")
  t=$(WITH_CHILDREN=1 stat_ticks "$pm")
  for c in $(pgrep -P "$pm"); do t=$((t + $(stat_ticks "$c"))); done
  echo "$t"
}
ticks_s() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'; }
server_ticks() {  # DIR: a scripts/testdb server, PostgreSQL or MariaDB (one process)
  if [[ $(cat "$1/engine") == pg ]]; then pg_server_ticks "$1"; else stat_ticks "$(cat "$1/mariadbd.pid")"; fi
}
# Copy CPU per method, for the scripts that time copies (pg_bench.sh,
# mysql_bench.sh; they set CPU_SRC and CPU_DST to the servers' directories):
# cpu_mark before a method starts; copy_cpu KEY once it has ended (its
# processes reaped) sets COPY_CPU[KEY] = "source target tools" CPU seconds;
# copy_cpu_table WIDTH prints them for COPY_ORDER / COPY_LABEL.
declare -A COPY_CPU
cpu_mark() { CPU0=("$(server_ticks "$CPU_SRC")" "$(server_ticks "$CPU_DST")" "$(shell_child_ticks)"); }
copy_cpu() {
  COPY_CPU[$1]="$(ticks_s $(($(server_ticks "$CPU_SRC") - CPU0[0]))) $(ticks_s $(($(server_ticks "$CPU_DST") - CPU0[1]))) $(ticks_s $(($(shell_child_ticks) - CPU0[2])))"
}
copy_cpu_table() {
  local j m c_src c_dst c_tool
  printf "  %-$1s %9s %9s %9s %9s\n" method source target tools total
  for j in "${!COPY_ORDER[@]}"; do
    m=${COPY_ORDER[$j]}
    read -r c_src c_dst c_tool <<<"${COPY_CPU[$m]}"
    printf "  %-$1s %9.2f %9.2f %9.2f %9.2f\n" "${COPY_LABEL[$j]}" "$c_src" "$c_dst" "$c_tool" \
      "$(awk -v a="$c_src" -v b="$c_dst" -v c="$c_tool" 'BEGIN { print a + b + c }')"
  done
}

psql_to() { local uri=$1; shift; PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -At "$uri" "$@"; }

# cleanup_work DIRS...: the end of every script's EXIT trap (with the exit
# status in $rc): stops the servers in DIRS, prints the logs' last lines
# after a failure, keeps or removes $WORK.
cleanup_work() {
  [[ -n $WORK ]] || return 0
  for d in "$@"; do [[ -f $d/engine ]] && "$TESTDB" stop "$d" immediate; done
  if ((rc != 0 && rc != 130)); then
    for f in "$WORK"/*.log; do [[ -f $f ]] && { echo "--- last lines of $f" >&2; tail -15 "$f" >&2; }; done
  fi
  if [[ -n $KEEP ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}

mf_status() { "$MF" status "$SPEC" --json 2>/dev/null; }
mf_check_alive() {
  kill -0 "$MF_PID" 2>/dev/null && return 0
  local rc=0
  wait "$MF_PID" || rc=$?
  MF_PID=
  tail -20 "$MF_LOG" >&2
  die "midflight exited (status $rc) while $1"
}
mf_stop() {
  [[ -n $MF_PID ]] || return 0
  kill -TERM "$MF_PID" 2>/dev/null || true
  local i rc=0
  for ((i = 0; i < 600; i++)); do kill -0 "$MF_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$MF_PID" 2>/dev/null; then
    log "WARNING: midflight did not stop within 60 s of SIGTERM; killing it"
    kill -9 "$MF_PID" 2>/dev/null || true
  fi
  wait "$MF_PID" || rc=$?
  MF_PID=
  ((rc == 0)) || log "WARNING: midflight exited with status $rc after SIGTERM"
}
mf_wait_phase() {  # PHASE
  local s phase="" deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    mf_check_alive "waiting for phase $1"
    if s=$(mf_status); then
      phase=$(jq -r .phase <<<"$s")
      [[ $phase == "$1" ]] && return 0
      [[ $phase == failed ]] && die "midflight failed: $(jq -r .error <<<"$s")"
    fi
    sleep "$POLL"
  done
  die "midflight did not reach phase $1 in ${TIMEOUT}s (phase: ${phase:-unknown})"
}

MF_LOG_MARK=0
mf_start() {  # `midflight run $SPEC` in the background, appending to $MF_LOG
  MF_LOG_MARK=0
  [[ -f $MF_LOG ]] && MF_LOG_MARK=$(wc -l <"$MF_LOG")
  "$MF" run "$SPEC" >>"$MF_LOG" 2>&1 &
  MF_PID=$!
}
mf_peak_rss_mb() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$MF_PID/status"; }

# PostgreSQL sources (pg_bench.sh, kafka_bench.sh; sql_src is the script's).
# "16/B374D848" -> integer
lsn_int() { local l=${1:-0/0}; echo $(((16#${l%/*} << 32) + 16#${l#*/})); }
lsn_ge() { (($(lsn_int "$1") >= $(lsn_int "$2"))); }
drop_slot() {  # waits until the slot is no longer in use
  local slot=$1 i
  for ((i = 0; i < 100; i++)); do
    [[ $(sql_src -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'") == 0 ]] && return 0
    sql_src -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$slot' AND NOT active" >/dev/null || true
    sleep 0.2
  done
  die "replication slot $slot is still in use"
}
flush_lsn() { sql_src -c "SELECT pg_current_wal_flush_lsn()"; }
pgbench_field() {  # FILE: "<transactions> <tps>"
  local tx tps
  tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$1")
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$1" | head -1)
  echo "${tx:-0} $(printf '%.0f' "${tps:-0}")"
}
mf_wait_applied() {  # LSN: until status applied_lsn >= LSN
  local applied="" deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    mf_check_alive "draining to $1"
    applied=$(mf_status | jq -r '.replication.applied_position // ""' || true)
    [[ -n $applied ]] && lsn_ge "$applied" "$1" && return 0
    sleep "$POLL"
  done
  die "midflight did not apply up to $1 in ${TIMEOUT}s (applied $applied)"
}

# Native logical replication into the database the script's native_sql
# reaches (pg_bench.sh, kafka_bench.sh): publication bench_pub, subscription bench_sub.
native_subscribe() {  # TARGET_URI TABLE...: schema (pg_dump), CREATE SUBSCRIPTION (copy_data), until every table is ready
  local target=$1 deadline=$((SECONDS + TIMEOUT))
  shift
  pg_dump --schema-only --section=pre-data "$SRC" | psql_to "$target" >/dev/null
  pg_dump --section=post-data "$SRC" | psql_to "$target" >/dev/null
  sql_src -c "CREATE PUBLICATION bench_pub FOR TABLE $(IFS=,; echo "$*")"
  native_sql -c "CREATE SUBSCRIPTION bench_sub CONNECTION '$SRC' PUBLICATION bench_pub WITH (copy_data = true)"
  until [[ $(native_sql -c "SELECT count(*) = $# AND bool_and(srsubstate = 'r') FROM pg_subscription_rel") == t ]]; do
    ((SECONDS < deadline)) || die "the subscription's tables were not all ready after ${TIMEOUT}s"
    sleep "$POLL"
  done
}
NATIVE_END=
NATIVE_CONF=
native_drain() {  # LSN: ENABLE, then until latest_end_lsn (or the slot's confirmed_flush_lsn) >= LSN
  local deadline=$((SECONDS + TIMEOUT))
  native_sql -c "ALTER SUBSCRIPTION bench_sub ENABLE"
  while :; do
    NATIVE_END=$(native_sql -c "SELECT coalesce(max(latest_end_lsn), '0/0') FROM pg_stat_subscription WHERE subname = 'bench_sub'")
    NATIVE_CONF=$(sql_src -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'bench_sub'")
    if lsn_ge "$NATIVE_END" "$1" || lsn_ge "$NATIVE_CONF" "$1"; then return 0; fi
    ((SECONDS < deadline)) || die "native logical replication did not drain to $1 in ${TIMEOUT}s (at $NATIVE_END / $NATIVE_CONF)"
    sleep "$POLL"
  done
}
