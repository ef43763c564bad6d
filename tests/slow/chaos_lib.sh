# Helpers the chaos soaks share, on top of tests/integration/lib.sh (sourced
# first): the seeded schedule, the TCP relay that cuts the network, the
# supervisor that brings midflight back, and the closing summary.

# chaos_init: SEED (CHAOS_SEED or random) seeds $RANDOM; FAULTS from CHAOS_FAULTS (default 20).
chaos_init() {
  SEED=${CHAOS_SEED:-$((RANDOM * 32768 + RANDOM))}
  FAULTS=${CHAOS_FAULTS:-20}
  RANDOM=$SEED
  declare -gA count=()
  log "seed $SEED, $FAULTS faults (repeat with CHAOS_SEED=$SEED)"
}

# start_relay LISTEN:TARGET ...: tests/slow/relay.py in the background; sets RELAY_PID.
# netcut SECONDS: cuts the network through it for that long, then resets every connection.
start_relay() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/relay.py" "$@" >"$WORK/relay.log" 2>&1 &
  RELAY_PID=$!
  EXTRA_PIDS+=("$RELAY_PID")
  for _ in $(seq 50); do grep -q ready "$WORK/relay.log" && return 0; sleep 0.1; done
  fail "relay did not start"
}
netcut() { kill -USR1 "$RELAY_PID"; sleep "$1"; kill -USR2 "$RELAY_PID"; }

# mf_up PHASE...: waits until midflight runs in one of PHASEs, restarting it
# when it exited or failed (a fault may leave it so; the soak checks data, not uptime).
mf_up() {
  local i p want=" $* "
  for ((i = 0; i < 480; i++)); do
    if [[ -n ${MF_PID:-} ]] && ! kill -0 "$MF_PID" 2>/dev/null; then
      log "midflight exited; restarting it"; tail -5 "$WORK/run.$RUN_N.log"; run_mf_bg
    fi
    p=$(status_field phase 2>/dev/null || true)
    [[ $want == *" $p "* ]] && return 0
    [[ $p == failed ]] && { log "failed: $(status_field error)"; kill9_mf; run_mf_bg; }
    sleep 0.25
  done
  fail "midflight not in phase$want after 120 s (phase $p)"
}

# chaos_pick NAME...: one of the names at random, counted.
chaos_pick() {
  local names=("$@")
  FAULT=${names[RANDOM % ${#names[@]}]}
  count[$FAULT]=$((${count[$FAULT]:-0} + 1))
}

chaos_summary() {
  local summary="" k
  for k in "${!count[@]}"; do summary+="$k=${count[$k]} "; done
  log "seed $SEED: faults $summary$*"
}
