#!/usr/bin/env bash
# Flow control through the proxy: the server writes while the client is
# still writing, in volumes that fill every socket buffer on the way, and
# the session must neither hang nor lose a message (a proxy that blocks on
# one direction while the other fills deadlocks here; direct, each takes a
# few seconds):
#  - COPY FROM STDIN of 100,000 rows into a table whose trigger raises a
#    NOTICE for every row (~15 MB of notices back while ~11 MB go in);
#  - libpq pipeline mode (pgbench \startpipeline, extended protocol): 300
#    queries of 64 kB each, every one answered with 64 kB, sent before any
#    result is read.
# Each runs direct first (the reference time), then through the proxy under
# a 90 s timeout; the notice count, the COPY count and pgbench's transaction
# count must be the same as direct.
source "$(dirname "$0")/lib.sh"
start_servers 23620
PROXY_PORT=$(free_port 23630)
sql_src -c 'CREATE TABLE t (id int PRIMARY KEY);
CREATE FUNCTION noisy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE $n$row %$n$, NEW.id; RETURN NEW; END $$'
write_spec flow "partitions: 1" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT"
run_mf_bg
wait_phase replicating
PROXY_URI="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/postgres"
ROWS=100000
python3 - "$WORK/rows.tsv" "$ROWS" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(1, int(sys.argv[2]) + 1):
        f.write(f"{i}\t{'x' * 100}\n")
PY
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# A temporary table (not replicated, and gone with its session): the same
# COPY runs direct and through the proxy.
copy_with_notices() {
  local uri=$1 name=$2 t0
  t0=$(date +%s.%N)
  timeout 90 psql -X -v ON_ERROR_STOP=1 "$uri" \
    -c 'CREATE TEMP TABLE n (id int PRIMARY KEY, pad text)' \
    -c 'CREATE TRIGGER noisy BEFORE INSERT ON n FOR EACH ROW EXECUTE FUNCTION public.noisy()' \
    -c "\\copy n FROM '$WORK/rows.tsv'" >"$WORK/$name.out" 2>"$WORK/$name.err" \
    || fail "COPY with a NOTICE per row ($name) failed or hung (exit $?): $(grep -v 'NOTICE:  row' "$WORK/$name.err" | tail -3)"
  local notices
  notices=$(grep -c 'NOTICE:  row' "$WORK/$name.err" || true)
  [[ $notices == "$ROWS" ]] || fail "COPY ($name): the client got $notices notices, want $ROWS"
  grep -q "COPY $ROWS" "$WORK/$name.out" || fail "COPY ($name) answered: $(cat "$WORK/$name.out")"
  log "COPY of $ROWS rows with a NOTICE each ($name): $notices notices, $(secs "$t0") s"
}
log "--- COPY FROM STDIN, a NOTICE per row"
copy_with_notices "$SRC" direct
copy_with_notices "$PROXY_URI" proxy

log "--- pipeline mode: 300 queries of 64 kB, each answered with 64 kB"
big=$(head -c 65536 /dev/zero | tr '\0' x)
{
  echo '\startpipeline'
  for i in $(seq 300); do echo "SELECT $i AS n, '$big' AS v;"; done
  echo '\endpipeline'
} >"$WORK/pipeline.sql"
pipeline() {
  local uri=$1 name=$2 t0
  t0=$(date +%s.%N)
  timeout 90 pgbench -n -M extended -c 1 -t 2 -f "$WORK/pipeline.sql" "$uri" >"$WORK/$name.pgbench" 2>&1 \
    || fail "pgbench pipeline ($name) failed or hung (exit $?): $(tail -3 "$WORK/$name.pgbench")"
  grep -q "number of transactions actually processed: 2/2" "$WORK/$name.pgbench" \
    || fail "pgbench pipeline ($name): $(grep -E 'processed|failed|error' "$WORK/$name.pgbench")"
  log "pipeline ($name): 2 × 300 queries of 64 kB, $(secs "$t0") s"
}
pipeline "$SRC" direct
pipeline "$PROXY_URI" proxy

stop_mf
log "PASS"
