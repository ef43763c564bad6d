#!/usr/bin/env bash
# Across engines, reverse replication MariaDB -> PostgreSQL after
# `switch writes --external`: a value MariaDB holds but the PostgreSQL column
# refuses stops the reverse flow with one line naming the table, the key and
# the column, with PostgreSQL's own message, and nothing of it is applied
# (before: a varchar(20000) column, LONGTEXT on MariaDB, took a 20,001-
# character value cut to 20,000 characters without a word, since the bulk
# upsert cast it explicitly). Cases, in one table whose name has a space and
# whose columns are named "from" and "long text":
#   1. a value too long for varchar(20000) (SQLSTATE 22001); the operator
#      widens the column on PostgreSQL and starts midflight again: the value
#      arrives whole;
#   2. text that is no inet (22P02), the column being VARCHAR on MariaDB;
#   3. a value a domain's CHECK refuses (23514).
# Once the column is widened on PostgreSQL and midflight started again, the
# refused change and the rest of MariaDB's transaction arrive.
source "$(dirname "$0")/lib.sh"

start_pg_to_my_servers 17700 17750
sql_src <<'SQL'
CREATE DOMAIN positive AS numeric(10,2) CHECK (VALUE > 0);
CREATE TABLE "Refused Values" (id int PRIMARY KEY, "from" inet, "long text" varchar(20000), dom positive, note text);
INSERT INTO "Refused Values" SELECT g, ('10.0.0.' || g)::inet, repeat('y', g), g, 'n' || g FROM generate_series(1, 50) g;
SQL
write_spec refused "partitions: 2" "cutover:" "  min_validation_seconds: 0"

run_mf_bg
wait_phase replicating 90
"$MF" verify "$SPEC" >/dev/null || fail "verify not clean"
"$MF" switch reads --external "$SPEC" >/dev/null
"$MF" switch writes --external "$SPEC" >/dev/null
[[ $(status_field phase) == writes_switched ]] || fail "phase is not writes_switched"
sql_my -e 'UPDATE shop.`Refused Values` SET note = "fine" WHERE id = 1'
# wait_src QUERY WANT WHAT: QUERY on PostgreSQL answers WANT within 30 s.
wait_src() {
  local i
  for ((i = 0; i < 120; i++)); do [[ $(sql_src -c "$1") == "$2" ]] && return 0; sleep 0.25; done
  fail "$3: $(sql_src -c "$1")"
}
wait_src 'SELECT note FROM "Refused Values" WHERE id = 1' fine "reverse replication applies nothing"

# refused CASE SQL LINE: SQL run on MariaDB (in one transaction with updates
# of rows 2-9) stops midflight with LINE as its last line.
refused() {
  local what=$1 sql=$2 line=$3 i rc=0
  sql_my -e "BEGIN; UPDATE shop.\`Refused Values\` SET note = 'case $what' WHERE id BETWEEN 2 AND 9; $sql; COMMIT"
  for ((i = 0; i < 240; i++)); do kill -0 "$MF_PID" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$MF_PID" 2>/dev/null && fail "$what: midflight still runs 60 s after MariaDB took a value PostgreSQL refuses"
  wait "$MF_PID" || rc=$?
  MF_PID=
  ((rc != 0)) || fail "$what: midflight exited 0"
  local last
  last=$(tail -1 "$WORK/run.$RUN_N.log")
  [[ $last == *"$line"* ]] || { cat "$WORK/run.$RUN_N.log"; fail "$what: the last line is not the refusal: $last"; }
  [[ $(grep -cF "$line" "$WORK/run.$RUN_N.log") -ge 1 ]] || fail "$what: no refusal line"
  log "$what: stopped: $last"
}

refused "too long" 'UPDATE shop.`Refused Values` SET `long text` = REPEAT("x", 20001) WHERE id = 17' \
  'table public.Refused Values key (id)=(17) column long text: PostgreSQL refused the value: value too long for type character varying(20000) (SQLSTATE 22001)'
[[ $(sql_src -c 'SELECT length("long text") FROM "Refused Values" WHERE id = 17') == 17 ]] \
  || fail "the value too long reached PostgreSQL: $(sql_src -c 'SELECT length("long text") FROM "Refused Values" WHERE id = 17') characters"

# The operator's way on: widen the column on PostgreSQL, start again.
sql_src -c 'ALTER TABLE "Refused Values" ALTER COLUMN "long text" TYPE text'
run_mf_bg
wait_phase writes_switched 90
wait_src 'SELECT length("long text") FROM "Refused Values" WHERE id = 17' 20001 "the widened column did not get the whole value"
wait_src "SELECT count(*) FROM \"Refused Values\" WHERE note = 'case too long'" 8 \
  "the rest of MariaDB's transaction did not follow once the column was widened"
log "too long: after widening the column on PostgreSQL, the 20,001 characters and the rest of the transaction arrived"

refused "no inet" 'UPDATE shop.`Refused Values` SET `from` = "not an address" WHERE id = 23' \
  'table public.Refused Values key (id)=(23) column from: PostgreSQL refused the value: invalid input syntax for type inet: "not an address" (SQLSTATE 22P02)'
[[ $(sql_src -c 'SELECT "from" FROM "Refused Values" WHERE id = 23') == 10.0.0.23 ]] || fail "the refused inet reached PostgreSQL"

# The change stays in MariaDB's binlog: the way on is again on PostgreSQL.
sql_src -c 'ALTER TABLE "Refused Values" ALTER COLUMN "from" TYPE text'
run_mf_bg
wait_phase writes_switched 90
wait_src 'SELECT "from" FROM "Refused Values" WHERE id = 23' "not an address" "the column made text did not get the value"
wait_src "SELECT count(*) FROM \"Refused Values\" WHERE note = 'case no inet'" 8 \
  "the rest of MariaDB's transaction did not follow once the column was made text"

refused "domain" 'UPDATE shop.`Refused Values` SET dom = 0 WHERE id = 31' \
  'table public.Refused Values key (id)=(31) column dom: PostgreSQL refused the value: value for domain positive violates check constraint "positive_check" (SQLSTATE 23514)'
[[ $(sql_src -c 'SELECT dom FROM "Refused Values" WHERE id = 31') == 31.00 ]] || fail "the refused domain value reached PostgreSQL"
log "ok"
