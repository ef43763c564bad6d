// `midflight apply-worker SPEC` and `midflight replay NAME|SPEC`: the Kafka
// apply side outside the run process (kafka/apply_worker.h), as commands.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "base/status.h"

namespace midflight::cli {

// Applies the migration's change topic as one member of its consumer group
// until `stop`; prints which partitions it holds whenever they change.
Status ApplyWorkerCommand(const std::string& spec_path, const std::string& worker_name, const std::atomic<bool>& stop);

// Re-applies the change topic from `from_offset` (N, or "earliest": the
// first offset each partition keeps) or `from_time`
// ("2026-12-06T13:00:00Z", or milliseconds since the epoch) to its end.
// `target` is a spec file, or a migration name with STATE_DIR/NAME/spec.yaml
// (state_dir empty: ./.midflight).
Status ReplayCommand(const std::string& target, const std::string& state_dir, const std::string& from_offset,
                     const std::string& from_time, const std::atomic<bool>& stop);

}  // namespace midflight::cli
