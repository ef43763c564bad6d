#!/usr/bin/env bash
# A SQL_ASCII source holding bytes that are not UTF-8 (Latin-1 text from an
# old application): into a UTF8 target, preflight refuses with the remedy
# (before, the copy failed halfway with a UTF-8 error); into a SQL_ASCII
# target, every byte arrives unchanged, by the copy and by the stream.
source "$(dirname "$0")/lib.sh"
start_servers 26552
for side in src dst; do
  psql -X -q -At "$("$TESTDB" uri "$WORK/$side")" -c \
    "CREATE DATABASE legacy ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
done
psql -X -q -At "$("$TESTDB" uri "$WORK/dst")" -c "CREATE DATABASE modern ENCODING 'UTF8' TEMPLATE template0"
SRC=${SRC%/*}/legacy
sql_src -c "CREATE TABLE names (id int PRIMARY KEY, name text)"
sql_src -c "INSERT INTO names VALUES (1, convert_from('\\x4dfc6c6c6572'::bytea, 'SQL_ASCII'))" 2>/dev/null ||
  sql_src -c "INSERT INTO names VALUES (1, E'M\\xfcller')"

DST_LEGACY=${DST%/*}/legacy
DST=${DST%/*}/modern
write_spec toutf8
out=$("$MF" run "$SPEC" 2>&1) && fail "a SQL_ASCII source into a UTF8 target passed preflight"
echo "$out" | grep "SQL_ASCII" | sed 's/^/  /'
[[ $out == *"ENCODING 'SQL_ASCII'"* ]] || fail "preflight does not name the remedy: $out"

DST=$DST_LEGACY
write_spec legacy
run_mf_bg
wait_phase replicating
sql_src -c "INSERT INTO names VALUES (2, E'Gr\\xf6\\xdfe')"
wait_caught_up 60
src_hex=$(sql_src -c "SELECT string_agg(encode(convert_to(name, 'SQL_ASCII'), 'hex'), ',' ORDER BY id) FROM names")
dst_hex=$(psql -X -q -At "$DST" -c "SELECT string_agg(encode(convert_to(name, 'SQL_ASCII'), 'hex'), ',' ORDER BY id) FROM names")
log "bytes: source $src_hex, target $dst_hex"
[[ $src_hex == "$dst_hex" && $src_hex == *fc* ]] || fail "bytes differ: source $src_hex target $dst_hex"
assert_equal
stop_mf
log "PASS"
