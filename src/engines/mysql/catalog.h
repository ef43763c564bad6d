// Reads a MySQL/MariaDB source's catalog (information_schema): which tables a
// migration moves (include and exclude patterns) and each one's columns,
// types, key and secondary unique indexes, as core TableSchemas.
//
// A table's TableId is {database, table}. Its key is the primary key, or else
// the first unique index whose columns are all NOT NULL (KeyKind::kUniqueIndex);
// a table with neither has KeyKind::kNone and is refused by preflight.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "core/schema.h"

namespace midflight::mysql {

class MyConn;

// Base tables of `database` selected by include/exclude (core/schema.h), sorted by name.
Result<std::vector<std::shared_ptr<const TableSchema>>> LoadTables(MyConn& conn, const std::string& database,
                                                                   const std::vector<std::string>& include,
                                                                   const std::vector<std::string>& exclude);

// Names of every base table in `database` (for the "target not empty" check).
Result<std::vector<TableId>> ListTables(MyConn& conn, const std::string& database);

// The columns of table `database`.`table` the server fills when an insert
// leaves them out (a DEFAULT, AUTO_INCREMENT, a nullable column's implicit
// NULL default; reverse replication through a transform that dropped
// columns, core/transform.h Inverse).
Result<std::set<std::string>> ColumnsWithDefault(MyConn& conn, const std::string& database, const std::string& table);

// How a column's value is written in SQL by the applier: as a number, as a
// quoted temporal text, or as a hex string with the column's charset introducer.
enum class LiteralKind : uint8_t { kNumber, kQuoted, kText, kBinary };
LiteralKind LiteralKindOf(const ColumnSchema& column);

// The SELECT expression that reads `column` in the binlog decoder's text form
// (binlog_event.h DecodeRows), on a session with time_zone '+00:00' and
// character_set_results binary: BIT as its number, ENUM and SET as the
// 1-based index and the member bitmask, FLOAT as its exact double, MariaDB's
// UUID, INET6 and INET4 as their stored bytes, anything else as the server
// sends it. What a snapshot row must look like to be a
// Change like the stream's (the copy into PostgreSQL, published copies).
std::string BinlogFormSelect(const ColumnSchema& column);

// The size of a column whose values the binlog logs without their trailing
// 0x00 bytes, which the decoder pads back (ColumnHints::pad_to): BINARY(n)
// n, MariaDB's UUID and INET6 16, INET4 4; 0 for any other column.
uint8_t FixedBinarySize(const ColumnSchema& column);

}  // namespace midflight::mysql
