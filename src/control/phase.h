// The phases of a migration (DESIGN.md) and the transitions allowed between them.
//
//   created ─► preflight ─► schema ─► copying ─► replicating ─► reads_switched ─► writes_switched ─► completed
//   created … replicating ─► paused ─► (back to the phase it left)
//     (not once reads are switched: the target would serve stale reads)
//   any active phase ─► failed ─► (resume: back to the phase it failed in)
//   any phase before writes_switched ─► aborted
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace midflight {

enum class Phase {
  kCreated,
  kPreflight,
  kSchema,
  kCopying,
  kReplicating,
  kReadsSwitched,
  kWritesSwitched,
  kCompleted,
  kPaused,
  kFailed,
  kAborted,
};

const char* PhaseName(Phase phase);
std::optional<Phase> ParsePhase(std::string_view name);

// Whether `from` may move to `to`. Resuming from kPaused/kFailed goes back to
// the phase it left (`resume_to`).
bool TransitionAllowed(Phase from, Phase to, std::optional<Phase> resume_to = std::nullopt);
// For a refused transition: which phase(s) allow moving to `to`.
std::string WhereAllowed(Phase to);

}  // namespace midflight
