#!/usr/bin/env bash
# The proxy's memory stays bounded whatever clients send: three clients each
# send a 300 MB query through it at once, one reads a 200 MB value back, and
# midflight's peak RSS (VmHWM: the proxy runs inside it) must grow by less
# than 200 MB over its baseline (measured here; a growth bound, so that a
# sanitizer build's larger baseline does not matter). What the proxy needs:
# per session at most one read (64 KiB) and one buffered message up to 1 MiB
# before streaming starts, a few MB in all here; messages the proxy must hold
# whole are capped at 16 MiB (checked below: refused with SQLSTATE 54000, the
# session goes on). Before the fix the same run peaked at 2.5 GB.
source "$(dirname "$0")/lib.sh"
start_servers 31010
PROXY_PORT=$(free_port 31014)
RO_PORT=$(free_port $((PROXY_PORT + 1)))
sql_src -c "CREATE TABLE t (id int PRIMARY KEY)"
write_spec mem "partitions: 2" "proxy:" "  listen: 127.0.0.1:$PROXY_PORT" "  listen_readonly: 127.0.0.1:$RO_PORT"
run_mf_bg
wait_phase replicating
RW="postgres://midflight:midflight@127.0.0.1:$PROXY_PORT/postgres"
RO="postgres://midflight:midflight@127.0.0.1:$RO_PORT/postgres"
hwm() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$MF_PID/status"; }
psql -X -At "$RW" -c "SELECT 1" >/dev/null || fail "the proxy does not answer"
base=$(hwm)
log "midflight peak RSS before: $base MB"

# SQL files: a 300 MB query (a comment makes it long and cheap for the
# server), a 40 MB INSERT whose value is checked on the server (into a
# temporary table: replicating it would measure the pipeline, not the proxy),
# and 20 MB statements the proxy must hold whole.
python3 - "$WORK" <<'PYEOF'
import sys
w = sys.argv[1]
with open(f"{w}/q300.sql", "wb") as f:
    f.write(b"SELECT 'done' /* " + b"x" * (300 << 20) + b" */;\n")
with open(f"{w}/insert40.sql", "wb") as f:
    f.write(b"CREATE TEMP TABLE big (v text);\nINSERT INTO big VALUES ('" + b"abcdefghij" * (4 << 20) + b"');\n"
            b"SELECT v = repeat('abcdefghij', 4 << 20) FROM big;\n")
with open(f"{w}/set20.sql", "wb") as f:
    f.write(b"SET application_name = '" + b"y" * (20 << 20) + b"';\nSELECT 'alive';\n")
with open(f"{w}/ro20.sql", "wb") as f:
    f.write(b"SELECT 'ro' /* " + b"z" * (20 << 20) + b" */;\nSELECT 'alive';\n")
PYEOF

t0=$(date +%s.%N)
pids=()
for i in 1 2 3; do
  psql -X -At "$RW" -f "$WORK/q300.sql" >"$WORK/q300.$i.out" 2>&1 &
  pids+=($!)
done
peak_rss=0
while kill -0 "${pids[@]}" 2>/dev/null; do
  rss=$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$MF_PID/status")
  ((rss > peak_rss)) && peak_rss=$rss
  sleep 0.2
done
for i in 0 1 2; do wait "${pids[$i]}" || { cat "$WORK/q300.$((i + 1)).out"; fail "a 300 MB query through the proxy failed"; }; done
for i in 1 2 3; do [[ $(cat "$WORK/q300.$i.out") == done ]] || fail "300 MB query $i: $(head -c 300 "$WORK/q300.$i.out")"; done
log "3 x 300 MB queries through the proxy in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s; midflight RSS peak sampled $peak_rss MB, VmHWM $(hwm) MB"

out=$(psql -X -q -At -v ON_ERROR_STOP=1 "$RW" -f "$WORK/insert40.sql") || fail "the 40 MB INSERT through the proxy failed"
[[ $out == t ]] || fail "the 40 MB value arrived altered: $out"
log "40 MB INSERT arrived intact; midflight VmHWM $(hwm) MB"
psql -X -At "$RW" -c "SELECT repeat('x', 200 << 20)" | wc -c >"$WORK/read.size"
[[ $(cat "$WORK/read.size") == $(((200 << 20) + 1)) ]] || fail "the 200 MB value read back has $(cat "$WORK/read.size") bytes"
log "200 MB value read back through the proxy; midflight VmHWM $(hwm) MB"
peak=$(hwm)
log "midflight peak RSS (VmHWM): before $base MB, after $peak MB"
((peak - base < 200)) || fail "midflight's peak RSS grew from $base MB to $peak MB (bound: 200 MB of growth)"

# Statements the proxy must hold whole are capped: refused, the session goes on.
out=$(psql -X -At "$RW" -f "$WORK/set20.sql" 2>&1) || true
grep -q "above the 16 MiB the proxy holds whole" <<<"$out" || fail "a 20 MB SET was not refused clearly: ${out:0:300}"
grep -qx alive <<<"$out" || fail "the session did not go on after the refusal: ${out:0:300}"
log "20 MB SET refused: $(grep -o 'ERROR:.*' <<<"$out" | head -1 | cut -c1-160)"
out=$(psql -X -At "$RO" -f "$WORK/ro20.sql" 2>&1) || true
grep -q "above the 16 MiB the proxy holds whole" <<<"$out" || fail "a 20 MB query on the read-only endpoint was not refused: ${out:0:300}"
grep -qx alive <<<"$out" || fail "the read-only session did not go on after the refusal"
log "20 MB query on the read-only endpoint refused"

# The session state kept for replay is capped in total (64 MiB): five 15 MB
# PREPAREs, the fifth refused; DEALLOCATE ALL frees the room again.
python3 - "$WORK" <<'PYEOF'
import sys
with open(f"{sys.argv[1]}/prepare.sql", "wb") as f:
    for i in range(1, 6):
        f.write(b"PREPARE p%d AS SELECT %d /* " % (i, i) + b"p" * (15 << 20) + b" */;\n")
    f.write(b"SELECT count(*) FROM pg_prepared_statements;\nDEALLOCATE ALL;\n")
    f.write(b"PREPARE q AS SELECT 'again' /* " + b"q" * (15 << 20) + b" */;\nEXECUTE q;\n")
PYEOF
out=$(psql -X -At "$RW" -f "$WORK/prepare.sql" 2>&1) || true
grep -q "would take the session state the proxy keeps above 64 MiB" <<<"$out" || fail "the fifth 15 MB PREPARE was not refused: ${out:0:300}"
grep -qx 4 <<<"$out" || fail "expected 4 prepared statements: ${out:0:300}"
grep -qx again <<<"$out" || fail "DEALLOCATE ALL did not make room again: ${out:0:300}"
log "session state capped: the fifth 15 MB PREPARE refused, room again after DEALLOCATE ALL; midflight VmHWM $(hwm) MB"
stop_mf
log "PASS"
