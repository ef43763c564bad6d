# MySQL/MariaDB helpers for the integration tests, on top of lib.sh: a primary
# with a replica (MariaDB's own GTID replication) as the source, a third server
# as the target, sysbench as the application, the mariadb client as the user.
# The application connects as user "app" to the primary; midflight connects as
# user "mf" to the replica and the target only, so the primary's general log
# proves midflight never touched it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# start_my_servers PORT_BASE: primary, replica, target on the first free ports.
# Sets PRI_DIR, REP_DIR, DST_DIR, APP_PORT, and SRC / REP / DST (midflight's URIs, user mf).
start_my_servers() {
  local port=$1
  while ! port_free "$port" || ! port_free "$((port + 1))" || ! port_free "$((port + 2))"; do port=$((port + 3)); done
  PRI_DIR=$WORK/pri REP_DIR=$WORK/rep DST_DIR=$WORK/dst
  "$TESTDB" start mariadb "$PRI_DIR" "$port" --general-log=ON --general-log-file="$WORK/pri/general.log"
  "$TESTDB" start mariadb-replica "$REP_DIR" "$((port + 1))" "$PRI_DIR"
  "$TESTDB" start mariadb "$DST_DIR" "$((port + 2))"
  APP_PORT=$port
  # The application's user and database, created on the primary and replicated.
  sql_pri -e "CREATE USER app@'%' IDENTIFIED BY 'app'; GRANT ALL ON *.* TO app@'%'; CREATE DATABASE shop"
  # midflight's user: on the replica (not binlogged, so it exists there only) and the target.
  local grants="CREATE USER mf@'%' IDENTIFIED BY 'mfpass'; GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, RELOAD, REPLICATION SLAVE, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO mf@'%';"
  wait_replica
  "$TESTDB" sql "$REP_DIR" -e "SET sql_log_bin = 0; $grants"
  "$TESTDB" sql "$DST_DIR" -e "CREATE USER mf@'%' IDENTIFIED BY 'mfpass'; GRANT ALL ON *.* TO mf@'%'; CREATE DATABASE shop_new"
  SRC="mysql://app:app@127.0.0.1:$port/shop"   # named in the spec; midflight must not connect to it
  REP="mysql://mf:mfpass@127.0.0.1:$((port + 1))/shop"
  DST="mysql://mf:mfpass@127.0.0.1:$((port + 2))/shop_new"
}

sql_pri() { "$TESTDB" sql "$PRI_DIR" -N -B "$@"; }
sql_rep() { "$TESTDB" sql "$REP_DIR" -N -B "$@"; }
sql_dst() { "$TESTDB" sql "$DST_DIR" -N -B "$@"; }

# write_my_spec NAME [extra yaml lines...]
write_my_spec() {
  local name=$1; shift
  write_spec "$name" "source_replica: $REP" "$@"
}

# wait_replica: the replica has applied everything the primary committed
# when asked. MASTER_GTID_WAIT waits until the replica reached that position
# or went past it: the primary may go on committing (an event, reverse
# replication), so an equality poll could miss the moment.
wait_replica() {
  local want
  want=$(sql_pri -e "SELECT @@gtid_binlog_pos")
  [[ -z $want ]] && return 0
  [[ $(sql_rep -e "SELECT MASTER_GTID_WAIT('$want', 60)") == 0 ]] && return 0
  fail "replica not caught up with the primary ($want) after 60 s: it is at $(sql_rep -e "SELECT @@gtid_slave_pos")"
}

# my_pos DIR: the server's current binlog position, encoded as midflight stores it.
my_pos() {
  local f p
  read -r f p _ < <("$TESTDB" sql "$1" -N -B -e "SHOW MASTER STATUS")
  echo $(( (10#${f##*.} << 32) | p ))
}

# wait_my_caught_up [SECONDS]: the replica caught up, and midflight applied
# everything in the replica's binlog.
wait_my_caught_up() {
  local limit=${1:-120} target applied i
  wait_replica
  target=$(my_pos "$REP_DIR")
  for ((i = 0; i < limit * 4; i++)); do
    applied=$(status_field replication.restart_position)
    if [[ -n $applied && $applied -ge $target ]]; then
      log "caught up: applied $(status_field replication.applied_position) >= replica at $target (lag_bytes $(status_field lag_bytes))"
      return 0
    fi
    sleep 0.25
  done
  fail "not caught up with $target after ${limit}s (applied $applied)"
}

SB_OPTS=()
# sysbench_prepare TABLES ROWS
sysbench_prepare() {
  SB_OPTS=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$APP_PORT" --mysql-user=app --mysql-password=app
           --mysql-db=shop --tables="$1" --table-size="$2")
  sysbench oltp_read_write "${SB_OPTS[@]}" --threads=2 prepare >/dev/null
}

# start_sysbench TEST RATE: the application, in the background until stop_sysbench.
start_sysbench() {
  sysbench "$1" "${SB_OPTS[@]}" --threads=4 --rate="$2" --time=0 --report-interval=0 \
    --mysql-ignore-errors=none run >"$WORK/sysbench.log" 2>&1 &
  LOAD_PID=$!
}

stop_sysbench() {
  kill -TERM "$LOAD_PID" 2>/dev/null || true  # sysbench ignores SIGINT
  wait "$LOAD_PID" 2>/dev/null || true
  LOAD_PID=
  local i
  for ((i = 0; i < 200; i++)); do
    [[ $(sql_pri -e "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'") == 0 ]] && break
    sleep 0.05
  done
  grep -E "transactions:|errors:" "$WORK/sysbench.log" | sed 's/^ */  sysbench: /' || true
}

# assert_primary_untouched: no connection by midflight's user in the primary's general log.
assert_primary_untouched() {
  local n
  n=$(grep -c "Connect[[:space:]]*mf@" "$WORK/pri/general.log" || true)
  [[ $n -eq 0 ]] || fail "midflight connected to the primary $n times"
  log "primary's general log: $(grep -c 'Connect' "$WORK/pri/general.log") connections, none by midflight"
}

# start_my_to_pg_servers MY_BASE PG_BASE: a MariaDB source (database shop,
# users app for the application and mf for midflight, which reads the binlog
# and, after a write switch, writes the reverse stream there) and a
# PostgreSQL target (database target). Sets myport, PRI_DIR, APP_PORT, SRC,
# DST, and sql_dst for PostgreSQL.
start_my_to_pg_servers() {
  myport=$(free_port "$1")
  "$TESTDB" start mariadb "$WORK/my" "$myport"
  PRI_DIR=$WORK/my
  APP_PORT=$myport
  sql_pri -e "CREATE USER app@'%' IDENTIFIED BY 'app'; GRANT ALL ON *.* TO app@'%'; CREATE DATABASE shop"
  sql_pri -e "CREATE USER mf@'%' IDENTIFIED BY 'mfpass'; GRANT ALL ON *.* TO mf@'%'"
  local pgport
  pgport=$(free_port "$2")
  "$TESTDB" start pg "$WORK/pg" "$pgport"
  psql -X -q -At "$("$TESTDB" uri "$WORK/pg")" -c "CREATE DATABASE target"
  SRC="mysql://mf:mfpass@127.0.0.1:$myport/shop"
  DST=$("$TESTDB" uri "$WORK/pg" target)
  sql_dst() { psql -X -q -v ON_ERROR_STOP=1 -At "$DST" "$@"; }
}
