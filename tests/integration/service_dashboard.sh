#!/usr/bin/env bash
# The dashboard's operator buttons, clicked in headless Chromium (driven over
# the DevTools protocol, tests/integration/cdp.py) against `midflight serve`
# hosting a real PostgreSQL migration under pgbench load. After each click the
# effect is read back from the migration through the CLI and the proxy, and a
# screenshot is taken:
#   a click without the API token sends nothing ─► Pause (confirm: OK) ─►
#   phase paused, the audit trail names the dashboard's actor ─► Resume ─►
#   replicating ─► knob apply_batch_size set from the knob form ─► the knob
#   holds the value ─► Switch reads, confirm answered Cancel: nothing moved ─►
#   again, OK: phase reads_switched, a read through the proxy's read-only
#   endpoint lands on the target ─► Start background verify at a rate ─► the
#   job runs ─► Stop it ─► the job is stopped.
# Screenshots: $WORK/shots (copied to $DASHBOARD_SHOTS when set).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/chromium.sh"
PY=${PYTHON:-/usr/bin/python3}  # Debian's, which has python3-websocket
"$PY" -c 'import websocket' 2>/dev/null || fail "$PY has no websocket module (apt-get install python3-websocket; scripts/setup)"
chromium_bin >/dev/null || fail "no chromium"

start_servers 23000
pgbench -i -s 1 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"
start_serve "$WORK/svc" 23010
PROXY_PORT=$(free_port 23020)
RO_PORT=$(free_port $((PROXY_PORT + 1)))
cat >"$WORK/dash.yaml" <<YAML
name: dash
source: $SRC
target: $DST
partitions: 2
proxy:
  listen: 127.0.0.1:$PROXY_PORT
  listen_readonly: 127.0.0.1:$RO_PORT
YAML
"$MF" create "$WORK/dash.yaml" >/dev/null
for _ in $(seq 240); do [[ $(api_field dash phase) == replicating ]] && break; sleep 0.25; done
[[ $(api_field dash phase) == replicating ]] || fail "not replicating (phase $(api_field dash phase))"
pgbench -n -c 1 -j 1 -T 600 -R 20 "$SRC" >"$WORK/load.log" 2>&1 &
LOAD_PID=$!
DB=${SRC##*/}
export MF API DB RO_PORT DST_PORT=${DST##*:} SHOTS=$WORK/shots
DST_PORT=${DST_PORT%%/*}
mkdir -p "$SHOTS"

cat >"$WORK/clicks.py" <<'PY'
import json, os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from cdp import Browser

MF, API, SHOTS = os.environ["MF"], os.environ["API"], os.environ["SHOTS"]
TOKEN = os.environ["MIDFLIGHT_API_TOKEN"]
ACTOR = "dash-tester"

def log(msg): print(time.strftime("%H:%M:%S") + " [service_dashboard] " + msg, flush=True)
def fail(msg): raise SystemExit("FAIL: " + msg)

def cli(*args):
    out = subprocess.run([MF, *args], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        fail("midflight %s: %s" % (" ".join(args), out.stderr.strip() or out.stdout.strip()))
    return json.loads(out.stdout)

def status(): return cli("status", "dash", "--json")

def until(what, fn, timeout=60):
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.25)
    fail("waited %d s for %s" % (timeout, what))

def read_port():  # the server a read through the proxy's read-only endpoint lands on
    out = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", os.environ["RO_PORT"], "-U", "midflight",
                          "-d", os.environ["DB"], "-c", "SELECT inet_server_port()"],
                         capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        fail("read through the proxy: " + out.stderr.strip())
    return out.stdout.strip()

shot_n = 0
def shot(b, name):
    global shot_n
    shot_n += 1
    path = "%s/%02d-%s.png" % (SHOTS, shot_n, name)
    b.screenshot(path)
    log("screenshot " + os.path.basename(path))

def press(b, act, accept=True):
    """Clicks the operator button `act` once the page enables it; the confirm() text."""
    sel = 'button[data-act="%s"]' % act
    b.wait("!document.querySelector('%s').disabled" % sel, what="the %s button to be enabled" % act)
    n = len(b.dialogs)
    b.answer_dialogs(accept)
    b.click(sel)
    return dialog(b, n, act)

def dialog(b, n, what):
    deadline = time.time() + 10
    while len(b.dialogs) <= n:
        if time.time() > deadline:
            fail("%s: no confirmation dialog" % what)
        time.sleep(0.05)
    return b.dialogs[n]

def answered(b, label):
    """The page's message once the API answered `label` (OK or refused)."""
    m = b.wait("(() => { const m = document.getElementById('message'); return m && !m.hidden && m.className !== 'wait' "
               "&& m.textContent.includes(%s) ? [m.className, m.textContent] : null; })()" % json.dumps(label),
               what="the answer to " + label)
    if m[0] != "ok":
        fail("%s: the dashboard says %s" % (label, m[1]))
    return m[1]

with Browser() as b:
    b.goto("http://%s/#dash" % API)
    b.wait("document.body.dataset.api === 'ok' && document.getElementById('phase').textContent === 'replicating'",
           what="the dashboard to show dash replicating")
    # Each apply partition's queued changes and lag (the embedded path).
    n = until("partitions in the API", lambda: len(status()["replication"].get("partitions", [])))
    b.wait("document.querySelectorAll('#partitions tbody tr').length === %d" % n,
           what="the partitions table (queued changes and lag per apply partition)")
    log("partitions table: %s" % b.eval("document.querySelector('#partitions tbody tr').innerText.replace(/\\s+/g, ' ')"))
    shot(b, "replicating")

    # No token typed yet: the page refuses to send.
    b.answer_dialogs(True)
    b.click('button[data-act="pause"]')
    b.wait("document.getElementById('message').textContent.includes('enter the API token first')",
           what="the missing-token message")
    time.sleep(1)
    if status()["phase"] != "replicating":
        fail("a click without the token changed the phase")
    b.type("#token", TOKEN)
    b.type("#actor", ACTOR)

    # Pause.
    text = press(b, "pause")
    if 'Pause "dash"?' not in text:
        fail("pause dialog: " + text)
    answered(b, 'pause "dash": OK')
    until("phase paused", lambda: status()["phase"] == "paused")
    ev = [e for e in cli("events", "dash", "--json")["events"] if e["actor"].startswith(ACTOR)]
    if not ev:
        fail("no event by %s in the audit trail" % ACTOR)
    b.wait("document.getElementById('phase').textContent === 'paused'", what="the page to show paused")
    log("pause: phase paused; audit trail: %s: %s" % (ev[-1]["actor"], ev[-1]["message"]))
    shot(b, "paused")

    # Resume.
    text = press(b, "resume")
    if 'Resume "dash"?' not in text:
        fail("resume dialog: " + text)
    answered(b, 'resume "dash": OK')
    until("phase replicating after resume", lambda: status()["phase"] == "replicating" and status()["running"])
    b.wait("document.getElementById('phase').textContent === 'replicating'", what="the page to show replicating")
    log("resume: phase replicating")
    shot(b, "resumed")

    # A knob, from the knob form.
    before = cli("knobs", "dash", "--json")["knobs"]["apply_batch_size"]
    b.select("#knob-name", "apply_batch_size")
    b.type("#knob-value", "777")
    n = len(b.dialogs)
    b.click("#knob-set")
    text = dialog(b, n, "knob")
    if "Set knob apply_batch_size of \"dash\" from %s to 777?" % before not in text:
        fail("knob dialog: " + text)
    answered(b, "set apply_batch_size=777")
    until("knob apply_batch_size 777", lambda: cli("knobs", "dash", "--json")["knobs"]["apply_batch_size"] == 777)
    b.wait("(() => { const r = document.querySelector('tr.knob-row[data-knob=\"apply_batch_size\"] b');"
           " return r && r.textContent === '777'; })()", what="the knob table to show 777")
    log("knob: apply_batch_size %s -> 777" % before)
    shot(b, "knob")

    # Switch reads: first the dialog is cancelled, then accepted.
    src_port = read_port()
    b.type("#percent", "100")
    text = press(b, "switch-reads", accept=False)
    if "Send 100% of read-only traffic of \"dash\" to the TARGET?" not in text:
        fail("switch reads dialog: " + text)
    b.wait("document.getElementById('message').textContent.includes('cancelled, nothing sent')",
           what="the cancelled message")
    time.sleep(1.5)
    s = status()
    if s["phase"] != "replicating" or s["proxy"]["read_percent"] != 0:
        fail("a cancelled switch moved reads: phase %s, read_percent %s" % (s["phase"], s["proxy"]["read_percent"]))
    log("switch reads, dialog cancelled: nothing moved (reads on port %s)" % src_port)
    press(b, "switch-reads")
    answered(b, 'switch reads to 100% "dash": OK')
    until("reads switched", lambda: (lambda s: s["phase"] == "reads_switched" and s["proxy"]["read_percent"] == 100)(status()))
    port = read_port()
    if port != os.environ["DST_PORT"] or port == src_port:
        fail("after switch reads a read through the proxy landed on port %s (target %s)" % (port, os.environ["DST_PORT"]))
    b.wait("document.getElementById('read-percent') && document.getElementById('read-percent').textContent === '100%'",
           what="the page to show 100% reads on the target")
    log("switch reads: phase reads_switched, read_percent 100, a read lands on the target (port %s)" % port)
    shot(b, "reads-switched")

    # The background verification: start at a rate, then stop.
    b.type("#vrate", "2000")
    text = press(b, "verify-start")
    if "Start a background verification of \"dash\" at 2000 rows/s?" not in text:
        fail("verify start dialog: " + text)
    answered(b, 'start background verify "dash": OK')
    job = until("the job running", lambda: (lambda j: j if j["state"] == "running" and j["rows_checked"] > 0 else None)(
        cli("verify", "show", "dash", "--json")))
    if job["rate"] != 2000:
        fail("the job runs at %s rows/s, not the 2000 typed" % job["rate"])
    b.wait("document.getElementById('verify-job-state') && document.getElementById('verify-job-state').textContent.startsWith('running')",
           what="the page to show the job running")
    log("verify start: running at %d rows/s, %d rows checked" % (job["rate"], job["rows_checked"]))
    shot(b, "verify-running")
    text = press(b, "verify-stop")
    if "Stop the background verification of \"dash\"?" not in text:
        fail("verify stop dialog: " + text)
    answered(b, 'stop background verify "dash": OK')
    job = until("the job stopped", lambda: (lambda j: j if j["state"] == "stopped" else None)(cli("verify", "show", "dash", "--json")))
    b.wait("document.getElementById('verify-job-state').textContent.startsWith('stopped')",
           what="the page to show the job stopped")
    log("verify stop: stopped after %d rows" % job["rows_checked"])
    shot(b, "verify-stopped")
log("dialogs answered: %d" % len(b.dialogs))
PY

t0=$SECONDS
timeout -k 5 150 "$PY" "$WORK/clicks.py" "$ROOT/tests/integration" || fail "the dashboard scenario failed"
log "the clicks took $((SECONDS - t0)) s"
[[ -n ${DASHBOARD_SHOTS:-} ]] && mkdir -p "$DASHBOARD_SHOTS" && cp "$SHOTS"/*.png "$DASHBOARD_SHOTS"/
# Every screenshot is a rendered page (a blank 1400x1000 PNG is a few KB);
# the last one's colours are counted (png_is_not_blank decodes in plain
# Python: about ten seconds a picture on a busy machine, so only one).
n=0
for png in "$SHOTS"/*.png; do
  size=$(stat -c %s "$png")
  ((size > 30000)) || fail "$(basename "$png") is only $size bytes"
  n=$((n + 1))
done
((n == 7)) || fail "$n screenshots, expected 7"
colours=$(png_is_not_blank "$SHOTS/07-verify-stopped.png") || fail "the last screenshot is blank ($colours colours)"
stop_load
log "ok: $n screenshots; the last has $colours colours"
