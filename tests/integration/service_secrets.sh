#!/usr/bin/env bash
# Passwords never show, whatever the URI looks like, against a real server:
#   `midflight run` and `midflight serve` with malformed URIs (an unclosed
#   IPv6 bracket, a '%' that is not an escape), with a password holding '@'
#   that the server refuses, and with one holding @ % : / and unicode that it
#   accepts (the migration must reach replicating: libpq and pg_dump got the
#   right password). The password must appear nowhere: not in stderr or
#   stdout, the service's log, the state directory's files (the service's
#   spec.yaml aside: it is the operator's own spec, kept 0600), `status`, nor
#   the API's answers (the unauthenticated GET /api/migrations, a
#   migration's detail and its events). And the state directories are
#   private after a run: 0700, every file in them 0600 (state.db, its -wal
#   and -shm, schema.dump from pg_dump, lock, api_token).
source "$(dirname "$0")/lib.sh"

start_servers 28400
PORT=${SRC##*:}; PORT=${PORT%%/*}
HOST=127.0.0.1:$PORT

# The password the server accepts: @ % : / and unicode, %-escaped only where
# the URI grammar needs it (base/uri.h: a literal % is %25).
GOOD_PW='Xy@7%Qr:/ü9'
GOOD_PW_URI='Xy@7%25Qr:/ü9'
psql -X -q -v ON_ERROR_STOP=1 "$SRC" -c "CREATE ROLE mf_sec LOGIN SUPERUSER REPLICATION PASSWORD '$GOOD_PW'"
psql -X -q -v ON_ERROR_STOP=1 "$DST" -c "CREATE ROLE mf_sec LOGIN SUPERUSER PASSWORD '$GOOD_PW'"
pgbench -i -q -s 1 "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"

# What must never be seen: each password, and the pieces a partial redaction
# would leave ("postgres://u:***@ngPw9@host").
SECRETS=(Zq9Secret 'Wr@ngPw9' ngPw9 "$GOOD_PW" "$GOOD_PW_URI" '7%Qr' '7%25Qr' 'Qr:/ü9' 'Xy@7')
BAD_BRACKET="postgres://mf_sec:Zq9Secret@[::1:$PORT/postgres"
BAD_ESCAPE="postgres://mf_sec:Zq9Secret%zz@$HOST/postgres"
WRONG_AT="postgres://mf_sec:Wr@ngPw9@$HOST/postgres"
GOOD="postgres://mf_sec:$GOOD_PW_URI@$HOST/postgres"
DPORT=${DST##*:}; DPORT=${DPORT%%/*}
GOOD_DST="postgres://mf_sec:$GOOD_PW_URI@127.0.0.1:$DPORT/postgres"

# spec NAME SOURCE TARGET: writes $WORK/NAME.yaml (URIs quoted: they hold ':' and '%').
spec() {
  printf "name: %s\nsource: '%s'\ntarget: '%s'\nstate_dir: %s\n" "$1" "$2" "$3" "$WORK/state-$1" >"$WORK/$1.yaml"
}

# no_secret FILE...: none of the files holds any of SECRETS.
no_secret() {
  local s f
  for s in "${SECRETS[@]}"; do
    for f in "$@"; do
      if grep -a -F -n -- "$s" "$f" >/dev/null 2>&1; then
        fail "'$s' in $f: $(grep -a -F -n -- "$s" "$f" | head -3)"
      fi
    done
  done
}

# private_modes DIR: DIR and every directory in it 0700, every file 0600.
private_modes() {
  local bad
  bad=$(find "$1" \( \( -type d ! -perm 0700 \) -o \( -type f ! -perm 0600 \) \) -printf '%m %p\n')
  [[ -z $bad ]] || fail "not private: $bad"
}

# ---- midflight run ----
run_expect_fail() {  # run_expect_fail NAME SOURCE TARGET PATTERN
  spec "$1" "$2" "$3"
  local rc=0
  timeout 120 "$MF" run "$WORK/$1.yaml" >"$WORK/run.$1.log" 2>&1 || rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] || { cat "$WORK/run.$1.log"; fail "run $1: exit $rc, expected a failure"; }
  local files=("$WORK/run.$1.log")
  if [[ -d $WORK/state-$1 ]]; then
    "$MF" status "$WORK/$1.yaml" --json >"$WORK/status.$1.json" 2>&1 || true
    files+=("$WORK/status.$1.json")
    while IFS= read -r f; do files+=("$f"); done < <(find "$WORK/state-$1" -type f)
  fi
  no_secret "${files[@]}"
  grep -q -- "$4" "$WORK/run.$1.log" || { cat "$WORK/run.$1.log"; fail "run $1: no '$4' in its output"; }
  log "run $1 refused: $(tail -1 "$WORK/run.$1.log")"
}
run_expect_fail bracket "$BAD_BRACKET" "$DST" "field 'source': unclosed '\[' in the host"
run_expect_fail escape "$SRC" "$BAD_ESCAPE" "field 'target': the password has a '%' that is not a %XX escape"
run_expect_fail wrongat "$WRONG_AT" "$DST" 'password authentication failed for user "mf_sec"'
grep -q 'postgres://mf_sec:\*\*\*@127.0.0.1' "$WORK/run.wrongat.log" || fail "run wrongat: the redacted URI is not named"

# The accepted password with @ % : / ü: copy (libpq, pg_dump with PGPASSWORD) and replicate.
spec good "$GOOD" "$GOOD_DST"
SPEC=$WORK/good.yaml
run_mf_bg
wait_phase replicating 120
sql_src -c "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 5, now())"
for _ in $(seq 100); do [[ $(sql_dst -c "SELECT count(*) FROM pgbench_history") == 1 ]] && break; sleep 0.2; done
[[ $(sql_dst -c "SELECT count(*) FROM pgbench_history") == 1 ]] || fail "good: the change did not replicate"
"$MF" status "$SPEC" --json >"$WORK/status.good.json"
for f in state.db state.db-wal state.db-shm schema.dump lock api_token; do
  [[ -f $WORK/state-good/$f ]] || fail "state-good/$f is missing (ls: $(ls "$WORK/state-good"))"
done
private_modes "$WORK/state-good"
log "run good (running): state directory 0700, its files 0600: $(cd "$WORK/state-good" && stat -c '%a %n' . * | tr '\n' ' ')"
stop_mf
private_modes "$WORK/state-good"
mapfile -t good_files < <(find "$WORK/state-good" -type f)
no_secret "$WORK"/run.1.log "$WORK/status.good.json" "${good_files[@]}"
log "run good: replicating with the password holding @ % : / ü; it shows nowhere"

# ---- midflight serve ----
start_serve "$WORK/svc" 28460
post() {  # post NAME SOURCE TARGET: POSTs the spec, prints "STATUS BODY"
  spec "$1" "$2" "$3"
  sed -i '/^state_dir:/d' "$WORK/$1.yaml"
  curl -s -o "$WORK/post.$1.json" -w '%{http_code} ' -H "Authorization: Bearer $MIDFLIGHT_API_TOKEN" \
    --data-binary @"$WORK/$1.yaml" "http://$API/api/migrations"
  cat "$WORK/post.$1.json"
}
P_BRACKET=$(post sbracket "$SRC" "$BAD_BRACKET")
P_ESCAPE=$(post sescape "$BAD_ESCAPE" "$DST")
P_WRONG=$(post swrongat "$WRONG_AT" "$DST")
for _ in $(seq 100); do [[ $(api_field swrongat phase) == failed ]] && break; sleep 0.2; done
# Everything the API answers, with no token.
curl -s "http://$API/api/migrations" >"$WORK/api.list.json"
for n in sbracket sescape swrongat; do
  curl -s "http://$API/api/migrations/$n" >"$WORK/api.$n.json"
  curl -s "http://$API/api/migrations/$n/events" >"$WORK/api.$n.events.json"
done
kill -TERM "$MF_PID"; wait "$MF_PID" || true; MF_PID=
mapfile -t svc_files < <(find "$WORK/svc" -type f ! -name spec.yaml)
no_secret "$WORK"/run.serve*.log "$WORK"/post.*.json "$WORK"/api.*.json "${svc_files[@]}"
private_modes "$WORK/svc"
[[ $P_BRACKET == "400 "*"field 'target': unclosed '[' in the host"* ]] || fail "serve bracket: $P_BRACKET"
[[ $P_ESCAPE == "400 "*"field 'source': the password has a '%' that is not a %XX escape"* ]] ||
  fail "serve escape: $P_ESCAPE"
[[ $P_WRONG == "201 "* ]] || fail "serve wrongat: $P_WRONG"
[[ $(jq -r .error "$WORK/api.swrongat.json") == *"password authentication failed"* ]] ||
  fail "serve wrongat: $(cat "$WORK/api.swrongat.json")"
log "serve: malformed URIs refused naming the field; the refused password shows nowhere"
log "PASS"
