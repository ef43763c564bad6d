#!/usr/bin/env bash
# A client that writes while the server writes back, through the proxy: a
# COPY FROM STDIN of ~30 MB (rows with char(n), bit(n), numeric(p,s) and
# timestamp(p) values into a table and columns with odd names) into a table
# whose trigger raises a NOTICE every 1,000 rows, so the server sends while
# the client streams (through the proxy's large-message streaming); then a
# multi-statement write. Every row arrives once, the notices reach the
# client, and the target, replicated, equals the source.
source "$(dirname "$0")/lib.sh"
start_servers 31200
PROXY_PORT=$(free_port 31204)
sql_src -c 'CREATE TABLE "odd ""copy"" t" ("select" int PRIMARY KEY, "mf_r" char(5), b bit(4), n numeric(8,3),
  ts timestamp(2), note text);
CREATE FUNCTION noisy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW."select" % 1000 = 0 THEN RAISE NOTICE $n$row %$n$, NEW."select"; END IF; RETURN NEW; END $$;
CREATE TRIGGER noisy BEFORE INSERT ON "odd ""copy"" t" FOR EACH ROW EXECUTE FUNCTION noisy();
ALTER TABLE "odd ""copy"" t" ENABLE ALWAYS TRIGGER noisy'
write_spec pcopy "partitions: 2" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT"
run_mf_bg
wait_phase replicating
PROXY_URI="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/postgres"
python3 - "$WORK/rows.tsv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(1, 200001):
        f.write(f"{i}\tab{i % 7}\t{i % 16:04b}\t{i % 99999}.{i % 1000:03d}\t2026-12-06 01:02:03.{i % 100:02d}\t{'x' * 100}\n")
PY
log "COPY of $(du -h "$WORK/rows.tsv" | cut -f1) through the proxy, the server noticing every 1,000 rows"
psql -X -v ON_ERROR_STOP=1 "$PROXY_URI" -c '\copy "odd ""copy"" t" FROM '"'$WORK/rows.tsv'"'' 2>"$WORK/notices" >"$WORK/copy.out" \
  || fail "COPY through the proxy failed: $(tail -3 "$WORK/notices")"
notices=$(grep -c 'NOTICE:  row' "$WORK/notices" || true)
[[ $notices == 200 ]] || fail "the client got $notices notices, want 200"
grep -q 'COPY 200000' "$WORK/copy.out" || fail "COPY answered: $(cat "$WORK/copy.out")"
psql -X -v ON_ERROR_STOP=1 "$PROXY_URI" -c 'INSERT INTO "odd ""copy"" t" VALUES (300000, $$z$$, $$1010$$::bit(4), 1.5, now(), $$a$$);
  UPDATE "odd ""copy"" t" SET "mf_r" = $$abc$$, b = $$0110$$::bit(4) WHERE "select" <= 1000; DELETE FROM "odd ""copy"" t" WHERE "select" % 997 = 0' \
  >/dev/null 2>"$WORK/multi.err" || fail "multi-statement write through the proxy failed: $(cat "$WORK/multi.err")"
[[ $(sql_src -c 'SELECT count(*) FROM "odd ""copy"" t"') == 199801 ]] || fail "source rows: $(sql_src -c 'SELECT count(*) FROM "odd ""copy"" t"')"
log "source holds 199,801 rows, $notices notices reached the client"
wait_caught_up 120
stop_mf
assert_equal
log "PASS"
