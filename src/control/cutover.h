// The second half of a migration whose engine has a traffic plane:
// replication in both directions, live verification, and the switches that
// move the applications' traffic through the proxy (docs/design.md, "The
// traffic plane"). Written once over the engine's ReplicationOps
// (engines/engine.h) and the proxy's TrafficSwitch (proxy/traffic_switch.h).
//
//   replicating ─switch reads─► reads_switched ─switch writes─► writes_switched ─complete─► completed
//        ◄──switch reads --percent 0──┘       ◄────────rollback────────┘
//
// Switch writes (rollback is the same with the sides swapped):
//   1. refuse when a gate fails (control/gates.h; Gates): the lag is over
//      cutover.max_lag_seconds, verification has not passed, the validation
//      window is still open or approval is missing (unless forced), reverse
//      replication's prerequisites or the sequences' rights are missing, a
//      session is pinned to the source; `--dry-run` prints the same checks
//      and stops here. Start reverse replication target -> source if it is
//      not running yet (its slot is created before any client writes there);
//   2. pause the proxy's read-write endpoint: new transactions wait, open ones
//      drain; past cutover.drain_timeout_seconds the switch is abandoned and
//      traffic resumes on the source;
//   3. read the source's committed position (ReplicationOps::CommittedPosition)
//      and wait until the target has applied everything before it;
//   4. carry sequence values over;
//   5. persist the new phase, point the endpoint at the target, release.
//   The time from 2 to 5 is the write pause; it is recorded and reported.
//
// Without a proxy (`--external`), the operator moves the applications by
// other means (configuration, DNS, a deploy) and records each step:
// `switch reads --external` records that reads go to the target and starts
// reverse replication at once (any write an application makes on the target
// from then on reaches the source); `switch writes --external` records that
// the applications now write to the target: no pause is possible, so it
// checks the usual gates, reads the source's committed position, waits until
// the target applied it, carries sequences over and records the phase;
// `rollback --external` is the same the other way. From a write switch on,
// changes still arriving on the side the applications left (not midflight's
// own: those are skipped at the reader) are applied as usual, and counted and
// reported (event, status old_side_writes, metric): an application instance
// still writes there.
//
// Forward (source -> target) and reverse (target -> source) replication both
// run from the first write switch until `complete`; each skips what the other
// applied (PostgreSQL: replication origins midflight_<name>_f<p> / _r<p>), so
// whichever side the applications write to, the other follows, and nothing
// loops.
//
// Operations arrive from the control endpoint (any thread); one runs at a
// time, a second is refused with the name of the one running.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/stop.h"
#include "base/thread_annotations.h"
#include "control/operations.h"
#include "control/runtime.h"
#include "control/spec.h"
#include "control/state_store.h"
#include "control/verify_job.h"
#include "engines/engine.h"
#include "pipeline/flow.h"
#include "proxy/traffic_switch.h"

namespace midflight {

// Threads: Run on the runner's thread (the monitor); Do on the API's threads,
// one operation at a time (op_mu_). spec_, store_, proxy_, runtime_, ops_ and
// pos_ are fixed at construction (the objects they point to synchronise
// themselves; ops_ says which of its methods the monitor alone calls).
// tables_ and start_ are set by Run before it marks running_, and only read
// after. The flows and the operation's state are guarded by state_mu_.
class Cutover {
 public:
  // `proxy` may be null (no proxy configured: the switches are refused).
  Cutover(const MigrationSpec& spec, StateStore& store, proxy::TrafficSwitch* proxy, MigrationRuntime& runtime,
          ReplicationOps& ops, std::function<std::string(uint64_t)> format_position);

  // Replicates (forward; reverse too once a write switch started it) and
  // records metrics until `stop` is set or a flow fails. `tables`: the
  // migrated tables as the source has them; `start`: what the copy holds.
  // A forward flow that asks to be restarted from the target's checkpoints
  // (StartedFlow::restart), or cannot be started because a server is down,
  // is started again with a backoff for up to the fail_after_seconds knob.
  Status Run(std::vector<TablePtr> tables, ReplicateStart start, StopRef stop);

  // One traffic operation (control/operations.h), checked against the phase
  // first; one at a time.
  Result<TrafficResult> Do(const TrafficRequest& request);

 private:
  Result<std::string> SwitchReads(int percent, bool force, bool external);
  Result<std::string> SwitchWrites(bool force, bool external);
  Result<std::string> Rollback(bool force, bool external);
  Result<std::string> Complete();
  Result<std::string> Approve();
  // `midflight sequences sync`: carries the sequences from the side writes go to.
  Result<std::string> SyncSequencesNow();
  // `*clean` tells whether the comparison found nothing (the text lists what it found).
  Result<std::string> Verify(bool repair, int64_t rate, bool* clean);
  // One verification pass against the side applications write to now (the
  // foreground verify and the background job, verify_job.h), from
  // `run.start_after`; `repair` is the foreground's.
  Result<ReplicationOps::VerifyOutcome> VerifyPass(const ReplicationOps::VerifyRun& run, bool repair,
                                                   std::function<int64_t()> rows_per_s, const std::atomic<bool>* stop,
                                                   std::map<TableId, TablePtr>* tables = nullptr);
  // Queues a verification's repairs on the flow from the side applications
  // write to, and waits (up to a minute) until they are applied; how many.
  Result<size_t> ApplyRepairs(std::vector<Change> repairs);
  // A started flow and the tables as its from-side has them.
  struct Running {
    std::unique_ptr<Flow> flow;
    std::map<TableId, TablePtr> tables;
    std::shared_ptr<std::atomic<bool>> restart;
    bool restart_asked() const { return restart && *restart; }
    // Watching for writes on the side the applications left: the flow's
    // changes_routed when the watch began (-1: not watching), and how many
    // past it were reported. Set by the operation, read by the monitor.
    std::atomic<int64_t> watch_base{-1};
    std::atomic<uint64_t> watch_reported{0};
    ~Running() {
      if (flow) flow->Stop();
    }
  };
  // The gates of `req` as the operation would find them now (cutover_gates.cc):
  // what the operation refuses on (its first failure) and what its dry run
  // prints (all). Reads only.
  Checklist Gates(const TrafficRequest& req);
  // `req` with dry_run: the phase, the operation slot and Gates, as a checklist.
  TrafficResult DryRun(const TrafficRequest& req);
  // Moves writes from `from` to `to` (steps 2-5 above).
  Result<std::string> MoveWrites(proxy::Side to, Running& running, Phase next, bool force);
  // The same, recorded by the operator (no proxy, no pause).
  Result<std::string> MoveWritesExternal(proxy::Side to, Running& running, Phase next, bool force);
  // OperatorError when `external` does not fit the spec (a proxy moves the
  // traffic; or no proxy and no --external).
  Status CheckExternal(const char* op, bool external) const;
  // Starts watching `flow` (the side the applications left) for writes.
  static void Watch(Running& running);
  // Monitor: counts and reports changes routed by the watched flow.
  void CheckOldSideWrites(Running* old, const char* side);
  Status StartReverse();
  // A position of `side`, formatted (ReplicationOps::FormatPositionOf, else pos_).
  std::string PosOf(proxy::Side side, uint64_t pos) const;
  // Starts (again) the forward flow; retries while a server is unreachable
  // or the new flow asks for a restart, up to the fail_after_seconds knob.
  Status StartForward(StopRef stop);
  // The target's replicas lagging: holds the appliers (the board shows why).
  void CheckReplicaLag();
  // Tables the source has in the spec's scope that the migration does not
  // carry (created after it started). Checked by Run every few seconds.
  void CheckUntracked();
  // Their names (a switch would leave the application without them: a gate).
  std::vector<std::string> UntrackedNames();
  // An operation that arrives while Run still starts its flows (the phase
  // replicates, running_ is not set yet) waits for them, up to 30 s.
  void AwaitRunning() EXCLUDES(state_mu_);

  const MigrationSpec& spec_;
  StateStore& store_;
  proxy::TrafficSwitch* proxy_;
  std::vector<TablePtr> tables_;
  ReplicateStart start_;
  MigrationRuntime& runtime_;
  ReplicationOps& ops_;
  std::function<std::string(uint64_t)> pos_;  // a position as the engine writes it

  // Taken (try-lock) for the whole of one operation: serialises operations
  // and guards no data (a std::mutex for std::unique_lock's try_to_lock).
  std::mutex op_mu_;
  Mutex state_mu_;
  std::string op_running_ GUARDED_BY(state_mu_);
  std::shared_ptr<Running> forward_ GUARDED_BY(state_mu_), reverse_ GUARDED_BY(state_mu_);
  bool running_ GUARDED_BY(state_mu_) = false;  // Run is replicating
  std::vector<TableId> untracked_ GUARDED_BY(state_mu_);  // see CheckUntracked
  // The monitor's: changes seen on the side the applications left (the
  // total, kept in the state store), those not in an event yet, and when the
  // last event was written.
  uint64_t old_side_writes_ = 0, old_side_pending_ = 0;
  std::chrono::steady_clock::time_point old_side_event_at_{};
  // The background verification: made by Run once the tables are known;
  // resumed there when the store says one was running.
  std::unique_ptr<VerifyJob> verify_job_;
  std::atomic<bool> completed_{false};
  std::atomic<bool> stopping_{false};  // Run is ending: a running verification stops
};

}  // namespace midflight
