#!/usr/bin/env bash
# A MySQL copy obeys its knobs while it runs, and the source replica's lag:
#   1. copy_rows_per_s 8,000 with one worker: the copy runs at that rate and
#      prints progress (rows, percentage, rate);
#   2. STOP SLAVE SQL_THREAD on the replica midflight reads while sysbench
#      writes to the primary: past replica_max_lag_seconds (2 s) no new chunk
#      starts, the status says why; START SLAVE: the copy goes on;
#   3. `knobs set parallelism=3 copy_rows_per_s=24000`: two workers start,
#      the rate follows;
# then replication catches up and the sides are equal.
source "$(dirname "$0")/mylib.sh"

start_my_servers 21750
sysbench_prepare 2 150000
write_my_spec kn "chunk_rows: 8000" "copy_workers: 1" "partitions: 2" "knobs:" "  copy_rows_per_s: 8000"
log "sysbench: 2 tables x 150,000 rows; oltp_write_only at 20 tx/s against the primary from now on"
start_sysbench oltp_write_only 20

rows() { status_field rows_copied; }
# rate SECONDS: rows copied per second over that many seconds.
rate() {
  local a b
  a=$(rows); sleep "$1"; b=$(rows)
  echo $(( (b - a) / $1 ))
}
run_mf_bg
wait_phase copying 60
sleep 2
r1=$(rate 4)
log "1 worker, copy_rows_per_s 8000: $r1 rows/s"
# rows_copied is saved every second (±1 s at either end) and the limiter
# allows a burst of one second's worth: at most 8000 x (4 + 3) / 4.
[[ $r1 -gt 4000 && $r1 -le 14000 ]] || fail "the copy ran at $r1 rows/s with copy_rows_per_s 8000"

# ---- the replica falls behind ----
"$MF" knobs set "$SPEC" replica_max_lag_seconds=2 >/dev/null
"$TESTDB" sql "$REP_DIR" -e "STOP SLAVE SQL_THREAD"
log "replica: SQL thread stopped (sysbench keeps writing to the primary)"
for _ in $(seq 80); do grep -q "copy: the source replica is" "$WORK/run.1.log" && break; sleep 0.25; done
grep -m1 "copy: the source replica is" "$WORK/run.1.log" | sed 's/^/  /' ||
  fail "the copy did not notice the replica's lag"
lag_throttles() { "$MF" status "$SPEC" --json | jq '[.throttle.active[] | select(.kind == "replica_lag")] | length'; }
[[ $(lag_throttles) -ge 1 ]] ||
  fail "status does not show the replica lag throttle: $("$MF" status "$SPEC" --json | jq -c .throttle)"
log "status: $("$MF" status "$SPEC" --json | jq -c '.throttle.active[] | select(.kind == "replica_lag") | .message' | cut -c1-120)"
sleep 2  # the chunks in flight end
held=$(rate 3)
[[ $held -eq 0 ]] || fail "the copy went on at $held rows/s while the replica lagged"
[[ $(status_field phase) == copying ]] || fail "phase $(status_field phase) while held"
log "held: 0 rows/s for 3 s while the replica lags"
"$TESTDB" sql "$REP_DIR" -e "START SLAVE SQL_THREAD"
for _ in $(seq 80); do grep -q "copying again" "$WORK/run.1.log" && break; sleep 0.25; done
grep -m1 "copying again" "$WORK/run.1.log" | sed 's/^/  /' || fail "the copy did not go on after the replica caught up"
[[ $(lag_throttles) -eq 0 ]] ||
  fail "the throttle did not clear"


# ---- more workers, a higher rate ----
"$MF" knobs set "$SPEC" parallelism=3 copy_rows_per_s=24000 >/dev/null
for _ in $(seq 40); do grep -q "copy: worker 2 starts" "$WORK/run.1.log" && break; sleep 0.25; done
grep -q "copy: worker 1 starts (knob parallelism is 3)" "$WORK/run.1.log" || fail "no second worker started"
grep -q "copy: worker 2 starts (knob parallelism is 3)" "$WORK/run.1.log" || fail "no third worker started"
sleep 1
r2=$(rate 4)
log "3 workers, copy_rows_per_s 24000: $r2 rows/s"
# At most 24000 x (4 + 3) / 4, as above.
[[ $r2 -gt $((r1 * 2)) && $r2 -le 42000 ]] || fail "after the knob change the copy ran at $r2 rows/s (before: $r1)"
grep -E "shop\.sbtest[12] +[0-9,]+ / ~[0-9,]+ rows \([0-9]+ %\), [0-9,]+ rows/s  chunk [0-9]+/[0-9]+" "$WORK/run.1.log" |
  tail -2 | sed 's/^/  /'
grep -qE "rows \([0-9]+ %\), [0-9,]+ rows/s" "$WORK/run.1.log" || fail "no progress lines printed while copying"

wait_phase replicating 120
stop_sysbench
wait_my_caught_up 120
assert_equal
stop_mf
assert_primary_untouched
log "ok"
