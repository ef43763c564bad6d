// Reads the source's catalog: which tables a migration moves (include and
// exclude patterns) and each one's columns, key, replica identity and
// secondary unique constraints, as core TableSchemas.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "core/schema.h"

namespace midflight::pg {

class PgConn;

// All user tables (plain and partitioned parents; partitions travel with their
// parent) matched by `include` (every table when empty) and by no `exclude`
// pattern, sorted by name. midflight's own schema is never included.
Result<std::vector<std::shared_ptr<const TableSchema>>> LoadTables(
    PgConn& conn, const std::vector<std::string>& include, const std::vector<std::string>& exclude);

// Names of every user table in the database (for the "target not empty" check).
Result<std::vector<TableId>> ListUserTables(PgConn& conn);

// The columns of table `id` the server fills when an insert leaves them out
// (a DEFAULT, an identity, a serial; reverse replication through a
// transform that dropped columns, core/transform.h Inverse).
Result<std::set<std::string>> ColumnsWithDefault(PgConn& conn, const TableId& id);

}  // namespace midflight::pg
