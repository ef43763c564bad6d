// Runtime knobs: the operational settings an operator may change while a
// migration runs, without a restart (API `POST /api/migrations/NAME/knobs`,
// CLI `midflight knobs set NAME k=v`). Defaults come from the spec; values
// set at run time are persisted in the state store and outlive a restart.
//
// Readers (copy workers, appliers, the verifier, the switch) read the atomic
// value each time they need it, so a change takes effect at the next chunk,
// batch or check.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace midflight {

struct MigrationSpec;

enum class Knob {
  kParallelism,          // copy connections working at once
  kCopyRowsPerS,         // copy rate limit, all workers together; 0 = unlimited
  kApplyBatchSize,       // changes per apply transaction
  kApplyCommitMs,        // how long an applier waits to fill a batch before it commits
  kApplyChangesPerS,     // apply rate limit, all partitions together; 0 = unlimited
  kVerifyRowsPerS,       // live verification: source rows read per second; 0 = unlimited
  kMaxLagSeconds,        // switch writes refused above this lag (unless forced)
  kDrainTimeoutSeconds,  // open transactions get this long at a write switch; past it the switch is abandoned
  kLockTimeoutMs,        // apply sessions' lock_timeout on the target
  kThrottleMaxBackoffMs, // longest pause of a distressed partition before it retries
  kFailAfterSeconds,     // an error that retries have not fixed for this long fails the migration
  kReplicaMaxLagSeconds, // a replica of the target lagging more holds the appliers (and the source replica a MySQL copy); 0 = off
  kLagAlertSeconds,      // webhook: lag over this ...
  kLagAlertAfterSeconds, // ... for longer than this sends a lag alert
  kStopOnConflict,       // 0: an apply conflict overwrites (counted, logged); 1: it fails the migration
  kContinuousVerifyRowsPerS,  // continuous verification's passes: source rows read per second; 0 = unlimited
  kCount,
};

struct KnobDef {
  Knob id;
  const char* name;
  double min, max;
  bool integer;
  const char* help;
};

const std::array<KnobDef, static_cast<size_t>(Knob::kCount)>& KnobDefs();

class Knobs {
 public:
  // Defaults from the spec.
  explicit Knobs(const MigrationSpec& spec);

  double Get(Knob k) const { return values_[static_cast<size_t>(k)].load(std::memory_order_relaxed); }
  int64_t Int(Knob k) const { return static_cast<int64_t>(Get(k)); }

  // Sets one knob by name from its text or JSON number form. Errors name the
  // knob: unknown knob (with the list of known ones), not a number, out of
  // range (with the range).
  Status Set(std::string_view name, double value);
  Status SetText(std::string_view name, std::string_view text);
  // The value of the knob named `name`, if there is one.
  std::optional<double> Value(std::string_view name) const;

  // {"parallelism": 4, ...}: every knob with its current value.
  std::string ToJson() const;
  // The values set at run time (differing from the spec's defaults), as JSON,
  // for the state store; and back.
  std::string OverridesJson() const;
  Status LoadOverrides(const std::string& json);

 private:
  std::array<std::atomic<double>, static_cast<size_t>(Knob::kCount)> values_;
  std::array<double, static_cast<size_t>(Knob::kCount)> defaults_;
};

}  // namespace midflight
