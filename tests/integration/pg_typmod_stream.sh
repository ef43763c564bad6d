#!/usr/bin/env bash
# Types with modifiers on the streaming path, not only the copy: char(n),
# bpchar, varchar(n), bit(n), varbit(n), numeric(p,s), timestamp(p), time(p),
# interval fields, and arrays of them; a char(3) primary key; a keyless
# REPLICA IDENTITY FULL table with char(n) and bit(n) columns (its updates and
# deletes match the whole row). Inserted, updated and deleted while midflight
# streams: each value must arrive whole (no 'xyz' -> 'x', no keys collapsing).
source "$(dirname "$0")/lib.sh"
start_servers 26522

sql_src <<'SQL'
CREATE TABLE typmods (
  id int PRIMARY KEY,
  c5 char(5), c88 character(88), bp bpchar, vc varchar(10), b4 bit(4), vb varbit(8), n numeric(10,3),
  ts timestamp(2), tm time(1), iym interval year to month, ids interval day to second(2),
  ca char(3)[], ba bit(4)[], na numeric(6,2)[]
);
CREATE TABLE currencies (code char(3) PRIMARY KEY, name text);
CREATE TABLE flags (code char(5), mask bit(4), note varchar(8));
ALTER TABLE flags REPLICA IDENTITY FULL;
INSERT INTO typmods (id, c5) VALUES (1, 'seed');
INSERT INTO currencies VALUES ('EUR', 'euro');
INSERT INTO flags VALUES ('seed', B'0001', 'seed');
SQL
write_spec typmod "partitions: 3"
run_mf_bg
wait_phase replicating

log "inserting, updating and deleting typed values while streaming"
sql_src <<'SQL'
INSERT INTO typmods VALUES
  (2, 'xyz', 'a longer value in character(88)', 'bpchar text ', 'ten chars!', B'1010', B'101', 1234567.891,
   '2024-03-01 12:34:56.78', '12:34:56.7', '1 year 2 months', '3 days 04:05:06.78',
   ARRAY['ab', 'xyz']::char(3)[], ARRAY[B'1100', B'0011']::bit(4)[], ARRAY[1.25, 9999.99]::numeric(6,2)[]),
  (3, 'ab', 'cd', 'e', 'f', B'1111', B'11110000', -0.001, '1999-12-31 23:59:59.99', '00:00:00.1', '-3 years',
   '-1 days -00:00:01.5', ARRAY['q']::char(3)[], ARRAY[B'0000']::bit(4)[], ARRAY[-0.5]::numeric(6,2)[]);
UPDATE typmods SET c5 = 'vwxyz', b4 = B'0110', vb = B'1', n = 0.5, ca = ARRAY['abc']::char(3)[] WHERE id = 1;
INSERT INTO currencies VALUES ('GBP', 'pound'), ('GHS', 'cedi'), ('USD', 'dollar');
UPDATE currencies SET name = 'pound sterling' WHERE code = 'GBP';
DELETE FROM currencies WHERE code = 'USD';
INSERT INTO flags VALUES ('abc', B'1010', 'one'), ('abcd', B'0101', 'two');
UPDATE flags SET mask = B'1111', note = 'changed' WHERE code = 'abc';
DELETE FROM flags WHERE code = 'seed';
SQL
wait_caught_up 60
check() {
  local what=$1 sql=$2 want=$3 got
  got=$(sql_dst -c "$sql")
  [[ $got == "$want" ]] || fail "$what on the target: got '$got', want '$want'"
}
check "char(5) inserted" "SELECT c5::text || '|' || octet_length(c5) FROM typmods WHERE id = 2" "xyz|5"
check "char(5) updated" "SELECT c5 FROM typmods WHERE id = 1" "vwxyz"
check "bit(4) updated" "SELECT b4 FROM typmods WHERE id = 1" "0110"
check "char(3)[]" "SELECT ca FROM typmods WHERE id = 2" "{\"ab \",xyz}"
check "currencies" "SELECT string_agg(code || '=' || name, ',' ORDER BY code) FROM currencies" "EUR=euro,GBP=pound sterling,GHS=cedi"
check "keyless flags" "SELECT string_agg(code || '/' || mask || '/' || note, ',' ORDER BY code) FROM flags" "abc/1111/changed,abcd/0101/two"
assert_equal
stop_mf
log "PASS"
