#include "control/compare.h"

#include <fmt/format.h>

#include <future>

namespace midflight {

std::optional<TableComparison> SkippedAsTransformed(const MigrationSpec& spec, const TableId& table) {
  const TableTransformSpec* tr = TransformFor(spec.transforms, table);
  if (!tr) return std::nullopt;
  TableComparison skipped;
  skipped.table = table.ToString();
  skipped.skipped = fmt::format("not compared: its rows are transformed on the way ({})", tr->where());
  return skipped;
}

Result<TableComparison> CompareSides(const std::string& table, const std::function<Result<TableHash>()>& source,
                                     const std::function<Result<TableHash>()>& target) {
  auto target_side = std::async(std::launch::async, target);
  Result<TableHash> rs = source();
  Result<TableHash> rt = target_side.get();
  if (!rs.ok()) return rs.status().WithContext("source " + table);
  if (!rt.ok()) return rt.status().WithContext("target " + table);
  TableComparison c;
  c.table = table;
  c.source_rows = rs->rows;
  c.source_hash = rs->hash;
  c.target_rows = rt->rows;
  c.target_hash = rt->hash;
  return c;
}

}  // namespace midflight
