#!/usr/bin/env bash
# Across engines, kill -9 after the write switch: MariaDB -> PostgreSQL, then
# `switch writes --external` and reverse replication PostgreSQL -> MariaDB
# under a pgbench load on PostgreSQL (inserts taking identity values,
# updates, deletes, a delete and re-insert of one key, on sysbench tables and
# a table of typed columns). midflight is killed with SIGKILL
#   1. mid reverse stream, under the load;
#   2. right after a reverse batch and its checkpoint committed on MariaDB,
#      before the slot heard of it (crash point reverse-batch-committed);
#   3. inside `rollback --external`, once PostgreSQL is carried over and
#      before the phase is recorded (crash point rollback-external-caught-up);
# and restarted each time with the same spec. Each restart reuses the slot
# midflight_<name>_rev and the checkpoints <name>/reverse in MariaDB's
# `midflight` database: nothing is lost (MariaDB equals PostgreSQL row for
# row: cross_compare.py, `midflight compare`, `verify` clean), nothing is
# applied twice (no apply conflict: a batch re-read from the slot is skipped
# by its checkpoint) and nothing loops back (no old-side write reported, the
# forward flow applies none of the reverse's rows). After the rollback,
# writes on MariaDB reach PostgreSQL again.
source "$(dirname "$0")/mylib.sh"
PY=/usr/bin/python3  # Debian's, with python3-pymysql and python3-psycopg2 (scripts/setup)

start_my_to_pg_servers 26200 26220

sysbench_prepare 2 3000
sql_pri <<'SQL'
USE shop;
CREATE TABLE types (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  bu BIGINT UNSIGNED, d DECIMAL(20,6), dtm DATETIME(6), e ENUM('small','medium','large'),
  j JSON, bn VARBINARY(16), lat VARCHAR(40) CHARACTER SET latin1, n INT NOT NULL DEFAULT 0
) ENGINE=InnoDB;
INSERT INTO types (bu, d, dtm, e, j, bn, lat, n)
  SELECT 18446744073709551615 - seq, seq / 7, '2024-01-01 00:00:00' + INTERVAL seq SECOND, ELT(1 + seq % 3, 'small',
    'medium', 'large'), JSON_OBJECT('n', seq), UNHEX(MD5(seq)), CONCAT('Ærø ', seq), seq FROM seq_1_to_500;
SQL

write_spec rc "partitions: 4" "chunk_rows: 2000" "cutover:" "  min_validation_seconds: 0" \
  "  catchup_timeout_seconds: 60"
SLOT=midflight_rc_rev

equal() {
  "$PY" "$(dirname "$0")/cross_compare.py" "127.0.0.1:$myport:mf:mfpass:shop" "$DST" shop >"$WORK/cmp.out" 2>&1 \
    || { cat "$WORK/cmp.out"; fail "$1: MariaDB and PostgreSQL differ"; }
  "$MF" compare "$SPEC" >"$WORK/compare.out" 2>&1 || { cat "$WORK/compare.out"; fail "$1: midflight compare"; }
  log "$1: equal row for row ($(sql_pri -e "SELECT (SELECT COUNT(*) FROM shop.sbtest1) + (SELECT COUNT(*) FROM
    shop.sbtest2) + (SELECT COUNT(*) FROM shop.types)") rows; midflight compare: $(grep -c ' rows  equal$' \
    "$WORK/compare.out") tables equal)"
}
reverse_checkpoints() { sql_pri -e "SELECT COUNT(*), COALESCE(MAX(commit_pos), 0) FROM midflight.checkpoints
  WHERE migration = 'rc/reverse'"; }
slots() { sql_dst -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'"; }

run_mf_bg
wait_phase replicating 120
log "sysbench oltp_write_only at 50 tx/s on MariaDB for 4 s"
start_sysbench oltp_write_only 50
sleep 4
stop_sysbench
verify_clean "replicating"
equal "replicating"

"$MF" switch reads --external "$SPEC" >/dev/null
"$MF" switch writes --external "$SPEC" | tee "$WORK/switch.out"
[[ $(status_field phase) == writes_switched ]] || fail "phase is not writes_switched"
[[ $(slots) == 1 ]] || fail "no reverse slot $SLOT on PostgreSQL after the switch"

# The application, now on PostgreSQL: pgbench, 2 clients. Each transaction
# takes its locks in one order (sbtest2, sbtest1, types): no deadlock.
cat >"$WORK/app.sql" <<'SQL'
\set a random(1, 3000)
\set b random(1, 3000)
\set t random(1, 500)
\set k random(1, 1000000)
BEGIN;
UPDATE shop.sbtest2 SET k = k + 1, c = 'pgbench ' || :k WHERE id = :a;
DELETE FROM shop.sbtest2 WHERE id = :b;
INSERT INTO shop.sbtest2 (id, k, c, pad) VALUES (:b, :k, 'reinserted on pg', 'p')
  ON CONFLICT (id) DO UPDATE SET k = EXCLUDED.k, c = EXCLUDED.c;
INSERT INTO shop.sbtest1 (k, c, pad) VALUES (:k, 'new on pg ' || :k, 'pad');
DELETE FROM shop.sbtest1 WHERE id = :a;
UPDATE shop.types SET d = d + 0.000001, n = n + 1, j = jsonb_set(j, '{k}', to_jsonb(:k)),
  e = (ARRAY['small', 'medium', 'large'])[1 + :k % 3], dtm = dtm + interval '1.5 seconds' WHERE id = :t;
INSERT INTO shop.types (bu, d, dtm, e, j, bn, lat, n)
  VALUES (18446744073709551615 - :k, :k / 3.0, '2030-05-06 07:08:09.123456', 'medium',
          jsonb_build_object('pg', :k), decode(md5(:k::text), 'hex'), 'façade ' || :k, 0);
END;
SQL
pgbench -n -f "$WORK/app.sql" -c 2 -R 40 -T 100000 "$DST" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!
log "pgbench on PostgreSQL: 2 clients at 40 tx/s, 8 changes each"

# 1. kill -9 mid reverse stream, under the load.
wait_reverse_applies 400
kill9_mf
log "1. killed mid reverse stream: MariaDB holds checkpoints $(reverse_checkpoints | tr '\t' '/') (rows/highest)"
[[ $(slots) == 1 ]] || fail "the reverse slot is gone after the kill"
run_mf_bg
wait_phase writes_switched 120
wait_reverse_applies 200
kill -0 "$LOAD_PID" || { cat "$WORK/pgbench.log"; fail "pgbench stopped"; }
no_doubles_no_loops "1. after the restart"
log "1. restarted: the reverse flow resumed ($(reverse_applied_now) changes applied since)"

# 2. kill -9 after a reverse batch and its checkpoint committed, before the
# slot is told: the restart reads that batch from the slot again.
kill9_mf
run_mf_crash_bg reverse-batch-committed=40
wait_killed reverse-batch-committed=40
# That batch is past what the slot confirmed: the restart reads it again.
read -r _ highest <<<"$(reverse_checkpoints)"
confirmed=$(sql_dst -c "SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = '$SLOT'")
((highest > confirmed)) || fail "the reverse checkpoint $highest is not past the slot's confirmed position $confirmed"
log "2. killed after a reverse batch committed on MariaDB: checkpoint $highest, slot confirmed $confirmed"
run_mf_bg
wait_phase writes_switched 120
wait_reverse_applies 200
no_doubles_no_loops "2. after the restart"
log "2. restarted: the reverse flow resumed ($(reverse_applied_now) changes applied since)"

# The application stops writing to PostgreSQL; everything it committed is on MariaDB.
kill "$LOAD_PID" 2>/dev/null || true
wait "$LOAD_PID" 2>/dev/null || true
LOAD_PID=
if grep -q "aborted in command" "$WORK/pgbench.log"; then cat "$WORK/pgbench.log"; fail "a pgbench client aborted"; fi
log "pgbench stopped: $(sql_dst -c "SELECT count(*) FROM shop.sbtest1 WHERE c LIKE 'new on pg %'") transactions committed on PostgreSQL"
verify_clean "load on PostgreSQL stopped"
equal "load on PostgreSQL stopped"
no_doubles_no_loops "load on PostgreSQL stopped"
[[ $(sql_pri -e "SELECT COUNT(*) FROM shop.sbtest1 WHERE c LIKE 'new on pg %'") -gt 0 ]] \
  || fail "no row inserted on PostgreSQL reached MariaDB"

# 3. kill -9 inside `rollback --external`, after PostgreSQL is carried over
# and before the phase is recorded: the phase stays writes_switched, the
# restart resumes the reverse flow, and the rollback is run again.
# (New rows and a types row: pgbench deleted sbtest1 rows at random.)
last_id=$(sql_dst -c "INSERT INTO shop.sbtest1 (k, c, pad) VALUES (1, 'last on pg', 'x') RETURNING id")
sql_dst -c "UPDATE shop.types SET lat = 'last on pg' WHERE id = 1; INSERT INTO shop.types (lat, n) VALUES ('last on pg', 0)"
crash_inside_rollback
log "3. killed inside rollback --external (phase still writes_switched)"
down_id=$(sql_dst -c "INSERT INTO shop.sbtest1 (k, c, pad) VALUES (1, 'while midflight was down', 'x') RETURNING id")
sql_dst -c "UPDATE shop.types SET lat = 'while midflight was down' WHERE id = 2"
run_mf_bg
wait_phase writes_switched 120
rollback_when_ready || { echo "$out"; fail "rollback --external after the restart"; }
echo "$out"
[[ $(status_field phase) == reads_switched ]] || fail "phase is not reads_switched after the rollback"
[[ $(sql_pri -e "SELECT c FROM shop.sbtest1 WHERE id = $last_id") == "last on pg" \
   && $(sql_pri -e "SELECT lat FROM shop.types WHERE id = 1") == "last on pg" ]] || fail "the last writes on PostgreSQL were lost"
[[ $(sql_pri -e "SELECT c FROM shop.sbtest1 WHERE id = $down_id") == "while midflight was down" \
   && $(sql_pri -e "SELECT lat FROM shop.types WHERE id = 2") == "while midflight was down" ]] \
  || fail "the writes on PostgreSQL while midflight was down were lost"
[[ $(sql_pri -e "SELECT COUNT(*) FROM shop.types WHERE lat = 'last on pg'") == 2 ]] \
  || fail "the rows written last on PostgreSQL are not on MariaDB exactly once"
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts: $(status_field conflicts)"
[[ $(status_field reverse.old_side_writes) == 0 ]] || fail "old-side writes reported after the rollback"

# Back on MariaDB: its writes reach PostgreSQL again.
log "sysbench oltp_write_only at 50 tx/s on MariaDB for 4 s, plus typed rows"
start_sysbench oltp_write_only 50
sql_pri -e "INSERT INTO shop.types (bu, e, j, lat) VALUES (7, 'large', '{\"back\": true}', 'über'); UPDATE shop.types
  SET e = 'small', d = 1.5 WHERE id = 1; DELETE FROM shop.types WHERE id = 5"
sleep 4
stop_sysbench
verify_clean "writes on MariaDB after the rollback"
equal "writes on MariaDB after the rollback"
[[ $(sql_dst -c "SELECT count(*) FROM shop.types WHERE lat = 'über'") == 1 ]] || fail "a row inserted on MariaDB did not reach PostgreSQL"
stop_mf
log "ok"
