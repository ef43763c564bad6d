#!/usr/bin/env bash
# The migration service end to end, against real servers:
#   midflight serve (API token, webhook) ─► bad input refused (4xx naming the
#   field) ─► create from a spec (copy rate knob 20k rows/s) ─► copy under
#   pgbench load ─► pause / resume ─► knobs set mid-copy: the copy rate
#   visibly changes ─► dashboard in headless Chromium (progress moves,
#   screenshot not blank) ─► kill -9 ─► restart: resumes ─► replicating,
#   caught up ─► source and target equal; /metrics; the audit trail names
#   the actor; the webhook got the events; no password anywhere; a second
#   migration aborted (its slot dropped) and deleted.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/chromium.sh"

start_servers 26900
# A distinctive password, to prove it never shows.
SECRET='Zq7-secret-Pw'
for uri in "$SRC" "$DST"; do
  psql -X -q -v ON_ERROR_STOP=1 "$uri" -c "CREATE ROLE mf_svc LOGIN SUPERUSER REPLICATION PASSWORD '$SECRET'"
done
SRC_SVC=${SRC/midflight:midflight@/mf_svc:$SECRET@}
DST_SVC=${DST/midflight:midflight@/mf_svc:$SECRET@}
[[ $SRC_SVC == *"$SECRET"* ]] || fail "could not build the URI with the test role ($SRC)"

pgbench -i -q -s 15 "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"
log "source: $(sql_src -c 'SELECT count(*) FROM pgbench_accounts') accounts"

start_webhook_receiver "$WORK/hooks.jsonl" 26950
start_serve "$WORK/svc" 26960

# api METHOD PATH [BODY] [TOKEN]: prints "STATUS BODY".
api() {
  local token=${4-$MIDFLIGHT_API_TOKEN} args=(-s -o "$WORK/api.out" -w '%{http_code}' -X "$1")
  [[ -n $token ]] && args+=(-H "Authorization: Bearer $token")
  [[ -n ${3:-} ]] && args+=(--data-binary "$3")
  local code
  code=$(curl "${args[@]}" "http://$API$2")
  echo "$code $(cat "$WORK/api.out")"
}
expect() {  # expect CODE PATTERN -- METHOD PATH [BODY] [TOKEN]
  local code=$1 pattern=$2; shift 3
  local out
  out=$(api "$@")
  [[ ${out%% *} == "$code" && $out == *"$pattern"* ]] || fail "$1 $2: expected $code with '$pattern', got: $out"
  log "refused as expected ($code): ${out#* }"
}

SPEC_TEXT="name: svc1
source: $SRC_SVC
target: $DST_SVC
copy_workers: 2
chunk_rows: 50000
knobs:
  copy_rows_per_s: 20000"
printf '%s\n' "$SPEC_TEXT" >"$WORK/svc1.yaml"

# ---- bad input ----
expect 401 "API token" -- POST /api/migrations "$SPEC_TEXT" ""
expect 401 "token is wrong" -- POST /api/migrations "$SPEC_TEXT" wrong-token
expect 400 "not valid YAML" -- POST /api/migrations $'name: x\nsource: [unclosed'
expect 400 "field 'copy_wokers': unknown field" -- POST /api/migrations "$SPEC_TEXT"$'\ncopy_wokers: 3'
expect 400 "copy_workers" -- POST /api/migrations "${SPEC_TEXT/copy_workers: 2/copy_workers: many}"
expect 400 "field 'knobs.parallelism': 0 is out of range" -- POST /api/migrations "$SPEC_TEXT"$'\n  parallelism: 0'
expect 400 "field spec is missing" -- POST /api/migrations '{"spec": 5}'
expect 404 "no migration named nosuch" -- GET /api/migrations/nosuch
ls "$WORK/svc" | grep -q . && fail "a refused create left state behind: $(ls "$WORK/svc")"

# ---- create, copy at the knob's rate ----
"$MF" --as tester create "$WORK/svc1.yaml" | tee "$WORK/create.out"
grep -q "migration svc1 created" "$WORK/create.out" || fail "create"
expect 409 "already exists" -- POST /api/migrations "$SPEC_TEXT"
expect 400 "unknown knob 'paralelism'" -- POST /api/migrations/svc1/knobs '{"paralelism": 4}'
expect 400 "knob copy_rows_per_s: -5 is out of range" -- POST /api/migrations/svc1/knobs '{"copy_rows_per_s": -5}'
expect 401 "API token" -- POST /api/migrations/svc1/knobs '{"parallelism": 4}' ""
expect 409 "complete is allowed in phase writes_switched" -- POST /api/migrations/svc1/complete
expect 409 "resume is allowed in phases paused, failed" -- POST /api/migrations/svc1/resume

pgbench -c 2 -j 1 -T 600 -R 100 -n "$SRC" >"$WORK/load.log" 2>&1 &
LOAD_PID=$!

field() { api_field svc1 "$1"; }
wait_field() {  # wait_field JQ_EXPR VALUE SECONDS
  for _ in $(seq $(($3 * 5))); do [[ $(field "$1") == "$2" ]] && return; sleep 0.2; done
  fail "$1 never became $2 (is $(field "$1"); phase $(field phase), error $(field error))"
}
wait_field phase copying 60
# Rate over a window, from the rows copied (not the API's own rate).
rate_over() {
  local a b
  a=$(field rows_copied); sleep "$1"; b=$(field rows_copied)
  echo $(((b - a) / $1))
}
sleep 2
SLOW=$(rate_over 4)
log "copy rate with copy_rows_per_s=20000: $SLOW rows/s"
((SLOW > 8000 && SLOW < 30000)) || fail "copy rate $SLOW rows/s is not near the 20000 rows/s knob"

# ---- pause / resume mid-copy ----
"$MF" --as tester pause --reason "checking the dashboard" | tee "$WORK/pause.out"
[[ $(field phase) == paused && $(field resume_phase) == copying ]] || fail "pause: phase $(field phase)"
A=$(field rows_copied); sleep 2; B=$(field rows_copied)
[[ $A == "$B" ]] || fail "rows still copied while paused ($A -> $B)"
expect 409 "pause is allowed in phases created, preflight, schema, copying, replicating" -- POST /api/migrations/svc1/pause
"$MF" --as tester resume | tee "$WORK/resume.out"
wait_field phase copying 10
log "paused at $A rows, resumed"

# ---- knobs mid-copy: the rate visibly changes ----
"$MF" --as tester knobs set copy_rows_per_s=100000 parallelism=3 | tee "$WORK/knobs.out"
[[ $(field knobs.parallelism) == 3 && $(field knobs.copy_rows_per_s) == 100000 ]] || fail "knobs not set: $(field knobs)"
sleep 1
FAST=$(rate_over 2)
log "copy rate with copy_rows_per_s=100000, parallelism=3: $FAST rows/s (was $SLOW)"
((FAST > SLOW * 2)) || fail "the copy rate did not change visibly ($SLOW -> $FAST rows/s)"
"$MF" knobs set copy_rows_per_s=30000 >/dev/null

# ---- dashboard in headless Chromium ----
dashboard_dom "http://$API/#svc1" "$WORK/dom1.html" 3000 || fail "dashboard DOM"
sleep 2
dashboard_dom "http://$API/#svc1" "$WORK/dom2.html" 3000 || fail "dashboard DOM"
rows_in() { grep -o 'id="rows-copied"[^>]*>[0-9]*<' "$1" | grep -o '>[0-9]*<' | tr -d '<>'; }
R1=$(rows_in "$WORK/dom1.html"); R2=$(rows_in "$WORK/dom2.html")
grep -q 'data-api="ok"' "$WORK/dom2.html" || fail "the dashboard could not reach the API"
grep -Eq 'id="phase"[^>]*>copying<' "$WORK/dom2.html" || fail "dashboard phase"
grep -q 'class="table-row" data-table="public.pgbench_accounts"' "$WORK/dom2.html" || fail "dashboard tables"
((R1 > 0 && R2 > R1)) || fail "dashboard progress did not move ($R1 -> $R2)"
dashboard_screenshot "http://$API/#svc1" "$WORK/dashboard.png" 3000 || fail "screenshot"
COLOURS=$(png_is_not_blank "$WORK/dashboard.png") || fail "blank dashboard screenshot"
log "dashboard: rows copied $R1 -> $R2; screenshot $(stat -c %s "$WORK/dashboard.png") bytes, $COLOURS"
[[ -n ${MIDFLIGHT_KEEP_SCREENSHOT:-} ]] && cp "$WORK/dashboard.png" "$MIDFLIGHT_KEEP_SCREENSHOT"

# ---- kill -9 mid-copy, restart: it resumes ----
BEFORE=$(field rows_copied)
kill -9 "$MF_PID"; wait "$MF_PID" 2>/dev/null || true
log "killed serve at $BEFORE rows copied"
start_serve "$WORK/svc"
[[ $(field knobs.copy_rows_per_s) == 30000 ]] || fail "knobs not kept over the restart: $(field knobs)"
"$MF" knobs set copy_rows_per_s=0 >/dev/null
wait_field phase replicating 180
for _ in $(seq 150); do
  [[ $(field lag_bytes) -lt 100000 ]] && break; sleep 0.2
done
log "replicating: lag $(field lag_bytes) bytes, $(field replication.changes_applied) changes applied"
stop_load
grep -qi "error" "$WORK/load.log" && { tail -5 "$WORK/load.log"; fail "pgbench reported errors"; }
sleep 1
for _ in $(seq 150); do
  [[ $(field lag_bytes) -lt 1000 && $(field lag_seconds) == 0 ]] && break; sleep 0.2
done
"$MF" compare "$WORK/svc1.yaml" >"$WORK/compare.out" || { cat "$WORK/compare.out"; fail "source and target differ"; }
log "$(tail -1 "$WORK/compare.out"): $(sql_dst -c 'SELECT count(*) FROM pgbench_history') history rows"

# ---- metrics, audit trail, webhook ----
curl -sf "http://$API/metrics" >"$WORK/metrics.txt"
grep -q '^midflight_phase{migration="svc1",phase="replicating"} 1$' "$WORK/metrics.txt" || fail "metrics: phase"
ROWS_METRIC=$(sed -n 's/^midflight_rows_copied_total{migration="svc1"} //p' "$WORK/metrics.txt")
((ROWS_METRIC >= 1500165)) || fail "metrics: rows copied $ROWS_METRIC (the tables hold 1500165 at least)"
grep -q '^midflight_changes_applied_total{migration="svc1",direction="forward"} [1-9]' "$WORK/metrics.txt" ||
  fail "metrics: changes applied"
grep -q '^midflight_apply_batch_seconds_count{migration="svc1"} [1-9]' "$WORK/metrics.txt" || fail "metrics: latency"
grep -q '^midflight_errors_total{migration="svc1",kind="lock_timeout"} 0$' "$WORK/metrics.txt" || fail "metrics: errors"
"$MF" events svc1 >"$WORK/events.out"
grep -q 'tester (api@127.0.0.1:[0-9]*): paused by the operator: checking the dashboard' "$WORK/events.out" ||
  { cat "$WORK/events.out"; fail "audit trail: no pause with actor and reason"; }
grep -q '\[replicating\] midflight: streaming changes' "$WORK/events.out" || fail "audit trail: no replicating"
"$MF" status svc1 >"$WORK/status.out"
log "status:"; sed 's/^/    /' "$WORK/status.out"
for _ in $(seq 20); do grep -q '"to":"replicating"' "$WORK/hooks.jsonl" 2>/dev/null && break; sleep 0.2; done
for want in '"to":"preflight"' '"to":"copying"' '"to":"paused"' '"to":"replicating"'; do
  grep -q "$want" "$WORK/hooks.jsonl" || { cat "$WORK/hooks.jsonl"; fail "webhook: no event $want"; }
done
grep -q '"text":"\[midflight\] migration svc1: copying → paused: paused by the operator' "$WORK/hooks.jsonl" ||
  fail "webhook: Slack text"
log "webhook received $(wc -l <"$WORK/hooks.jsonl") events"

# ---- a second migration, aborted ----
sql_src -c "CREATE TABLE small (id int PRIMARY KEY, v text); INSERT INTO small SELECT g, 'x' FROM generate_series(1, 1000) g"
sql_dst -c "CREATE DATABASE second"
printf 'name: svc2\nsource: %s\ntarget: %s\ntables: [public.small]\n' "$SRC_SVC" "${DST_SVC%/*}/second" >"$WORK/svc2.yaml"
"$MF" create "$WORK/svc2.yaml" >/dev/null
for _ in $(seq 100); do
  [[ $("$MF" status svc2 --json | jq -r .phase) == replicating ]] && break; sleep 0.2
done
[[ $(sql_src -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'midflight_svc2'") == 1 ]] || fail "no slot"
"$MF" abort svc2 --reason "wrong target" | tee "$WORK/abort.out"
grep -q "slot and publication dropped" "$WORK/abort.out" || fail "abort"
[[ $(sql_src -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'midflight_svc2'") == 0 ]] ||
  fail "abort left the slot on the source"
expect 409 "resume is allowed in phases paused, failed; migration svc2 is in phase aborted" -- POST /api/migrations/svc2/resume
expect 409 "delete is allowed in phases completed, aborted; migration svc1 is in phase replicating" -- DELETE /api/migrations/svc1
"$MF" delete svc2 >/dev/null

# ---- a third one that fails its preflight: resume retries it, abort ends it ----
printf 'name: svc3\nsource: %s\ntarget: %s\n' "$SRC_SVC" "${DST_SVC/$SECRET/wrong-password}" >"$WORK/svc3.yaml"
"$MF" create "$WORK/svc3.yaml" >/dev/null
for _ in $(seq 50); do [[ $(api_field svc3 phase) == failed ]] && break; sleep 0.2; done
[[ $(api_field svc3 phase) == failed && $(api_field svc3 error) == *"password authentication failed"* ]] ||
  fail "svc3: $(api_field svc3 phase): $(api_field svc3 error)"
"$MF" resume svc3 >/dev/null
sleep 1
for _ in $(seq 50); do [[ $(api_field svc3 phase) == failed ]] && break; sleep 0.2; done
[[ $(api_field svc3 phase) == failed && $(api_field svc3 error) == *"password authentication failed"* ]] ||
  fail "svc3 after resume: $(api_field svc3 phase): $(api_field svc3 error)"
[[ $(api_field svc3 resume_phase) == preflight ]] || fail "svc3 resume_phase $(api_field svc3 resume_phase)"
"$MF" abort svc3 >/dev/null
[[ $(api_field svc3 phase) == aborted ]] || fail "svc3 not aborted"
log "svc3 (wrong target password): failed in preflight, failed again on resume, aborted"
"$MF" delete svc3 >/dev/null
[[ $("$MF" list --json | jq -r '[.migrations[].name] | join(",")') == svc1 ]] || fail "list after delete"

# ---- secrets ----
curl -sf "http://$API/api/migrations/svc1" >"$WORK/detail.json"
if grep -l -- "$SECRET" "$WORK"/run.serve*.log "$WORK/detail.json" "$WORK/metrics.txt" "$WORK/hooks.jsonl" \
  "$WORK"/dom*.html "$WORK/status.out" "$WORK/events.out" "$WORK/create.out"; then
  fail "the password shows in the files above"
fi
[[ $(stat -c %a "$WORK/svc/svc1/spec.yaml") == 600 ]] || fail "spec.yaml (with the passwords) is not mode 0600"
log "no password in logs, API answers, metrics, dashboard or webhook bodies"
kill "$MF_PID"; wait "$MF_PID" 2>/dev/null || true; MF_PID=
log "PASS"
