#!/usr/bin/env bash
# The CLI's JSON, against a real `midflight serve` hosting a real PostgreSQL
# migration:
# - `status NAME --json` (the API's answer) and `status SPEC --json` (built
#   from the state directory alone) print one shape: the same keys, nested
#   the same way, with values of the same JSON types;
# - `events --json`, `knobs --json` and `verify --json` print one JSON object
#   each, with the fields the README documents;
# - the global options (--server, --token, --as) work after the subcommand
#   as well as before it;
# - `create` leaves ${VAR} to the service (set in its environment only).
source "$(dirname "$0")/lib.sh"

start_servers 30100
pgbench -i -q -s 1 "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"
# The target's password is in the service's environment only: `create` sends
# the spec as written and the service resolves ${MF_SVC_PW} itself.
export MF_SVC_PW=midflight
start_serve "$WORK/svc" 30110
unset MF_SVC_PW
SERVER=$API
unset MIDFLIGHT_SERVER  # every call names the server, before or after the subcommand
TOKEN=$MIDFLIGHT_API_TOKEN
unset MIDFLIGHT_API_TOKEN

printf 'name: clij\nsource: %s\ntarget: %s\n' "$SRC" "${DST/midflight:midflight@/midflight:\$\{MF_SVC_PW\}@}" >"$WORK/clij.yaml"
grep -qF 'midflight:${MF_SVC_PW}@' "$WORK/clij.yaml" || fail "spec: $(cat "$WORK/clij.yaml")"
"$MF" --server "$SERVER" --token "$TOKEN" create "$WORK/clij.yaml"
# The same migration seen from its state directory (the service keeps it in STATE_DIR/NAME).
SPEC=$WORK/clij-local.yaml
printf 'name: clij\nsource: %s\ntarget: %s\nstate_dir: %s\n' "$SRC" "$DST" "$WORK/svc/clij" >"$SPEC"
for _ in $(seq 240); do
  [[ $("$MF" status clij --json --server "$SERVER" | jq -r .phase) == replicating ]] && break
  sleep 0.25
done
[[ $("$MF" status clij --json --server "$SERVER" | jq -r .phase) == replicating ]] || fail "not replicating"

# Global options after the subcommand: --as and --token land in the audit trail.
"$MF" pause clij --server "$SERVER" --token "$TOKEN" --as after-tester --reason "flags after"
"$MF" --server "$SERVER" --token "$TOKEN" --as before-tester resume clij --reason "flags before"
for _ in $(seq 240); do
  [[ $("$MF" --server "$SERVER" status clij --json | jq -r .phase) == replicating ]] && break
  sleep 0.25
done
# verify needs replication running again (it refuses, in JSON on stderr, until then).
verify_rc=1
for _ in $(seq 120); do
  verify_rc=0
  "$MF" verify clij --json --server "$SERVER" --token "$TOKEN" >"$WORK/verify.json" 2>"$WORK/verify.err" || verify_rc=$?
  [[ $verify_rc -eq 0 ]] && break
  jq -e 'has("error") and has("clean")' "$WORK/verify.err" >/dev/null || fail "verify --json error is not JSON: $(cat "$WORK/verify.err")"
  sleep 0.25
done
[[ $verify_rc -eq 0 ]] || fail "verify --json: exit $verify_rc: $(cat "$WORK/verify.json" "$WORK/verify.err")"

"$MF" status clij --json --server "$SERVER" >"$WORK/status.api.json"
"$MF" status "$SPEC" --json >"$WORK/status.spec.json"
"$MF" events clij --json --server "$SERVER" >"$WORK/events.json"
"$MF" knobs clij --json --server "$SERVER" >"$WORK/knobs.json"
"$MF" knobs set clij apply_batch_size=1500 --json --server "$SERVER" --token "$TOKEN" >"$WORK/knobs_set.json"

python3 - "$WORK" <<'PY' || fail "JSON shapes differ (see above)"
import json, sys
w = sys.argv[1]
load = lambda n: json.load(open(f"{w}/{n}"))
api, spec = load("status.api.json"), load("status.spec.json")

def kind(v):
    if isinstance(v, bool): return "bool"
    if isinstance(v, (int, float)): return "number"
    return type(v).__name__

def compare(a, b, path="$"):
    problems = []
    if kind(a) != kind(b):
        return [f"{path}: {kind(a)} from the API, {kind(b)} from the state directory"]
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in b: problems.append(f"{path}.{k}: only from the API")
            elif k not in a: problems.append(f"{path}.{k}: only from the state directory")
            else: problems += compare(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and a and b:
        problems += compare(a[0], b[0], f"{path}[0]")
    return problems

problems = compare(api, spec)
for p in problems: print("shape:", p)
assert not problems
# The fields the README documents, present and typed, in both.
for j in (api, spec):
    assert j["name"] == "clij" and j["engine"] == "postgres" and j["phase"] == "replicating", j
    assert j["source"].startswith("postgres://midflight:***@"), j["source"]
    assert len(j["tables"]) == 4 and {"name", "state", "rows_copied", "estimated_rows"} <= set(j["tables"][0])
    assert j["replication"]["applied_position"] and j["replication"]["source_position"], j["replication"]
    assert isinstance(j["lag_bytes"], int) and isinstance(j["conflicts"]["total"], int)
    assert j["verify"]["clean"] is True and j["verify"]["summary"].startswith("verify: clean"), j["verify"]
    assert {e["actor"].split(" ")[0] for e in j["events"]} >= {"after-tester", "before-tester"}, j["events"]
    assert "parallelism" in j["knobs"], j["knobs"]
assert spec["rows_copied"] == api["rows_copied"], (spec["rows_copied"], api["rows_copied"])

ev = load("events.json")
assert set(ev) == {"events"} and ev["events"], ev
assert all(set(e) == {"time", "phase", "actor", "message"} for e in ev["events"]), ev["events"][0]
assert any(e["actor"].startswith("after-tester") and e["message"].endswith("flags after") or
           "flags after" in e["message"] for e in ev["events"]), ev["events"]

kn = load("knobs.json")
assert set(kn) == {"knobs", "help"} and set(kn["knobs"]) == set(kn["help"]), kn
assert all(isinstance(v, (int, float)) for v in kn["knobs"].values()), kn

vf = load("verify.json")
assert set(vf) == {"clean", "message"} and vf["clean"] is True, vf
assert vf["message"].startswith("verify: clean"), vf

ks = load("knobs_set.json")
assert isinstance(ks, dict), ks
print(f"status: {len(api)} fields, same shape both ways; events {len(ev['events'])}; knobs {len(kn['knobs'])}; "
      f"verify: {vf['message']}")
PY
log "status NAME --json and status SPEC --json: one shape; events/knobs/verify --json parse; global flags after the subcommand"
"$MF" abort clij --server "$SERVER" --token "$TOKEN" >/dev/null
log "PASS"
