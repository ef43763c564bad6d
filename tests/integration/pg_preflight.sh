#!/usr/bin/env bash
# Bad input and unsafe starts are refused with one clear line naming the
# object at fault, and no password ever appears in the output: wrong
# password, unreachable server, wal_level not logical, a keyless table (then
# migrated once it has REPLICA IDENTITY FULL), a target that is not empty,
# a second migration for the same source and target, a malformed spec.
source "$(dirname "$0")/lib.sh"
start_servers 26462
"$TESTDB" start pg "$WORK/replica_level" "$(free_port 26464)" "wal_level = replica"
WEAK=$("$TESTDB" uri "$WORK/replica_level")

expect_refusal() {  # expect_refusal PATTERN: last midflight run exited 1 and said PATTERN
  local out=$WORK/refusal.log rc=0
  "$MF" run "$SPEC" >"$out" 2>&1 || rc=$?
  [[ $rc -eq 1 ]] || { cat "$out"; fail "expected exit 1, got $rc"; }
  grep -q -- "$1" "$out" || { cat "$out"; fail "expected the message to say: $1"; }
  ! grep -q "hunter2x" "$out" || fail "the password appeared in the output"
  log "refused: $(grep -- "$1" "$out" | head -1 | sed 's/^ *//')"
}

sql_src -c "CREATE TABLE orders (id int PRIMARY KEY, note text); CREATE TABLE audit_log (at timestamptz, what text);"
sql_src -c "INSERT INTO orders SELECT g, 'o' FROM generate_series(1, 100) g; INSERT INTO audit_log SELECT now(), 'x' FROM generate_series(1, 10);"

# Wrong password: the URI is shown with *** instead.
SRC_GOOD=$SRC
SRC=${SRC_GOOD/midflight:midflight@/midflight:hunter2x@}
write_spec pf
expect_refusal "password authentication failed"
grep -q "midflight:\*\*\*@" "$WORK/refusal.log" || fail "the URI should be shown redacted"
# Unreachable server.
SRC="postgres://midflight:hunter2x@127.0.0.1:1/postgres"
write_spec pf
expect_refusal "source: cannot connect to postgres://midflight:\*\*\*@127.0.0.1:1/postgres"
# wal_level = replica.
SRC=$WEAK
write_spec pf
expect_refusal "source: wal_level is 'replica'; set wal_level = logical"
SRC=$SRC_GOOD

# A keyless table: refused by name, with the fix.
write_spec pf
expect_refusal "table public.audit_log has no primary key and no replica identity: add a primary key, or run ALTER TABLE public.audit_log REPLICA IDENTITY FULL"
# ... unless excluded, or once it has REPLICA IDENTITY FULL (the run below).

# A target that is not empty.
sql_dst -c "CREATE TABLE leftover (x int)"
write_spec pf2 "exclude: [public.audit_log]"
expect_refusal "target is not empty: it already has table public.leftover"
sql_dst -c "DROP TABLE leftover"

# Malformed spec and usage errors.
echo "name: pf3
source: $SRC
target: $DST
partitons: 4" >"$WORK/bad.yaml"
rc=0; "$MF" run "$WORK/bad.yaml" 2>"$WORK/bad.log" || rc=$?
[[ $rc -eq 1 ]] && grep -q "field 'partitons': unknown field" "$WORK/bad.log" || fail "malformed spec: exit $rc, $(cat "$WORK/bad.log")"
rc=0; "$MF" run >/dev/null 2>&1 || rc=$?
[[ $rc -eq 2 ]] || fail "usage error should exit 2, got $rc"
rc=0; "$MF" status "$WORK/nothing.yaml" >/dev/null 2>&1 || rc=$?
[[ $rc -eq 1 ]] || fail "status of a missing spec should exit 1, got $rc"

# Once the operator sets REPLICA IDENTITY FULL, the keyless table migrates.
sql_src -c "ALTER TABLE audit_log REPLICA IDENTITY FULL"
write_spec pf
run_mf_bg
wait_phase replicating
FIRST_PID=$MF_PID

# A second migration from the same source to the same target is refused,
# and so is a second process for the same migration.
SPEC_FIRST=$SPEC
write_spec other
expect_refusal "another midflight migration is already running from this source database to this target database"
# Same name, another target database: its slot and publication are taken.
sql_dst -c "CREATE DATABASE second"
DST_FIRST=$DST
DST=${DST_FIRST%/postgres}/second
write_spec pf2name
sed -i 's/^name: pf2name/name: pf/; s/state-pf2name/state-pf-second/' "$SPEC"
expect_refusal "source: replication slot or publication midflight_pf already exists, so another migration named pf uses this source"
DST=$DST_FIRST
SPEC=$SPEC_FIRST
rc=0; "$MF" run "$SPEC" >"$WORK/dup.log" 2>&1 || rc=$?
[[ $rc -eq 1 ]] && grep -q "another midflight process is already running this migration" "$WORK/dup.log" || fail "same migration twice: exit $rc: $(cat "$WORK/dup.log")"
log "refused: $(cat "$WORK/dup.log")"

sql_src -c "INSERT INTO audit_log VALUES (now(), 'after'), (now(), 'after'); UPDATE audit_log SET what = 'changed' WHERE what = 'x' AND ctid = (SELECT min(ctid) FROM audit_log WHERE what = 'x'); DELETE FROM audit_log WHERE ctid = (SELECT max(ctid) FROM audit_log WHERE what = 'after');"
wait_caught_up 30
assert_equal
MF_PID=$FIRST_PID
stop_mf
log "PASS"
