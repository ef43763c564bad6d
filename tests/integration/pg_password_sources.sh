#!/usr/bin/env bash
# Passwords kept out of the spec, against real servers that ask for them
# (scram-sha-256 on 127.0.0.1): the source's from source_password_file (a
# password with @ % ? # / : ü, which must be %-encoded to sit in a URI), the
# target's from ${MF_TARGET_PW}; midflight runs without PGPASSWORD. The
# migration must reach replicating (libpq, pg_dump/pg_restore and the proxy's
# own backend logins all got the right passwords: a client logs in through
# the proxy with the source password), with --log-format json (every stderr
# line one JSON object naming the migration). Then the password shows
# nowhere: stdout/stderr, the state directory, `status --json`, the API's
# answers. And the mistakes are one line naming the field, the variable or
# the path: an unset variable, a password file open to others, a missing one.
# Last, a second migration whose source URI takes PGPASSWORD (libpq always
# did; the proxy's own logins to the servers did not).
source "$(dirname "$0")/lib.sh"

start_servers 30000
SPORT=${SRC##*:}; SPORT=${SPORT%%/*}
DPORT=${DST##*:}; DPORT=${DPORT%%/*}

SRC_PW='Fi1e@pw%x?y#z/:ü'
DST_PW='Env-pw_7Tq'
psql -X -q -v ON_ERROR_STOP=1 "$SRC" -c "CREATE ROLE mf_pw LOGIN SUPERUSER REPLICATION PASSWORD '$SRC_PW'"
psql -X -q -v ON_ERROR_STOP=1 "$DST" -c "CREATE ROLE mf_pw LOGIN SUPERUSER PASSWORD '$DST_PW'"
pgbench -i -q -s 1 "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"

printf '%s\n' "$SRC_PW" >"$WORK/source.pw"
chmod 600 "$WORK/source.pw"
API=127.0.0.1:$(free_port 30010)
PROXY_PORT=$(free_port 30020)
SPEC=$WORK/pwsrc.yaml
cat >"$SPEC" <<EOF
name: pwsrc
source: postgres://mf_pw@127.0.0.1:$SPORT/postgres
source_password_file: $WORK/source.pw
target: postgres://mf_pw:\${MF_TARGET_PW}@127.0.0.1:$DPORT/postgres
state_dir: $WORK/state-pwsrc
proxy:
  listen: 127.0.0.1:$PROXY_PORT
EOF
grep -qF "$SRC_PW" "$SPEC" && fail "the spec holds the password"

# mf ARGS...: midflight without PGPASSWORD (lib.sh exports the superuser's).
mf() { env -u PGPASSWORD "$MF" "$@"; }

# ---- mistakes: one line naming what is wrong ----
expect_error() {  # expect_error WANT SPECFILE [env VAR=...]
  local out rc=0
  out=$(env -u PGPASSWORD "${@:3}" "$MF" run "$2" 2>&1) || rc=$?
  [[ $rc -eq 1 ]] || fail "run $2: exit $rc, expected 1: $out"
  [[ $(wc -l <<<"$out") -eq 1 ]] || fail "not one line: $out"
  [[ $out == "midflight: $1" ]] || fail "expected 'midflight: $1', got '$out'"
  [[ $out != *"$DST_PW"* && $out != *"$SRC_PW"* ]] || fail "password in: $out"
  log "refused: $out"
}
expect_error "$SPEC: field 'target': environment variable MF_TARGET_PW is not set" "$SPEC"
sed "s|$WORK/source.pw|$WORK/open.pw|" "$SPEC" >"$WORK/open.yaml"
printf '%s\n' "$SRC_PW" >"$WORK/open.pw"
chmod 644 "$WORK/open.pw"
expect_error "$WORK/open.yaml: field 'source_password_file': $WORK/open.pw is open to group or others (mode 0644); make it private: chmod 600 $WORK/open.pw" \
  "$WORK/open.yaml" MF_TARGET_PW="$DST_PW"
sed "s|$WORK/source.pw|$WORK/missing.pw|" "$SPEC" >"$WORK/missing.yaml"
expect_error "$WORK/missing.yaml: field 'source_password_file': cannot read $WORK/missing.pw: No such file or directory" \
  "$WORK/missing.yaml" MF_TARGET_PW="$DST_PW"
# With --log-format json the refusal is an error record, like every stderr line.
out=$(env -u PGPASSWORD "$MF" run "$SPEC" --log-format json 2>&1) && fail "run without MF_TARGET_PW succeeded"
python3 -c 'import json, sys; o = json.loads(sys.argv[1]); assert o["level"] == "error" and "MF_TARGET_PW" in o["msg"], o' "$out" ||
  fail "refusal in json mode: $out"
[[ -d $WORK/state-pwsrc ]] && fail "a refused spec left a state directory"

# ---- the migration, passwords from the file and the environment ----
# (`status SPEC` loads the spec too, so lib.sh's helpers need the variable.)
export MF_TARGET_PW=$DST_PW
env -u PGPASSWORD "$MF" --log-format json run "$SPEC" --listen "$API" >"$WORK/run.1.out" 2>"$WORK/run.1.log" &
MF_PID=$!
RUN_N=1
wait_phase replicating 120
sql_src -c "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 5, now())"
for _ in $(seq 100); do [[ $(sql_dst -c "SELECT count(*) FROM pgbench_history") == 1 ]] && break; sleep 0.2; done
[[ $(sql_dst -c "SELECT count(*) FROM pgbench_history") == 1 ]] || fail "the change did not replicate"
log "replicating; a change reached the target"

# Through the proxy: it logs in to the source as mf_pw with the file's password.
got=$(PGPASSWORD=$SRC_PW psql -X -At -h 127.0.0.1 -p "$PROXY_PORT" -U mf_pw -d postgres -c "SELECT inet_server_port()")
[[ $got == "$SPORT" ]] || fail "through the proxy: '$got', expected the source's port $SPORT"
log "proxy: client logged in, routed to the source (port $got)"

mf status "$SPEC" --json >"$WORK/status.json"
curl -s "http://$API/api/migrations" >"$WORK/api.list.json"
curl -s "http://$API/api/migrations/pwsrc" >"$WORK/api.detail.json"
curl -s "http://$API/api/migrations/pwsrc/events" >"$WORK/api.events.json"
[[ $(jq -r .source "$WORK/api.detail.json") == "postgres://mf_pw:***@127.0.0.1:$SPORT/postgres" ]] ||
  fail "API source: $(jq -r .source "$WORK/api.detail.json")"
stop_mf

# Every stderr line is one JSON object with the four fields; the runner's name the migration.
python3 - "$WORK/run.1.log" <<'PY' || fail "stderr is not JSON lines: $(head -5 "$WORK/run.1.log")"
import json, re, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
assert lines, "no log lines"
named = 0
for l in lines:
    o = json.loads(l)
    assert set(o) == {"ts", "level", "migration", "msg"}, o
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", o["ts"]), o["ts"]
    assert o["level"] in ("debug", "info", "warn", "error"), o
    named += o["migration"] == "pwsrc"
assert named > 0, "no line names the migration"
print(f"{len(lines)} JSON log lines, {named} naming pwsrc")
PY
grep -q '"msg":"\[replicating\] streaming changes"' "$WORK/run.1.log" || fail "Say lines not in the JSON log"
grep -q '^\[replicating\] streaming changes' "$WORK/run.1.out" || fail "Say lines not on stdout as text"

# The password, in every form it could take, is nowhere.
ENC_PW=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$SRC_PW")
mapfile -t state_files < <(find "$WORK/state-pwsrc" -type f)
for s in "$SRC_PW" "$ENC_PW" "$DST_PW" 'Fi1e@pw'; do
  for f in "$WORK"/run.1.* "$WORK/status.json" "$WORK"/api.*.json "${state_files[@]}"; do
    grep -a -F -q -- "$s" "$f" && fail "'$s' in $f: $(grep -a -F -- "$s" "$f" | head -2)"
  done
done
log "the passwords show nowhere (${#state_files[@]} state files, logs, status, API)"

# ---- PGPASSWORD: a URI with a user and no password, and no file ----
# libpq always took it; the proxy's own backend logins did not ("the server
# asked for a password ... but none is configured").
psql -X -q -v ON_ERROR_STOP=1 "$SRC" -c "CREATE DATABASE db2"
psql -X -q -v ON_ERROR_STOP=1 "$DST" -c "CREATE DATABASE db2"
pgbench -i -q -s 1 "${SRC%/*}/db2" >/dev/null 2>&1
psql -X -q -v ON_ERROR_STOP=1 "${SRC%/*}/db2" -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"
PROXY2_PORT=$(free_port 30030)
SPEC=$WORK/pwenv.yaml
cat >"$SPEC" <<EOF
name: pwenv
source: postgres://mf_pw@127.0.0.1:$SPORT/db2
target: postgres://mf_pw:\${MF_TARGET_PW}@127.0.0.1:$DPORT/db2
state_dir: $WORK/state-pwenv
proxy:
  listen: 127.0.0.1:$PROXY2_PORT
EOF
export PGPASSWORD=$SRC_PW  # for midflight and lib.sh's psql alike from here
RUN_N=2
"$MF" run "$SPEC" >"$WORK/run.2.log" 2>&1 &
MF_PID=$!
wait_phase replicating 120
got=$(psql -X -At -h 127.0.0.1 -p "$PROXY2_PORT" -U mf_pw -d db2 -c "SELECT current_database() || ':' || inet_server_port()" 2>&1) || true
[[ $got == "db2:$SPORT" ]] || fail "through the proxy with PGPASSWORD: '$got'"
"$MF" status "$SPEC" --json >"$WORK/status.pwenv.json"
stop_mf
mapfile -t state_files < <(find "$WORK/state-pwenv" -type f)
for s in "$SRC_PW" "$ENC_PW" "$DST_PW" 'Fi1e@pw'; do
  for f in "$WORK/run.2.log" "$WORK/status.pwenv.json" "${state_files[@]}"; do
    grep -a -F -q -- "$s" "$f" && fail "'$s' in $f: $(grep -a -F -- "$s" "$f" | head -2)"
  done
done
log "PGPASSWORD: replicating, the proxy logged in to the source with it; it shows nowhere"
log "PASS"
