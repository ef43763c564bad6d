#include "control/cutover.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <deque>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/uri.h"
#include "control/phase_driver.h"
#include "control/run_util.h"

namespace midflight {
namespace {

using Clock = std::chrono::steady_clock;
using proxy::Side;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string Ms(double seconds) { return fmt::format("{:.0f} ms", seconds * 1000); }

}  // namespace

Cutover::Cutover(const MigrationSpec& spec, StateStore& store, proxy::TrafficSwitch* proxy, MigrationRuntime& runtime,
                 ReplicationOps& ops, std::function<std::string(uint64_t)> format_position)
    : spec_(spec), store_(store), proxy_(proxy), runtime_(runtime), ops_(ops), pos_(std::move(format_position)) {
  // Conflicts counted by an earlier process keep counting.
  runtime_.conflicts.LoadOnce(store_.Get("conflicts").value_or("{}"));
}

std::string Cutover::PosOf(Side side, uint64_t pos) const {
  std::string out = ops_.FormatPositionOf(side, pos);
  return out.empty() ? pos_(pos) : out;
}

// --- replication ---------------------------------------------------------------

Status Cutover::StartReverse() {
  ReplicateStart reverse;
  reverse.partitions = start_.partitions;
  ASSIGN_OR_RETURN(ReplicationOps::StartedFlow started, ops_.StartFlow(Side::kTarget, tables_, reverse));
  auto running = std::make_shared<Running>();
  running->flow = std::move(started.flow);
  running->tables = std::move(started.tables);
  running->restart = std::move(started.restart);
  RETURN_IF_ERROR(store_.Put("reverse_started", "true"));
  // While the applications write to the source, every change the reverse
  // flow routes was written to the target by someone else.
  if (store_.phase() != Phase::kWritesSwitched) running->watch_base = 0;
  MutexLock lock(&state_mu_);
  reverse_ = std::move(running);
  return Status::Ok();
}

Status Cutover::StartForward(StopRef stop) {
  Clock::time_point failing_since{};
  auto backoff = std::chrono::milliseconds(500);
  while (true) {
    Status st;
    auto started = ops_.StartFlow(Side::kSource, tables_, start_);
    if (started.ok()) {
      auto running = std::make_shared<Running>();
      running->flow = std::move(started->flow);
      running->tables = std::move(started->tables);
      running->restart = std::move(started->restart);
      // Restarted after a write switch: what it routes was written to the
      // source after the switch (everything before was applied by then).
      if (store_.phase() == Phase::kWritesSwitched) running->watch_base = 0;
      MutexLock lock(&state_mu_);
      forward_ = std::move(running);
      return Status::Ok();
    }
    st = started.status();
    if (st.code() != StatusCode::kRetryCall || stop) return st;
    if (failing_since == Clock::time_point{}) failing_since = Clock::now();
    const double failing = Since(failing_since);
    if (failing >= runtime_.knobs.Get(Knob::kFailAfterSeconds))
      return OperatorError(fmt::format("replicating: {}; still failing after {:.0f} s (knob fail_after_seconds); fix "
                                       "the cause, then resume",
                                       st.message(), failing));
    Say(fmt::format("replicating: {}; starting again in {} ms", st.message(), backoff.count()));
    if (stop.WaitFor(backoff)) return Status::Ok();
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

Status Cutover::Run(std::vector<TablePtr> tables, ReplicateStart start, StopRef stop) {
  tables_ = std::move(tables);
  start_ = std::move(start);
  if (!ParseU64(store_.Get("old_side_writes").value_or("0"), &old_side_writes_)) old_side_writes_ = 0;
  // A `complete` the process died in (its drops may have removed the slots
  // replication would start from): finish it instead of replicating; the
  // operator asked for it, and every drop is by name and idempotent.
  if (store_.phase() != Phase::kCompleted && store_.Get("completing").value_or("") == "true") {
    Say("a `complete` was interrupted by the process's end: finishing it");
    if (auto done = Complete(); !done.ok()) return done.status().WithContext("finishing an interrupted complete");
  }
  if (store_.phase() == Phase::kCompleted) {
    completed_ = true;
    Say("migration completed; the proxy keeps serving from the target until stopped");
    while (!stop.WaitFor(std::chrono::seconds(3600))) {
    }
    return Status::Ok();
  }
  if (Status st = StartForward(stop); !st.ok()) return stop ? Status::Ok() : st;
  if (store_.Get("reverse_started").value_or("") == "true") {
    if (Status st = StartReverse(); !st.ok()) {
      MutexLock lock(&state_mu_);
      forward_->flow->Stop();
      return st;
    }
    // A run killed inside a switch may have moved the scheduled jobs but not
    // the phase: put them where the phase says writes go.
    const Side writes = store_.phase() == Phase::kWritesSwitched ? Side::kTarget : Side::kSource;
    if (Status st = ops_.WritesGoTo(writes); !st.ok())
      Say(fmt::format("scheduled jobs (events) not moved to the {}: {}; the next switch tries again",
                      writes == Side::kTarget ? "target" : "source", st.message()));
  }
  {
    int64_t rows = 0;
    for (const auto& t : tables_) rows += t->estimated_rows;
    VerifyJob::Continuous continuous;
    continuous.on = spec_.verify.continuous;
    continuous.pause_seconds = spec_.verify.continuous_pause_seconds;
    continuous.repair = spec_.verify.continuous_repair;
    continuous.rows_per_s = [this] { return runtime_.knobs.Int(Knob::kContinuousVerifyRowsPerS); };
    verify_job_ = std::make_unique<VerifyJob>(
        store_,
        [this](const ReplicationOps::VerifyRun& run, std::function<int64_t()> rows_per_s, const std::atomic<bool>* stop,
               bool repair) { return VerifyPass(run, repair, std::move(rows_per_s), stop); },
        static_cast<int>(tables_.size()), rows, [this] { return runtime_.knobs.Int(Knob::kVerifyRowsPerS); },
        std::move(continuous), [this](std::vector<Change> repairs) { return ApplyRepairs(std::move(repairs)); });
  }
  {
    // Operations are taken from here on: every flow this phase needs runs.
    MutexLock lock(&state_mu_);
    running_ = true;
  }
  // A pass a stopped or killed process left running; or continuous verification.
  verify_job_->ResumeIfRunning();

  Status result;
  auto now_s = [] { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); };
  // Source positions seen over time (when the engine measures lag so): the
  // age of the oldest one not applied yet is the lag in seconds.
  std::deque<std::pair<uint64_t, int64_t>> seen;
  // Restarts of the forward flow (StartedFlow::restart): a flow that ran a
  // minute since the last one starts a new episode for fail_after_seconds.
  Clock::time_point restarted_at{}, restarting_since{};
  auto restart_backoff = std::chrono::milliseconds(500);
  double last_replica_check = 0, last_untracked_check = 0;
  auto last_print = Clock::now() - std::chrono::seconds(10);
  auto last_persist = Clock::now() - std::chrono::seconds(10);
  std::string last_conflicts;
  uint64_t last_applied = 0;
  auto last_rate_at = Clock::now();
  double rate = 0;
  while (!completed_ && !stop.WaitFor(std::chrono::milliseconds(200))) {
    std::shared_ptr<Running> fwd, rev;
    {
      MutexLock lock(&state_mu_);
      fwd = forward_;
      rev = reverse_;
    }
    if (completed_) break;
    // A flow that stopped on a connection refused or lost (kRetryCall: the
    // stream's catalog reads on the target, say, while it restarts) starts
    // again from the target's checkpoints, as one whose applier lost the
    // target does, rather than ending the run.
    Status fwd_health = fwd->flow->health();
    const bool retry_health = !fwd_health.ok() && fwd_health.code() == StatusCode::kRetryCall && !stop;
    if (fwd->restart_asked() || retry_health) {
      // The target may have come back without commits it acknowledged: stop
      // everything in memory and start again from what the target holds.
      fwd->flow->Stop();
      if (restarted_at == Clock::time_point{} || Since(restarted_at) > 60) {
        restarting_since = Clock::now();
        restart_backoff = std::chrono::milliseconds(500);
      }
      const double failing = Since(restarting_since);
      if (failing >= runtime_.knobs.Get(Knob::kFailAfterSeconds)) {
        result = OperatorError(fmt::format("replicating: {}; still failing after {:.0f} s "
                                           "(knob fail_after_seconds); fix the cause, then resume",
                                           retry_health ? fwd_health.message() : "the target connection was lost",
                                           failing));
        break;
      }
      if (retry_health)
        Say(fmt::format("replicating: {}; restarting from the target's checkpoints in {} ms", fwd_health.message(),
                        restart_backoff.count()));
      else
        Say(fmt::format("replicating: the target connection was lost; restarting from the target's checkpoints in {} ms",
                        restart_backoff.count()));
      stop.WaitFor(restart_backoff);
      restart_backoff = std::min(restart_backoff * 2, std::chrono::milliseconds(5000));
      restarted_at = Clock::now();
      if (stop) break;
      if (Status st = StartForward(stop); !st.ok()) {
        result = st;
        break;
      }
      seen.clear();
      continue;
    }
    if (rev && rev->restart_asked()) {
      // The source (the reverse flow's to-side) may have come back without
      // commits it acknowledged: start reverse again from its checkpoints.
      rev->flow->Stop();
      Say("reverse replication: the source connection was lost; restarting from the source's checkpoints");
      if (stop.WaitFor(std::chrono::seconds(1))) break;
      if (Status st = StartReverse(); !st.ok()) {
        if (st.code() != StatusCode::kRetryCall) {
          result = st;
          break;
        }
        Say(fmt::format("reverse replication: {}; trying again", st.message()));
      }
      continue;
    }
    if (!fwd_health.ok()) {
      (void)store_.Put("conflicts", runtime_.conflicts.ToJson());  // the one that stopped it, if it was one
      result = fwd_health;
      break;
    }
    if (rev)
      if (Status st = rev->flow->health(); !st.ok()) {
        result = st;
        break;
      }
    if (rev) {
      if (store_.phase() == Phase::kWritesSwitched)
        CheckOldSideWrites(fwd.get(), "source");
      else
        CheckOldSideWrites(rev.get(), "target");
    }
    const uint64_t source_lsn = ops_.CurrentPosition(Side::kSource);
    if (now_s() - last_untracked_check >= 3.0) {
      last_untracked_check = now_s();
      CheckUntracked();
    }
    if (now_s() - last_replica_check >= 1.0) {
      last_replica_check = now_s();
      CheckReplicaLag();
    }
    FlowMetrics m = fwd->flow->metrics();
    const uint64_t lag_bytes = ops_.LagBytes(Side::kSource, source_lsn, m.applied_through);
    if (ops_.lag_from_positions()) {
      const int64_t now_us = NowUnixMicros();
      if (source_lsn && (seen.empty() || seen.back().first != source_lsn)) seen.push_back({source_lsn, now_us});
      while (!seen.empty() && seen.front().first <= m.applied_through) seen.pop_front();
      m.lag_seconds = seen.empty() ? 0 : (now_us - seen.front().second) / 1e6;
    }
    auto now = Clock::now();
    double dt = std::chrono::duration<double>(now - last_rate_at).count();
    if (dt >= 1.0) {
      rate = (m.changes_applied - last_applied) / dt;
      last_applied = m.changes_applied;
      last_rate_at = now;
    }
    ReplicationStatus rs;
    rs.source_position = pos_(source_lsn);
    rs.applied_position = pos_(m.applied_through);
    rs.confirmed_position = pos_(m.confirmed);
    rs.received_position = pos_(m.received);
    // Where a restarted stream begins when the target holds no restart
    // marker (MySQL targets of older midflight versions).
    rs.restart_position = m.applied_through;
    rs.lag_bytes = lag_bytes;
    rs.lag_seconds = m.lag_seconds;
    rs.changes_applied = m.changes_applied;
    rs.changes_per_s = rate;
    rs.apply_retries = m.retries;
    rs.stream_connected = m.connected;
    if (!m.partitions.empty()) {
      nlohmann::json parts = nlohmann::json::array();
      for (size_t p = 0; p < m.partitions.size(); ++p) {
        const PartitionMetrics& pm = m.partitions[p];
        nlohmann::json j = {{"partition", p},
                            {"queued_changes", pm.queued_changes},
                            {"lag_seconds", std::round(pm.lag_s * 1000) / 1000}};
        if (pm.end_offset >= 0) {  // a log outside the process (Kafka)
          j["end_offset"] = pm.end_offset;
          j["producer_lag_messages"] = pm.producer_lag;
          j["producer_lag_seconds"] = std::round(pm.producer_lag_s * 1000) / 1000;
        }
        if (m.external_apply) {
          j["worker"] = pm.worker;
          j["worker_seen_s"] = std::round(pm.worker_seen_s * 10) / 10;
          j["applied_offset"] = pm.applied_offset;
          j["consumer_lag_messages"] = pm.consumer_lag;
          j["consumer_lag_seconds"] = std::round(pm.consumer_lag_s * 1000) / 1000;
        }
        parts.push_back(std::move(j));
      }
      rs.partitions_json = parts.dump();
    }
    std::string reverse_line;
    if (rev) {
      uint64_t target_lsn = ops_.CurrentPosition(Side::kTarget);
      FlowMetrics r = rev->flow->metrics();
      rs.reverse_running = true;
      rs.reverse_lag_bytes = ops_.LagBytes(Side::kTarget, target_lsn, r.applied_through);
      rs.reverse_applied_position = PosOf(Side::kTarget, r.applied_through);
      rs.reverse_lag_seconds = r.lag_seconds;
      rs.reverse_changes_applied = r.changes_applied;
      reverse_line = fmt::format("; reverse lag {} bytes, {} changes applied", Commas(rs.reverse_lag_bytes),
                                 Commas(r.changes_applied));
    }
    rs.old_side_writes = old_side_writes_;
    if (proxy_) {
      proxy::ProxyStats ps = proxy_->stats();
      rs.proxy_clients = ps.clients_rw + ps.clients_ro;
      rs.proxy_transactions_source = ps.transactions[0];
      rs.proxy_transactions_target = ps.transactions[1];
    }
    rs.published_us = NowUnixMicros();
    runtime_.status.Publish(rs);
    // The state store's copy, for `status` without a running process and
    // the restart position: every two seconds, not every round.
    // New apply conflicts are saved at once: `status` must not hide one.
    std::string conflicts = runtime_.conflicts.ToJson();
    if (now - last_persist >= std::chrono::seconds(2) || conflicts != last_conflicts) {
      last_persist = now;
      auto kv = rs.ToStore();
      kv.push_back({"heartbeat", std::to_string(rs.published_us)});
      kv.push_back({"pid", std::to_string(getpid())});
      kv.push_back({"conflicts", conflicts});
      last_conflicts = std::move(conflicts);
      if (Status st = store_.PutMany(kv); !st.ok()) LOG_DEBUG("status not saved: {}", st.message());
    }
    CrashPoint("apply-changes", static_cast<int64_t>(m.changes_applied));
    if (now - last_print >= std::chrono::seconds(5)) {
      last_print = now;
      Say(fmt::format("[{}] lag {} bytes / {:.2f} s, {} changes applied ({:.0f}/s){}{}", PhaseName(store_.phase()),
                      Commas(rs.lag_bytes), rs.lag_seconds, Commas(m.changes_applied), rate,
                      m.connected ? "" : ", source disconnected: retrying", reverse_line));
    }
  }
  std::shared_ptr<Running> fwd, rev;
  {
    MutexLock lock(&state_mu_);
    running_ = false;
    fwd = forward_;
    rev = reverse_;
  }
  // Wait for an operation in progress (it may use the flows) before stopping them.
  stopping_ = true;
  std::lock_guard op(op_mu_);
  if (verify_job_) verify_job_->Suspend();  // the store keeps it running: the next run resumes it
  if (fwd) fwd->flow->Stop();
  if (rev) rev->flow->Stop();
  // The last status, and where a restarted stream may begin (unless the
  // target was lost: what is in memory may be ahead of what it holds).
  if (auto last = runtime_.status.Latest(0)) {
    auto kv = last->ToStore();
    if (fwd && !fwd->restart_asked()) {
      for (auto& [k, v] : kv)
        if (k == "restart_pos") v = std::to_string(fwd->flow->AppliedThrough());
    } else {
      std::erase_if(kv, [](const auto& e) { return e.first == "restart_pos"; });
    }
    kv.push_back({"conflicts", runtime_.conflicts.ToJson()});
    if (Status st = store_.PutMany(kv); !st.ok()) LOG_WARN("the last status was not saved: {}", st.message());
  }
  if (completed_ && result.ok()) {
    while (!stop.WaitFor(std::chrono::seconds(3600))) {
    }
    return Status::Ok();
  }
  if (stop && result.ok() && store_.phase() != Phase::kWritesSwitched) {
    // Best effort: a resumed run carries them again before any switch.
    if (Status st = ops_.SyncSequences(Side::kSource); !st.ok())
      LOG_WARN("stopping: carrying sequences to the target: {}", st.message());
    Say("stopped; run again with the same spec to resume");
  }
  return result;
}

// --- the switches --------------------------------------------------------------

void Cutover::CheckReplicaLag() {
  // The target's own physical replicas: when one lags more than the
  // replica_max_lag_seconds knob, the appliers hold their next batch until
  // it catches up (the board shows why).
  const double max_lag = runtime_.knobs.Get(Knob::kReplicaMaxLagSeconds);
  if (max_lag <= 0) {
    runtime_.throttle.SetReplicaLagPause(false, "");
    return;
  }
  auto lag = ops_.TargetReplicaLag();
  if (!lag) {
    runtime_.throttle.SetReplicaLagPause(false, "");
    return;
  }
  if (lag->first > max_lag)
    runtime_.throttle.SetReplicaLagPause(
        true, fmt::format("target replica {} replays {:.1f} s behind (knob replica_max_lag_seconds is {:.1f}); "
                          "applying waits for it",
                          lag->second.empty() ? "?" : lag->second, lag->first, max_lag));
  else if (lag->first <= max_lag * 0.8 || lag->first == 0)
    runtime_.throttle.SetReplicaLagPause(false, "");
}

void Cutover::CheckUntracked() {
  auto listed = ops_.TablesInScope();
  if (!listed.ok()) return;  // the monitor connection is retried on the next round
  std::set<TableId> carried;
  for (const auto& t : tables_) carried.insert(t->id);
  std::vector<TableId> found;
  for (const auto& id : *listed)
    if (!carried.count(id)) found.push_back(id);
  {
    MutexLock lock(&state_mu_);
    if (found == untracked_) return;
    untracked_ = found;
  }
  std::vector<std::string> names;
  for (const auto& id : found) names.push_back(id.ToString());
  (void)store_.Put("untracked_tables", fmt::format("{}", fmt::join(names, ",")));
  std::string msg =
      found.empty()
          ? "every table in scope on the source is migrated again"
          : fmt::format("table(s) {} appeared on the source and match the spec's tables, but the migration does not "
                        "carry them (created after it started): switches are refused until they are added to exclude "
                        "(spec, then restart midflight) or dropped",
                        fmt::join(names, ", "));
  if (!found.empty()) LOG_WARN("{}", msg);
  (void)store_.AddEvent(msg);
  Say(fmt::format("[{}] {}", PhaseName(store_.phase()), msg));
}

std::vector<std::string> Cutover::UntrackedNames() {
  MutexLock lock(&state_mu_);
  std::vector<std::string> names;
  for (const auto& id : untracked_) names.push_back(id.ToString());
  return names;
}

Status Cutover::CheckExternal(const char* op, bool external) const {
  if (proxy_ && external)
    return OperatorError(fmt::format("refused: {} --external is for migrations without a proxy; this migration's proxy "
                                     "moves the traffic: run it without --external",
                                     op));
  if (!proxy_ && !external)
    return OperatorError(fmt::format("{} needs the proxy: add a proxy: section to the spec, or move the applications "
                                     "by other means and record it with `midflight {} --external`",
                                     op, op));
  return Status::Ok();
}

Result<std::string> Cutover::SwitchReads(int percent, bool force, bool external) {
  if (percent < 0 || percent > 100) return InvalidArgument(fmt::format("percent {} is not between 0 and 100", percent));
  TrafficRequest req;
  req.op = TrafficOp::kSwitchReads;
  req.percent = percent;
  req.force = force;
  req.external = external;
  RETURN_IF_ERROR(Gates(req).FirstRefusal());
  Phase now = store_.phase();
  if (external && percent > 0) {
    // Reverse replication starts now, before any application can write to
    // the target, so whatever they write there reaches the source.
    bool have_reverse;
    {
      MutexLock lock(&state_mu_);
      have_reverse = reverse_ != nullptr;
    }
    if (!have_reverse) RETURN_IF_ERROR(StartReverse());
  }
  std::string msg = percent == 0 ? "reads switched back to the source"
                                 : fmt::format("{}% of new read-only transactions go to the target", percent);
  if (external) msg += " (recorded by the operator: --external)";
  if (percent > 0 && now == Phase::kReplicating) {
    RETURN_IF_ERROR(store_.PutMany({{"read_percent", std::to_string(percent)},
                                    {"reads_switched_at", std::to_string(NowUnixMicros())},
                                    {"approved", "false"}}));
    RETURN_IF_ERROR(store_.SetPhase(Phase::kReadsSwitched, "switch reads: " + msg));
  } else if (percent == 0 && now == Phase::kReadsSwitched) {
    RETURN_IF_ERROR(store_.Put("read_percent", "0"));
    RETURN_IF_ERROR(store_.SetPhase(Phase::kReplicating, "switch reads: " + msg));
  } else {
    RETURN_IF_ERROR(store_.Put("read_percent", std::to_string(percent)));
    RETURN_IF_ERROR(store_.AddEvent("switch reads: " + msg));
  }
  if (proxy_) proxy_->SetReadPercent(percent);
  Say(fmt::format("[{}] {}", PhaseName(store_.phase()), msg));
  return msg;
}

Result<std::string> Cutover::MoveWrites(proxy::Side to, Running& running, Phase next, bool force) {
  Flow& flow = *running.flow;
  const bool forward = to == proxy::Side::kTarget;
  const char* from_name = forward ? "source" : "target";
  const char* to_name = forward ? "target" : "source";
  // The gates (lag, pinned sessions, ...) were checked by the caller.
  (void)force;
  const Side from_side = forward ? Side::kSource : Side::kTarget;
  const Side to_side = forward ? Side::kTarget : Side::kSource;
  // Connections first: nothing slow inside the pause.
  RETURN_IF_ERROR(ops_.PrepareSwitch());

  auto abandon = [&](const std::string& why) -> Status {
    proxy_->ResumeWrites();
    std::string msg = fmt::format("switch writes to the {} abandoned: {}; traffic stays on the {}", to_name, why, from_name);
    (void)store_.AddEvent(msg);
    Say(msg);
    return OperatorError(msg);
  };
  auto pinned = [&]() -> std::string {
    GateCheck c = PinnedSessionsGate(proxy_->PinnedSessions(from_side), from_name);
    return c.ok ? "" : c.detail;
  };
  const auto t0 = Clock::now();
  if (Status st = proxy_->PauseWrites(std::chrono::milliseconds(
          static_cast<int64_t>(runtime_.knobs.Get(Knob::kDrainTimeoutSeconds) * 1000)));
      !st.ok())
    return abandon(st.message());
  const double drained = Since(t0);
  // A session may have taken such state in the transaction the pause drained.
  if (std::string why = pinned(); !why.empty()) return abandon(why);
  CrashPoint("switch-paused");
  auto lsn = ops_.CommittedPosition(from_side);
  if (!lsn.ok()) return abandon(fmt::format("reading the {}'s position: {}", from_name, lsn.status().message()));
  const auto t1 = Clock::now();
  while (flow.AppliedThrough() < *lsn) {
    if (Status st = flow.health(); !st.ok()) return abandon(st.message());
    if (Since(t1) > spec_.cutover.catchup_timeout_seconds)
      return abandon(fmt::format("the {} did not apply the {}'s position {} within {:.0f} s (it has {})", to_name,
                                 from_name, PosOf(from_side, *lsn), spec_.cutover.catchup_timeout_seconds,
                                 PosOf(from_side, flow.AppliedThrough())));
    flow.Poke();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const double caught_up = Since(t1);
  const auto t2 = Clock::now();
  if (Status st = ops_.SyncSequences(from_side); !st.ok())
    return abandon("carrying sequences over: " + st.message());
  const double sequences = Since(t2);
  // The servers' own scheduled writers (MySQL events) follow the writes;
  // put back where they were when the switch is abandoned after this.
  auto jobs_back = [&](const std::string& why) -> Status {
    if (Status st = ops_.WritesGoTo(from_side); !st.ok())
      LOG_WARN("switch abandoned: moving scheduled jobs back to the {}: {}", from_name, st.message());
    return abandon(why);
  };
  if (Status st = ops_.WritesGoTo(to_side); !st.ok())
    return jobs_back("moving scheduled jobs (events): " + st.message());
  std::string what = fmt::format("writes switched to the {}", to_name);
  if (Status st = store_.SetPhase(next, what); !st.ok()) return jobs_back("recording the phase: " + st.message());
  proxy_->SetWriteSide(to);
  proxy_->ResumeWrites();
  const double pause = Since(t0);
  Watch(running);
  std::string msg = fmt::format(
      "{} at {}: write pause {} (drain {}, catch-up {}, sequences {})", what, PosOf(from_side, *lsn), Ms(pause), Ms(drained),
      Ms(caught_up), Ms(sequences));
  std::string history = store_.Get("write_pauses_ms").value_or("");
  (void)store_.PutMany({{"write_pauses_ms", history + (history.empty() ? "" : ",") + fmt::format("{:.1f}", pause * 1000)},
                        {"last_write_pause_ms", fmt::format("{:.1f}", pause * 1000)}});
  (void)store_.AddEvent(msg);
  Say(fmt::format("[{}] {}", PhaseName(next), msg));
  return msg;
}

void Cutover::Watch(Running& running) {
  running.watch_reported = 0;
  running.watch_base = static_cast<int64_t>(running.flow->metrics().changes_routed);
}

void Cutover::CheckOldSideWrites(Running* old, const char* side) {
  if (!old) return;
  const int64_t base = old->watch_base.load();
  if (base < 0) return;
  const uint64_t routed = old->flow->metrics().changes_routed;
  const uint64_t seen = routed > static_cast<uint64_t>(base) ? routed - base : 0;
  if (seen > old->watch_reported) {
    const uint64_t fresh = seen - old->watch_reported;
    old->watch_reported = seen;
    old_side_writes_ += fresh;
    old_side_pending_ += fresh;
    (void)store_.Put("old_side_writes", std::to_string(old_side_writes_));
  }
  // One event at once, then at most one every 10 s while they keep coming.
  const auto now = Clock::now();
  if (old_side_pending_ == 0 ||
      (old_side_event_at_ != Clock::time_point{} && now - old_side_event_at_ < std::chrono::seconds(10)))
    return;
  old_side_event_at_ = now;
  const char* other = std::string_view(side) == "source" ? "target" : "source";
  std::string msg = fmt::format(
      "{} change(s) arrived on the {} after the applications' writes moved to the {} (not midflight's own; {} in "
      "all): an application instance still writes to the {}; they are applied to the {} as usual",
      Commas(static_cast<int64_t>(old_side_pending_)), side, other, Commas(static_cast<int64_t>(old_side_writes_)), side, other);
  old_side_pending_ = 0;
  LOG_WARN("{}", msg);
  (void)store_.AddEvent(msg);
  Say(fmt::format("[{}] {}", PhaseName(store_.phase()), msg));
}

Result<std::string> Cutover::MoveWritesExternal(proxy::Side to, Running& running, Phase next, bool force) {
  Flow& flow = *running.flow;
  const bool forward = to == proxy::Side::kTarget;
  const char* from_name = forward ? "source" : "target";
  const char* to_name = forward ? "target" : "source";
  const Side from_side = forward ? Side::kSource : Side::kTarget;
  // The gates (lag, verification, window, approval) were checked by the caller.
  (void)force;
  RETURN_IF_ERROR(ops_.PrepareSwitch());
  // No pause: the operator says the applications write to the other side
  // now. Everything the old side committed up to here is carried over
  // before the phase says so; what arrives there later is reported.
  const auto t0 = Clock::now();
  auto refuse = [&](const std::string& why) -> Status {
    std::string msg = fmt::format("switch writes to the {} (--external) not recorded: {}; the phase stays {}", to_name,
                                  why, PhaseName(store_.phase()));
    (void)store_.AddEvent(msg);
    Say(msg);
    return OperatorError(msg);
  };
  auto lsn = ops_.CommittedPosition(from_side);
  if (!lsn.ok()) return refuse(fmt::format("reading the {}'s position: {}", from_name, lsn.status().message()));
  while (flow.AppliedThrough() < *lsn) {
    if (Status st = flow.health(); !st.ok()) return refuse(st.message());
    if (Since(t0) > spec_.cutover.catchup_timeout_seconds)
      return refuse(fmt::format("the {} did not apply the {}'s position {} within {:.0f} s (it has {})", to_name,
                                from_name, PosOf(from_side, *lsn), spec_.cutover.catchup_timeout_seconds,
                                PosOf(from_side, flow.AppliedThrough())));
    flow.Poke();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double caught_up = Since(t0);
  const auto t2 = Clock::now();
  if (Status st = ops_.SyncSequences(from_side); !st.ok()) return refuse("carrying sequences over: " + st.message());
  const double sequences = Since(t2);
  if (Status st = ops_.WritesGoTo(forward ? Side::kTarget : Side::kSource); !st.ok()) {
    if (Status back = ops_.WritesGoTo(from_side); !back.ok())
      LOG_WARN("moving scheduled jobs back to the {}: {}", from_name, back.message());
    return refuse("moving scheduled jobs (events): " + st.message());
  }
  // Test-only: a kill -9 once the old side is carried over, before the phase
  // says so (tests/integration/cross_reverse_crash.sh): the restart keeps
  // the phase, and the operator's command is run again.
  CrashPoint(forward ? "switch-external-caught-up" : "rollback-external-caught-up");
  std::string what = fmt::format("writes switched to the {} (recorded by the operator: --external)", to_name);
  RETURN_IF_ERROR(store_.SetPhase(next, what));
  Watch(running);
  std::string msg = fmt::format("{} at {}: catch-up {}, sequences {}; changes still arriving on the {} are reported",
                                what, PosOf(from_side, *lsn), Ms(caught_up), Ms(sequences), from_name);
  (void)store_.Put("last_external_catchup_ms", fmt::format("{:.1f}", caught_up * 1000));
  (void)store_.AddEvent(msg);
  Say(fmt::format("[{}] {}", PhaseName(next), msg));
  return msg;
}

Result<std::string> Cutover::SwitchWrites(bool force, bool external) {
  TrafficRequest req;
  req.op = TrafficOp::kSwitchWrites;
  req.force = force;
  req.external = external;
  if (Status st = Gates(req).FirstRefusal(); !st.ok()) {
    (void)store_.AddEvent("switch writes to the target " + st.message());
    return st;
  }
  bool have_reverse;
  {
    MutexLock lock(&state_mu_);
    have_reverse = reverse_ != nullptr;
  }
  if (!have_reverse) RETURN_IF_ERROR(StartReverse());
  std::shared_ptr<Running> fwd;
  {
    MutexLock lock(&state_mu_);
    fwd = forward_;
  }
  if (external) return MoveWritesExternal(proxy::Side::kTarget, *fwd, Phase::kWritesSwitched, force);
  return MoveWrites(proxy::Side::kTarget, *fwd, Phase::kWritesSwitched, force);
}

Result<std::string> Cutover::Rollback(bool force, bool external) {
  TrafficRequest req;
  req.op = TrafficOp::kRollback;
  req.force = force;
  req.external = external;
  if (Status st = Gates(req).FirstRefusal(); !st.ok()) {
    (void)store_.AddEvent("rollback " + st.message());
    return st;
  }
  std::shared_ptr<Running> rev;
  {
    MutexLock lock(&state_mu_);
    rev = reverse_;
  }
  if (!rev) return Internal("reverse replication is not running");
  if (external) return MoveWritesExternal(proxy::Side::kSource, *rev, Phase::kReadsSwitched, force);
  return MoveWrites(proxy::Side::kSource, *rev, Phase::kReadsSwitched, force);
}

Result<std::string> Cutover::Complete() {
  std::shared_ptr<Running> fwd, rev;
  {
    MutexLock lock(&state_mu_);
    fwd = forward_;
    rev = reverse_;
  }
  // Every change made on the source before the switch is on the target
  // already (the switch waited for it); stop both directions.
  // Recorded first: from here a restart finishes the completion (Run) rather
  // than replicate from slots this may already have dropped.
  RETURN_IF_ERROR(store_.Put("completing", "true"));
  if (rev) rev->flow->Stop();
  if (fwd) fwd->flow->Stop();
  std::vector<std::string> done = ops_.CleanUpOnComplete();
  CrashPoint("complete-cleanup");
  if (proxy_) proxy_->SetReadPercent(100);
  RETURN_IF_ERROR(store_.Put("read_percent", "100"));
  std::string msg = fmt::format("completed: the target serves reads and writes; replication stopped; removed {}",
                                done.empty() ? "nothing" : fmt::format("{}", fmt::join(done, ", ")));
  RETURN_IF_ERROR(store_.SetPhase(Phase::kCompleted, msg));
  completed_ = true;
  Say("[completed] " + msg);
  return msg;
}

Result<std::string> Cutover::SyncSequencesNow() {
  // From the side the applications write to (never backwards: pg::SyncSequences).
  const bool writes_on_target = store_.phase() == Phase::kWritesSwitched;
  RETURN_IF_ERROR(ops_.SyncSequences(writes_on_target ? Side::kTarget : Side::kSource).WithContext("sequences sync"));
  std::string msg = fmt::format("sequences carried from the {} to the {}", writes_on_target ? "target" : "source",
                                writes_on_target ? "source" : "target");
  (void)store_.AddEvent(msg);
  Say(fmt::format("[{}] {}", PhaseName(store_.phase()), msg));
  return msg;
}

Result<std::string> Cutover::Approve() {
  RETURN_IF_ERROR(store_.Put("approved", "true"));
  RETURN_IF_ERROR(store_.AddEvent("write switch approved"));
  return std::string("write switch approved");
}

Result<ReplicationOps::VerifyOutcome> Cutover::VerifyPass(const ReplicationOps::VerifyRun& run, bool repair,
                                                         std::function<int64_t()> rows_per_s,
                                                         const std::atomic<bool>* stop,
                                                         std::map<TableId, TablePtr>* tables) {
  // Compare with the side applications write to as the reference.
  const bool writes_on_target = store_.phase() == Phase::kWritesSwitched;
  std::shared_ptr<Running> flow;
  {
    MutexLock lock(&state_mu_);
    flow = writes_on_target ? reverse_ : forward_;
  }
  if (!flow) return OperatorError("replication is not running yet");
  const Side reference = writes_on_target ? Side::kTarget : Side::kSource;
  if (tables) *tables = flow->tables;
  Say(fmt::format("verify: comparing {} tables ({} -> {})", flow->tables.size(), writes_on_target ? "target" : "source",
                  writes_on_target ? "source" : "target"));
  // Stopped by the caller's flag or by Run ending (stopping_).
  std::atomic<bool> either{false};
  StopSource done;
  std::thread watch([&] {
    while (!done.WaitFor(std::chrono::milliseconds(50)))
      if ((stop && *stop) || stopping_) {
        either = true;
        return;
      }
  });
  auto out = ops_.Verify(reference, *flow->flow, flow->tables, repair, std::move(rows_per_s), &either, run);
  done.Stop();
  watch.join();
  return out;
}

Result<size_t> Cutover::ApplyRepairs(std::vector<Change> repairs) {
  // The flow of the side applications write to, as VerifyPass compared with
  // (no switch runs meanwhile: an operation holds op_mu_, and a switch
  // suspends the background job first).
  const bool writes_on_target = store_.phase() == Phase::kWritesSwitched;
  const Side reference = writes_on_target ? Side::kTarget : Side::kSource;
  std::shared_ptr<Running> flow;
  {
    MutexLock lock(&state_mu_);
    flow = writes_on_target ? reverse_ : forward_;
  }
  if (!flow) return OperatorError("replication is not running");
  const size_t n = repairs.size();
  Flow& f = *flow->flow;
  uint64_t routed = f.QueueRepairs(std::move(repairs));
  auto t0 = Clock::now();
  // Once the stream has routed them they are pending in their partitions;
  // then everything up to a position taken afterwards being applied
  // includes them.
  while (f.RepairsRouted() < routed && Since(t0) < 60) {
    f.Poke();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSIGN_OR_RETURN(uint64_t after, ops_.CommittedPosition(reference));
  while (f.AppliedThrough() < after && Since(t0) < 60) {
    f.Poke();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return n;
}

Result<std::string> Cutover::Verify(bool repair, int64_t rate, bool* clean) {
  // An explicit --rate holds for this run; otherwise the verify_rows_per_s knob, read live.
  std::function<int64_t()> rows_per_s = [this] { return runtime_.knobs.Int(Knob::kVerifyRowsPerS); };
  if (rate >= 0) rows_per_s = [rate] { return rate; };
  (void)store_.Put("verify_state", "running");
  const int64_t started_us = NowUnixMicros();
  std::map<TableId, TablePtr> tables;
  auto report = VerifyPass({}, repair, rows_per_s, &stopping_, &tables);
  if (!report.ok()) {
    (void)store_.PutMany({{"verify_state", "failed"}, {"verify_clean", "false"},
                          {"verify_summary", "failed: " + report.status().message()}});
    return report.status().WithContext("verify");
  }
  // Tables in scope the migration does not carry are a difference too: the
  // application would not find them on the target.
  {
    MutexLock lock(&state_mu_);
    if (!untracked_.empty()) {
      std::vector<std::string> names;
      for (const auto& id : untracked_) names.push_back(id.ToString());
      report->clean = false;
      report->summary = fmt::format("verify: NOT CLEAN: {} table(s) in scope on the source are not migrated ({}); "
                                    "the migrated tables: {}",
                                    names.size(), fmt::join(names, ", "),
                                    report->summary.starts_with("verify: ") ? report->summary.substr(8)
                                                                            : report->summary);
      for (const auto& n : names) report->lines.push_back(n + ": exists on the source, not migrated");
    }
  }
  std::string out = report->summary + "\n";
  for (const auto& line : report->lines) out += "  " + line + "\n";
  size_t repaired = 0;
  if (!report->repairs.empty()) {
    ASSIGN_OR_RETURN(repaired, ApplyRepairs(std::move(report->repairs)));
    out += fmt::format("repaired {} row(s) through the apply path; run verify again to confirm\n", repaired);
  }
  VerifyJob::AddReport(store_, nlohmann::json{{"at", NowUnixMicros() / 1e6},
                                              {"kind", "foreground"},
                                              {"actor", ActorScope::Current()},
                                              {"tables", tables.size()},
                                              {"rows", nlohmann::json::parse(report->json, nullptr, false).value("rows", 0)},
                                              {"seconds", (NowUnixMicros() - started_us) / 1e6},
                                              {"clean", report->clean},
                                              {"differences", report->lines.size()},
                                              {"repaired", repaired},
                                              {"summary", report->summary}}
                                   .dump());
  (void)store_.PutMany({{"verify_state", "done"},
                        {"verify_clean", report->clean ? "true" : "false"},
                        {"verify_at", std::to_string(NowUnixMicros())},
                        {"verify_summary", report->summary},
                        {"verify_json", report->json}});
  (void)store_.AddEvent(report->summary);
  Say(report->summary);  // it starts with "verify: "
  *clean = report->clean;
  return out;
}

// --- control API -----------------------------------------------------------------

void Cutover::AwaitRunning() {
  // A process that has just started (or restarted) answers its control API
  // while it still connects and starts its flows: the phase already says
  // replicating. An operation sent then (a script that waited for the phase,
  // an operator right after a restart) waits for the flows, up to 30 s,
  // instead of being refused; in any other phase it is refused at once.
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline && !stopping_) {
    const Phase phase = store_.phase();
    if (phase != Phase::kReplicating && phase != Phase::kReadsSwitched && phase != Phase::kWritesSwitched) return;
    {
      MutexLock s(&state_mu_);
      if (running_) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Result<TrafficResult> Cutover::Do(const TrafficRequest& req) {
  if (req.dry_run) {
    if (req.op != TrafficOp::kSwitchReads && req.op != TrafficOp::kSwitchWrites && req.op != TrafficOp::kRollback &&
        req.op != TrafficOp::kComplete)
      return InvalidArgument(fmt::format("{} has no dry run (switch reads, switch writes, rollback and complete have)",
                                         TrafficOpName(req.op)));
    return DryRun(req);
  }
  if (req.op != TrafficOp::kApprove) AwaitRunning();
  std::unique_lock lock(op_mu_, std::try_to_lock);
  if (!lock.owns_lock()) {
    MutexLock s(&state_mu_);
    return OperatorError(fmt::format("refused: another operation is running ({}); wait for it to finish", op_running_));
  }
  {
    MutexLock s(&state_mu_);
    if (!running_ && req.op != TrafficOp::kApprove)
      return OperatorError(fmt::format("refused: migration {} is in phase {}; replication is not running yet",
                                       spec_.name, PhaseName(store_.phase())));
    op_running_ = TrafficOpName(req.op);
  }
  RETURN_IF_ERROR(CheckTrafficPhase(req.op, store_.phase(), spec_.name));
  TrafficResult out;
  Result<std::string> r = std::string();
  // The background verification compares against the side writes go to:
  // it waits (suspended, resumed after) while a switch moves them, and ends at complete.
  const bool moves_writes =
      req.op == TrafficOp::kSwitchWrites || req.op == TrafficOp::kRollback || req.op == TrafficOp::kComplete;
  if (moves_writes) {
    if (req.op == TrafficOp::kComplete)
      (void)verify_job_->Stop("stopped: the migration completed");
    else
      verify_job_->Suspend();
  }
  switch (req.op) {
    case TrafficOp::kSwitchReads: r = SwitchReads(req.percent, req.force, req.external); break;
    case TrafficOp::kSwitchWrites: r = SwitchWrites(req.force, req.external); break;
    case TrafficOp::kRollback: r = Rollback(req.force, req.external); break;
    case TrafficOp::kComplete: r = Complete(); break;
    case TrafficOp::kApprove: r = Approve(); break;
    case TrafficOp::kVerify: r = Verify(req.repair, req.rate, &out.clean); break;
    case TrafficOp::kVerifyStart: r = verify_job_->Start(req.rate); break;
    case TrafficOp::kVerifyStop: r = verify_job_->Stop(); break;
    case TrafficOp::kSyncSequences: r = SyncSequencesNow(); break;
  }
  if (moves_writes && req.op != TrafficOp::kComplete) verify_job_->ResumeIfRunning();
  if (!r.ok()) return r.status();
  out.message = std::move(*r);
  while (!out.message.empty() && out.message.back() == '\n') out.message.pop_back();
  return out;
}

}  // namespace midflight
