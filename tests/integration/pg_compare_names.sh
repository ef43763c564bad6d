#!/usr/bin/env bash
# Columns named like the aliases a row hash might use (t, u, s, row, key, v,
# mf_r, mf_ord, k0 ...): `midflight compare` and `midflight verify` must hash
# the whole row, not a column that shadows the row reference. A payload
# changed on the target only must be reported by both, in a table with a key
# and in a keyless one (REPLICA IDENTITY FULL, compared offline only).
source "$(dirname "$0")/lib.sh"
start_servers 27500
sql_src <<'SQL'
CREATE TABLE shadow (id int PRIMARY KEY, t text, u text, s text, "row" text, "key" text, v text,
                     mf_r text, mf_r_ text, mf_ord int, k0 int, payload text);
INSERT INTO shadow SELECT g, 't', 'u', 's', 'r', 'k', 'v', 'm', 'm_', 0, 0, 'p' || g FROM generate_series(1, 1000) g;
CREATE TABLE "t" ("t" int PRIMARY KEY, payload text);
INSERT INTO "t" SELECT g, 'p' || g FROM generate_series(1, 100) g;
CREATE TABLE keyless (t text, payload text);
ALTER TABLE keyless REPLICA IDENTITY FULL;
INSERT INTO keyless SELECT 'same', 'p' || g FROM generate_series(1, 100) g;
SQL
write_spec compare_names "tables: ['public.*']" "verify:" "  rows_per_s: 0"
run_mf_bg
wait_phase replicating
sql_src -c "UPDATE shadow SET payload = 'changed' WHERE id = 10; INSERT INTO keyless VALUES ('same', 'late')"
wait_caught_up 30
assert_equal
"$MF" verify "$SPEC" >"$WORK/verify1.out" 2>&1 || { cat "$WORK/verify1.out"; fail "verify not clean before the change"; }
grep -q "verify: clean" "$WORK/verify1.out" || fail "verify not clean: $(cat "$WORK/verify1.out")"

# Behind midflight's back: one payload on the target of each table, nothing else.
sql_dst -c "UPDATE shadow SET payload = 'planted' WHERE id = 777;
            UPDATE \"t\" SET payload = 'planted' WHERE \"t\" = 42;
            UPDATE keyless SET payload = 'planted' WHERE payload = 'p50'"
rc=0
"$MF" compare "$SPEC" >"$WORK/compare.out" 2>&1 || rc=$?
cat "$WORK/compare.out"
[[ $rc == 1 ]] || fail "compare exited $rc with payloads changed on the target (expected 1)"
for table in public.shadow public.t public.keyless; do
  grep -qE "^  $table +[0-9]+ rows  DIFFERENT" "$WORK/compare.out" || fail "compare did not report $table"
done
log "compare reports the three changed tables"

rc=0
"$MF" verify "$SPEC" >"$WORK/verify2.out" 2>&1 || rc=$?
cat "$WORK/verify2.out"
[[ $rc == 1 ]] || fail "verify exited $rc with payloads changed on the target (expected 1)"
grep -q "public.shadow (id)=(777): differs" "$WORK/verify2.out" || fail "verify did not name public.shadow (id)=(777)"
grep -q "public.t (t)=(42): differs" "$WORK/verify2.out" || fail "verify did not name public.t (t)=(42)"
[[ $(grep -cE "^  .*: (differs|missing on target|extra on target)$" "$WORK/verify2.out") == 2 ]] || fail "verify reported more than the two planted keys"
log "verify names the two planted keys"
stop_mf
log "PASS"
