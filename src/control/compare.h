// `midflight compare`: an exact, offline comparison of source and target.
// For every table of the migration, both servers compute, in SQL, the row
// count and a hash of every row's text form (each engine's EngineKind::Compare
// chooses the SQL: PostgreSQL an ordered md5 of the rows' md5s, MariaDB an
// order-independent sum). Equal hashes mean equal rows, generated columns
// included.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "control/spec.h"

namespace midflight {

struct TableComparison {
  std::string table;
  int64_t source_rows = 0, target_rows = 0;
  std::string source_hash, target_hash;
  std::string skipped;  // why the table was not compared (a transformed table); empty when it was
  bool equal() const { return source_rows == target_rows && source_hash == target_hash; }
};

// PostgreSQL's (engines/postgres/compare.cc).
Result<std::vector<TableComparison>> CompareTables(const MigrationSpec& spec);

// The entry of a table that `spec` transforms (core/transform.h), which a
// comparison of same-engine rows does not count: skipped, its transform
// named; nullopt for any other table.
std::optional<TableComparison> SkippedAsTransformed(const MigrationSpec& spec, const TableId& table);

// One side's answer for one table.
struct TableHash {
  int64_t rows = 0;
  std::string hash;
};
// Computes both sides' hashes of `table` at once (the target's on another
// thread: each side hashes its own data) and puts them side by side. An
// error names the side and the table.
Result<TableComparison> CompareSides(const std::string& table, const std::function<Result<TableHash>()>& source,
                                     const std::function<Result<TableHash>()>& target);

}  // namespace midflight
