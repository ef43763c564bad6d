#!/usr/bin/env bash
# Verification as a background job, on a pgbench migration hosted by
# `midflight serve`, against real servers:
#   verify start (20,000 rows/s, 5,000-row chunks) ─► progress in `verify
#   show`, the API's status, /metrics ─► verify stop ─► verify start again ─►
#   kill -9 of the service mid-table ─► restart: the pass resumes after the
#   last finished chunk (rows are not checked twice: the total equals the
#   tables' rows) and finishes clean ─► the report is kept, the write
#   switch's gate sees it, the dashboard shows it; a foreground verify adds
#   its own report.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/chromium.sh"

start_servers 21900
pgbench -i -s 4 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"
start_serve "$WORK/svc" 21910
cat >"$WORK/vj.yaml" <<YAML
name: vj
source: $SRC
target: $DST
partitions: 2
verify:
  chunk_rows: 5000
YAML
"$MF" create "$WORK/vj.yaml" >/dev/null
for _ in $(seq 240); do [[ $(api_field vj phase) == replicating ]] && break; sleep 0.25; done
[[ $(api_field vj phase) == replicating ]] || fail "not replicating (phase $(api_field vj phase))"
pgbench -n -c 1 -j 1 -T 600 -R 5 "$SRC" >"$WORK/load.log" 2>&1 &
LOAD_PID=$!

show() { "$MF" verify show vj --json; }
job() { show | jq -r ".$1"; }
wait_rows() {  # wait_rows N: until the job checked at least N rows
  for _ in $(seq 240); do (( $(job rows_checked) >= $1 )) && return 0; sleep 0.25; done
  fail "the job did not reach $1 rows: $(show)"
}

"$MF" verify start vj --rate 20000 | tee "$WORK/start.out"
grep -q "verification job started: 4 tables" "$WORK/start.out" || fail "verify start: $(cat "$WORK/start.out")"
out=$("$MF" verify start vj 2>&1) && fail "a second job started while one runs"
[[ $out == *"a verification job is running"* ]] || fail "second start: $out"
wait_rows 60000
show >"$WORK/show1.json"
[[ $(jq -r .state "$WORK/show1.json") == running ]] || fail "state: $(cat "$WORK/show1.json")"
[[ $(jq -r .table "$WORK/show1.json") == public.pgbench_accounts ]] || fail "table: $(cat "$WORK/show1.json")"
rate=$(jq -r .rows_per_s "$WORK/show1.json")
eta=$(jq -r .eta_seconds "$WORK/show1.json")
awk -v r="$rate" -v e="$eta" 'BEGIN { exit !(r > 5000 && r < 30000 && e > 0) }' || fail "rate $rate, eta $eta"
"$MF" verify show vj | tee "$WORK/show1.txt"
grep -q "verification job: running" "$WORK/show1.txt" && grep -q "ETA [0-9]* s" "$WORK/show1.txt" || fail "verify show text"
[[ $(api_field vj verify_job.state) == running ]] || fail "status does not show the job"
curl -sf "http://$API/metrics" >"$WORK/m1.txt"
grep -q '^midflight_verify_job_running{migration="vj"} 1$' "$WORK/m1.txt" || fail "metrics: job not running"
checked=$(awk '/^midflight_verify_job_rows_checked\{migration="vj"\}/{print $2}' "$WORK/m1.txt")
(( checked >= 60000 )) || fail "metrics: rows checked $checked"
grep -q '^midflight_verify_job_eta_seconds{migration="vj"} ' "$WORK/m1.txt" || fail "metrics: no ETA"
log "running: $(jq -c '{rows_checked, rows_estimate, rows_per_s, eta_seconds}' "$WORK/show1.json"); metrics $checked rows"

"$MF" verify stop vj | tee "$WORK/stop.out"
[[ $(job state) == stopped ]] || fail "stop: $(show)"
r1=$(job rows_checked)
sleep 1
[[ $(job rows_checked) == "$r1" ]] || fail "the stopped job kept going"

# A new pass, killed mid-table with the service.
"$MF" verify start vj --rate 20000 >/dev/null
wait_rows 150000
kill9_mf
stored=$(sqlite3 "$WORK/svc/vj/state.db" "SELECT value FROM kv WHERE key = 'verify_job'")
[[ $(jq -r .state <<<"$stored") == running && $(jq -r .cursor.table <<<"$stored") == public.pgbench_accounts &&
  $(jq -r '.cursor.key | length' <<<"$stored") == 1 ]] || fail "stored job at the kill: $stored"
log "service killed; the store says: $(jq -c '{state, rows_checked, cursor}' <<<"$stored")"
start_serve "$WORK/svc"
for _ in $(seq 120); do [[ $(job resumed) == 1 ]] && break; sleep 0.25; done
[[ $(job resumed) == 1 && $(job state) == running ]] || fail "the job did not resume: $(show)"
grep -q "verify job: resuming after public.pgbench_accounts" "$WORK/run.serve2.log" || fail "no resume line in the log"
log "$(grep -o 'verify job: resuming after .*' "$WORK/run.serve2.log" | head -1)"
for _ in $(seq 480); do [[ $(job state) != running ]] && break; sleep 0.25; done
show >"$WORK/show2.json"
[[ $(jq -r .state "$WORK/show2.json") == done && $(jq -r .clean "$WORK/show2.json") == true ]] ||
  fail "the resumed pass did not finish clean: $(cat "$WORK/show2.json")"
stop_load
# Every row once: the pass's count is the tables' rows (history grew a
# little while it ran), not the rows before the kill plus a whole new pass.
total=$(jq -r .rows_checked "$WORK/show2.json")
rows=$(sql_src -c "SELECT (SELECT count(*) FROM pgbench_accounts) + (SELECT count(*) FROM pgbench_branches) + (SELECT count(*) FROM pgbench_tellers) + (SELECT count(*) FROM pgbench_history)")
(( total >= 400044 && total <= rows )) || fail "rows checked $total; the tables hold $rows"
log "$(jq -r .summary "$WORK/show2.json"); $total rows checked, the tables hold $rows"
[[ $(api_field vj verify.clean) == true ]] || fail "the gate does not see the clean pass"
[[ $(jq -r '.reports[-1].kind' "$WORK/show2.json") == job ]] || fail "no job report"

"$MF" verify vj >/dev/null || fail "foreground verify"
[[ $(job 'reports | length') == 2 && $(job 'reports[-1].kind') == foreground ]] || fail "reports: $(show | jq -c .reports)"
"$MF" verify show vj | tee "$WORK/show3.txt"
grep -q "last verifications:" "$WORK/show3.txt" || fail "verify show: no reports"

dashboard_dom "http://$API/#vj" "$WORK/dom.html" 4000
grep -q 'id="verify-job"[^>]*data-state="done"' "$WORK/dom.html" || fail "dashboard: no finished verify job panel"
log "ok"
