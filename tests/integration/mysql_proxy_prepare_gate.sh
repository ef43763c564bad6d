#!/usr/bin/env bash
# A COM_STMT_PREPARE (and a ping) of an idle session passes the write gate.
# A client thread that prepares synchronously on one connection while another
# of its connections holds a transaction deadlocked with a held prepare: the
# pause's drain waits for the transaction, the transaction's owner waits for
# its prepare, until the drain timeout abandons the switch. Here Node's
# mysql2 does that with two connections (mysql_proxy/prepare_gate.js): A
# holds a transaction, `switch writes` starts (drain timeout 20 s), B prepares
# (answered at once, the switch still waiting), A commits, the switch goes
# through, and B's statements prepared on the source during the pause run on
# the target with the ids B got then; a pymysql connection's COM_INIT_DB and
# ping pass too, and its schema follows it to the target. Two clients that
# connect during the pause (mysql2 and pymysql: a pool reconnecting, with no
# server session yet) get their connect-time queries (SELECT
# @@version_comment, SET NAMES, SET autocommit/sql_mode, COMMIT), a prepare and
# a ping answered during it; their first writes wait and land on the target.
source "$(dirname "$0")/mylib.sh"
/usr/bin/python3 -c "import pymysql" 2>/dev/null || fail "python3-pymysql is missing (scripts/setup)"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/mysql_proxy
NODE_DIR=${MIDFLIGHT_NODE_DIR:-$ROOT/build/node}
if [[ ! -d $NODE_DIR/node_modules/mysql2 ]]; then
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --silent mysql2@3 >/dev/null) || fail "npm install mysql2 failed"
fi
# Two servers (the source read directly, no replica: the switch is the point).
port=30000
while ! port_free "$port" || ! port_free "$((port + 1))"; do port=$((port + 2)); done
PRI_DIR=$WORK/src DST_DIR=$WORK/dst APP_PORT=$port
"$TESTDB" start mariadb "$PRI_DIR" "$port"
"$TESTDB" start mariadb "$DST_DIR" "$((port + 1))"
SRC=$("$TESTDB" uri "$PRI_DIR" shop)
# The proxy moves sessions between servers by schema name: one name on both sides.
DST=$("$TESTDB" uri "$DST_DIR" shop)
sql_dst -e "CREATE DATABASE shop; CREATE DATABASE shop2"
sql_pri -e "CREATE DATABASE shop; CREATE DATABASE shop2;
  CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO shop.t VALUES (1, 'one'), (2, 'two'), (3, 'three')"
PROXY_PORT=$(free_port 30030)
write_spec my_gate "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" "  users: [{name: app, password: app}]" \
  "cutover:" "  require_verify: false" "  drain_timeout_seconds: 20"
run_mf_bg
wait_phase replicating
out=$("$MF" switch reads "$SPEC" 2>&1) || fail "switch reads: $out"
NODE_PATH=$NODE_DIR/node_modules node "$HERE/prepare_gate.js" "$PROXY_PORT" "$APP_PORT" "$((APP_PORT + 1))" "$MF" "$SPEC" \
  >"$WORK/node.log" 2>&1 || { cat "$WORK/node.log"; fail "prepare at the gate"; }
sed 's/^/  /' "$WORK/node.log"
[[ $(sql_dst -e "SELECT v FROM shop.t WHERE id = 1") == b ]] || fail "B's update is not on the target"
[[ $(sql_dst -e "SELECT group_concat(v ORDER BY id) FROM shop.t WHERE id IN (2, 3)") == d,e ]] ||
  fail "the new clients' writes are not on the target"
stop_mf
log PASS
