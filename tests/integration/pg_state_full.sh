#!/usr/bin/env bash
# The disk under the state directory fills up while midflight replicates:
# the failure is logged at once (naming the directory and the remedy), the
# migration keeps replicating (the target's checkpoints are the truth), and
# once space is freed the log says writing works again and status moves on.
source "$(dirname "$0")/lib.sh"
start_servers 26562
MNT=$WORK/state-mnt
mkdir -p "$MNT"
mount -t tmpfs -o size=8m tmpfs "$MNT" || { log "SKIP: cannot mount a tmpfs here (not root?)"; exit 0; }
trap 'rc=$?; umount -l "$MNT" 2>/dev/null; (exit $rc); cleanup' EXIT
pgbench -i -s 1 -q "$SRC" >/dev/null 2>&1
sql_src -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
write_spec full
sed -i "s|^state_dir: .*|state_dir: $MNT/full|" "$SPEC"
"$MF" run "$SPEC" >"$WORK/run.1.log" 2>&1 &
MF_PID=$!
RUN_N=1
for _ in $(seq 120); do [[ -f $MNT/full/state.db ]] && [[ $("$MF" status "$SPEC" --json | jq -r .phase) == replicating ]] && break; sleep 0.25; done
pgbench -c 2 -T 600 -R 100 "$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD_PID=$!
sleep 2
log "filling the state directory's file system"
dd if=/dev/zero of="$MNT/fill" bs=64k >/dev/null 2>&1 || true
for _ in $(seq 40); do grep -q "status and progress are not recorded" "$WORK/run.1.log" && break; sleep 0.25; done
grep "status and progress are not recorded" "$WORK/run.1.log" | head -1 | sed 's/^/  /'
grep -q "state store $MNT/full: .*full" "$WORK/run.1.log" || fail "no log line naming the state directory and the full disk"
kill -0 "$MF_PID" || fail "midflight exited on a full state disk"
log "freeing the space"
rm -f "$MNT/fill"
for _ in $(seq 40); do grep -q "writing works again" "$WORK/run.1.log" && break; sleep 0.25; done
grep "writing works again" "$WORK/run.1.log" | sed 's/^/  /'
grep -q "writing works again" "$WORK/run.1.log" || fail "no log line when writing worked again"
stop_load
wait_caught_up 60
assert_equal
stop_mf
log "PASS"
