#!/usr/bin/env bash
# The whole life of a MySQL/MariaDB migration with the application on
# midflight's proxy: a MariaDB primary + replica as the source (midflight
# streams from the replica), a dedicated target. sysbench oltp_read_write runs
# through the read-write endpoint and oltp_read_only through the read-only one
# from before the copy to after `complete` (sysbench never reconnects; any
# error but a deadlock stops it). The life: copy, replicate, verify clean, switch reads (a 50 %
# canary first), switch writes, then rollback / switch writes four more times
# (ten write switches), with midflight killed (kill -9) once after a write
# switch and once inside a rollback's write pause (writes stay on the
# target), complete. sysbench must run without an error through every
# switch; the source and the target must be equal row for row before
# complete (an audit trigger's table included); the write pauses are printed.
# Deadlocks (1213) are the application's own business under this contention
# (4 threads on 20,000 rows with an audit trigger) and happen direct too:
# sysbench retries them (--mysql-ignore-errors=1213); anything else fails.
source "$(dirname "$0")/mylib.sh"
start_my_servers 22000
# The proxy moves sessions between servers by schema name: one name on both sides.
sql_dst -e "CREATE DATABASE shop"
DST=${DST%/*}/shop
PROXY_PORT=$(free_port 22030)
RO_PORT=$(free_port $((PROXY_PORT + 1)))

# midflight logs in to the primary too from here on (the proxy's server
# sessions and reverse replication): the application's account.
sysbench_prepare 4 20000
# An audit trigger, as applications have: on the target it must stay quiet on
# midflight's apply sessions, and on the source too once reverse replication
# applies there, or each update would be audited twice (compare finds it).
sql_pri -e "CREATE TABLE shop.audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, row_id INT NOT NULL, k INT NOT NULL);
  CREATE TRIGGER shop.sbtest1_audit AFTER UPDATE ON shop.sbtest1 FOR EACH ROW
    INSERT INTO shop.audit (row_id, k) VALUES (NEW.id, NEW.k)"
wait_replica

write_my_spec my_cut "partitions: 2" "copy_workers: 2" "chunk_rows: 5000" \
  "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" "  listen_readonly: 127.0.0.1:$RO_PORT" \
  "  users:" "    - name: app" "      password: app" \
  "cutover:" "  drain_timeout_seconds: 10" "  max_lag_seconds: 5" "  catchup_timeout_seconds: 30"
run_mf_bg
wait_proxy() {
  for _ in $(seq 80); do
    mariadb -h 127.0.0.1 -P "$PROXY_PORT" -u app -papp -N -B -e "SELECT 1" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  fail "the proxy does not answer"
}
wait_proxy

SB_PROXY=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app --mysql-db=shop
          --tables=4 --table-size=20000 --time=0 --report-interval=0 --mysql-ignore-errors=1213 --db-ps-mode=auto)
# start_load SUFFIX: the applications through both endpoints, logs sb_rw/sb_ro SUFFIX.log.
start_load() {
  LOAD_SUFFIX=$1
  sysbench oltp_read_write "${SB_PROXY[@]}" --mysql-port="$PROXY_PORT" --threads=4 --rate=100 run \
    >"$WORK/sb_rw$1.log" 2>&1 &
  RW_PID=$!
  sysbench oltp_read_only "${SB_PROXY[@]}" --mysql-port="$RO_PORT" --threads=2 --rate=50 run \
    >"$WORK/sb_ro$1.log" 2>&1 &
  RO_PID=$!
  EXTRA_PIDS+=("$RW_PID" "$RO_PID")
}
# proxy_closes: what midflight logged about the proxy sessions it closed or
# answered with an error (session, endpoint, server side, what the client
# waited for, why), for a failure's report next to sysbench's output.
proxy_closes() {
  log "midflight's log lines on proxy sessions:"
  grep -h "proxy [^ ]*: session " "$WORK"/run.*.log 2>/dev/null | tail -60 || true
}
start_load ""
# sb_failed LOG WHAT: sysbench's output and the proxy's closes (and
# midflight's end, when it died under the applications), then fail.
sb_failed() {
  cat "$1"
  proxy_closes
  if [[ -n ${MF_PID:-} ]] && ! kill -0 "$MF_PID" 2>/dev/null; then
    local rc=0
    wait "$MF_PID" 2>/dev/null || rc=$?
    log "midflight (pid $MF_PID) is not running: exit status $rc; the end of its log:"
    tail -20 "$WORK/run.$RUN_N.log"
  fi
  fail "$2"
}
alive() { kill -0 "$RW_PID" 2>/dev/null || sb_failed "$WORK/sb_rw$LOAD_SUFFIX.log" "sysbench read-write stopped"
          kill -0 "$RO_PID" 2>/dev/null || sb_failed "$WORK/sb_ro$LOAD_SUFFIX.log" "sysbench read-only stopped"; }

wait_phase replicating 240
sleep 2
alive
op() {  # op ARGS...: one midflight operation against the running migration, logged
  local out rc=0
  out=$("$MF" "$@" "$SPEC" 2>&1) || rc=$?
  log "midflight $* -> $out"
  [[ $rc -eq 0 ]] || fail "midflight $* exited $rc"
}
op verify
[[ $(status_field phase) == replicating ]] || fail "phase after verify: $(status_field phase)"

op switch reads --percent 50
sleep 3
alive
op switch reads
sleep 3
alive

switches=0
switch_writes() { op switch writes; switches=$((switches + 1)); alive; sleep 2; }
rollback() { op rollback; switches=$((switches + 1)); alive; sleep 2; }

# freeze PID...: SIGSTOP, and back once every thread of those processes has
# stopped. kill(2) returns with the stop pending and one thread told; that
# one stops the others when it next runs, which on a loaded machine can be
# tens of milliseconds later: a thread that meanwhile sees its connection
# close (midflight killed) runs on and fails with 2013 "Lost connection"
# (it did: a point select, once in six runs at load 25).
frozen() {
  local p t s
  for p in "$@"; do
    for t in /proc/"$p"/task/*/stat; do
      { s=$(<"$t"); } 2>/dev/null || continue  # (a thread that just ended)
      s=${s##*) }
      [[ ${s%% *} == [tTZX] ]] || return 1
    done
  done
}
freeze() {
  local i t0
  t0=$(date +%s%N)
  kill -STOP "$@"
  for ((i = 0; i < 1000; i++)); do
    frozen "$@" && { log "sysbench stopped (every thread) $((($(date +%s%N) - t0) / 1000000)) ms after SIGSTOP"; return 0; }
    sleep 0.01
  done
  fail "sysbench $* not stopped 10 s after SIGSTOP"
}

switch_writes
# kill -9 after the first write switch: the proxy goes with midflight, so the
# applications see their connections close; sysbench (no reconnect) would
# stop, so it is stopped around the restart and started again.
log "kill -9 midflight after the first write switch"
freeze "$RW_PID" "$RO_PID"
# Up to here sysbench must have run clean (it stopped before midflight died).
for f in "$WORK/sb_rw.log" "$WORK/sb_ro.log"; do
  if grep -q "FATAL" "$f"; then sb_failed "$f" "$(basename "$f"): sysbench failed before midflight was killed"; fi
done
kill -9 "$MF_PID"; wait "$MF_PID" 2>/dev/null || true
kill -9 "$RW_PID" "$RO_PID" 2>/dev/null || true
wait "$RW_PID" "$RO_PID" 2>/dev/null || true
# This run dies (its crash point kills it) inside the first rollback's write
# pause: the writes must stay on the target, where the phase says they are.
RUN_N=$((RUN_N + 1))
MIDFLIGHT_CRASH_AT=switch-paused "$MF" run "$SPEC" >"$WORK/run.$RUN_N.log" 2>&1 &
MF_PID=$!
wait_phase writes_switched 120
wait_proxy
start_load _crash
sleep 2
if out=$("$MF" rollback "$SPEC" 2>&1); then fail "the rollback finished past its crash point: $out"; fi
rc=0; wait "$MF_PID" || rc=$?
[[ $rc -eq 137 ]] || fail "expected midflight killed at switch-paused, got exit $rc"
grep -q "test crash point switch-paused" "$WORK/run.$RUN_N.log" || fail "crash point switch-paused not reached"
log "killed inside the rollback's write pause (phase now $(status_field phase))"
# The proxy died with it: the clients' connections went too (no error to count).
kill -9 "$RW_PID" "$RO_PID" 2>/dev/null || true
wait "$RW_PID" "$RO_PID" 2>/dev/null || true
run_mf_bg
wait_phase writes_switched 120
wait_proxy
port=$(mariadb -h 127.0.0.1 -P "$PROXY_PORT" -u app -papp -N -B -e "SELECT @@port")
[[ $port == $((APP_PORT + 2)) ]] || fail "after the restart writes go to port $port, not the target's"
start_load 2
sleep 3
alive

for _ in 1 2 3 4; do
  rollback
  switch_writes
done
rollback
switch_writes
log "$switches write switches"

stop_rw() {
  kill -TERM "$RW_PID" "$RO_PID" 2>/dev/null || true
  wait "$RW_PID" "$RO_PID" 2>/dev/null || true
}
stop_rw
# sysbench ran until now (alive was checked after every operation) and
# prints no summary when stopped: any error but a deadlock, a lost connection
# included, would have ended it with FATAL.
for f in "$WORK"/sb_rw*.log "$WORK"/sb_ro*.log; do
  [[ $f == *_crash.log ]] && continue  # its proxy was killed under it
  if grep -q "FATAL" "$f"; then sb_failed "$f" "$(basename "$f"): sysbench failed"; fi
done
log "sysbench: no error through the proxy (read-write and read-only, before and after the restart)"

# Writes are on the target: reverse replication brings them to the primary,
# the replica follows; compare (replica against target) until they agree.
for _ in $(seq 60); do
  wait_replica
  "$MF" compare "$SPEC" >"$WORK/compare.out" 2>&1 || true
  grep -q "source and target are equal" "$WORK/compare.out" && break
  sleep 1
done
cat "$WORK/compare.out"
log "audit rows: source $(sql_pri -e "SELECT COUNT(*) FROM shop.audit"), target $(sql_dst -e "SELECT COUNT(*) FROM shop.audit")"
grep -q "sbtest1_audit" "$WORK"/run.*.log && log "$(grep -h "trigger(s) on the" "$WORK"/run.*.log | head -1)"
grep -q "source and target are equal" "$WORK/compare.out" || fail "source and target differ"
log "write pauses: $(status_field write_pauses_ms 2>/dev/null || true)"
op complete
[[ $(status_field phase) == completed ]] || fail "not completed"
# The proxy stays up after complete (the applications still connect through
# it) and sends everything to the target; nothing of midflight's is left.
port=$(mariadb -h 127.0.0.1 -P "$PROXY_PORT" -u app -papp -N -B -e "SELECT @@port")
[[ $port == $((APP_PORT + 2)) ]] || fail "after complete the proxy sends writes to port $port"
[[ -z $(sql_pri -e "SHOW DATABASES LIKE 'midflight'") ]] || fail "the midflight database is left on the primary"
[[ -z $(sql_dst -e "SHOW DATABASES LIKE 'midflight'") ]] || fail "the midflight database is left on the target"
stop_mf
log "ok"
