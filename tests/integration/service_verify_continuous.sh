#!/usr/bin/env bash
# Continuous verification (spec verify.continuous) on a pgbench migration
# hosted by `midflight serve`, against real servers:
#   the loop starts by itself once replicating ─► two clean passes while
#   pgbench writes ─► the write switch's dry run shows the verification gate
#   green with the continuous pass ─► a row changed on the target behind
#   midflight's back ─► the next pass reports it by key (job and report) and,
#   with continuous_repair, re-copies it ─► the pass after is clean again ─►
#   verify stop ends the loop (no further pass).
source "$(dirname "$0")/lib.sh"

start_servers 23100
pgbench -i -s 1 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"
start_serve "$WORK/svc" 23110
PROXY_PORT=$(free_port 23120)
RO_PORT=$(free_port $((PROXY_PORT + 1)))
cat >"$WORK/vc.yaml" <<YAML
name: vc
source: $SRC
target: $DST
partitions: 2
proxy:
  listen: 127.0.0.1:$PROXY_PORT
  listen_readonly: 127.0.0.1:$RO_PORT
verify:
  chunk_rows: 5000
  continuous: true
  continuous_rows_per_s: 50000
  continuous_pause_seconds: 1
  continuous_repair: true
YAML
"$MF" create "$WORK/vc.yaml" >/dev/null
for _ in $(seq 240); do [[ $(api_field vc phase) == replicating ]] && break; sleep 0.25; done
[[ $(api_field vc phase) == replicating ]] || fail "not replicating (phase $(api_field vc phase))"
pgbench -n -c 1 -j 1 -T 600 -R 20 "$SRC" >"$WORK/load.log" 2>&1 &
LOAD_PID=$!

show() { "$MF" verify show vc --json; }
job() { show | jq -r ".$1"; }
# wait_for WHAT JQ_TEST [TRIES]: until `verify show --json | jq JQ_TEST` is true (0.25 s apart).
wait_for() {
  for _ in $(seq "${3:-480}"); do [[ $(show | jq -r "$2") == true ]] && return 0; sleep 0.25; done
  fail "waited for $1: $(show | jq -c 'del(.reports)')"
}

wait_for "two continuous passes" '.passes >= 2 and ([.reports[] | select(.kind == "continuous")] | length) >= 2'
kill -0 "$LOAD_PID" || fail "pgbench stopped"
show >"$WORK/two.json"
[[ $(jq -r '.continuous' "$WORK/two.json") == true ]] || fail "continuous is not on: $(jq -c 'del(.reports)' "$WORK/two.json")"
[[ $(jq -r '[.reports[] | select(.kind == "continuous") | .clean] | all' "$WORK/two.json") == true ]] ||
  fail "a continuous pass was not clean: $(jq -c .reports "$WORK/two.json")"
[[ $(jq -r '.reports[-1].actor' "$WORK/two.json") == "continuous verification" ]] || fail "report actor"
log "$(jq -r '.passes' "$WORK/two.json") passes while pgbench writes; last: $(jq -r '.reports[-1].summary' "$WORK/two.json")"
"$MF" verify show vc >"$WORK/show.txt"
grep -q "continuous verification: on, [0-9]* pass(es) finished" "$WORK/show.txt" || fail "verify show: $(cat "$WORK/show.txt")"
[[ $(api_field vc verify_job.continuous) == true ]] || fail "status does not show the continuous job"
curl -sf "http://$API/metrics" >"$WORK/m.txt"
passes=$(awk '/^midflight_verify_continuous_passes\{migration="vc"\}/{print $2}' "$WORK/m.txt")
((passes >= 2)) || fail "metrics: continuous passes '$passes'"
grep -q '^midflight_verify_age_seconds{migration="vc"} ' "$WORK/m.txt" || fail "metrics: no verification age"

# The write switch's gate sees the continuous pass (the dry run fails only
# on the phase: reads are not switched yet).
rc=0
"$MF" switch writes vc --dry-run >"$WORK/dry.out" 2>&1 || rc=$?
[[ $rc == 1 ]] || { cat "$WORK/dry.out"; fail "switch writes --dry-run from replicating exited $rc"; }
grep -q "^  ok    verification: verify continuous: clean" "$WORK/dry.out" || { cat "$WORK/dry.out"; fail "gate: verification not green"; }
log "dry run: $(grep verification "$WORK/dry.out" | sed 's/^ *//')"

# A row changed on the target behind midflight's back.
before=$(show | jq '.reports | length')
tampered_at=$(date +%s)
sql_dst -c "UPDATE pgbench_accounts SET filler = 'changed behind midflight' WHERE aid = 4242"
wait_for "a pass that finds aid 4242" "[.reports[] | select(.at > $tampered_at and .clean == false)] | length >= 1"
show >"$WORK/found.json"
report=$(jq -c "[.reports[] | select(.at > $tampered_at and .clean == false)][0]" "$WORK/found.json")
jq -e '.lines | map(test("public.pgbench_accounts .*4242")) | any' <<<"$report" >/dev/null ||
  fail "the report does not name the key: $report"
[[ $(jq -r .repaired <<<"$report") -ge 1 ]] || fail "nothing repaired: $report"
log "found: $(jq -r '.lines[0]' <<<"$report"); $(jq -r .summary <<<"$report")"
[[ $(sql_dst -c "SELECT filler FROM pgbench_accounts WHERE aid = 4242") == \
  $(sql_src -c "SELECT filler FROM pgbench_accounts WHERE aid = 4242") ]] || fail "the row was not repaired on the target"
found_at=$(jq -r .at <<<"$report")
wait_for "a clean pass after the repair" "[.reports[] | select(.at > $found_at and .clean)] | length >= 1"
rc=0
"$MF" switch writes vc --dry-run >"$WORK/dry2.out" 2>&1 || rc=$?
grep -q "^  ok    verification: verify continuous: clean" "$WORK/dry2.out" || { cat "$WORK/dry2.out"; fail "gate after the repair"; }
log "clean again after the repair: $(show | jq -r '.reports[-1].summary')"
grep -q "4242" <<<"$(curl -sf "http://$API/api/migrations/vc/events?limit=50")" || fail "no event names the difference"

# verify stop ends the loop.
"$MF" verify stop vc >/dev/null
[[ $(job state) == stopped && $(job continuous) == false ]] || fail "stop: $(show | jq -c 'del(.reports)')"
n=$(job passes)
sleep 3
[[ $(job passes) == "$n" && $(job state) == stopped ]] || fail "the loop went on after stop: $(show | jq -c 'del(.reports)')"
stop_load
log "ok"
