#!/usr/bin/env bash
# Chaos soak, MySQL/MariaDB: sysbench writes to the primary while
# CHAOS_FAULTS (default 20) faults drawn at random hit the migration, which
# reads the replica and writes a target running innodb_flush_log_at_trx_commit = 0:
#   kill9     kill -9 of midflight, then restarted
#   src_stop  kill -9 of the replica midflight reads (relay-log recovery on), then started
#   dst_stop  kill -9 of the target, then started (acknowledged commits are lost)
#   sigstop   SIGSTOP of midflight for 8 s, then SIGCONT
#   netcut    the network between midflight and both servers cut for 35 s, then reset
# Afterwards the load stops, the target catches up, and every table must be
# equal. The seed (CHAOS_SEED) repeats a schedule.
source "$(dirname "$0")/../integration/mylib.sh"
source "$(dirname "$0")/chaos_lib.sh"
chaos_init

start_my_servers 26840
echo "--innodb-flush-log-at-trx-commit=0" >"$DST_DIR/args"
"$TESTDB" restart "$DST_DIR"
printf '%s\n' --read-only=ON --relay-log-recovery=ON >"$REP_DIR/args"
"$TESTDB" restart "$REP_DIR"
REP_PORT=$(cat "$REP_DIR/port") DST_PORT=$(cat "$DST_DIR/port")
R_REP=$(free_port 26850); R_DST=$(free_port $((R_REP + 1)))
start_relay "$R_REP:$REP_PORT" "$R_DST:$DST_PORT"

sysbench_prepare 4 20000
wait_replica
REP_DIRECT=$REP DST_DIRECT=$DST
REP=${REP/:$REP_PORT\//:$R_REP/} DST=${DST/:$DST_PORT\//:$R_DST/}
write_my_spec mchaos "partitions: 3" "copy_workers: 2"
REP=$REP_DIRECT DST=$DST_DIRECT

kill_server() {  # kill_server DIR: kill -9, wait for the socket to go, start again
  kill -9 "$(cat "$1/mariadbd.pid")"
  local i
  for ((i = 0; i < 100; i++)); do "$TESTDB" sql "$1" -e "SELECT 1" >/dev/null 2>&1 || break; sleep 0.1; done
  sleep $((1 + RANDOM % 3))
  "$TESTDB" start mariadb "$1" 0
}

run_mf_bg
wait_phase replicating 180
start_sysbench oltp_write_only 150
for ((i = 1; i <= FAULTS; i++)); do
  sleep $((2 + RANDOM % 4))
  chaos_pick kill9 src_stop dst_stop sigstop netcut
  log "fault $i/$FAULTS: $FAULT"
  case $FAULT in
    kill9) kill9_mf; run_mf_bg ;;
    src_stop) kill_server "$REP_DIR" ;;
    dst_stop) kill_server "$DST_DIR" ;;
    sigstop) kill -STOP "$MF_PID"; sleep 8; kill -CONT "$MF_PID" ;;
    netcut) netcut 35 ;;
  esac
  mf_up replicating
done
log "faults done; load stopped"
stop_sysbench
mf_up replicating
wait_my_caught_up 300
assert_equal
chaos_summary
stop_mf
log "PASS"
