"""A small Chrome DevTools Protocol client for the dashboard tests: starts a
headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM), talks to its
page over the DevTools websocket (python3-websocket, Debian's
/usr/bin/python3), and clicks like a user: the element is scrolled into view
and a real mouse press and release land on its centre
(Input.dispatchMouseEvent), text is typed with Input.insertText into the
focused field, and JavaScript dialogs (confirm) are answered as the test
says, their text kept.

    from cdp import Browser
    with Browser() as b:
        b.goto("http://127.0.0.1:8080/#orders")
        b.wait("document.body.dataset.polls >= 1")
        b.answer_dialogs(True)
        b.click('button[data-act="pause"]')
        print(b.dialogs[-1])          # the confirm() text
        b.screenshot("/tmp/paused.png")

Why a reader thread: a click that opens confirm() does not get its answer
until the dialog is closed, so dialogs are answered from the thread that
reads the socket, while the caller waits for the click's answer.

Every wait has a deadline (TimeoutError naming what was waited for); the
browser, its whole process group and its profile are removed on exit.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import websocket  # Debian: python3-websocket


def chromium_bin():
    for c in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and os.access(c, os.X_OK):
            return c
    raise RuntimeError("cdp: no chromium found (apt-get install chromium, or set CHROMIUM)")


class Browser:
    def __init__(self, width=1400, height=1000, timeout=20.0):
        self.timeout = timeout
        self.dialogs = []  # the text of every dialog shown, in order
        self._accept = True
        self._next_id = 0
        self._pending = {}  # id -> [threading.Event, answer]
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._tmp = tempfile.mkdtemp(prefix="midflight-cdp.")
        env = dict(os.environ, HOME=self._tmp, XDG_CONFIG_HOME=self._tmp + "/config", XDG_CACHE_HOME=self._tmp + "/cache")
        self._stderr = open(self._tmp + "/stderr", "w")
        # Port 0: Chromium binds a free port itself and writes it to
        # DevToolsActivePort in the profile (no race with other tests).
        self._proc = subprocess.Popen(
            [chromium_bin(), "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", "--user-data-dir=" + self._tmp + "/profile", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-breakpad", "--mute-audio", "--hide-scrollbars",
             "--disable-dev-shm-usage", "--window-size=%d,%d" % (width, height), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env, start_new_session=True)
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self):
        port_file = self._tmp + "/profile/DevToolsActivePort"
        deadline = time.time() + self.timeout
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if self._proc.poll() is not None:
                raise RuntimeError("cdp: chromium exited with status %d: %s" % (self._proc.returncode, self._tail()))
            if time.time() > deadline:
                raise TimeoutError("cdp: chromium did not open its DevTools port within %.0f s" % self.timeout)
            time.sleep(0.05)
        port = int(open(port_file).read().split()[0])
        pages = []
        while not pages:
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if not pages:
                if time.time() > deadline:
                    raise TimeoutError("cdp: chromium has no page target")
                time.sleep(0.05)
        self._ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=self.timeout,
                                               suppress_origin=True)
        self._ws.settimeout(None)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _tail(self):
        try:
            self._stderr.flush()
            lines = [l for l in open(self._tmp + "/stderr").read().splitlines() if "dbus" not in l]
            return " | ".join(lines[-5:])
        except OSError:
            return ""

    def _send(self, msg):
        with self._send_lock:
            self._ws.send(json.dumps(msg))

    def _read(self):
        while True:
            try:
                raw = self._ws.recv()
            except Exception:  # the socket closed: wake every waiter
                with self._lock:
                    for slot in self._pending.values():
                        slot[1] = {"error": {"message": "the DevTools connection closed"}}
                        slot[0].set()
                return
            if not raw:
                continue
            msg = json.loads(raw)
            if "id" in msg:
                with self._lock:
                    slot = self._pending.pop(msg["id"], None)
                if slot:
                    slot[1] = msg
                    slot[0].set()
            elif msg.get("method") == "Page.javascriptDialogOpening":
                self.dialogs.append(msg["params"].get("message", ""))
                self._send({"id": self._id(), "method": "Page.handleJavaScriptDialog", "params": {"accept": self._accept}})

    def _id(self):
        with self._lock:
            self._next_id += 1
            return self._next_id

    def call(self, method, **params):
        """One protocol command; its result, or RuntimeError with the protocol's error."""
        i = self._id()
        slot = [threading.Event(), None]
        with self._lock:
            self._pending[i] = slot
        self._send({"id": i, "method": method, "params": params})
        if not slot[0].wait(self.timeout):
            raise TimeoutError("cdp: no answer to %s within %.0f s" % (method, self.timeout))
        if "error" in slot[1]:
            raise RuntimeError("cdp: %s: %s" % (method, slot[1]["error"].get("message")))
        return slot[1].get("result", {})

    def eval(self, expr):
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError("cdp: %s: %s" % (expr, d.get("exception", {}).get("description") or d.get("text")))
        return r.get("result", {}).get("value")

    def wait(self, expr, timeout=None, what=None):
        """Waits until `expr` is truthy in the page; returns its value."""
        deadline = time.time() + (timeout or self.timeout)
        while True:
            try:
                v = self.eval(expr)
            except RuntimeError:
                v = None
            if v:
                return v
            if time.time() > deadline:
                raise TimeoutError("cdp: waited %.0f s for %s" % (timeout or self.timeout, what or expr))
            time.sleep(0.1)

    def goto(self, url):
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'", what="the page to load")

    def answer_dialogs(self, accept):
        """How the next dialogs are answered: OK (True) or Cancel (False)."""
        self._accept = accept

    def _centre(self, selector):
        sel = json.dumps(selector)
        box = self.wait("(() => { const e = document.querySelector(%s); if (!e || e.offsetParent === null) return null;"
                        " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                        " return r.width > 0 && r.height > 0 ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()" % sel,
                        what="%s to be visible" % selector)
        # The element the point hits must be the one asked for (or inside it):
        # nothing covers it.
        hit = self.eval("(() => { const e = document.querySelector(%s), h = document.elementFromPoint(%f, %f);"
                        " return !!h && (e === h || e.contains(h)); })()" % (sel, box[0], box[1]))
        if not hit:
            raise RuntimeError("cdp: %s is covered by another element at its centre" % selector)
        return box

    def click(self, selector):
        """A real left click (press, release) on the centre of the element."""
        x, y = self._centre(selector)
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", buttons=1, clickCount=1)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", buttons=0, clickCount=1)

    def type(self, selector, text):
        """Clicks into a text field, selects what it holds and types `text` over it."""
        self.click(selector)
        self.eval("document.querySelector(%s).select()" % json.dumps(selector))
        self.call("Input.insertText", text=text)

    def select(self, selector, value):
        """Chooses an option of a <select> as a keyboard user would (focus, value, change event)."""
        ok = self.eval("(() => { const s = document.querySelector(%s); if (![...s.options].some(o => o.value === %s))"
                       " return false; s.focus(); s.value = %s; s.dispatchEvent(new Event('change', {bubbles: true}));"
                       " return true; })()" % (json.dumps(selector), json.dumps(value), json.dumps(value)))
        if not ok:
            raise RuntimeError("cdp: %s has no option %s" % (selector, value))

    def text(self, selector):
        return self.eval("(() => { const e = document.querySelector(%s); return e ? e.textContent : null; })()"
                         % json.dumps(selector))

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            if getattr(self, "_ws", None):
                self._ws.close()
        except Exception:
            pass
        # Chromium's zygotes, renderers and network service are in its
        # session's process group; end all of it.
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        # Crash handlers start their own sessions; their command line names
        # this profile (as in chromium.sh).
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if self._tmp.encode() in open("/proc/%s/cmdline" % pid, "rb").read():
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        self._stderr.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
