// A replay's chunk reset (ChangeSink::DeleteRows, kafka/snapshot_publisher.h)
// as SQL, shared by the engines' sinks: which rows of the target's table the
// reset's range covers.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "core/schema.h"

namespace midflight {

// " WHERE c >= lo AND c < hi" for the range [lo, hi) of `column` (nullopt:
// unbounded), "" for every row (`column` empty); `quote` quotes the column as
// the target's SQL does. DataLoss when `t` has no such column.
inline Result<std::string> ResetRangeWhere(const TableSchema& t, const std::string& column, std::optional<int64_t> lo,
                                           std::optional<int64_t> hi,
                                           const std::function<std::string(std::string_view)>& quote) {
  std::vector<std::string> conds;
  if (!column.empty()) {
    if (t.ColumnIndex(column) < 0)
      return DataLoss(fmt::format("table {}: the chunk reset's column {} is not in the table", t.id.ToString(), column));
    if (lo) conds.push_back(fmt::format("{} >= {}", quote(column), *lo));
    if (hi) conds.push_back(fmt::format("{} < {}", quote(column), *hi));
  }
  return conds.empty() ? std::string() : fmt::format(" WHERE {}", fmt::join(conds, " AND "));
}

}  // namespace midflight
