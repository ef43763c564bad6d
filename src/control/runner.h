// One migration runner for every engine: drives a migration through its
// phases (control/phase_driver.h) over an Engine (engines/engine.h).
//
//   created ─► preflight ─► schema ─► copying ─► replicating (until stopped)
//
//   preflight   the engine's checks plus the neutral ones (a table selected,
//               each table migratable, the selection unchanged since the start)
//   schema      the engine creates the tables on the target
//   copying     the plan (fixed at the first attempt, kept in the state
//               store), the chunks the target holds, progress every second;
//               the engine copies the rest, then builds indexes and constraints
//   replicating the snapshot filter and start position from the chunks the
//               target holds; the engine's flow (and traffic plane) from there
//
// What a host (service/service.h: `midflight serve`, or `midflight run`
// with one migration) hands the runner, and what it gets back: the host owns
// everything that must outlive one run (the state store, the runtime knobs
// and throttle board, the proxy, which keeps serving the applications while
// the migration is paused or failed). A run goes on from where its state
// says until `stop` is set (pause, abort, shutdown) or a failure, which it
// records in the store.
#pragma once

#include <atomic>
#include <functional>

#include "base/status.h"
#include "base/stop.h"
#include "control/operations.h"
#include "control/runtime.h"
#include "control/spec.h"
#include "control/state_store.h"
#include "engines/engine.h"

namespace midflight {

struct RunContext {
  const MigrationSpec& spec;
  StateStore& store;
  MigrationRuntime& runtime;
  const std::atomic<bool>& stop;  // set together with `stopping`, for code that checks a flag
  const StopSource& stopping;     // what waits wake on
  proxy::TrafficSwitch* traffic = nullptr;  // the proxy, when the spec has one
  // The runner publishes the handler of the traffic operations (switch,
  // rollback, complete, approve, verify) while it can take them, and
  // publishes an empty handler before it returns; the host must not call a
  // handler after that returns.
  std::function<void(TrafficHandler)> publish_operations;
};

// Runs (or resumes) the migration until `ctx.stop` is set or a failure.
// Prints phases and progress to stdout.
Status RunMigration(const EngineKind& kind, RunContext& ctx);

}  // namespace midflight
