// The phase driver both engines' `midflight run` share: reads where the
// migration stands, runs each phase's step from there, persists every
// transition before its work starts, and records a failure with the phase it
// happened in, so the next run resumes there.
//
//   created ─► preflight ─► schema ─► copying ─► replicating (until stopped)
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "control/state_store.h"
#include "core/copy.h"

namespace midflight {

struct PhaseSteps {
  std::function<Status(bool fresh)> preflight;  // runs on every start; `fresh` when nothing was done yet
  std::function<std::string()> schema_message;  // "creating N tables on the target", after preflight
  std::function<Status()> create_schema;
  std::string copy_message;                     // said on entering copying
  std::function<Status()> copy;
  std::function<Status()> finish_schema;        // indexes and constraints after the copy
  std::function<Status()> replicate;            // until stopped
};

// Drives migration `name` from the phase stored in `store` up to replicating.
// Lines for the operator go to stdout.
Status DrivePhases(StateStore& store, const std::string& name, const std::atomic<bool>& stop, const PhaseSteps& steps);

// Writes every table's copy progress (rows, bytes, chunks, state, rate since
// `rows_at_start`) and the heartbeat to the state store.
void SaveCopyProgress(StateStore& store, const std::vector<std::shared_ptr<const TableSchema>>& tables,
                      const CopyProgress& progress, const std::map<TableId, int64_t>& rows_at_start,
                      double seconds, const char* final_state);

// One line for the operator on stdout, as it is (no time, no name); with
// `--log-format json` also one info record in the log (stderr).
void Say(const std::string& line);

}  // namespace midflight
