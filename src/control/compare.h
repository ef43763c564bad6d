// `midflight compare`: an exact, offline comparison of source and target.
// For every table of the migration, both servers compute, in SQL, the row
// count and an ordered hash of every row's text form:
//   md5(string_agg(md5(t::text), '' ORDER BY <key, or the whole row>))
// Equal hashes mean equal rows, generated columns included.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "control/spec.h"

namespace midflight {

struct TableComparison {
  std::string table;
  int64_t source_rows = 0, target_rows = 0;
  std::string source_hash, target_hash;
  bool equal() const { return source_rows == target_rows && source_hash == target_hash; }
};

Result<std::vector<TableComparison>> CompareTables(const MigrationSpec& spec);

}  // namespace midflight
