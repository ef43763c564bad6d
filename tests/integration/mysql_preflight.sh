#!/usr/bin/env bash
# MySQL preflight: each problem refused with its one-line reason, the password
# never shown: wrong password, binlog_format, binlog_row_image, a replica
# without log_slave_updates, missing REPLICATION privileges, target not empty.
source "$(dirname "$0")/mylib.sh"

port=26660
while ! port_free "$port" || ! port_free "$((port + 1))"; do port=$((port + 2)); done
PRI_DIR=$WORK/src DST_DIR=$WORK/dst
"$TESTDB" start mariadb "$PRI_DIR" "$port" --binlog-format=MIXED
"$TESTDB" start mariadb "$DST_DIR" "$((port + 1))"
sql_pri -e "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v INT);
  CREATE USER weak@'%' IDENTIFIED BY 'hunter2x'; GRANT SELECT ON *.* TO weak@'%'"
sql_dst -e "CREATE DATABASE shop_new; CREATE TABLE shop_new.already (id INT PRIMARY KEY)"

expect_refusal() {  # expect_refusal WHAT PATTERN
  local out rc=0
  out=$("$MF" run "$SPEC" 2>&1) || rc=$?
  [[ $rc -ne 0 ]] || fail "$1: midflight did not refuse"
  grep -q -- "$2" <<<"$out" || { echo "$out"; fail "$1: expected '$2'"; }
  grep -q "hunter2x" <<<"$out" && fail "$1: the password appears in the output"
  log "$1: $(grep -o -- "$2.*" <<<"$out" | head -1 | cut -c1-150)"
  rm -rf "$WORK/state-pf"
}

SRC="mysql://weak:wrong@127.0.0.1:$port/shop"
DST=$("$TESTDB" uri "$DST_DIR" shop_new)
write_spec pf
expect_refusal "wrong password" "source: connecting to mysql://weak:\*\*\*@127.0.0.1:$port/shop: Access denied"

SRC="mysql://weak:hunter2x@127.0.0.1:$port/shop"
write_spec pf
expect_refusal "binlog format" "source: binlog_format is MIXED; set binlog_format=ROW"
expect_refusal "privileges" "source: the user lacks REPLICATION SLAVE"
expect_refusal "target not empty" "target is not empty: database shop_new already has table already"

"$TESTDB" stop "$PRI_DIR"
: >"$PRI_DIR/args"
echo "--binlog-row-image=MINIMAL" >"$PRI_DIR/args"
"$TESTDB" start mariadb "$PRI_DIR" "$port"
expect_refusal "row image" "source: binlog_row_image is MINIMAL; set binlog_row_image=FULL"
log "ok"
