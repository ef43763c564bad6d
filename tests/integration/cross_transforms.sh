#!/usr/bin/env bash
# Spec transforms across engines, MariaDB -> PostgreSQL: the transforms of
# pg_transforms.sh (rename, text_to_int, upper, timestamp_to_timestamptz, an
# excluded column, two computed columns, a row filter) applied after the
# casting table, on the snapshot (killed after 2 chunks) and on the binlog
# stream while a loop moves rows in and out of the filter (killed with kill -9
# once). The target is compared with the same transform written in MariaDB's
# SQL on the replica, and by `compare` through the transform.
source "$(dirname "$0")/mylib.sh"
export PGTZ=UTC

start_my_servers 24900
"$TESTDB" stop "$DST_DIR" immediate  # mylib's MariaDB target: not used here
pgport=$(free_port 24920)
"$TESTDB" start pg "$WORK/pg" "$pgport"
psql -X -q -At "$("$TESTDB" uri "$WORK/pg")" -c "CREATE DATABASE target"
DST=$("$TESTDB" uri "$WORK/pg" target)
sql_dst() { psql -X -q -v ON_ERROR_STOP=1 -At -F $'\t' "$DST" "$@"; }

sql_pri <<'SQL'
USE shop;
CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY, qty_text VARCHAR(20), price DECIMAL(10,2), status VARCHAR(20),
                     made DATETIME(3), note TEXT, secret TEXT) ENGINE=InnoDB;
INSERT INTO orders SELECT seq, seq % 50, seq % 100 + 0.25, IF(seq % 5 = 0, 'cancelled', 'paid'),
                          TIMESTAMPADD(MICROSECOND, seq * 60500000, '2024-01-01 00:00:00'),
                          IF(seq % 7 = 0, NULL, CONCAT('n', seq)), CONCAT('s', seq)
FROM seq_1_to_12000;
CREATE TABLE plain (id INT NOT NULL PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO plain SELECT seq, CONCAT('v', seq) FROM seq_1_to_500;
SQL
wait_replica

write_my_spec xt "chunk_rows: 2000" "copy_workers: 2" "partitions: 3" \
  "transforms:" \
  "  shop.orders:" \
  "    rename: sales" \
  "    exclude: [secret]" \
  "    columns:" \
  "      qty_text: {rename: qty, cast: text_to_int}" \
  "      made: {cast: timestamp_to_timestamptz, zone: \"+02:00\"}" \
  "      note: {rename: remark, cast: upper}" \
  "    add:" \
  "      total: price * qty_text" \
  "      label: concat(status, '-', id)" \
  "    filter: status <> 'cancelled' and price >= 3"

ddl=$("$MF" schema "$SPEC" --dry-run)
for want in 'CREATE TABLE IF NOT EXISTS "shop"."sales"' '"qty" bigint' '"made" timestamp(3) with time zone' \
  '"total" numeric' 'PRIMARY KEY ("id")' '"plain"'; do
  [[ $ddl == *"$want"* ]] || { echo "$ddl"; fail "schema --dry-run lacks '$want'"; }
done
[[ $ddl != *'"secret"'* ]] || fail "the excluded column is in the DDL"

check_rows() {  # check_rows WHAT
  "$TESTDB" sql "$REP_DIR" -N -B shop -e "
    SELECT id, CAST(qty_text AS SIGNED), price, status,
           DATE_FORMAT(CONVERT_TZ(made, '+02:00', '+00:00'), '%Y-%m-%d %H:%i:%s.%f'), COALESCE(UPPER(note), '<null>'),
           price * CAST(qty_text AS SIGNED), CONCAT(status, '-', id)
    FROM orders WHERE status <> 'cancelled' AND price >= 3 ORDER BY id" >"$WORK/want.txt"
  sql_dst -c "SELECT id, qty, price, status, to_char(made, 'YYYY-MM-DD HH24:MI:SS.US'), coalesce(remark, '<null>'),
                     total, label FROM shop.sales ORDER BY id" >"$WORK/got.txt"
  if ! cmp -s "$WORK/want.txt" "$WORK/got.txt"; then
    diff "$WORK/want.txt" "$WORK/got.txt" | head -20
    fail "$1: the target's rows differ from the source's through the same transform"
  fi
  [[ $(sql_dst -c "SELECT count(*) FROM shop.plain") == $(sql_rep -e "SELECT count(*) FROM shop.plain") ]] ||
    fail "$1: plain differs"
  log "$1: $(wc -l <"$WORK/want.txt") transformed rows equal the replica's through the same transform in SQL"
}

(
  i=0
  while :; do
    i=$((i + 1))
    "$TESTDB" sql "$PRI_DIR" shop -e "
      UPDATE orders SET status = IF(status = 'cancelled', 'paid', 'cancelled') WHERE id = 1 + ($i * 37) % 12000;
      UPDATE orders SET price = price + 1, qty_text = $i % 40, note = CONCAT('u', $i) WHERE id = 1 + ($i * 53) % 12000;
      UPDATE orders SET price = 1.5 WHERE id = 1 + ($i * 71) % 12000;
      INSERT INTO orders VALUES (100000 + $i, $i % 9, $i % 7, IF($i % 3 = 0, 'cancelled', 'new'), NOW(3), 'i', 'x');
      DELETE FROM orders WHERE id = 1 + ($i * 89) % 12000;
      UPDATE orders SET id = id + 1000000 WHERE id = 1 + ($i * 97) % 12000;
      UPDATE plain SET v = CONCAT(v, '.') WHERE id = 1 + $i % 500;" >/dev/null 2>&1 || true
    sleep 0.05
  done
) &
EXTRA_PIDS+=($!)
DML_PID=$!

run_mf_crash copy-chunks=2
run_mf_bg
wait_phase replicating 90
sleep 4
kill9_mf
log "killed with kill -9 while streaming"
run_mf_bg
wait_phase replicating 60
sleep 4
kill "$DML_PID" 2>/dev/null; wait "$DML_PID" 2>/dev/null || true
wait_my_caught_up 90
check_rows "snapshot and stream, two kills"
moved=$(sql_rep -e "SELECT count(*) FROM shop.orders WHERE id >= 1000000")
inserted=$(sql_rep -e "SELECT count(*) FROM shop.orders WHERE id BETWEEN 100000 AND 999999")
log "the loop inserted $inserted rows and moved $moved keys"
((moved > 0 && inserted > 0)) || fail "the loop did not write"
[[ $(sql_dst -c "SELECT count(*) FROM information_schema.columns WHERE table_name = 'sales' AND column_name = 'secret'") == 0 ]] ||
  fail "the excluded column is on the target"
[[ $(status_field conflicts.total) == 0 ]] || fail "apply conflicts: $(status_field conflicts)"
# compare checks the transformed table through its transform (the source's
# rows transformed by midflight, hashed by PostgreSQL) and the plain one.
out=$("$MF" compare "$SPEC" 2>&1) || { echo "$out"; fail "compare failed or found differences"; }
echo "$out" | sed 's/^/    /'
grep -qE "shop\.orders +.*equal" <<<"$out" || fail "compare: the transformed table not equal"
grep -qE "shop\.plain +.*equal" <<<"$out" || fail "compare: plain not equal"
stop_mf
log "PASS"
