#!/usr/bin/env bash
# A table created on the MariaDB source while the migration runs, matching
# the spec's tables: the migration does not carry it, so status names it
# (untracked_tables) and an event says so, until it is dropped; the tables the
# migration carries keep replicating meanwhile.
source "$(dirname "$0")/mylib.sh"
start_my_servers 27000
sql_pri -e "USE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO shop.orders SELECT seq, 'v' FROM seq_1_to_100"
write_my_spec mynewtab
run_mf_bg
wait_phase replicating

log 'creating shop.`late table` on the source while replicating'
sql_pri -e 'CREATE TABLE shop.`late table` (id INT PRIMARY KEY); INSERT INTO shop.`late table` VALUES (1); INSERT INTO shop.orders VALUES (101, "new")'
for _ in $(seq 60); do [[ $(status_field 'untracked_tables[0]') == 'shop.late table' ]] && break; sleep 0.25; done
[[ $(status_field 'untracked_tables[0]') == 'shop.late table' ]] || fail "status does not name the new table: $("$MF" status "$SPEC" --json | jq -c .untracked_tables)"
"$MF" events "$SPEC" | grep -q 'shop.late table' || fail "no event names the new table"
wait_my_caught_up 60
[[ $(sql_dst -e "SELECT v FROM shop_new.orders WHERE id = 101") == new ]] || fail "the carried table stopped replicating"

log "dropping it again"
sql_pri -e 'DROP TABLE shop.`late table`'
for _ in $(seq 60); do [[ $(status_field 'untracked_tables | length') == 0 ]] && break; sleep 0.25; done
[[ $(status_field 'untracked_tables | length') == 0 ]] || fail "status still names the dropped table"
stop_mf
assert_equal
log "PASS"
