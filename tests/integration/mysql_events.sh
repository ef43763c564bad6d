#!/usr/bin/env bash
# MySQL events follow the writes. The source has an event that inserts a row
# every second, stamped with the port of the server it runs on, and a
# disabled one. The event must not run on the target while replicating
# (created DISABLED), must run there and stop on the primary after `switch
# writes`, stop there and run on the primary again after `rollback`, and
# stay enabled on the target after `complete`. Its definer stays its own (a
# bare ALTER EVENT would make midflight's user the definer). The disabled
# event stays disabled everywhere. The sides are equal before complete.
source "$(dirname "$0")/mylib.sh"
start_my_servers 22600
DST_PORT=$((APP_PORT + 2))
# The proxy moves sessions between servers by schema name: one name on both sides.
sql_dst -e "CREATE DATABASE shop; CREATE USER app@'%' IDENTIFIED BY 'app'; GRANT ALL ON shop.* TO app@'%'"
DST=${DST%/*}/shop
PROXY_PORT=$(free_port 22640)
for s in sql_pri sql_dst; do $s -e "SET GLOBAL event_scheduler = ON"; done
sql_pri -e "CREATE TABLE shop.ticks (id BIGINT AUTO_INCREMENT PRIMARY KEY, server INT NOT NULL);
  CREATE DEFINER = app@'%' EVENT shop.tick ON SCHEDULE EVERY 1 SECOND DO INSERT INTO shop.ticks (server) VALUES (@@port);
  CREATE DEFINER = app@'%' EVENT shop.idle ON SCHEDULE EVERY 1 SECOND DISABLE DO INSERT INTO shop.ticks (server) VALUES (-1)"
wait_replica

write_my_spec my_events "partitions: 2" \
  "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" "  users:" "    - name: app" "      password: app" \
  "cutover:" "  drain_timeout_seconds: 5" "  max_lag_seconds: 5" "  catchup_timeout_seconds: 30" "  require_verify: false"
run_mf_bg
wait_phase replicating 120

ev() { "$1" -e "SELECT CONCAT(STATUS, ' ', DEFINER) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'shop' AND EVENT_NAME = '$2'"; }
ran() { "$1" -e "SELECT COUNT(*) FROM shop.ticks WHERE server = $2"; }  # ran SQL_FN PORT: rows the event made on PORT
op() {
  local out rc=0
  out=$("$MF" "$@" "$SPEC" 2>&1) || rc=$?
  log "midflight $* -> $out"
  [[ $rc -eq 0 ]] || fail "midflight $* exited $rc"
}
# expect WHERE ON OFF: the tick event is enabled (definer app@%) on the
# server ON and disabled on OFF; over 3 s it inserts rows on ON only.
expect() {
  local on=$1 off=$2 on_port=$3 off_port=$4 a b c d
  [[ $(ev "$on" tick) == "ENABLED app@%" ]] || fail "$5: tick on the $on_port server is '$(ev "$on" tick)'"
  [[ $(ev "$off" tick) == "DISABLED app@%" ]] || fail "$5: tick on the $off_port server is '$(ev "$off" tick)'"
  sleep 1.5  # an execution that started before the ALTER ends
  a=$(ran "$on" "$on_port") b=$(ran "$off" "$off_port")
  sleep 3
  c=$(ran "$on" "$on_port") d=$(ran "$off" "$off_port")
  ((c >= a + 2)) || fail "$5: the event made $((c - a)) rows in 3 s on port $on_port"
  ((d == b)) || fail "$5: the event still runs on port $off_port ($((d - b)) rows in 3 s)"
  log "$5: tick ran $((c - a)) times in 3 s on port $on_port, not on port $off_port"
}

# Replicating: the target holds the primary's ticks but makes none.
[[ $(ev sql_dst tick) == "DISABLED app@%" ]] || fail "tick on the target while replicating: '$(ev sql_dst tick)'"
sleep 3
[[ $(ran sql_dst "$DST_PORT") == 0 ]] || fail "the event ran on the target before the switch"
(($(sql_dst -e "SELECT COUNT(*) FROM shop.ticks WHERE server = $APP_PORT") >= 2)) ||
  fail "the primary's ticks do not reach the target"
log "replicating: tick disabled on the target, $(ran sql_dst "$APP_PORT") of the primary's ticks arrived there"

op switch reads
op switch writes
expect sql_dst sql_pri "$DST_PORT" "$APP_PORT" "after switch writes"
op rollback
expect sql_pri sql_dst "$APP_PORT" "$DST_PORT" "after rollback"
op switch writes
expect sql_dst sql_pri "$DST_PORT" "$APP_PORT" "after the second switch writes"
for s in sql_pri sql_dst; do
  [[ $(ev $s idle) == "DISABLED app@%" ]] || fail "the disabled event idle is '$(ev $s idle)' ($s)"
done
[[ $(sql_pri -e "SELECT COUNT(*) FROM shop.ticks WHERE server = -1") == 0 ]] || fail "the disabled event ran"

# Every tick, wherever it ran, is on both sides (reverse replication, then
# the replica): compare until they agree.
for _ in $(seq 30); do
  wait_replica
  "$MF" compare "$SPEC" >"$WORK/compare.out" 2>&1 || true
  grep -q "source and target are equal" "$WORK/compare.out" && break
  sleep 1
done
grep -q "source and target are equal" "$WORK/compare.out" || { cat "$WORK/compare.out"; fail "source and target differ"; }
log "source and target equal: $(sql_dst -e "SELECT COUNT(*) FROM shop.ticks") ticks"

op complete
[[ $(status_field phase) == completed ]] || fail "not completed"
expect sql_dst sql_pri "$DST_PORT" "$APP_PORT" "after complete"
stop_mf
log "ok"
