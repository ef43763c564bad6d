#!/usr/bin/env bash
# The replica-lag throttle watches the MySQL target's own replicas: the
# target has a MariaDB replica (found through the target's SHOW SLAVE HOSTS,
# asked with the target's credentials). With its SQL thread stopped while the
# source keeps writing, past replica_max_lag_seconds the appliers hold
# (throttle kind replica_lag, naming the replica) and apply almost nothing;
# once it runs again they go on and the sides end equal.
source "$(dirname "$0")/mylib.sh"
port=22660
while ! port_free "$port" || ! port_free "$((port + 1))" || ! port_free "$((port + 2))"; do port=$((port + 3)); done
"$TESTDB" start mariadb "$WORK/src" "$port"
"$TESTDB" start mariadb "$WORK/dst" "$((port + 1))"
"$TESTDB" start mariadb-replica "$WORK/dstrep" "$((port + 2))" "$WORK/dst"
SRC="mysql://midflight:midflight@127.0.0.1:$port/shop"
DST="mysql://midflight:midflight@127.0.0.1:$((port + 1))/shop"
"$TESTDB" sql "$WORK/src" -e "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0);
  USE shop; INSERT INTO shop.t (id) SELECT seq FROM seq_1_to_100"
"$TESTDB" sql "$WORK/dst" -e "CREATE DATABASE shop"
rep() { "$TESTDB" sql "$WORK/dstrep" -N -B "$@"; }

write_spec trep "partitions: 2"
run_mf_bg
wait_phase replicating 120
"$MF" knobs set "$SPEC" replica_max_lag_seconds=2 >/dev/null
rep -e "STOP SLAVE SQL_THREAD"
log "target replica :$((port + 2)): SQL thread stopped"
# The application: an update every 20 ms on the source.
for i in $(seq 3000); do echo "UPDATE shop.t SET n = n + 1 WHERE id = $((i % 100 + 1)); DO SLEEP(0.02);"; done >"$WORK/load.sql"
mariadb --no-defaults -h 127.0.0.1 -P "$port" -u midflight -pmidflight <"$WORK/load.sql" &
LOAD_PID=$!
EXTRA_PIDS+=("$LOAD_PID")
lag_throttles() { "$MF" status "$SPEC" --json | jq '[.throttle.active[] | select(.kind == "replica_lag")] | length'; }
for _ in $(seq 60); do [[ $(lag_throttles) -ge 1 ]] && break; sleep 0.25; done
[[ $(lag_throttles) -ge 1 ]] || fail "a target replica replaying behind did not hold the appliers: $("$MF" status "$SPEC" --json | jq -c .throttle)"
msg=$("$MF" status "$SPEC" --json | jq -r '.throttle.active[] | select(.kind == "replica_lag") | .message')
log "held: $msg"
[[ $msg == *"127.0.0.1:$((port + 2))"* ]] || fail "the throttle does not name the replica :$((port + 2)): $msg"
sleep 1  # a batch already past the gate finishes
a=$(status_field replication.changes_applied); sleep 3; b=$(status_field replication.changes_applied)
log "changes applied while held: $a -> $b (the source made about 150 meanwhile)"
((b - a < 20)) || fail "appliers kept applying while the target replica lagged ($a -> $b)"
rep -e "START SLAVE SQL_THREAD"
for _ in $(seq 60); do [[ $(lag_throttles) -eq 0 ]] && break; sleep 0.25; done
[[ $(lag_throttles) -eq 0 ]] || fail "still held after the replica went on: $("$MF" status "$SPEC" --json | jq -c .throttle)"
c=$(status_field replication.changes_applied); sleep 2; d=$(status_field replication.changes_applied)
((d > c)) || fail "the appliers did not go on after the replica caught up ($c -> $d)"
log "released: $c -> $d changes applied in 2 s"
kill "$LOAD_PID" 2>/dev/null || true
wait "$LOAD_PID" 2>/dev/null || true
LOAD_PID=
for _ in $(seq 60); do
  "$MF" compare "$SPEC" >"$WORK/compare.out" 2>&1 && grep -q "source and target are equal" "$WORK/compare.out" && break
  sleep 0.5
done
grep -q "source and target are equal" "$WORK/compare.out" || { cat "$WORK/compare.out"; fail "source and target differ"; }
log "source and target equal (sum(n) = $("$TESTDB" sql "$WORK/dst" -N -B -e "SELECT SUM(n) FROM shop.t"))"
stop_mf
log "ok"
