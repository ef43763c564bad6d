#!/usr/bin/env bash
# Self-throttling against a target in distress, through the service:
#   1. a session on the target holds row locks for 6 s while the source keeps
#      updating those rows: the apply partitions hit lock timeouts, back off
#      (visible in the API, /metrics and the webhook), and recover at full
#      speed once the locks go; nothing is lost (source = target).
#   2. the same with the locks held past fail_after_seconds: the migration
#      moves to failed with the reason; once the locks are gone, `resume`
#      continues from the checkpoint and the two sides end equal.
#   3. a streaming standby of the target with its replay paused: past the
#      replica_max_lag_seconds knob the appliers hold (throttle kind
#      replica_lag); once replay resumes they go on, and the sides end equal.
source "$(dirname "$0")/lib.sh"

start_servers 26930
sql_src -c "CREATE TABLE hot (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
            INSERT INTO hot (id) SELECT generate_series(1, 200)"
start_webhook_receiver "$WORK/hooks.jsonl" 26940
start_serve "$WORK/svc" 26945
write_spec thr "partitions: 2" "knobs:" "  lock_timeout_ms: 300" "  throttle_max_backoff_ms: 800" \
  "  fail_after_seconds: 60"
"$MF" create "$SPEC" >/dev/null
f() { api_field thr "$1"; }
for _ in $(seq 300); do [[ $(f phase) == replicating ]] && break; sleep 0.2; done
[[ $(f phase) == replicating ]] || fail "not replicating: $(f phase) $(f error)"

cat >"$WORK/update.sql" <<'EOF'
\set id random(1, 200)
UPDATE hot SET n = n + 1 WHERE id = :id;
EOF
load() { pgbench -n -c 2 -j 1 -R 200 -T "$1" -f "$WORK/update.sql" "$SRC" >"$WORK/load.$1.log" 2>&1; }
caught_up() {
  for _ in $(seq 300); do
    [[ $(sql_src -c "SELECT sum(n) FROM hot") == $(sql_dst -c "SELECT sum(n) FROM hot") ]] && return 0
    sleep 0.2
  done
  fail "target never caught up: source sum $(sql_src -c 'SELECT sum(n) FROM hot'), target $(sql_dst -c 'SELECT sum(n) FROM hot')"
}

# ---- 1. locks for 6 s: back off, recover ----
load 12 &
LOAD_PID=$!
sleep 1
psql -X -q "$DST" -c "BEGIN" -c "SELECT id FROM hot WHERE id <= 200 FOR UPDATE" -c "SELECT pg_sleep(6)" \
  -c "COMMIT" >/dev/null &
LOCK_PID=$!
SEEN=
for _ in $(seq 50); do
  active=$(curl -sf "http://$API/api/migrations/thr" | jq -c '.throttle.active')
  if [[ $active == *lock_timeout* ]]; then SEEN=$active; break; fi
  sleep 0.1
done
[[ -n $SEEN ]] || fail "no partition reported a lock timeout while the target rows were locked"
log "throttled: $SEEN"
sleep 2
LATER=$(curl -sf "http://$API/api/migrations/thr" | jq -c '.throttle.active')
log "2 s later: $LATER"
[[ $(jq '[.[].retries] | max' <<<"$LATER") -gt $(jq '[.[].retries] | max' <<<"$SEEN") ]] ||
  fail "the partition did not keep retrying"
[[ $(jq '[.[].backoff_ms] | max' <<<"$LATER") -gt $(jq '[.[].backoff_ms] | min' <<<"$SEEN") ]] ||
  fail "the partition did not slow down (backoff did not grow)"
curl -sf "http://$API/metrics" >"$WORK/metrics.txt"
grep -Eq '^midflight_errors_total\{migration="thr",kind="lock_timeout"\} [1-9]' "$WORK/metrics.txt" ||
  fail "metrics: no lock_timeout errors counted"
grep -q '^midflight_throttled{migration="thr"} 1$' "$WORK/metrics.txt" || fail "metrics: not throttled"
wait "$LOCK_PID"
for _ in $(seq 50); do [[ $(f 'throttle.active | length') == 0 ]] && break; sleep 0.2; done
[[ $(f 'throttle.active | length') == 0 ]] || fail "throttle did not clear after the locks went: $(f throttle)"
log "locks released: throttle cleared ($(f throttle.errors.lock_timeout) lock timeouts retried)"
wait "$LOAD_PID"; LOAD_PID=
caught_up
[[ $(f phase) == replicating ]] || fail "phase $(f phase): $(f error)"
"$MF" compare "$SPEC" >/dev/null || fail "source and target differ after throttling"
log "equal after throttling: sum(n) = $(sql_dst -c 'SELECT sum(n) FROM hot')"

# ---- 2. a persistent error: failed, then resume ----
"$MF" knobs set thr fail_after_seconds=3 >/dev/null
psql -X -q "$DST" -c "BEGIN" -c "SELECT id FROM hot FOR UPDATE" -c "SELECT pg_sleep(15)" -c "COMMIT" >/dev/null &
LOCK_PID=$!
sleep 0.5
load 4
for _ in $(seq 100); do [[ $(f phase) == failed ]] && break; sleep 0.2; done
[[ $(f phase) == failed ]] || fail "a lock held past fail_after_seconds did not fail the migration (phase $(f phase))"
ERR=$(f error)
log "failed as expected: $ERR"
[[ $ERR == *"lock timeout"* && $ERR == *fail_after_seconds* ]] || fail "the failure does not name the cause: $ERR"
[[ $(f resume_phase) == replicating ]] || fail "resume_phase $(f resume_phase)"
wait "$LOCK_PID"
"$MF" knobs set thr fail_after_seconds=60 >/dev/null
"$MF" --as oncall resume thr --reason "locks released" | tee "$WORK/resume.out"
for _ in $(seq 100); do [[ $(f phase) == replicating && $(f running) == true ]] && break; sleep 0.2; done
caught_up
"$MF" compare "$SPEC" >/dev/null || fail "source and target differ after failed + resume"
log "resumed from the checkpoint: equal, sum(n) = $(sql_dst -c 'SELECT sum(n) FROM hot')"
"$MF" events thr | grep -q 'oncall (api@127.0.0.1:[0-9]*): resumed by the operator (was failed): locks released' ||
  fail "audit trail: no resume with actor and reason: $("$MF" events thr | tail -5)"
for _ in $(seq 20); do grep -q '"event":"failed"' "$WORK/hooks.jsonl" && break; sleep 0.2; done
grep -q '"event":"failed"' "$WORK/hooks.jsonl" || fail "webhook: no failed event"
grep -q '"event":"throttled"' "$WORK/hooks.jsonl" || fail "webhook: no throttled event"
log "webhook: $(grep -c . "$WORK/hooks.jsonl") events, failed and throttled among them"

# ---- 3. a lagging replica of the target ----
"$TESTDB" start pg-standby "$WORK/standby" "$(free_port 26947)" "$WORK/dst"
STANDBY=$("$TESTDB" uri "$WORK/standby")
for _ in $(seq 50); do [[ $(sql_dst -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'walreceiver'") == 1 ]] && break; sleep 0.2; done
"$MF" knobs set thr replica_max_lag_seconds=1 lag_alert_seconds=0.5 lag_alert_after_seconds=1 >/dev/null
psql -X -q -At "$STANDBY" -c "SELECT pg_wal_replay_pause()" >/dev/null
load 8 &
LOAD_PID=$!
for _ in $(seq 60); do [[ $(f 'throttle.active | map(.kind) | join(",")') == *replica_lag* ]] && break; sleep 0.2; done
[[ $(f 'throttle.active | map(.kind) | join(",")') == *replica_lag* ]] ||
  fail "a standby replaying behind did not hold the appliers: $(f throttle); $(sql_dst -c 'SELECT replay_lag FROM pg_stat_replication')"
log "held for the replica: $(f 'throttle.active[] | select(.kind == "replica_lag") | .message')"
sleep 1  # a batch already past the gate finishes
A=$(f replication.changes_applied); sleep 2; B=$(f replication.changes_applied)
log "changes applied while held: $A -> $B"
((B - A < 50)) || fail "appliers kept applying while the replica lagged ($A -> $B)"
psql -X -q -At "$STANDBY" -c "SELECT pg_wal_replay_resume()" >/dev/null
for _ in $(seq 100); do [[ $(f 'throttle.active | length') == 0 ]] && break; sleep 0.2; done
[[ $(f 'throttle.active | length') == 0 ]] || fail "still held after the replica caught up: $(f throttle)"
wait "$LOAD_PID"; LOAD_PID=
caught_up
"$MF" compare "$SPEC" >/dev/null || fail "source and target differ after the replica hold"
log "replica caught up: appliers released, equal, sum(n) = $(sql_dst -c 'SELECT sum(n) FROM hot')"
# The lag the hold built up was reported, and its recovery.
for _ in $(seq 30); do grep -q '"event":"lag_recovered"' "$WORK/hooks.jsonl" && break; sleep 0.2; done
grep -q '"event":"lag_alert"' "$WORK/hooks.jsonl" || fail "webhook: no lag_alert while the lag stayed over 0.5 s"
grep -q '"event":"lag_recovered"' "$WORK/hooks.jsonl" || fail "webhook: no lag_recovered"
log "webhook: $(grep '"event":"lag_alert"' "$WORK/hooks.jsonl" | jq -r .text | head -1)"
kill "$MF_PID"; wait "$MF_PID" 2>/dev/null || true; MF_PID=
log "PASS"
