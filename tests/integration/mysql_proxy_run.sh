#!/usr/bin/env bash
# The MySQL proxy inside a real MySQL migration: `midflight run` with a
# proxy: section starts it (users from the spec, servers from the spec's
# source and target URIs); the application reaches the source primary through
# it, and what it writes there is replicated to the target. (The MySQL
# switch itself waits for reverse replication; tests/integration/mysql_proxy.sh
# drives the proxy's switch face directly.)
source "$(dirname "$0")/mylib.sh"
start_my_servers 21200
# The proxy moves sessions between servers by schema name: one name on both sides.
sql_dst -e "CREATE DATABASE shop; GRANT ALL ON *.* TO mf@'%'"
DST=${DST%/*}/shop
sql_pri -e "USE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO shop.orders SELECT seq, 'v' FROM seq_1_to_100"
PROXY=$(free_port 21230)
write_my_spec myproxyrun "proxy:" "  listen: 127.0.0.1:$PROXY" "  users: [{name: shopapp, password: s3cret}]"
run_mf_bg
wait_phase replicating
grep -q "proxy (MySQL): read-write 127.0.0.1:$PROXY" "$WORK"/run.*.log || fail "midflight did not report the MySQL proxy"
app() { mariadb -h127.0.0.1 -P"$PROXY" -ushopapp -ps3cret shop -N -B "$@"; }
[[ $(app -e "SELECT @@port") == "$APP_PORT" ]] || fail "the proxy does not lead to the source primary"
app -e "INSERT INTO orders VALUES (101, 'proxied'); BEGIN; UPDATE orders SET v = 'upd' WHERE id = 1; COMMIT"
mariadb -h127.0.0.1 -P"$PROXY" -ushopapp -pwrong shop -e "SELECT 1" 2>"$WORK/denied.err" && fail "a wrong password got in"
grep -q "ERROR 1045" "$WORK/denied.err" || fail "wrong password: $(cat "$WORK/denied.err")"
wait_my_caught_up 60
[[ $(sql_dst -e "SELECT v FROM shop.orders WHERE id IN (1, 101) ORDER BY id" | tr '\n' ' ') == "upd proxied " ]] \
  || fail "writes made through the proxy did not reach the target"
log "through the proxy on :$PROXY: reads and writes on the primary (:$APP_PORT), replicated to the target; wrong password refused (1045)"
stop_mf
log "PASS"
