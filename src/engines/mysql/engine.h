// The MySQL/MariaDB engine (engines/engine.h): catalog and preflight of the
// server read (a replica when source_replica is set), tables created without
// their secondary indexes, the per-chunk consistent-snapshot copy with LOAD
// DATA, the binlog flow restarted from the target's checkpoints when the
// target is lost.
#pragma once

#include <string>
#include <vector>

#include "engines/engine.h"
#include "engines/mysql/my_conn.h"

namespace midflight {

const EngineKind& MySqlEngine();

namespace mysql {
// The source side of preflight, whatever the target: binlog settings, the
// user's rights, the replica's lag readable. One line per problem added to
// *problems. Returns @@log_bin, @@binlog_format, @@binlog_row_image,
// @@log_slave_updates, @@server_id, @@max_allowed_packet, @@hostname, @@port,
// DATABASE() of the server read.
Result<MyResult> CheckSource(MyConn& src, const MigrationSpec& spec, std::vector<std::string>* problems);
}  // namespace mysql

}  // namespace midflight
