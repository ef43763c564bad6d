#!/usr/bin/env bash
# Resuming a copy after a crash, for each way a table is split: an integer
# key (value ranges: resumed chunk by chunk), a text key and a keyless table
# (ctid page ranges: a half-copied table starts over whole). Writes run
# during the copy and the restart; the target must end equal.
source "$(dirname "$0")/lib.sh"
start_servers 26492
sql_src <<'SQL'
CREATE TABLE by_int (id bigint PRIMARY KEY, v int, pad text);
CREATE TABLE by_text (code text PRIMARY KEY, v int, pad text);
CREATE TABLE keyless (a int, b text);
ALTER TABLE keyless REPLICA IDENTITY FULL;
INSERT INTO by_int SELECT g, g, repeat('x', 100) FROM generate_series(1, 150000) g;
INSERT INTO by_text SELECT 'k' || g, g, repeat('y', 100) FROM generate_series(1, 150000) g;
INSERT INTO keyless SELECT g % 1000, repeat('z', 100) FROM generate_series(1, 150000) g;
ANALYZE;
SQL
cat >"$WORK/writes.sql" <<'SQL'
\set i random(1, 150000)
UPDATE by_int SET v = v + 1 WHERE id = :i;
UPDATE by_text SET v = v + 1 WHERE code = 'k' || :i;
INSERT INTO keyless VALUES (:i % 1000, 'new');
DELETE FROM keyless WHERE ctid = (SELECT ctid FROM keyless WHERE a = :i % 1000 LIMIT 1);
SQL
write_spec resume "chunk_rows: 10000" "copy_workers: 2"
pgbench -n -c 2 -j 2 -T 600 -R 100 -f "$WORK/writes.sql" "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!
run_mf_crash copy-chunks=22
log "chunks recorded before the crash: $(sql_dst -c "SELECT string_agg(table_name || ':' || n, ' ') FROM (SELECT table_name, count(*) n FROM midflight.chunks GROUP BY 1 ORDER BY 1) c")"
run_mf_bg
wait_phase replicating
grep -E "copying it again whole|a newer snapshot" "$WORK/run.$RUN_N.log" || true
grep -q "copying it again whole" "$WORK/run.$RUN_N.log" || fail "a half-copied table split by ctid should start over whole"
sleep 3
stop_load
wait_caught_up 60
assert_equal
stop_mf
log "PASS"
