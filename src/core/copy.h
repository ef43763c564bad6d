// The snapshot copy's plan and progress, shared by every engine's copier.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "core/schema.h"

namespace midflight {

struct Chunk {
  TableId table;
  int number = 0;
  enum class Kind : uint8_t { kWhole, kIntRange, kPageRange } kind = Kind::kWhole;
  std::optional<int64_t> lo, hi;  // kIntRange: values; kPageRange: pages; nullopt = unbounded
};

// Per-table progress, updated by the workers, read by the status writer.
struct TableProgress {
  std::atomic<int64_t> rows{0};
  std::atomic<int64_t> bytes{0};
  std::atomic<int> chunks_done{0};
  int chunks_total = 0;
};
using CopyProgress = std::map<TableId, std::unique_ptr<TableProgress>>;

}  // namespace midflight
