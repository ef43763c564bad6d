// PostgreSQL's side of the cutover (engines/engine.h ReplicationOps).
#pragma once

#include <memory>

#include "engines/engine.h"

namespace midflight {

std::unique_ptr<ReplicationOps> NewPgReplicationOps(const MigrationSpec& spec, StateStore& store, MigrationRuntime& runtime);

}  // namespace midflight
