#!/usr/bin/env bash
# The whole schema reaches the target: a sakila-shaped database (7 views, one
# on another view; 6 triggers; 3 functions; 3 procedures; an event) migrated
# from a replica while the application writes to the primary.
#   1. preflight names the view whose DEFINER account the target lacks;
#   2. once it exists, the migration runs under load; the sides end equal,
#      and the audit table a trigger fills holds exactly the source's rows
#      (the target's triggers stayed quiet on midflight's apply sessions);
#   3. every object exists on the target with the source's definition (SHOW
#      CREATE compared, up to the database name, the trigger guard and the
#      event's DISABLE), functions return what the source's return, procedures
#      run, and the triggers fire for the application's own writes.
source "$(dirname "$0")/mylib.sh"

start_my_servers 21700
sql_pri -e "CREATE USER reporter@'%' IDENTIFIED BY 'r3porter'"
"$TESTDB" sql "$PRI_DIR" --comments shop <"$ROOT/tests/integration/data/mysql_sample_schema.sql"
wait_replica
counts() {  # counts SQL_FN DB: views triggers functions procedures events
  "$1" -e "SELECT (SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '$2'),
    (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '$2'),
    (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '$2' AND ROUTINE_TYPE = 'FUNCTION'),
    (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '$2' AND ROUTINE_TYPE = 'PROCEDURE'),
    (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '$2')" | tr '\t' ' '
}
[[ $(counts sql_rep shop) == "7 6 3 3 1" ]] || fail "source schema: $(counts sql_rep shop) (views triggers functions procedures events)"
log "source: 7 views, 6 triggers, 3 functions, 3 procedures, 1 event"

write_my_spec objs "chunk_rows: 1000" "copy_workers: 2" "partitions: 4"

# ---- 1. preflight: the definer the target lacks ----
out=$("$MF" run "$SPEC" 2>&1) && fail "midflight ran although the target lacks reporter@%"
grep -q "view shop.actor_info: its definer 'reporter'@'%' does not exist on the target" <<<"$out" ||
  { echo "$out"; fail "preflight did not name the view and its definer"; }
log "preflight: $(grep -o "view shop.actor_info: its definer.*" <<<"$out" | cut -c1-110)..."
rm -rf "$WORK/state-objs"
sql_dst -e "CREATE USER reporter@'%' IDENTIFIED BY 'r3porter'; GRANT SELECT ON shop_new.* TO reporter@'%'"

# ---- 2. migrate under load ----
# The application: updates (audit rows from a trigger), inserts (film_text and
# create_date from triggers), deletes, and a procedure that inserts.
cat >"$WORK/load.sh" <<EOF
i=0
while :; do
  i=\$((i + 1))
  "$TESTDB" sql "$PRI_DIR" shop -e "
    UPDATE film SET rental_rate = MOD(rental_rate + 0.5, 9) WHERE film_id IN (1 + \$i % 20, 1 + (\$i * 7) % 20);
    UPDATE film SET title = CONCAT('film ', \$i) WHERE film_id = 1 + (\$i * 13) % 300;
    INSERT INTO film (title, description) VALUES (CONCAT('new ', \$i), 'fresh');
    DELETE FROM film WHERE title = CONCAT('new ', \$i - 5);
    INSERT INTO customer (first_name, last_name) VALUES ('New', CONCAT('N', \$i));
    CALL add_payment(1 + \$i % 200, 1.25);" || exit 1
  sleep 0.05
done
EOF
bash "$WORK/load.sh" &
LOAD_PID=$!
sleep 1
run_mf_bg
wait_phase replicating 120
sleep 4
kill "$LOAD_PID"; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=
wait_my_caught_up 120
grep -h "schema: .*\(views\|triggers\)" "$WORK/run.1.log" | sed 's/^/  /'
assert_equal
src_audit=$(sql_rep -e "SELECT COUNT(*), COALESCE(SUM(seq), 0), COALESCE(MAX(audit_id), 0) FROM shop.film_audit")
dst_audit=$(sql_dst -e "SELECT COUNT(*), COALESCE(SUM(seq), 0), COALESCE(MAX(audit_id), 0) FROM shop_new.film_audit")
[[ $src_audit == "$dst_audit" ]] || fail "audit rows: source (count, sum seq, max id) $src_audit, target $dst_audit"
read -r n_audit sum_seq _ <<<"$src_audit"
# seq numbers each film's audit rows: a trigger fired twice on the target would shift them.
[[ $n_audit -gt 60 && $sum_seq -gt $n_audit ]] || fail "the load made too few audited updates: $src_audit"
log "audit table: source and target both $src_audit (count, sum of seq, max id): no trigger fired twice"
stop_mf

# ---- 3. the objects on the target ----
[[ $(counts sql_dst shop_new) == "7 6 3 3 1" ]] || fail "target schema: $(counts sql_dst shop_new)"
# SHOW CREATE, as the mariadb client prints it in batch mode, up to the
# database's name, the trigger guard, the trigger's creation time and the
# event's status (ENABLE / DISABLE ON SLAVE on the source, DISABLE on the target).
normalize() {
  sed -e 's/`shop_new`/`shop`/g' \
      -e 's/BEGIN IF @midflight_apply IS NULL THEN\\n//; s/; END IF; END\t/\t/' \
      -e 's/ DISABLE ON SLAVE / DISABLE /; s/ ENABLE DO / DISABLE DO /' \
      -e 's/\t[0-9-]* [0-9:.]*$//'
}
show() {  # show SQL_FN DB KIND NAME
  "$1" -e "SHOW CREATE $3 \`$2\`.\`$4\`" | normalize
}
n=0
while read -r kind name; do
  a=$(show sql_rep shop "$kind" "$name")
  b=$(show sql_dst shop_new "$kind" "$name")
  [[ -n $a && $a == "$b" ]] || { printf 'source: %s\ntarget: %s\n' "$a" "$b"; fail "$kind $name differs"; }
  n=$((n + 1))
done < <(sql_rep -e "
  SELECT 'VIEW', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = 'shop'
  UNION ALL SELECT 'TRIGGER', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop'
  UNION ALL SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'shop'
  UNION ALL SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'shop'")
[[ $n -eq 20 ]] || fail "compared $n objects, expected 20"
log "20 objects: SHOW CREATE equal (definer, SQL SECURITY, sql_mode, charset and collation included)"
order() { "$1" -e "SELECT GROUP_CONCAT(TRIGGER_NAME ORDER BY ACTION_ORDER) FROM information_schema.TRIGGERS
  WHERE TRIGGER_SCHEMA = '$2' AND EVENT_OBJECT_TABLE = 'film' AND ACTION_TIMING = 'AFTER' AND EVENT_MANIPULATION = 'UPDATE'"; }
[[ $(order sql_rep shop) == "$(order sql_dst shop_new)" ]] || fail "trigger order: $(order sql_dst shop_new)"
[[ $(sql_dst -e "SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'shop_new'") == DISABLED ]] ||
  fail "the event is not DISABLED on the target"
log "AFTER UPDATE triggers on film in the source's order ($(order sql_dst shop_new)); event DISABLED on the target"

calls="SELECT get_customer_balance(7), get_customer_balance(199), film_in_stock(10), film_in_stock(11),
  rate_band(0.5), rate_band(2.99), rate_band(7); CALL rewards_report(40, @n); CALL film_in_stock_count(10, @m);
  SELECT @n, @m; SELECT COUNT(*), SUM(total) FROM a_top_customers; SELECT COUNT(*), MAX(band) FROM film_list"
a=$("$TESTDB" sql "$REP_DIR" -N -B shop -e "$calls")
b=$("$TESTDB" sql "$DST_DIR" -N -B shop_new -e "$calls")
[[ $a == "$b" ]] || { printf 'source: %s\ntarget: %s\n' "$a" "$b"; fail "functions, procedures or views answer differently"; }
log "functions, procedures and views answer the same: $(tr '\n\t' '  ' <<<"$a" | cut -c1-100)"

# The application after the switch: its writes fire the triggers on the target.
before=$(sql_dst -e "SELECT COUNT(*) FROM shop_new.film_audit")
"$TESTDB" sql "$DST_DIR" shop_new -e "UPDATE film SET rental_rate = 1.11 WHERE film_id = 5;
  CALL add_payment(3, 9.99); INSERT INTO film (title) VALUES ('after the switch')"
[[ $(sql_dst -e "SELECT COUNT(*) FROM shop_new.film_audit") -eq $((before + 1)) ]] || fail "the audit trigger did not fire"
[[ $(sql_dst -e "SELECT COUNT(*) FROM shop_new.payment WHERE amount = 9.99 AND payment_date > NOW() - INTERVAL 1 MINUTE") -eq 1 ]] ||
  fail "payment_date trigger did not fire for add_payment"
[[ $(sql_dst -e "SELECT COUNT(*) FROM shop_new.film_text WHERE title = 'after the switch'") -eq 1 ]] ||
  fail "ins_film did not fire"
log "the application's own writes on the target fire its triggers (audit row, payment_date, film_text)"
assert_primary_untouched
log "ok"
