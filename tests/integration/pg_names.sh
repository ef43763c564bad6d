#!/usr/bin/env bash
# Names that need quoting everywhere: a mixed-case schema, a table name with a
# space and a quote, mixed-case columns, a keyword as a column name.
source "$(dirname "$0")/lib.sh"
start_servers 26502
sql_src <<'SQL'
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Order Items" ("Id" int PRIMARY KEY, "select" text, "Qty""x" int);
INSERT INTO "Sales"."Order Items" SELECT g, 's' || g, g FROM generate_series(1, 100) g;
CREATE TABLE "Sales"."Log" (at int, "What" text);
ALTER TABLE "Sales"."Log" REPLICA IDENTITY FULL;
INSERT INTO "Sales"."Log" SELECT g, 'w' FROM generate_series(1, 10) g;
SQL
write_spec names "tables: ['Sales.*']"
run_mf_bg
wait_phase replicating
sql_src -c 'UPDATE "Sales"."Order Items" SET "select" = $$changed$$ WHERE "Id" <= 10; DELETE FROM "Sales"."Order Items" WHERE "Id" > 90; UPDATE "Sales"."Order Items" SET "Id" = "Id" + 1000 WHERE "Id" = 50; INSERT INTO "Sales"."Log" VALUES (99, $$new$$); DELETE FROM "Sales"."Log" WHERE at = 1; TRUNCATE "Sales"."Log";'
wait_caught_up 30
assert_equal
stop_mf
log "PASS"
