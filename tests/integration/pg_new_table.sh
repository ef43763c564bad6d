#!/usr/bin/env bash
# A table created on the source while the migration runs, matching the
# spec's tables: the migration does not carry it (yet), so it is reported in
# status and every switch is refused with its name, until it is dropped (or
# excluded); the application must never be moved to a target that lacks it.
source "$(dirname "$0")/lib.sh"
start_servers 26532
PROXY_PORT=$(free_port 26536)
RO_PORT=$(free_port $((PROXY_PORT + 1)))
sql_src -c "CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders SELECT g, 'v' FROM generate_series(1, 100) g"
write_spec newtab "partitions: 2" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" "  listen_readonly: 127.0.0.1:$RO_PORT"
run_mf_bg
wait_phase replicating

log "creating public.\"late table\" on the source while replicating"
sql_src -c 'CREATE TABLE "late table" (id int PRIMARY KEY); INSERT INTO "late table" VALUES (1)'
for _ in $(seq 60); do [[ $(status_field 'untracked_tables[0]') == 'public.late table' ]] && break; sleep 0.25; done
[[ $(status_field 'untracked_tables[0]') == 'public.late table' ]] || fail "status does not name the new table"
"$MF" status "$SPEC" | grep "not migrated" || fail "status text does not show the new table"
out=$("$MF" switch reads "$SPEC" 2>&1) && fail "switch reads succeeded with a table the target lacks: $out"
echo "  $out"
[[ $out == *'public.late table'* ]] || fail "the refusal does not name the table: $out"
out=$("$MF" verify "$SPEC" 2>&1) && fail "verify said clean with a table the target lacks: $out"
echo "  $out" | head -3
[[ $out == *'NOT CLEAN'*'public.late table'* ]] || fail "verify does not name the table: $out"

log "dropping it again: switches are allowed"
sql_src -c 'DROP TABLE "late table"'
for _ in $(seq 60); do [[ $(status_field 'untracked_tables | length') == 0 ]] && break; sleep 0.25; done
[[ $(status_field 'untracked_tables | length') == 0 ]] || fail "status still names the dropped table"
"$MF" switch reads "$SPEC" || fail "switch reads refused after the table was dropped"
[[ $(status_field phase) == reads_switched ]] || fail "phase is $(status_field phase)"
stop_mf
log "PASS"
