#!/usr/bin/env bash
# Indexes built as each table's copy ends (engines/postgres/early_indexes.h),
# killed with SIGKILL inside that overlapped build (crash point early-index:
# after the Nth index or key built while other tables still copy), then
# resumed, with writes running throughout. The resumed run must build every
# index and constraint exactly once (a second build would fail with "already
# exists"), a half-copied ctid-split table copied again whole must get its
# indexes, and the target must end with the source's indexes, constraints
# and triggers, definition for definition, and equal rows. A session the
# killed run left building on the target is ended before anything is built.
source "$(dirname "$0")/lib.sh"
start_servers 30600
sql_src <<'SQL'
CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, pad text);
CREATE INDEX big_v ON big (v);
CREATE INDEX big_pad_part ON big (lower(pad)) WHERE v % 7 = 0;
CREATE TABLE by_text (code text PRIMARY KEY, v int CHECK (v >= 0), pad text);
CREATE INDEX by_text_v ON by_text (v DESC);
CREATE TABLE parent (id bigint PRIMARY KEY, code text NOT NULL UNIQUE, v int);
CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint NOT NULL REFERENCES parent (id), note text);
CREATE INDEX child_parent ON child (parent_id);
CREATE TABLE booking (id int PRIMARY KEY, room int, during int4range, EXCLUDE USING gist (during WITH &&));
CREATE TABLE keyless (a int, b text);
ALTER TABLE keyless REPLICA IDENTITY FULL;
CREATE INDEX keyless_a ON keyless (a);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.v := NEW.v; RETURN NEW; END $$;
CREATE TRIGGER big_touch BEFORE UPDATE ON big FOR EACH ROW EXECUTE FUNCTION touch();
INSERT INTO big SELECT g, g % 5000, repeat('x', 80) FROM generate_series(1, 300000) g;
INSERT INTO by_text SELECT 'k' || g, g, repeat('y', 80) FROM generate_series(1, 200000) g;
INSERT INTO parent SELECT g, 'p' || g, g FROM generate_series(1, 30000) g;
INSERT INTO child SELECT g, 1 + g % 30000, 'n' || g FROM generate_series(1, 60000) g;
INSERT INTO booking SELECT g, g % 50, int4range(g * 10, g * 10 + 5) FROM generate_series(1, 5000) g;
INSERT INTO keyless SELECT g % 1000, 'z' || g FROM generate_series(1, 50000) g;
ANALYZE;
SQL
cat >"$WORK/writes.sql" <<'SQL'
\set i random(1, 30000)
UPDATE big SET v = v + 1 WHERE id = :i;
UPDATE by_text SET v = v + 1 WHERE code = 'k' || :i;
INSERT INTO child VALUES (1000000 + :i * 10 + random(0, 9), :i, 'new') ON CONFLICT DO NOTHING;
INSERT INTO keyless VALUES (:i % 1000, 'new');
SQL
write_spec early "chunk_rows: 10000" "copy_workers: 2"
pgbench -n -c 2 -j 2 -T 600 -R 50 -f "$WORK/writes.sql" "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!

run_mf_crash early-index=2
built=$(sql_dst -c "SELECT string_agg(indexrelid::regclass::text, ' ' ORDER BY 1) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'")
log "indexes on the target after the kill: ${built:-none}"
log "chunks recorded: $(sql_dst -c "SELECT string_agg(table_name || ':' || n, ' ') FROM (SELECT table_name, count(*) n FROM midflight.chunks GROUP BY 1 ORDER BY 1) c")"
[[ -n $built ]] || fail "no index was built before the crash point"

# A CREATE INDEX a killed run left on the target still commits when it ends;
# the resumed run must end such sessions (named after the migration) first.
# One stands in for it here: a session with that name, sleeping.
PGAPPNAME=midflight-index:early psql -X -q "$DST" -c "SELECT pg_sleep(600)" >"$WORK/orphan.log" 2>&1 &
ORPHAN_PID=$!
EXTRA_PIDS+=("$ORPHAN_PID")
for ((i = 0; i < 100; i++)); do
  [[ $(sql_dst -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'midflight-index:early'") == 1 ]] && break
  sleep 0.1
done
run_mf_bg
wait_phase replicating 300
rc=0; wait "$ORPHAN_PID" || rc=$?
((rc != 0)) || fail "the stand-in for a killed run's index session was not ended"
grep -q "index-building session" "$WORK/run.$RUN_N.log" || fail "the resumed run did not report ending the left session"
grep -E "copying it again whole|built as their tables' copy ended|post-data objects already|index-building session" \
  "$WORK/run.$RUN_N.log" || true
sleep 2
stop_load
wait_caught_up 120
assert_equal

defs() {  # the schema's indexes, constraints and triggers, one line each
  "$1" -c "SELECT 'index ' || tablename || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
           UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace
           UNION ALL SELECT 'trigger ' || tgrelid::regclass || ' ' || pg_get_triggerdef(oid)
             FROM pg_trigger WHERE NOT tgisinternal AND tgrelid::regclass::text NOT LIKE 'midflight.%'
           ORDER BY 1"
}
defs sql_src >"$WORK/defs.src"
defs sql_dst >"$WORK/defs.dst"
diff "$WORK/defs.src" "$WORK/defs.dst" || fail "the target's indexes, constraints or triggers differ from the source's"
log "$(wc -l <"$WORK/defs.src") index, constraint and trigger definitions equal"
[[ $(sql_dst -c "SELECT count(*) FROM pg_index WHERE NOT indisvalid OR NOT indisready") == 0 ]] ||
  fail "an invalid index was left on the target"
stop_mf
log "PASS"
