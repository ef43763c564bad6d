# Headless Chromium helpers for the dashboard tests. Source it (ctest only
# runs pg_*, mysql_* and service_* files):
#
#   source "$ROOT/tests/integration/chromium.sh"
#   dashboard_dom "http://127.0.0.1:$PORT/#orders" "$WORK/dom.html" 5000
#   grep -q 'id="phase"[^>]*>copying<' "$WORK/dom.html"
#   dashboard_screenshot "http://127.0.0.1:$PORT/" "$WORK/dash.png"
#   png_is_not_blank "$WORK/dash.png"
#
# How the page gets its data before the dump: --virtual-time-budget=WAIT_MS.
# Chromium runs the page on a virtual clock that stops while any network
# request is outstanding, then jumps to the next timer. So the dashboard's
# one-second poll loop (fetch, render, setTimeout 1 s) runs about WAIT_MS/1000
# complete rounds before the DOM is dumped or the screenshot taken, however slow
# the server answers, and the call takes only as long as the server needs
# (about 1 s against a fast local server). Checked with Chromium 156 (Debian 12)
# against a fake API: WAIT_MS=5000 gives body[data-polls="6"] (6 completed
# polls), also when every answer is delayed 0.7 s (10 s of real time then).
# Without the budget, --dump-dom fires at the load event, before the first
# fetch returns (data-polls="0"); --timeout=N and
# --run-all-compositor-stages-before-draw do not change that.
# The flip side: a request that never completes freezes the virtual clock, so
# Chromium never finishes on its own. Every call runs under `timeout`
# (CHROMIUM_TIMEOUT seconds, default 60: a loaded machine took over 25 s to open a file; SIGKILL 3 s later): it then returns
# 124 with an empty output file and a message on stderr.
#
# Hooks the page offers (src/service/dashboard.html): body[data-polls] (number
# of completed polls) and body[data-api] ("ok" or "down"); #phase; #rows-copied
# (plain integer); #updated; tr.migration-row[data-name][data-phase];
# tr.table-row[data-table][data-rows][data-estimated][data-state]; #banner
# (shown when the API cannot be reached).

# chromium_bin: the Chromium executable ($CHROMIUM wins; Debian's package
# installs /usr/bin/chromium).
chromium_bin() {
  local c
  for c in "${CHROMIUM:-}" /usr/bin/chromium "$(command -v chromium 2>/dev/null || true)" \
    "$(command -v chromium-browser 2>/dev/null || true)"; do
    if [[ -n $c && -x $c ]]; then
      echo "$c"
      return 0
    fi
  done
  echo "chromium.sh: no chromium found (apt-get install chromium, or set CHROMIUM)" >&2
  return 1
}

# _chromium_run STDOUT_FILE ARGS...: one headless Chromium with a throwaway
# profile (and HOME, so nothing lands in ~/.config), stdout into STDOUT_FILE;
# returns Chromium's status (124: killed by the time limit).
_chromium_run() {
  local out=$1 bin tmp pid rc=0 p
  shift
  bin=$(chromium_bin) || return 127
  tmp=$(mktemp -d /tmp/midflight-chromium.XXXXXX) || return 1
  HOME=$tmp XDG_CONFIG_HOME=$tmp/config XDG_CACHE_HOME=$tmp/cache \
    timeout -k 3 "${CHROMIUM_TIMEOUT:-60}" "$bin" --headless --no-sandbox --disable-gpu \
    --user-data-dir="$tmp/profile" --no-first-run --no-default-browser-check --disable-extensions \
    --disable-background-networking --disable-component-update --disable-sync --disable-breakpad \
    --mute-audio --hide-scrollbars --disable-dev-shm-usage "$@" >"$out" 2>"$tmp/stderr" </dev/null &
  pid=$!
  wait "$pid" || rc=$?
  # `timeout` leads its own process group (pgid = its pid), which holds every
  # Chromium process it started (zygotes, renderers, GPU, network service):
  # end whatever is left of it. The crash handlers start their own sessions;
  # they carry $tmp (their database is under HOME) in their command line.
  kill -KILL -- "-$pid" 2>/dev/null || true
  for p in $(pgrep -f -- "$tmp" 2>/dev/null || true); do
    kill -KILL "$p" 2>/dev/null || true
  done
  if ((rc != 0)); then
    if ((rc == 124 || rc == 137)); then
      echo "chromium.sh: chromium did not finish within ${CHROMIUM_TIMEOUT:-60} s (a request that never" \
        "completes stops the page's virtual clock); killed" >&2
    else
      echo "chromium.sh: chromium exited with status $rc" >&2
    fi
    grep -v -e dbus -e 'unexpected operator' "$tmp/stderr" | tail -n 8 >&2 || true
  fi
  rm -rf "$tmp"
  return "$rc"
}

# dashboard_dom URL OUT_HTML [WAIT_MS]: the page's DOM after WAIT_MS (default
# 5000) of virtual time, i.e. after about WAIT_MS/1000 completed polls.
dashboard_dom() {
  local url=$1 out=$2 wait_ms=${3:-5000} rc=0
  _chromium_run "$out" --virtual-time-budget="$wait_ms" --dump-dom "$url" || rc=$?
  if ((rc == 0)) && [[ ! -s $out ]]; then
    echo "chromium.sh: empty DOM dump for $url" >&2
    rc=1
  fi
  return "$rc"
}

# dashboard_screenshot URL OUT_PNG [WAIT_MS]: a 1400x1000 PNG of the page after
# WAIT_MS (default 5000) of virtual time.
dashboard_screenshot() {
  local url=$1 png=$2 wait_ms=${3:-5000} rc=0
  [[ $png == /* ]] || png=$PWD/$png
  rm -f "$png"
  _chromium_run /dev/null --virtual-time-budget="$wait_ms" --window-size=1400,1000 \
    --screenshot="$png" "$url" || rc=$?
  if ((rc == 0)) && [[ ! -s $png ]]; then
    echo "chromium.sh: no screenshot written to $png" >&2
    rc=1
  fi
  return "$rc"
}

# png_is_not_blank PNG [MIN_COLOURS]: prints the number of distinct colours
# in PNG; returns 0 when there are at least MIN_COLOURS (default 64; an empty
# page has 1, the dashboard with data several thousand). Plain python3
# (zlib, no PIL): 8-bit non-interlaced PNGs, which is what Chromium writes.
png_is_not_blank() {
  local png=$1 min=${2:-64} n
  n=$(python3 - "$png" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
if data[:8] != b'\x89PNG\r\n\x1a\n':
    sys.exit('png_is_not_blank: %s is not a PNG file' % sys.argv[1])
pos, idat, ihdr = 8, [], None
while pos + 8 <= len(data):
    n, typ = struct.unpack('>I4s', data[pos:pos + 8])
    if typ == b'IHDR': ihdr = struct.unpack('>IIBBBBB', data[pos + 8:pos + 21])
    elif typ == b'IDAT': idat.append(data[pos + 8:pos + 8 + n])
    elif typ == b'IEND': break
    pos += 12 + n
w, h, depth, ctype, _, _, interlace = ihdr
if depth != 8 or interlace or ctype not in (0, 2, 3, 4, 6):
    sys.exit('png_is_not_blank: unsupported PNG (bit depth %d, colour type %d, interlace %d)' % (depth, ctype, interlace))
bpp = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
stride = w * bpp
raw = zlib.decompress(b''.join(idat))
prev, seen = bytearray(stride), set()
for y in range(h):
    start = y * (stride + 1)
    f, cur = raw[start], bytearray(raw[start + 1:start + 1 + stride])
    if f == 1:    # Sub
        for i in range(bpp, stride): cur[i] = (cur[i] + cur[i - bpp]) & 255
    elif f == 2:  # Up
        cur = bytearray((a + b) & 255 for a, b in zip(cur, prev))
    elif f == 3:  # Average
        for i in range(stride): cur[i] = (cur[i] + ((cur[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
    elif f == 4:  # Paeth
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    seen.update(bytes(cur[i:i + bpp]) for i in range(0, stride, bpp))
    prev = cur
print(len(seen))
PY
  ) || return 2
  echo "$n"
  ((n >= min))
}
