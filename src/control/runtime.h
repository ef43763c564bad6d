// What one running migration's parts share at run time: the knobs the
// operator turns, the board where distress is shown, the apply conflicts counted, and the rate limiters
// the copy and apply knobs drive. Owned by whoever hosts the migration
// (service/service.h); outlives every runner of it.
#pragma once

#include "control/knobs.h"
#include "control/status.h"
#include "pipeline/applier.h"
#include "pipeline/conflicts.h"
#include "pipeline/throttle.h"

namespace midflight {

struct MigrationRuntime {
  // The appliers' live settings from the knobs.
  ApplySettings ApplyNow() const {
    ApplySettings s;
    s.batch_size = static_cast<size_t>(knobs.Int(Knob::kApplyBatchSize));
    s.linger = std::chrono::milliseconds(knobs.Int(Knob::kApplyCommitMs));
    s.max_backoff = std::chrono::milliseconds(knobs.Int(Knob::kThrottleMaxBackoffMs));
    s.fail_after_seconds = knobs.Get(Knob::kFailAfterSeconds);
    s.stop_on_conflict = knobs.Int(Knob::kStopOnConflict) != 0;
    return s;
  }

  explicit MigrationRuntime(const MigrationSpec& spec)
      : knobs(spec),
        copy_rate([this] { return knobs.Get(Knob::kCopyRowsPerS); }),
        apply_rate([this] { return knobs.Get(Knob::kApplyChangesPerS); }) {}
  MigrationRuntime(const MigrationRuntime&) = delete;
  MigrationRuntime& operator=(const MigrationRuntime&) = delete;

  Knobs knobs;
  ThrottleBoard throttle;
  ConflictBoard conflicts;  // forward apply conflicts; saved in the state store as "conflicts"
  RateLimiter copy_rate, apply_rate;
  StatusBoard status;  // the replication's latest status (control/status.h)
};

}  // namespace midflight
