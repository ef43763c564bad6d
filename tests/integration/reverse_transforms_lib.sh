# Shared by cross_reverse_transforms.sh and pg_reverse_transforms.sh (sourced
# after lib.sh): the source table public."Order Lines", the transforms both
# migrate it with, and reading its rows back; and public.'Key "Codes"', whose
# key column is cast (int_to_text, renamed code), 3000 rows.

# create_order_lines: 40 rows on the source (and the 3000 of 'Key "Codes"').
create_order_lines() {
  sql_src <<'SQL'
CREATE TABLE "Key ""Codes""" (id int PRIMARY KEY, v text);
INSERT INTO "Key ""Codes""" SELECT g, 'c' || g FROM generate_series(1, 3000) g;
CREATE TABLE "Order Lines" (id int PRIMARY KEY, "select" text, qty_text text, price numeric(10,2),
                            made timestamp(3) NOT NULL, note text, secret text NOT NULL DEFAULT 'none');
INSERT INTO "Order Lines" SELECT g, 'p' || g, (g % 9)::text, g + 0.25, '2024-01-01'::timestamp + g * interval '1 h',
                                 'n' || g, 's' || g
  FROM generate_series(1, 40) g;
SQL
}

TRANSFORMS=(
  "transforms:"
  "  public.Order Lines:"
  "    rename: lines"
  "    exclude: [note, secret]"
  "    columns:"
  "      select: {rename: pick}"
  "      qty_text: {rename: qty, cast: text_to_int}"
  "      made: {cast: timestamp_to_timestamptz, zone: \"+02:00\"}"
  "    add:"
  "      total: price * qty_text"
  "      origin: \"'pg'\""
  "  'public.Key \"Codes\"':"
  "    rename: key codes"
  "    columns:"
  "      id: {rename: code, cast: int_to_text}"
)
# Small verify chunks: the cast key's table is read in several (its text
# keys order otherwise than the source's integers).
SMALL_CHUNKS=("verify:" "  chunk_rows: 100")

# What rows 2, 3, 4, 500, 501 and 900 are on the source after the target's
# writes (each test's): 2 updated (note and secret kept), 3 deleted, 4 moved
# to 900 and 500, 501 inserted (note NULL, secret its default).
AFTER_WRITES="2|it's picked|77|2.25|2024-07-01 00:59:59.5|n2|s2,500|new|4|2.50|2024-05-06 01:00:00|-|none,501|-|-|-|2024-01-01 02:00:00.001|-|none,900|p4|4|4.25|2024-01-01 04:00:00|-|none"

# src_rows IDS: the source's rows, as text (NULL as -).
src_rows() {
  sql_src -c "SELECT string_agg(concat_ws('|', id, coalesce(\"select\", '-'), coalesce(qty_text, '-'),
    coalesce(price::text, '-'), made, coalesce(note, '-'), secret), ',' ORDER BY id) FROM \"Order Lines\" WHERE id IN ($1)"
}
# wait_src IDS WANT: the source's rows IDS become WANT (reverse replication is asynchronous).
wait_src() {
  local got
  for _ in $(seq 240); do
    got=$(src_rows "$1")
    [[ $got == "$2" ]] && return 0
    sleep 0.25
  done
  fail "source rows ($1) after the target's writes:
  got  $got
  want $2"
}

# switched_verify_clean: verify after the switch is clean, with no
# transformed table left out.
switched_verify_clean() {
  local out
  out=$("$MF" verify "$SPEC" 2>&1) || { sed 's/^/    /' <<<"$out"; fail "verify after the switch is not clean"; }
  sed 's/^/    /' <<<"$out"
  ! grep -q "not verified" <<<"$out" || fail "verify after the switch left a transformed table out"
  log "after the switch: the transformed tables verified clean, the target the reference"
}

# switched_verify_finds: verify after the switch exits 1 naming exactly the
# two rows planted on the source, by the target's keys: "Order Lines" id 7
# (pick) and 'Key "Codes"' 2500 (v).
switched_verify_finds() {
  local out rc=0
  out=$("$MF" verify "$SPEC" 2>&1) || rc=$?
  sed 's/^/    /' <<<"$out"
  [[ $rc == 1 ]] || fail "verify after the switch exited $rc with differences planted on the source (expected 1)"
  grep -qF "(id)=(7): differs (columns pick)" <<<"$out" || fail "the difference planted in Order Lines was not named"
  grep -qF "Codes\" (code)=(2500): differs (columns v)" <<<"$out" ||
    grep -qF "key codes (code)=(2500): differs (columns v)" <<<"$out" ||
    fail "the difference planted in Key \"Codes\" was not named"
  [[ $(grep -c "): differs\|): missing\|): extra" <<<"$out") == 2 ]] ||
    fail "verify after the switch reported more than the planted rows"
  log "after the switch: the values planted on the source named by their target keys"
}

# check_verify_after_switch REPAIR: after `switch writes`, reverse
# replication running, `verify` takes the target as the reference and checks
# the transformed tables through the forward transform of the source's rows,
# so they are verified, not named as left out: clean after the target's
# writes (row 2's total and origin, computed columns the reverse flow drops,
# hold the application's values: not compared; 'Key "Codes"' chunked on the
# target's text keys, read on the source by its integers' text). Then values
# changed on the source behind midflight's back (the spec is named rt):
# "Order Lines".select (carried, the target's pick) and a value of
# 'Key "Codes"' are named by their keys, note (excluded, not carried) is
# not. REPAIR=1: `verify --repair` sends the target's rows back through the
# reverse flow's inverse transforms and the next verify is clean; else the
# changes are undone by hand.
check_verify_after_switch() {
  local out rc=0
  switched_verify_clean

  # Under a replication origin named like midflight's own: no flow carries it
  # (PostgreSQL -> PostgreSQL keeps carrying the source's late writes forward).
  sql_src >/dev/null <<'SQL'
SELECT pg_replication_origin_create('midflight_rt_planted');
SELECT pg_replication_origin_session_setup('midflight_rt_planted');
UPDATE "Order Lines" SET "select" = 'planted', note = 'not carried' WHERE id = 7;
UPDATE "Key ""Codes""" SET v = 'planted' WHERE id = 2500;
SELECT pg_replication_origin_session_reset();
SELECT pg_replication_origin_drop('midflight_rt_planted');
SQL
  switched_verify_finds

  if [[ $1 == 1 ]]; then
    rc=0
    out=$("$MF" verify --repair "$SPEC" 2>&1) || rc=$?
    sed 's/^/    /' <<<"$out"
    grep -q "repaired 2 row(s) through the apply path" <<<"$out" || fail "verify --repair after the switch did not repair the 2 rows"
    wait_src 7 "7|p7|7|7.25|2024-01-01 07:00:00|not carried|s7"
    for _ in $(seq 40); do [[ $(sql_src -c "SELECT v FROM \"Key \"\"Codes\"\"\" WHERE id = 2500") == c2500 ]] && break; sleep 0.25; done
    [[ $(sql_src -c "SELECT v FROM \"Key \"\"Codes\"\"\" WHERE id = 2500") == c2500 ]] || fail "Key \"Codes\" 2500 not repaired"
    "$MF" verify "$SPEC" >/dev/null 2>&1 || fail "verify after the repair (after the switch) is not clean"
    log "after the switch: repaired through the reverse flow's inverse transforms; the next verify is clean"
  else
    sql_src -c "UPDATE \"Order Lines\" SET \"select\" = 'p7' WHERE id = 7" -c "UPDATE \"Key \"\"Codes\"\"\" SET v = 'c2500' WHERE id = 2500"
  fi
}
