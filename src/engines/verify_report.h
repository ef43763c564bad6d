// The report of a live verification (`midflight verify`), the same for every
// engine: per table, the rows hashed, the chunks, and the keys found to
// differ (or that kept changing while looked at). The cutover stores ToJson()
// as the migration's verify_json and prints Summary().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/schema.h"

namespace midflight::verify {

struct Difference {
  TableId table;
  std::vector<std::optional<std::string>> key;  // text values of the key columns
  std::string key_display;                      // "(id)=(42)"
  std::string kind;                             // "missing on target" | "extra on target" | "differs"
  std::vector<std::string> columns = {};        // "differs": the columns whose values differ, when known
};

struct TableResult {
  TableId table;
  int64_t rows = 0;  // rows hashed on the source
  int64_t chunks = 0;
  int64_t chunks_differing_first_look = 0;
  int64_t keys_rechecked = 0;  // candidate keys given the exact per-key check
  std::vector<Difference> differences;
  std::vector<std::string> unsettled;  // key_display of keys that changed on every look
  bool truncated = false;              // max_keys_per_table reached: more differences may exist
  std::string skipped;                 // why the table was not verified (no usable key, transformed); empty when it was
};

// What one chunk of a table found, as each engine's verifier collects it.
struct ChunkFindings {
  int64_t rows = 0;       // rows hashed on the reference
  int64_t rows_read = 0;  // every row read on the reference (for the rate)
  bool differed = false;
  bool not_listed = false;  // differed, but the table already has max_keys_per_table differences
  int64_t keys_rechecked = 0;
  std::vector<Difference> differences;
  std::vector<std::string> unsettled;
};
// Adds `chunk` to `out`, listing at most `max_keys` differences and as many
// unsettled keys (past that, out->truncated). Moves from `chunk`.
void AddChunk(ChunkFindings& chunk, size_t max_keys, TableResult* out);

struct Report {
  std::vector<TableResult> tables;
  int64_t rows = 0;
  double seconds = 0;
  bool clean() const;           // no differences, no unsettled keys (skipped tables do not count)
  std::string Summary() const;  // one line
  std::string ToJson() const;
};

}  // namespace midflight::verify
