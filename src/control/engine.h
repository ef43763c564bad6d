// What a host (service/service.h: `midflight serve`, or `midflight run` with
// one migration) hands an engine's runner, and what it gets back.
//
// The host owns everything that must outlive one run of the migration: the
// state store, the runtime knobs and throttle board, and the proxy (which
// keeps serving the applications while the migration is paused or failed).
// A runner runs the migration from where its state says until `stop` is set
// (pause, abort, shutdown) or a failure, which it records in the store.
#pragma once

#include <atomic>
#include <functional>

#include "base/status.h"
#include "control/http.h"
#include "control/runtime.h"
#include "control/spec.h"
#include "control/state_store.h"

namespace midflight {

namespace proxy {
class PgProxy;
}

struct RunContext {
  const MigrationSpec& spec;
  StateStore& store;
  MigrationRuntime& runtime;
  const std::atomic<bool>& stop;
  proxy::PgProxy* proxy = nullptr;  // PostgreSQL with a proxy configured
  // The runner publishes the handler of the traffic operations (switch,
  // rollback, complete, approve, verify) while it can take them, and
  // publishes an empty handler before it returns; the host must not call a
  // handler after that returns.
  std::function<void(http::Handler)> publish_operations;
};

}  // namespace midflight
