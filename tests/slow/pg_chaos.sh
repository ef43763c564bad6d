#!/usr/bin/env bash
# Chaos soak, PostgreSQL: pgbench writes through midflight's proxy while
# CHAOS_FAULTS (default 20) faults drawn at random hit the migration:
#   kill9      kill -9 of midflight, then restarted
#   src_stop   immediate stop of the source, then started again
#   dst_stop   immediate stop of the target (synchronous_commit = off), then started
#   sigstop    SIGSTOP of midflight past the source's wal_sender_timeout, then SIGCONT
#   netcut     the network between midflight and both servers cut for 35 s, then reset
#   new_table  a table in scope created on the source: switches must refuse; then dropped
#   switch     the next step of the cutover: switch reads, switch writes, or rollback
# Afterwards the writes go back to the source, the target catches up, and
# every table must be equal. The seed (CHAOS_SEED) repeats a schedule.
#   CHAOS_SEED=1234 CHAOS_FAULTS=30 tests/slow/pg_chaos.sh
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/chaos_lib.sh"
chaos_init

start_servers 26800
for d in src dst; do
  echo "wal_sender_timeout = 5s" >>"$WORK/$d/data/postgresql.conf"
  "$TESTDB" restart "$WORK/$d"
done
SRC_PORT=$(cat "$WORK/src/port") DST_PORT=$(cat "$WORK/dst/port")
R_SRC=$(free_port 26810); R_DST=$(free_port $((R_SRC + 1)))
PROXY_PORT=$(free_port $((R_DST + 1))); RO_PORT=$(free_port $((PROXY_PORT + 1)))
start_relay "$R_SRC:$SRC_PORT" "$R_DST:$DST_PORT"

pgbench -i -s 5 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"
# midflight reaches both servers through the relay only.
SRC_DIRECT=$SRC DST_DIRECT=$DST
SRC=${SRC/:$SRC_PORT\//:$R_SRC/} DST=${DST/:$DST_PORT\//:$R_DST/}
write_spec chaos "partitions: 3" "copy_workers: 2" "chunk_rows: 100000" \
  "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" "  listen_readonly: 127.0.0.1:$RO_PORT" \
  "cutover:" "  drain_timeout_seconds: 5" "  max_lag_seconds: 30" "  catchup_timeout_seconds: 20" "  require_verify: false"
SRC=$SRC_DIRECT DST=$DST_DIRECT
PROXY_URI="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/postgres"

load_loop() {  # pgbench through the proxy in 3 s runs; errors are expected while servers are down
  local n=0
  while [[ ! -f $WORK/stop-load ]]; do
    n=$((n + 1))
    pgbench -n -c 4 -j 2 -T 3 -R 200 "$PROXY_URI" >>"$WORK/pgbench.log" 2>&1 || echo "run $n exited $?" >>"$WORK/pgbench-errors"
  done
}

run_mf_bg
wait_phase replicating 180
load_loop &
LOAD_PID=$!
for ((i = 1; i <= FAULTS; i++)); do
  sleep $((2 + RANDOM % 4))
  chaos_pick kill9 src_stop dst_stop sigstop netcut new_table switch
  f=$FAULT
  log "fault $i/$FAULTS: $f (phase $(status_field phase 2>/dev/null))"
  case $f in
    kill9) kill9_mf; run_mf_bg ;;
    src_stop) "$TESTDB" stop "$WORK/src" immediate; sleep $((1 + RANDOM % 3)); "$TESTDB" start pg "$WORK/src" 0 ;;
    dst_stop) "$TESTDB" stop "$WORK/dst" immediate; sleep $((1 + RANDOM % 3)); "$TESTDB" start pg "$WORK/dst" 0 ;;
    sigstop) kill -STOP "$MF_PID"; sleep 8; kill -CONT "$MF_PID" ;;
    netcut) netcut 35 ;;
    new_table)
      sql_src -c "CREATE TABLE chaos_new_$i (id int PRIMARY KEY)"
      for _ in $(seq 40); do [[ $(status_field 'untracked_tables | length' 2>/dev/null) != 0 ]] && break; sleep 0.25; done
      out=$("$MF" switch reads "$SPEC" --percent 50 2>&1) && fail "switch reads accepted with chaos_new_$i missing on the target: $out"
      [[ $out == *chaos_new_$i* ]] || log "  (refused for another reason: $out)"
      sql_src -c "DROP TABLE chaos_new_$i" ;;
    switch)
      case $(status_field phase 2>/dev/null) in
        replicating) op=(switch reads "$SPEC") ;;
        reads_switched) op=(switch writes "$SPEC") ;;
        writes_switched) op=(rollback "$SPEC") ;;
        *) op=() ;;
      esac
      if ((${#op[@]})); then
        if out=$("$MF" "${op[@]}" 2>&1); then log "  ${op[0]} ${op[1]}: $out"; else log "  refused or abandoned: $out"; count[switch_refused]=$((${count[switch_refused]:-0} + 1)); fi
      fi ;;
  esac
  mf_up replicating reads_switched writes_switched
done

log "faults done; writes back to the source, load stopped"
touch "$WORK/stop-load"
wait "$LOAD_PID" 2>/dev/null || true
LOAD_PID=
mf_up replicating reads_switched writes_switched
for _ in 1 2 3 4 5; do
  [[ $(status_field phase) != writes_switched ]] && break
  "$MF" rollback "$SPEC" --force || sleep 5
done
[[ $(status_field phase) != writes_switched ]] || fail "rollback did not succeed"
wait_caught_up 300
assert_equal
chaos_summary "; pgbench runs with errors (servers were down): $(wc -l <"$WORK/pgbench-errors" 2>/dev/null || echo 0)"
stop_mf
log "PASS"
