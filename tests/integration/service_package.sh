#!/usr/bin/env bash
# midflight installed and run like a database service, on this machine:
#   scripts/package (cpack -G DEB) ─► the .deb's Depends and files ─► dpkg -i
#   ─► the midflight system user, /var/lib/midflight 0700, the man page renders
#   without warnings, bash completion (`midflight sw<TAB>` → switch; migration
#   names from the service) ─► the unit's ExecStart line run as the midflight
#   user with the unit's environment (its Environment= and the EnvironmentFile
#   /etc/midflight/midflight.env carrying the API token and a password), and
#   NOTIFY_SOCKET on an abstract socket this test listens on: READY=1, STATUS=,
#   WATCHDOG=1 ─► /healthz, /readyz ─► a PostgreSQL migration created through
#   the API with the installed binary (its password a ${VAR} resolved in the
#   service's environment) reaches replicating and carries a new row ─►
#   /readyz names it ─► SIGTERM: STOPPING=1, exit 0 ─► dpkg -P ─► the machine
#   as it was (no binary, unit, conffile, state directory nor user left).
# systemd is not PID 1 on the machines this runs on (checked below), so the
# unit's ExecStart line is run by hand, as systemd would run it.
# Needs root (dpkg -i) and a machine without a midflight package or user.
source "$(dirname "$0")/lib.sh"

[[ $(id -u) -eq 0 ]] || fail "needs root (dpkg -i, the midflight user)"
if [[ -d /run/systemd/system ]]; then
  log "systemd runs this machine; the test still runs the unit's ExecStart by hand (no systemctl start)"
else
  log "systemd is not PID 1 here (PID 1 is $(ps -p 1 -o comm=)): the unit's ExecStart line is run by hand"
fi
dpkg-query -W -f='${Status}' midflight 2>/dev/null | grep -q "ok installed" &&
  fail "a midflight package is installed already: this test installs and purges its own"
[[ -e /usr/bin/midflight ]] && fail "/usr/bin/midflight exists already"
[[ -e /var/lib/midflight ]] && fail "/var/lib/midflight exists already: it may hold real migrations"
USER_BEFORE=$(getent passwd midflight || true)
GROUP_BEFORE=$(getent group midflight || true)

INSTALLED=
pkg_cleanup() {
  [[ -n ${MF_PID:-} ]] && kill -9 "$MF_PID" 2>/dev/null || true
  MF_PID=
  if [[ -n $INSTALLED ]]; then dpkg -P midflight >/dev/null 2>&1 || true; fi
  rm -rf /var/lib/midflight
  [[ -z $USER_BEFORE ]] && getent passwd midflight >/dev/null && userdel midflight 2>/dev/null
  [[ -z $GROUP_BEFORE ]] && getent group midflight >/dev/null && groupdel midflight 2>/dev/null
  true
}
trap 'rc=$?; pkg_cleanup; (exit $rc); cleanup' EXIT

# ---- build and inspect the package ----
t0=$SECONDS
DEB=$(MIDFLIGHT_BUILD_DIR=${MIDFLIGHT_BUILD_DIR:-$(dirname "$MF")} "$ROOT/scripts/package" 2>"$WORK/package.log") ||
  { cat "$WORK/package.log"; fail "scripts/package"; }
log "built $(basename "$DEB") ($(du -k "$DEB" | cut -f1) kB) in $((SECONDS - t0)) s"
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
log "Depends: $DEPENDS"
for dep in libpq5 libmariadb3 libssl3 librdkafka1 libcurl4 libsqlite3-0 postgresql-client adduser; do
  [[ ", $DEPENDS," == *", $dep"[\ ,]* ]] || fail "Depends lacks $dep: $DEPENDS"
done
dpkg-deb -c "$DEB" >"$WORK/listing"
awk '{print $6}' "$WORK/listing" >"$WORK/files"
for f in ./usr/bin/midflight ./usr/lib/systemd/system/midflight.service ./usr/share/man/man1/midflight.1.gz \
  ./usr/share/bash-completion/completions/midflight ./etc/midflight/midflight.env; do
  grep -qx -- "$f" "$WORK/files" || fail "the package lacks $f: $(tr '\n' ' ' <"$WORK/files")"
done
grep -q -- "-rw------- root/root .* ./etc/midflight/midflight.env" "$WORK/listing" ||
  fail "midflight.env is not root-only 0600: $(grep midflight.env "$WORK/listing")"
dpkg-deb -e "$DEB" "$WORK/control"
grep -qx /etc/midflight/midflight.env "$WORK/control/conffiles" || fail "midflight.env is not a conffile"

# ---- install ----
INSTALLED=1
dpkg -i "$DEB" >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg -i"; }
log "installed: $(/usr/bin/midflight --version)"
getent passwd midflight | grep -q ":/var/lib/midflight:/usr/sbin/nologin$" ||
  fail "the midflight user: $(getent passwd midflight)"
[[ $(stat -c '%U:%G %a' /var/lib/midflight) == "midflight:midflight 700" ]] ||
  fail "/var/lib/midflight is $(stat -c '%U:%G %a' /var/lib/midflight)"

# The man page renders without a warning, and names every subcommand.
MANWIDTH=100 man --warnings -l /usr/share/man/man1/midflight.1.gz >"$WORK/man.txt" 2>"$WORK/man.err"
[[ ! -s $WORK/man.err ]] || fail "man -l warns: $(cat "$WORK/man.err")"
for word in serve run create list status events pause resume abort delete "switch reads" "switch writes" rollback \
  complete approve "verify start" "verify show" "verify stop" report "sequences sync" knobs compare \
  "EXIT STATUS" MIDFLIGHT_SERVER MIDFLIGHT_API_TOKEN NOTIFY_SOCKET PGPASSWORD; do
  grep -q -- "$word" "$WORK/man.txt" || fail "the man page does not mention '$word'"
done
log "man page: $(wc -l <"$WORK/man.txt") lines, no warnings"

# Bash completion: the installed file is valid bash (and shellcheck-clean
# where shellcheck exists), and completes in an interactive shell.
COMPLETION=/usr/share/bash-completion/completions/midflight
bash -n "$COMPLETION" || fail "bash -n $COMPLETION"
if command -v shellcheck >/dev/null; then shellcheck -s bash "$COMPLETION" || fail "shellcheck $COMPLETION"; fi
complete_words() {  # complete_words WORD...: what <TAB> after the words offers
  bash --norc -i -c 'source '"$COMPLETION"'
    COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
    _midflight; echo "${COMPREPLY[*]}"' complete "$@" 2>/dev/null
}
[[ $(complete_words midflight sw) == switch ]] || fail "midflight sw<TAB> gave '$(complete_words midflight sw)'"
[[ $(complete_words midflight switch "") == "reads writes" ]] || fail "switch <TAB>: '$(complete_words midflight switch "")'"
[[ $(complete_words midflight switch writes --d) == --dry-run ]] || fail "switch writes --d<TAB>"
log "completion: 'midflight sw' -> $(complete_words midflight sw); 'midflight switch ' -> $(complete_words midflight switch "")"

# ---- the unit's ExecStart, as systemd would run it ----
UNIT=/usr/lib/systemd/system/midflight.service
for want in "Type=notify" "User=midflight" "StateDirectory=midflight" "EnvironmentFile=-/etc/midflight/midflight.env" \
  "NoNewPrivileges=yes" "ProtectSystem=strict" "ReadWritePaths=/var/lib/midflight" "PrivateTmp=yes"; do
  grep -qx -- "$want" "$UNIT" || fail "the unit lacks $want"
done
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$UNIT" >"$WORK/analyze.log" 2>&1 || { cat "$WORK/analyze.log"; fail "systemd-analyze verify"; }
fi
start_servers 22800
API_PORT=$(free_port 22810)
TOKEN=$(openssl rand -hex 16)
# The operator's settings and secrets, where the unit reads them.
cat >/etc/midflight/midflight.env <<ENV
MIDFLIGHT_LISTEN=127.0.0.1:$API_PORT
MIDFLIGHT_API_TOKEN=$TOKEN
PKG_SOURCE_PW=midflight
ENV
# The unit's environment: Environment= lines, then the EnvironmentFile
# (later wins), then what systemd itself sets (StateDirectory=, User=).
declare -A UNIT_ENV=()
while IFS= read -r line; do
  for kv in ${line#Environment=}; do UNIT_ENV[${kv%%=*}]=${kv#*=}; done
done < <(grep '^Environment=' "$UNIT")
while IFS= read -r line; do
  [[ $line =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] && UNIT_ENV[${line%%=*}]=${line#*=}
done </etc/midflight/midflight.env
UNIT_ENV[STATE_DIRECTORY]=/var/lib/midflight
UNIT_ENV[HOME]=/var/lib/midflight
UNIT_ENV[USER]=midflight
UNIT_ENV[LOGNAME]=midflight
UNIT_ENV[PATH]=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXEC=$(sed -n 's/^ExecStart=//p' "$UNIT")
[[ $(grep -c '^ExecStart=' "$UNIT") == 1 ]] || fail "the unit has more than one ExecStart line"
for var in "${!UNIT_ENV[@]}"; do EXEC=${EXEC//"\${$var}"/${UNIT_ENV[$var]}}; done
[[ $EXEC != *'${'* ]] || fail "ExecStart names a variable the unit does not set: $EXEC"
log "ExecStart: $EXEC"

# systemd's notification socket: an abstract datagram socket; each message
# one line in $NOTES (its line breaks as '|').
NOTIFY="@midflight-pkg-test-$$"
NOTES=$WORK/notify.log
python3 -u - "$NOTIFY" "$NOTES" >"$WORK/notify-listener.log" 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1][1:])
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        out.write(s.recv(65536).decode().replace("\n", "|") + "\n")
PY
EXTRA_PIDS+=($!)
for _ in $(seq 40); do grep -q "midflight-pkg-test-$$" /proc/net/unix && break; sleep 0.1; done
env_args=()
for var in "${!UNIT_ENV[@]}"; do env_args+=("$var=${UNIT_ENV[$var]}"); done
# setpriv and env exec: the service keeps this PID (as under systemd, where
# WATCHDOG_PID names the main process).
read -r -a exec_words <<<"$EXEC"
setpriv --reuid=midflight --regid=midflight --init-groups --no-new-privs \
  env -i "${env_args[@]}" NOTIFY_SOCKET="$NOTIFY" WATCHDOG_USEC=2000000 "${exec_words[@]}" >"$WORK/run.serve.log" 2>&1 &
MF_PID=$!
t0=$SECONDS
for _ in $(seq 120); do grep -q "READY=1" "$NOTES" 2>/dev/null && break; sleep 0.25; done
grep -q "READY=1" "$NOTES" 2>/dev/null || { cat "$WORK/run.serve.log"; fail "no READY=1 on NOTIFY_SOCKET"; }
log "notify: $(grep -m1 READY=1 "$NOTES") (after $((SECONDS - t0)) s)"
[[ $(ps -o user= -p "$MF_PID") == midflight ]] || fail "the service runs as $(ps -o user= -p "$MF_PID")"
API=127.0.0.1:$API_PORT
[[ $(curl -s "http://$API/healthz") == ok ]] || fail "/healthz"
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://$API/readyz") == 200 ]] || fail "/readyz with no migration"
for _ in $(seq 20); do grep -q "^WATCHDOG=1" "$NOTES" && break; sleep 0.25; done
grep -q "^WATCHDOG=1" "$NOTES" || fail "no WATCHDOG=1 within 5 s (WATCHDOG_USEC=2 s)"
log "notify: $(grep -c '^WATCHDOG=1' "$NOTES") WATCHDOG=1 so far"

# ---- a PostgreSQL migration through the API, with the installed binary ----
sql_src -c "CREATE TABLE items (id int PRIMARY KEY, note text)"
sql_src -c "INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 2000) g"
SPORT=${SRC##*:}; SPORT=${SPORT%%/*}
cat >"$WORK/pkg1.yaml" <<YAML
name: pkg1
source: postgres://midflight:\${PKG_SOURCE_PW}@127.0.0.1:$SPORT/postgres
target: $DST
YAML
export MIDFLIGHT_API_TOKEN=$TOKEN
# --server with a scheme and a trailing slash, before the command.
/usr/bin/midflight --server "http://$API/" --as pkg-test create "$WORK/pkg1.yaml" | tee "$WORK/create.out"
grep -q "migration pkg1 created" "$WORK/create.out" || fail "create"
phase=
for _ in $(seq 240); do
  # --server after the command, without a scheme.
  phase=$(/usr/bin/midflight status pkg1 --json --server "$API" | jq -r .phase)
  [[ $phase == replicating ]] && break
  sleep 0.25
done
[[ $phase == replicating ]] || fail "pkg1 did not reach replicating (phase $phase)"
sql_src -c "INSERT INTO items VALUES (424242, 'after the copy')"
for _ in $(seq 80); do [[ $(sql_dst -c "SELECT count(*) FROM items WHERE id = 424242") == 1 ]] && break; sleep 0.25; done
[[ $(sql_dst -c "SELECT count(*) FROM items") == 2001 ]] || fail "target has $(sql_dst -c "SELECT count(*) FROM items") rows, want 2001"
log "pkg1 replicating: 2001 rows on the target, the row written after the copy included"
ready=$(curl -s -w ' %{http_code}' "http://$API/readyz")
[[ $ready == *"ready: 1 migration(s)"*" 200" ]] || fail "/readyz: $ready"
for _ in $(seq 20); do grep -q "STATUS=ready: 1 migration(s)" "$NOTES" && break; sleep 0.25; done
grep -q "STATUS=ready: 1 migration(s)" "$NOTES" || fail "no STATUS= line naming the migration: $(tail -3 "$NOTES")"
# The scheme in capitals; list's global flag given after the command.
/usr/bin/midflight list --server "HTTP://$API" | grep -q "^pkg1 " || fail "list --server HTTP://$API"
[[ $(complete_words midflight --server "$API" status "") == *pkg1* ]] ||
  fail "no migration name in 'midflight status <TAB>': $(complete_words midflight --server "$API" status "")"
others=$(find /var/lib/midflight ! -user midflight)
[[ -z $others ]] || fail "files in the state directory not owned by midflight: $others"
[[ -f /var/lib/midflight/pkg1/state.db ]] || fail "no /var/lib/midflight/pkg1/state.db"
grep -rq "$TOKEN" /var/lib/midflight && fail "the API token from the EnvironmentFile was written to the state directory"
[[ ! -e /var/lib/midflight/api_token ]] || fail "api_token made although MIDFLIGHT_API_TOKEN was set"

# ---- stop as systemd does (SIGTERM) ----
kill -TERM "$MF_PID"
rc=0
wait "$MF_PID" || rc=$?
MF_PID=
[[ $rc == 0 ]] || { cat "$WORK/run.serve.log"; fail "the service exited $rc on SIGTERM"; }
grep -q "STOPPING=1" "$NOTES" || fail "no STOPPING=1"
log "notify messages: $(sort "$NOTES" | uniq -c | sort -rn | head -6 | awk '{$1=$1; print}' | paste -sd';')"
grep -q "$TOKEN" "$WORK/run.serve.log" && fail "the API token appears in the service's log"

# ---- purge: the machine as it was ----
dpkg -P midflight >"$WORK/dpkg-purge.log" 2>&1 || { cat "$WORK/dpkg-purge.log"; fail "dpkg -P"; }
INSTALLED=
for f in /usr/bin/midflight "$UNIT" /usr/share/man/man1/midflight.1.gz "$COMPLETION" /etc/midflight/midflight.env; do
  [[ ! -e $f ]] || fail "$f left after dpkg -P"
done
[[ -d /var/lib/midflight/pkg1 ]] || fail "dpkg -P removed the migration state (it must never)"
pkg_cleanup
[[ ! -e /var/lib/midflight && ! -e /etc/midflight ]] || fail "state or settings left"
[[ $(getent passwd midflight || true) == "$USER_BEFORE" ]] || fail "the midflight user differs from before"
log "purged: no binary, unit, man page, completion, settings, state or user left"
log "PASS"
