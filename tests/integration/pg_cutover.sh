#!/usr/bin/env bash
# The whole life of a migration with the applications on midflight's proxy:
# pgbench (-c 8, TPC-B with a history table keyed by a sequence) runs through
# the proxy from before the copy to after `complete`, once with -M simple and
# once with -M prepared. Each life: copy, replicate, verify, switch reads,
# switch writes, then rollback / switch writes five more times (eleven write
# switches), complete. pgbench must report no failed transaction and no
# connection error; every transaction it committed must have left its history
# row on the final server; source and target must be equal before complete.
#
# Around the switches (simple mode): a transaction held open past the drain
# timeout makes the switch give up cleanly (traffic stays on the source, the
# held transaction commits and replicates); a second operation while one runs
# is refused; a wrong password is refused; garbage and a truncated startup
# packet close only their own connection.
source "$(dirname "$0")/lib.sh"
start_servers 26700
PROXY_PORT=$(free_port 26720)
RO_PORT=$(free_port $((PROXY_PORT + 1)))

load_loop() {  # load_loop MODE URI: pgbench in 4 s runs until $WORK/stop-load exists
  local mode=$1 uri=$2 n=0
  while [[ ! -f $WORK/stop-load ]]; do
    n=$((n + 1))
    pgbench -n -c 8 -j 2 -T 4 -R 300 -M "$mode" "$uri" >"$WORK/pgbench.$mode.$n.log" 2>&1 ||
      echo "pgbench run $n exited $?" >>"$WORK/pgbench-errors"
  done
}

# crash_inside POINT WHAT CMD...: midflight restarted with the test crash
# point POINT, CMD (the operation WHAT) sent until it is taken; the process
# must die at that point. Uses life's proxy_uri.
crash_inside() {
  local point=$1 what=$2 out=
  shift 2
  kill -TERM "$MF_PID"; wait "$MF_PID" || true; MF_PID=
  RUN_N=$((RUN_N + 1))
  MIDFLIGHT_CRASH_AT=$point "$MF" run "$SPEC" >"$WORK/run.$RUN_N.log" 2>&1 &
  MF_PID=$!
  for _ in $(seq 60); do psql -X -At "$proxy_uri" -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.25; done
  # Replication starts a moment after the proxy answers: retry until the
  # operation is taken (the process then dies at the crash point).
  for _ in $(seq 80); do
    out=$("$@" 2>&1) || true
    not_yet "$out" || break
    sleep 0.25
  done
  for _ in $(seq 120); do kill -0 "$MF_PID" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$MF_PID" 2>/dev/null && fail "$what did not reach its crash point: $out"
  wait "$MF_PID" || true
  MF_PID=
  grep -q "test crash point $point" "$WORK/run.$RUN_N.log" || fail "crash point $point not reached"
}

life() {
  local mode=$1 db=app_$1
  log "=== -M $mode: database $db"
  rm -f "$WORK/stop-load" "$WORK/pgbench-errors"
  sql_src -c "CREATE DATABASE $db"
  local base_src=${SRC%/*} base_dst=${DST%/*}
  local src=$base_src/$db
  sql_dst -c "CREATE DATABASE $db"
  pgbench -i -s 10 -q "$src" >/dev/null 2>&1
  psql -X -q -At "$src" -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"
  SRC_DB=$src
  local saved_src=$SRC saved_dst=$DST
  SRC=$src DST=$base_dst/$db
  local tls=()
  if [[ $mode == prepared ]]; then
    # This life's clients talk TLS to the proxy (pgbench and psql use sslmode=prefer).
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
      -keyout "$WORK/proxy.key" -out "$WORK/proxy.crt" >/dev/null 2>&1
    tls=("  tls_cert: $WORK/proxy.crt" "  tls_key: $WORK/proxy.key")
  fi
  local gate=()
  [[ $mode == prepared ]] && gate=("  require_approval: true" "  min_validation_seconds: 5")
  write_spec "cut_$mode" "partitions: 2" "copy_workers: 2" "chunk_rows: 100000" \
    "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" "  listen_readonly: 127.0.0.1:$RO_PORT" "${tls[@]}" \
    "cutover:" "  drain_timeout_seconds: 10" "  max_lag_seconds: 2" "${gate[@]}" \
    "notify:" "  webhook: $HOOK_URL"
  local proxy_uri="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/$db"
  run_mf_bg
  for _ in $(seq 40); do psql -X -At "$proxy_uri" -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.25; done
  if [[ $mode == prepared ]]; then
    psql -X "$proxy_uri?sslmode=require" -c '\conninfo' | tee "$WORK/conninfo"
    grep -q "SSL connection" "$WORK/conninfo" || fail "no TLS between psql and the proxy"
  fi
  load_loop "$mode" "$proxy_uri" &
  LOAD_PID=$!
  wait_phase replicating 180
  sleep 2

  if [[ $mode == simple ]]; then
    # Refusals before any switch.
    out=$("$MF" switch writes "$SPEC" 2>&1) && fail "switch writes from replicating succeeded"
    [[ $out == *"switch reads first"* ]] || fail "unexpected refusal: $out"
    log "refused as expected: $out"
    if PGPASSWORD=wrong psql -X -At "postgres://midflight@127.0.0.1:$PROXY_PORT/$db" -c "SELECT 1" 2>"$WORK/err"; then
      fail "wrong password accepted"
    fi
    grep -q 'password authentication failed for user "midflight"' "$WORK/err" || fail "wrong password: $(cat "$WORK/err")"
    log "wrong password refused: $(head -1 "$WORK/err")"
    # Garbage instead of a startup packet, and a truncated one.
    exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT"
    printf '\x00\x00\x00\x03garbage' >&3
    reply=$(timeout 5 cat <&3 | tr -c '[:print:]' ' ')
    exec 3>&-
    # An impossible startup length: closed without a reply, as PostgreSQL does.
    [[ -z ${reply// /} ]] || fail "garbage got a reply: '$reply'"
    log "garbage startup: closed without a reply"
    exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT"
    printf '\x00\x00\x00\x50\x00\x03\x00\x00user\x00' >&3
    exec 3>&-
    psql -X -At "$proxy_uri" -c "SELECT 1" >/dev/null || fail "the proxy stopped answering after bad clients"
  fi

  "$MF" verify "$SPEC" | tee "$WORK/verify.out" || fail "verify found differences on a clean run"
  grep -q "clean" "$WORK/verify.out" || fail "verify output: $(cat "$WORK/verify.out")"
  if [[ $mode == prepared ]]; then
    # Canary: half of the new read-only transactions go to the target.
    "$MF" switch reads "$SPEC" --percent 50
    ports=$(for _ in $(seq 40); do psql -X -At "postgres://midflight:midflight@127.0.0.1:$RO_PORT/$db" -c "SELECT inet_server_port()"; done | sort | uniq -c)
    log "read-only endpoint at 50%: $(echo $ports)"
    [[ $(echo "$ports" | wc -l) == 2 ]] || fail "50% canary did not reach both servers: $ports"
    "$MF" switch reads "$SPEC" --back  # the validation window starts again at the next switch reads
  fi
  "$MF" switch reads "$SPEC"
  if [[ $mode == prepared ]]; then
    out=$("$MF" switch writes "$SPEC" 2>&1) && fail "switch writes ran inside the validation window"
    [[ $out == *"validation window"* ]] || fail "unexpected answer: $out"
    log "refused: $out"
    sleep 5
    out=$("$MF" switch writes "$SPEC" 2>&1) && fail "switch writes ran without approval"
    [[ $out == *"approval"* ]] || fail "unexpected answer: $out"
    log "refused: $out"
    "$MF" approve "$SPEC"
  fi
  [[ $(psql -X -At "postgres://midflight:midflight@127.0.0.1:$RO_PORT/$db" -c "SELECT inet_server_port()") == "${DST_PORT}" ]] ||
    fail "read-only endpoint does not reach the target after switch reads"

  if [[ $mode == simple ]]; then
    # A second operation while one runs is refused.
    "$MF" verify "$SPEC" --rate 200000 >/dev/null 2>&1 &
    verifying=$!
    sleep 0.5
    out=$("$MF" switch writes "$SPEC" 2>&1) && fail "a second operation ran while verify was running"
    [[ $out == *"another operation is running (verify)"* ]] || fail "unexpected answer: $out"
    log "refused while verifying: $out"
    wait $verifying || true
    # A transaction held open past the drain timeout (2 s, a knob set for this
    # step only: under a sanitizer a pgbench transaction can take that long).
    # It sleeps 12 s: the switch starts reverse replication before it pauses,
    # which took up to 5 s on a loaded machine (a 5 s sleep ended inside the drain).
    "$MF" knobs set "$SPEC" drain_timeout_seconds=2 >/dev/null
    psql -X -q "$proxy_uri" -c "BEGIN" -c "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 777777, now())" \
      -c "SELECT pg_sleep(12)" -c "COMMIT" >/dev/null &
    held=$!
    # Until the held transaction is open on the source (on a loaded machine
    # psql can take a while to get there).
    for _ in $(seq 40); do
      [[ $(sql_src -c "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(12)' AND state = 'active'") == 1 ]] && break
      sleep 0.1
    done
    out=$("$MF" switch writes "$SPEC" 2>&1) && fail "switch writes succeeded with a transaction open past the drain timeout"
    [[ $out == *abandoned* && $out == *"inside a transaction"* ]] || fail "unexpected answer: $out"
    log "abandoned as expected: $out"
    [[ $(status_field phase) == reads_switched ]] || fail "phase moved after an abandoned switch"
    wait $held || fail "the held transaction failed"
    "$MF" knobs set "$SPEC" drain_timeout_seconds=10 >/dev/null
  fi

  "$MF" switch writes "$SPEC"
  for i in 1 2 3 4 5; do
    sleep 2
    "$MF" rollback "$SPEC"
    sleep 2
    "$MF" switch writes "$SPEC"
  done
  [[ $(psql -X -At "$proxy_uri" -c "SELECT inet_server_port()") == "${DST_PORT}" ]] || fail "writes do not reach the target"
  sleep 2
  touch "$WORK/stop-load"
  wait "$LOAD_PID"
  LOAD_PID=
  [[ ! -f $WORK/pgbench-errors ]] || { cat "$WORK/pgbench-errors"; tail -20 "$WORK"/pgbench.$mode.*.log; fail "pgbench failed"; }
  local processed failed runs
  processed=$(cat "$WORK"/pgbench.$mode.*.log | awk '/number of transactions actually processed/ {s += $6} END {print s + 0}')
  failed=$(cat "$WORK"/pgbench.$mode.*.log | awk '/number of failed transactions/ {s += $5} END {print s + 0}')
  runs=$(ls "$WORK"/pgbench.$mode.*.log | wc -l)
  log "pgbench -M $mode through the proxy: $runs runs, $processed transactions, $failed failed"
  [[ $failed == 0 ]] || fail "$failed failed transactions"
  [[ $processed -gt 1000 ]] || fail "too few transactions: $processed"

  # The target now takes the writes; the source follows by reverse replication.
  local want got i
  want=$(psql -X -At "$DST" -c "SELECT pg_current_wal_insert_lsn()")
  for i in $(seq 240); do
    got=$(status_field reverse.applied_position)
    [[ -n $got && $(psql -X -At "$DST" -c "SELECT '$got'::pg_lsn >= '$want'::pg_lsn") == t ]] && break
    sleep 0.25
  done
  log "reverse replication caught up: applied $got >= target $want"
  assert_equal
  if [[ $mode == prepared ]]; then
    log "kill -9 while writes are switched; the restarted process resumes there"
    kill9_mf
    run_mf_bg
    for _ in $(seq 60); do psql -X -At "$proxy_uri" -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.25; done
    [[ $(status_field phase) == writes_switched ]] || fail "not resumed in writes_switched"
    [[ $(psql -X -At "$proxy_uri" -c "SELECT inet_server_port()") == "${DST_PORT}" ]] || fail "writes not on the target after the restart"
    psql -X -q "$proxy_uri" -c "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 424242, now())"
    for _ in $(seq 120); do
      [[ $(psql -X -At "$SRC" -c "SELECT count(*) FROM pgbench_history WHERE delta = 424242") == 1 ]] && break
      sleep 0.25
    done
    [[ $(psql -X -At "$SRC" -c "SELECT count(*) FROM pgbench_history WHERE delta = 424242") == 1 ]] ||
      fail "reverse replication did not resume after the restart"
    processed=$((processed + 1))
    log "killed in the middle of a rollback's pause: the write stays where it was"
    crash_inside switch-paused "the rollback" "$MF" rollback --force "$SPEC"
    run_mf_bg
    for _ in $(seq 60); do psql -X -At "$proxy_uri" -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.25; done
    [[ $(status_field phase) == writes_switched ]] || fail "phase moved by a rollback killed in its pause"
    for _ in $(seq 80); do  # until replication runs again
      [[ $(status_field stream_connected 2>/dev/null) == true || -n $(status_field reverse.applied_position) ]] && break
      sleep 0.25
    done
    [[ $(psql -X -At "$proxy_uri" -c "SELECT inet_server_port()") == "${DST_PORT}" ]] || fail "writes moved by a killed rollback"
    for _ in $(seq 80); do
      out=$("$MF" rollback --force "$SPEC" 2>&1) && break
      not_yet "$out" || fail "rollback after the restart: $out"
      sleep 0.25
    done
    log "$out"
    "$MF" switch writes "$SPEC"
    sleep 1
  fi
  "$MF" status "$SPEC"
  if [[ $mode == prepared ]]; then
    log "killed inside complete, after its drops: the restarted process finishes the completion"
    crash_inside complete-cleanup "complete" "$MF" complete "$SPEC"
    run_mf_bg
    for _ in $(seq 120); do [[ $(status_field phase 2>/dev/null) == completed ]] && break; sleep 0.25; done
    grep -q "interrupted by the process's end: finishing it" "$WORK/run.$RUN_N.log" || fail "the restart did not finish the completion"
    [[ $(psql -X -At "$proxy_uri" -c "SELECT inet_server_port()") == "${DST_PORT}" ]] || fail "writes not on the target after the completion"
  else
    "$MF" complete "$SPEC"
  fi
  [[ $(status_field phase) == completed ]] || fail "not completed"
  local rows held_rows
  rows=$(psql -X -At "$DST" -c "SELECT count(*) FROM pgbench_history WHERE delta <> 777777")
  held_rows=$(psql -X -At "$DST" -c "SELECT count(*) FROM pgbench_history WHERE delta = 777777")
  log "history rows on the final server: $rows (pgbench committed $processed), held transaction's row: $held_rows"
  [[ $rows == "$processed" ]] || fail "history rows $rows != committed transactions $processed"
  [[ $mode != simple || $held_rows == 1 ]] || fail "the held transaction's row is missing"
  # Nothing of midflight's is left on either server.
  [[ $(psql -X -At "$SRC" -c "SELECT count(*) FROM pg_replication_slots") == 0 ]] || fail "slot left on the source"
  [[ $(psql -X -At "$DST" -c "SELECT count(*) FROM pg_replication_slots") == 0 ]] || fail "slot left on the target"
  [[ $(psql -X -At "$DST" -c "SELECT count(*) FROM pg_replication_origin") == 0 ]] || fail "origins left on the target"
  [[ $(psql -X -At "$SRC" -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'midflight'") == 0 ]] || fail "schema left"
  local pauses
  pauses=$(status_field 'write_pauses_ms | map(tostring) | join(" ")')
  log "write pauses (ms), -M $mode: $pauses"
  log "longest write pause, -M $mode: $(status_field 'write_pauses_ms | max') ms over $(status_field 'write_pauses_ms | length') switches"
  # Each write pause was posted to the webhook.
  local want got=0
  want=$(status_field 'write_pauses_ms | length')
  for _ in $(seq 30); do
    got=$(grep '"event":"write_pause"' "$WORK/hooks.jsonl" | grep -c "\"migration\":\"cut_$mode\"" || true)
    ((got >= want)) && break; sleep 0.2
  done
  ((got == want)) || fail "webhook: $got write_pause events for $want write switches"
  grep -q "\"migration\":\"cut_$mode\".*\"to\":\"completed\"\|\"to\":\"completed\".*\"migration\":\"cut_$mode\"" "$WORK/hooks.jsonl" ||
    fail "webhook: no phase change to completed"
  log "webhook: $got write_pause events, one per switch; $(grep -c "\"migration\":\"cut_$mode\"" "$WORK/hooks.jsonl") events in all"
  stop_mf
  SRC=$saved_src DST=$saved_dst
}

DST_PORT=${DST##*:}
DST_PORT=${DST_PORT%%/*}
start_webhook_receiver "$WORK/hooks.jsonl" 26735
life simple
life prepared
log "PASS"
