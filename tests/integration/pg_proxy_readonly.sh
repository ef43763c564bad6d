#!/usr/bin/env bash
# The proxy's read-only endpoint takes no writes, whichever way a client asks
# for a read-write transaction: BEGIN / START TRANSACTION READ WRITE, SET
# TRANSACTION READ WRITE, SET SESSION CHARACTERISTICS, SET [LOCAL | SESSION]
# [default_]transaction_read_only, set_config() (also with a computed or bound
# setting name), a DO block, a server-side function (which the server
# reports), the same through the extended protocol (pgbench -M extended and
# -M prepared), a startup option (PGOPTIONS), and RESET / RESET ALL / DISCARD
# ALL (the session's default stays read-only). Each attempt fails and leaves the row count on both
# servers unchanged, with the source routed (before `switch reads`) and the
# target routed (after). A session that tried a read-write SET before the
# switch carries no read-write setting to the target. Reads through the
# read-only endpoint and writes through the read-write endpoint still work.
source "$(dirname "$0")/lib.sh"
start_servers 29100
PROXY_PORT=$(free_port 29120)
RO_PORT=$(free_port $((PROXY_PORT + 1)))

sql_src -c "CREATE TABLE t (id serial PRIMARY KEY, v text)"
sql_src -c "INSERT INTO t (v) SELECT 'row ' || g FROM generate_series(1, 100) g"
# A server-side function that turns the read-only default off: the SQL the
# proxy sees does not say so; the server reports it. (The schema copy takes
# it to the target.)
sql_src -c "CREATE FUNCTION flip() RETURNS text LANGUAGE sql AS \$\$ SELECT set_config('default_transaction_read_only', 'off', false) \$\$"
write_spec ro "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" "  listen_readonly: 127.0.0.1:$RO_PORT"
db=${SRC##*/}
RW_URI="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/$db"
RO_URI="postgres://midflight:midflight@127.0.0.1:$RO_PORT/$db"
run_mf_bg
for _ in $(seq 40); do psql -X -At "$RO_URI" -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.25; done
wait_phase replicating 120
wait_caught_up 60
SRC_PORT=${SRC##*:}; SRC_PORT=${SRC_PORT%%/*}
DST_PORT=${DST##*:}; DST_PORT=${DST_PORT%%/*}

INSERT="INSERT INTO t (v) VALUES ('written through the read-only endpoint')"
ro() { psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$RO_URI" "$@"; }
counts() { echo "$(sql_src -c "SELECT count(*) FROM t") $(sql_dst -c "SELECT count(*) FROM t")"; }

# refused NAME EXPECTED -- COMMAND...: COMMAND fails with EXPECTED in its
# error output, and neither server's row count moves.
refused() {
  local name=$1 expected=$2 before after rc=0
  shift 3
  before=$(counts)
  "$@" >"$WORK/out" 2>&1 || rc=$?
  after=$(counts)
  [[ $rc != 0 ]] || { cat "$WORK/out"; fail "$name ($ROUTE): the write attempt succeeded"; }
  [[ $before == "$after" ]] || { cat "$WORK/out"; fail "$name ($ROUTE): row counts (source target) went from $before to $after"; }
  grep -q -- "$expected" "$WORK/out" || { cat "$WORK/out"; fail "$name ($ROUTE): expected '$expected' in the error"; }
  log "$name ($ROUTE): refused: $(grep -m1 -E 'ERROR|FATAL|error' "$WORK/out")"
}

bench() {  # bench MODE SCRIPT [PGBENCH OPTIONS]: one run of SCRIPT through the read-only endpoint
  printf '%s\n' "$2" >"$WORK/bench.sql"
  pgbench -n -t 1 -M "$1" -f "$WORK/bench.sql" "${@:3}" "$RO_URI"
}

PROXY="25006: midflight proxy: the read-only endpoint"  # the proxy's own refusal
PROXY_BENCH="ERROR:  midflight proxy: the read-only endpoint"  # pgbench shows no SQLSTATE
SERVER="cannot execute INSERT in a read-only transaction"  # the server's

every_way_in() {
  refused "BEGIN READ WRITE" "$PROXY" -- ro -c "BEGIN READ WRITE" -c "$INSERT" -c "COMMIT"
  refused "START TRANSACTION READ WRITE in one message" "$PROXY" -- ro -c "START TRANSACTION READ WRITE; $INSERT; COMMIT"
  refused "SELECT, then BEGIN READ WRITE in one message" "$PROXY" -- ro -c "SELECT 1; begin isolation level serializable, READ write; $INSERT"
  refused "SET default_transaction_read_only = off" "$PROXY" -- ro -c "SET default_transaction_read_only = off" -c "$INSERT"
  refused "SET SESSION ... TO false" "$PROXY" -- ro -c "SET SESSION default_transaction_read_only TO false" -c "$INSERT"
  refused "comments, case, a quoted name" "$PROXY" -- \
    ro -c "/* a /* nested */ comment */ -- and a line
      sEt \"DEFAULT_TRANSACTION_READ_ONLY\" = 'of'" -c "$INSERT"
  refused "set_config in a SELECT" "$PROXY" -- \
    ro -c "SELECT set_config('default_transaction_read_only', 'off', false)" -c "$INSERT"
  refused "SET transaction_read_only = off" "$PROXY" -- ro -c "BEGIN" -c "SET transaction_read_only = off" -c "$INSERT" -c "COMMIT"
  refused "SET LOCAL transaction_read_only" "$PROXY" -- ro -c "BEGIN; SET LOCAL transaction_read_only TO off; $INSERT; COMMIT"
  refused "SET of a U& quoted name" "$PROXY" -- ro -c "BEGIN" -c "SET U&\"transaction_\\0072ead_only\" = off" -c "$INSERT" -c "COMMIT"
  refused "SET TRANSACTION READ WRITE" "$PROXY" -- ro -c "BEGIN" -c "SET TRANSACTION READ WRITE" -c "$INSERT" -c "COMMIT"
  refused "SET SESSION CHARACTERISTICS" "$PROXY" -- ro -c "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE" -c "$INSERT"
  refused "DO block" "$PROXY" -- \
    ro -c "DO \$\$BEGIN EXECUTE 'SET default_transaction_read_only = off'; END\$\$" -c "$INSERT"
  refused "extended protocol: BEGIN READ WRITE" "$PROXY_BENCH" -- bench extended "BEGIN READ WRITE;
$INSERT;
COMMIT;"
  refused "extended protocol: SET default_transaction_read_only" "$PROXY_BENCH" -- bench extended "SET default_transaction_read_only = off;
$INSERT;"
  refused "named prepared statement: set_config" "$PROXY_BENCH" -- bench prepared "SELECT set_config('transaction_read_only', 'off', false);
$INSERT;"
  refused "set_config with a computed name, COMMIT, INSERT in one message" "$PROXY" -- \
    ro -c "SELECT set_config('default_transaction' || '_read_only', 'off', false); COMMIT; $INSERT"
  refused "extended protocol: set_config with a bound name" "$PROXY_BENCH" -- bench extended "SELECT set_config(:name, 'off', false);
$INSERT;" -D name=default_transaction_read_only
  # What the proxy cannot read: the server reports the change and the proxy
  # closes the session before its next statement.
  refused "a server-side function" "25006: midflight proxy: the session on the read-only endpoint turned" -- \
    ro -c "SELECT flip()" -c "$INSERT"
  # The server's own default stays read-only.
  refused "plain INSERT" "$SERVER" -- ro -c "$INSERT"
  refused "PGOPTIONS=-c default_transaction_read_only=off" "$SERVER" -- \
    env PGOPTIONS="-c default_transaction_read_only=off" psql -X -q -At -v ON_ERROR_STOP=1 "$RO_URI" -c "$INSERT"
  refused "RESET default_transaction_read_only" "$SERVER" -- ro -c "RESET default_transaction_read_only" -c "$INSERT"
  refused "RESET ALL" "$SERVER" -- ro -c "RESET ALL" -c "$INSERT"
  refused "DISCARD ALL" "$SERVER" -- ro -c "DISCARD ALL" -c "$INSERT"
  # Reads still work, and so do read-only settings.
  [[ $(ro -c "SET default_transaction_read_only = on" -c "BEGIN READ ONLY" -c "SELECT count(*) FROM t" -c "COMMIT") == 100 ]] ||
    fail "a read through the read-only endpoint ($ROUTE) failed"
}

ROUTE="source routed"
[[ $(ro -c "SELECT inet_server_port()") == "$SRC_PORT" ]] || fail "the read-only endpoint does not reach the source"
every_way_in

# A session that tried to turn read-only off before `switch reads` carries no
# read-write setting to the target (its SETs are replayed there).
psql -X -At -v VERBOSITY=verbose "$RO_URI" >"$WORK/carried.out" 2>&1 <<EOF
SET application_name = 'carried';
SET default_transaction_read_only = off;
SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE;
SELECT 'on source', inet_server_port();
\\! "$MF" switch reads "$SPEC" >/dev/null
SELECT 'on target', inet_server_port(), current_setting('application_name'), current_setting('default_transaction_read_only');
$INSERT;
EOF
cat "$WORK/carried.out"
grep -q "^on source|$SRC_PORT" "$WORK/carried.out" || fail "carried: the session did not start on the source"
grep -q "^on target|$DST_PORT|carried|on" "$WORK/carried.out" || fail "carried: the session did not move with its state, read-only"
grep -q "$SERVER" "$WORK/carried.out" || fail "carried: the INSERT on the target was not refused"
[[ $(counts) == "100 100" ]] || fail "carried: row counts $(counts)"

ROUTE="target routed"
[[ $(ro -c "SELECT inet_server_port()") == "$DST_PORT" ]] || fail "the read-only endpoint does not reach the target after switch reads"
every_way_in

# Writes through the read-write endpoint still work (and replicate).
psql -X -q -v ON_ERROR_STOP=1 "$RW_URI" -c "BEGIN READ WRITE" -c "INSERT INTO t (v) VALUES ('through rw')" -c "COMMIT"
[[ $(sql_src -c "SELECT count(*) FROM t") == 101 ]] || fail "a write through the read-write endpoint did not reach the source"
for _ in $(seq 80); do [[ $(sql_dst -c "SELECT count(*) FROM t") == 101 ]] && break; sleep 0.25; done
[[ $(sql_dst -c "SELECT count(*) FROM t") == 101 ]] || fail "the read-write endpoint's write did not replicate"
stop_mf
log "PASS"
