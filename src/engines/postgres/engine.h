// The PostgreSQL engine (engines/engine.h): catalog and preflight, pg_dump
// pre-data and post-data, the parallel COPY from the slot's exported
// snapshot, the pgoutput flow, the proxy and the cutover.
#pragma once

#include "engines/engine.h"

namespace midflight {

const EngineKind& PostgresEngine();

}  // namespace midflight
