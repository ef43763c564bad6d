// The MySQL/MariaDB engine (engines/engine.h): catalog and preflight of the
// server read (a replica when source_replica is set), tables created without
// their secondary indexes, the per-chunk consistent-snapshot copy with LOAD
// DATA, the binlog flow restarted from the target's checkpoints when the
// target is lost.
#pragma once

#include "engines/engine.h"

namespace midflight {

const EngineKind& MySqlEngine();

}  // namespace midflight
