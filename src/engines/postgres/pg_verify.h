// Live verification of a running PostgreSQL -> PostgreSQL migration: compares
// source and target chunk by chunk while writes continue on the source and the
// change stream keeps applying them to the target, and reports only the rows
// that really differ (never a row that is merely in flight).
//
// Contract:
//  - Run() owns its two connections (one to each server) and closes them
//    before it returns. Every callback in Context (target_applied_through,
//    on_progress) is called from the caller's thread; internally the target's
//    chunk hash runs on a helper thread while the source hashes the next chunk.
//  - It only reads, on both servers: repairs are the caller's business
//    (ReadSourceRow gives the source's current image of a key).
//  - It fails with kCancelled when *stop or *stop_source is set, kOperator when the target
//    does not catch up with the source (or a query fails on the server),
//    kRetryCall when a connection drops twice for one chunk. A failure
//    leaves nothing behind on either server.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/stop.h"
#include "core/position.h"
#include "core/schema.h"
#include "engines/verify_report.h"

namespace midflight::pg {
class PgConn;
}

namespace midflight::verify {

struct Options {
  int64_t chunk_rows = 10000;                  // rows per chunk (keyset boundaries on the source)
  std::function<int64_t()> rows_per_s;         // rate knob read live; <=0 or unset = unlimited;
                                               // applies to rows read from the source
  int max_key_checks = 30;                     // per-key exact re-check attempts before a key is "unsettled"
  int max_keys_per_table = 1000;               // differences collected per table before giving up listing more
  int target_wait_timeout_s = 60;              // how long the target may take to apply a source position
};

struct Progress {
  TableId table;
  int64_t rows_done, rows_total_estimate;  // of `table`, in this run
  // Every row of `table` up to this key is verified; nullopt: the whole table.
  std::optional<std::vector<std::optional<std::string>>> done_through;
  const TableResult* result = nullptr;  // `table`'s result so far in this run
};

struct Context {
  std::string source_uri, target_uri;
  std::vector<std::shared_ptr<const TableSchema>> tables;
  // Tables not verified, with the reason reported for each (transformed
  // tables: their target rows are not the source's, core/transform.h).
  std::map<TableId, std::string> skip;
  // The source position through which the target has applied every committed
  // transaction (monotonic). Called often; must be cheap. Required.
  std::function<PgLsn()> target_applied_through;
  // After each chunk, and once for a table skipped whole (no key). Optional.
  std::function<void(const Progress&)> on_progress;
  // Resume: the tables before `start_table` (in `tables` order) are skipped,
  // and it starts after the key `start_after` (empty: at its start).
  std::optional<TableId> start_table;
  std::vector<std::optional<std::string>> start_after;
  // Either or both; set -> Run returns kCancelled promptly. Waits (the
  // rows_per_s pacing, the pause between rounds) wake at once on a
  // StopSource; an atomic is only looked at every 50 ms.
  const std::atomic<bool>* stop = nullptr;
  const StopSource* stop_source = nullptr;
};

Result<Report> Run(const Context& ctx, const Options& options);

// The source's current image of one row, for repairs.
struct RowImage {
  bool exists = false;
  std::vector<std::optional<std::string>> values;  // text, in TableSchema::writable order (generated excluded)
  // Every transaction the read saw committed before this source position (the
  // read's snapshot was taken first, then the position read).
  PgLsn as_of;
};

// Reads the row whose key columns (TableSchema::key order, text form) are
// `key` from `source`, in one short REPEATABLE READ READ ONLY transaction.
// Absent -> exists == false, values empty. `source` must not be inside a
// transaction; it is left outside one.
Result<RowImage> ReadSourceRow(pg::PgConn& source, const TableSchema& t,
                               const std::vector<std::optional<std::string>>& key);

}  // namespace midflight::verify
