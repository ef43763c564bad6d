// PostgreSQL's side of the cutover (engines/engine.h CutoverOps).
#pragma once

#include <memory>

#include "engines/engine.h"

namespace midflight {

std::unique_ptr<CutoverOps> NewPgCutoverOps(const MigrationSpec& spec, StateStore& store, MigrationRuntime& runtime);

}  // namespace midflight
