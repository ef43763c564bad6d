#include "control/phase.h"

namespace midflight {
namespace {
constexpr Phase kAll[] = {Phase::kCreated,       Phase::kPreflight,      Phase::kSchema,    Phase::kCopying,
                          Phase::kReplicating,   Phase::kReadsSwitched,  Phase::kWritesSwitched,
                          Phase::kCompleted,     Phase::kPaused,         Phase::kFailed,    Phase::kAborted};

bool Active(Phase p) { return p != Phase::kCompleted && p != Phase::kAborted && p != Phase::kPaused && p != Phase::kFailed; }
}  // namespace

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kCreated: return "created";
    case Phase::kPreflight: return "preflight";
    case Phase::kSchema: return "schema";
    case Phase::kCopying: return "copying";
    case Phase::kReplicating: return "replicating";
    case Phase::kReadsSwitched: return "reads_switched";
    case Phase::kWritesSwitched: return "writes_switched";
    case Phase::kCompleted: return "completed";
    case Phase::kPaused: return "paused";
    case Phase::kFailed: return "failed";
    case Phase::kAborted: return "aborted";
  }
  return "unknown";
}

std::optional<Phase> ParsePhase(std::string_view name) {
  for (Phase p : kAll)
    if (name == PhaseName(p)) return p;
  return std::nullopt;
}

bool TransitionAllowed(Phase from, Phase to, std::optional<Phase> resume_to) {
  if (from == to) return false;
  if (from == Phase::kPaused || from == Phase::kFailed) {
    if (to == Phase::kAborted) return resume_to && *resume_to < Phase::kWritesSwitched;
    if (from == Phase::kPaused && to == Phase::kFailed) return true;
    return resume_to && to == *resume_to;
  }
  if (!Active(from)) return false;
  if (to == Phase::kPaused) return from <= Phase::kReplicating;
  if (to == Phase::kFailed) return true;
  if (to == Phase::kAborted) return from < Phase::kWritesSwitched;
  // Forward one step; reads can flip back to replicating; writes can roll back.
  if (static_cast<int>(to) == static_cast<int>(from) + 1 && to <= Phase::kCompleted) return true;
  if (from == Phase::kReadsSwitched && to == Phase::kReplicating) return true;
  if (from == Phase::kWritesSwitched && to == Phase::kReadsSwitched) return true;
  return false;
}

std::string WhereAllowed(Phase to) {
  std::string out;
  for (Phase from : kAll) {
    if (from == Phase::kPaused || from == Phase::kFailed) continue;
    if (TransitionAllowed(from, to)) out += (out.empty() ? "" : ", ") + std::string(PhaseName(from));
  }
  return out.empty() ? "no phase" : out;
}

}  // namespace midflight
