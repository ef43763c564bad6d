#include "control/phase_driver.h"

#include <fmt/format.h>

#include <cstdio>

#include "base/clock.h"
#include "base/log.h"

namespace midflight {

void Say(const std::string& line) {
  std::fprintf(stdout, "%s\n", line.c_str());
  std::fflush(stdout);
  // A log collector reading JSON sees the progress too, with the migration's name.
  if (GetLogFormat() == LogFormat::kJson) LogLine(LogLevel::kInfo, line);
}

Status DrivePhases(StateStore& store, const std::string& name, const std::atomic<bool>& stop,
                   const PhaseSteps& steps) {
  Phase phase = store.phase();
  if (phase == Phase::kFailed || phase == Phase::kPaused) {
    auto resume = ParsePhase(store.Get("resume_phase").value_or("created")).value_or(Phase::kCreated);
    Say(fmt::format("resuming {} in phase {} (was {})", name, PhaseName(resume), PhaseName(phase)));
    phase = resume;
  } else if (phase != Phase::kCreated) {
    Say(fmt::format("resuming {} in phase {}", name, PhaseName(phase)));
  }
  if (phase == Phase::kAborted)
    return OperatorError(fmt::format("migration {} was aborted; start a new one (another name or state_dir)", name));
  auto enter = [&](Phase p, const std::string& message) -> Status {
    RETURN_IF_ERROR(store.SetPhase(p, message));
    phase = p;
    Say(fmt::format("[{}] {}", PhaseName(p), message));
    return Status::Ok();
  };
  Phase working = phase;
  auto fail = [&](Status st) -> Status {
    if (st.code() == StatusCode::kCancelled || stop) return Status::Ok();
    // The failure is returned (and printed) whatever happens here; a store
    // that cannot record it is said so, or status would show the migration
    // still running in its phase.
    Status recorded = store.PutMany({{"resume_phase", PhaseName(working)}, {"error", store.Scrub(st.message())}});
    if (recorded.ok()) recorded = store.SetPhase(Phase::kFailed, st.message());
    if (!recorded.ok())
      LOG_ERROR("{}: could not record in the state store that phase {} failed: {}", name, PhaseName(working),
                recorded.message());
    return st;
  };
  const bool fresh = phase <= Phase::kPreflight;
  if (fresh) {
    working = Phase::kPreflight;
    // Already in preflight: resumed there (after a failed preflight) by the operator.
    if (store.phase() != Phase::kPreflight) {
      if (Status st = enter(Phase::kPreflight, "checking source and target"); !st.ok()) return fail(st);
    } else {
      Say(fmt::format("[{}] checking source and target", PhaseName(Phase::kPreflight)));
    }
  }
  if (Status st = steps.preflight(fresh); !st.ok()) return fail(st);
  if (Status st = store.Put("error", ""); !st.ok())
    LOG_WARN("{}: could not clear the last error in the state store: {}", name, st.message());
  if (fresh) {
    working = Phase::kSchema;
    if (Status st = enter(Phase::kSchema, steps.schema_message()); !st.ok()) return fail(st);
  } else if (phase != store.phase()) {
    if (Status st = enter(phase, "resumed"); !st.ok()) return fail(st);
  }
  if (phase == Phase::kSchema) {
    working = Phase::kSchema;
    if (Status st = steps.create_schema(); !st.ok()) return fail(st);
    if (Status st = enter(Phase::kCopying, steps.copy_message); !st.ok()) return fail(st);
  }
  if (phase == Phase::kCopying) {
    working = Phase::kCopying;
    if (Status st = steps.copy(); !st.ok()) return fail(st);
    if (stop) return Status::Ok();
    if (Status st = steps.finish_schema(); !st.ok()) return fail(st);
    if (Status st = enter(Phase::kReplicating, "streaming changes"); !st.ok()) return fail(st);
  }
  // replicating, reads_switched, writes_switched, completed: the replicate
  // step serves all of them (the switches move between them while it runs).
  working = phase >= Phase::kReplicating ? phase : Phase::kReplicating;
  if (Status st = steps.replicate(); !st.ok()) {
    working = store.phase() == Phase::kFailed ? working : store.phase();
    return fail(st);
  }
  return Status::Ok();
}

void SaveCopyProgress(StateStore& store, const std::vector<std::shared_ptr<const TableSchema>>& tables,
                      const CopyProgress& progress, const std::map<TableId, int64_t>& rows_at_start,
                      double seconds, const char* final_state) {
  std::vector<TableRow> rows;
  for (const auto& t : tables) {
    const auto& p = *progress.at(t->id);
    TableRow r;
    r.name = t->id.ToString();
    r.rows_copied = p.rows;
    r.bytes_copied = p.bytes;
    r.est_rows = t->estimated_rows;
    r.est_bytes = t->estimated_bytes;
    r.chunks_done = p.chunks_done;
    r.chunks_total = p.chunks_total;
    r.state = final_state ? final_state
                          : (p.chunks_done == p.chunks_total ? "copied" : p.rows > 0 ? "copying" : "pending");
    r.rows_per_s = seconds > 0.5 ? (p.rows - rows_at_start.at(t->id)) / seconds : 0;
    rows.push_back(r);
  }
  // Progress, written every few seconds: a failing write is logged by the
  // store itself (StateStore::Written: at once, then every 30 s while it lasts).
  if (Status st = store.SaveTables(rows); st.ok()) {
    if (st = store.Put("heartbeat", std::to_string(NowUnixMicros())); !st.ok())
      LOG_DEBUG("copy progress: heartbeat not saved: {}", st.message());
  } else {
    LOG_DEBUG("copy progress: not saved: {}", st.message());
  }
}

}  // namespace midflight
