// Live verification of a running MySQL/MariaDB migration (`midflight verify`):
// compares the reference side (the one applications write to) with the other
// side chunk by chunk while writes continue and the flow keeps applying them,
// and reports only rows that really differ, never a row that is in flight.
// With repair, each differing key gets the reference's current row (or a
// delete) as a Change, which the cutover applies through the apply path.
//
// Contract:
//  - Verify() owns its connections (one to each side, one more for repairs)
//    and closes them before it returns; it only reads, on both servers.
//  - job.applied_through is called from the caller's thread, often: it must
//    be cheap (Flow::AppliedThrough).
//  - It fails with kCancelled when *job.stop is set (looked at between
//    statements and every 50 ms of a wait), kRetryCall when a connection
//    drops twice for one chunk, kOperator when a query fails on a server. A
//    flow that does not apply a position within job.wait_timeout_s is not an
//    error: what was waited for is reported "not settled", and the run ends.
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
#include "core/schema.h"
#include "core/transform.h"
#include "engines/engine.h"
#include "engines/verify_report.h"

namespace midflight::mysql {

// A key as the server returns it (character_set_results = binary): the bytes
// of each key column, in TableSchema::key order, in the form KeyRangeSql
// selects them (ENUM, SET and BIT as numbers, FLOAT as its exact double).
// Keys are compared byte for byte, never by a collation: under a
// case-insensitive key 'a' and 'A' are different keys here.
using VerifyKey = std::vector<std::optional<std::string>>;

// The SQL of one table's verification on one side (database `db`):
// identifiers quoted by QuoteIdent, key values written as literals of the key
// columns' own types (so comparisons and ORDER BY follow the key's index and
// collation, identically on both servers), never concatenated as text.
class KeyRangeSql {
 public:
  KeyRangeSql(const TableSchema& t, std::string db);

  size_t key_size() const { return t_.key.size(); }

  // Rows strictly above `lower` and up to `upper` in key order (either
  // missing: unbounded), as a WHERE condition the range optimizer can use:
  // "(`a` > 1 OR (`a` = 1 AND `b` > 'x')) AND ...".
  std::string Range(const std::optional<VerifyKey>& lower, const std::optional<VerifyKey>& upper) const;
  // The key `chunk_rows` rows above `lower` (no row: past the end).
  std::string Boundary(const std::optional<VerifyKey>& lower, int64_t chunk_rows) const;
  // COUNT(*) and the BIT_XOR of a 64-bit slice of each row's hash, over the range.
  std::string Hash(const std::optional<VerifyKey>& lower, const std::optional<VerifyKey>& upper) const;
  // Key columns then the row hash of every row of the range, in key order.
  std::string Rows(const std::optional<VerifyKey>& lower, const std::optional<VerifyKey>& upper) const;
  // Key columns then the row hash of the rows of `keys` (matched by the key's
  // collation: the caller keeps only exact matches).
  std::string Lookup(const std::vector<const VerifyKey*>& keys) const;
  // Key columns then the hash of each column (TableSchema::columns order).
  std::string ColumnHashes(const std::vector<const VerifyKey*>& keys) const;
  // Key columns then every column of TableSchema::writable in the form the
  // MySQL applier writes (the binlog decoder's text forms).
  std::string Image(const std::vector<const VerifyKey*>& keys) const;

  // The expression hashed for a row: per column, its bytes prefixed by their
  // length ("3:abc"), or "N" for NULL, so NULL, '' and 'NULL' all differ and
  // no two rows share one concatenation.
  std::string RowText() const;
  // A key column's value as a SQL literal of its type.
  std::string Literal(int key_index, const std::optional<std::string>& value) const;
  // "(id)=(42)", "(region, id)=(eu, 7)"; bytes that are not printable as 0x hex.
  std::string Display(const VerifyKey& key) const;
  std::string DisplayRange(const std::optional<VerifyKey>& lower, const std::optional<VerifyKey>& upper) const;

 private:
  std::string Where(const std::vector<const VerifyKey*>& keys) const;
  // (key) op (bound) expanded into ORs of ANDs: op is ">" or "<=".
  std::string Compare(const char* op, const VerifyKey& bound) const;

  const TableSchema& t_;
  std::string from_, key_select_, order_;
};

// Tables a spec transform reshapes, verified through their transforms by
// engines/cross (my_to_my.h, which builds on this engine): their results
// replace the skipped entries of the report; `lines` are what the report
// prints for them, `repairs` go with the others'.
struct ReshapedVerified {
  verify::Report report;
  std::vector<Change> repairs;
  std::vector<std::string> lines;
};
// What that verification takes (the rest comes from the flow).
struct ReshapedVerifyArgs {
  std::string reference_uri, other_uri, target_db;
  std::vector<std::shared_ptr<const TableTransform>> transforms;
  // After the write switch: the target is the reference, the source primary
  // the other side (its rows transformed forward; no repair).
  bool reversed = false;
  bool repair = false;
  std::function<int64_t()> rows_per_s;
  const std::atomic<bool>* stop = nullptr;
  int64_t chunk_rows = 10000;
  ReplicationOps::VerifyRun run;
};
using VerifyReshaped = std::function<Result<ReshapedVerified>(Flow& flow, const ReshapedVerifyArgs& args)>;

struct VerifyJob {
  std::string reference_uri, other_uri;  // mysql:// URIs, each with its database
  std::vector<std::shared_ptr<const TableSchema>> tables;
  // The reference side's binlog position (binlog_pos.h) through which the
  // other side has applied every transaction. Required.
  std::function<uint64_t()> applied_through;
  // The reference's binlog position through which the flow has received
  // every transaction (FlowMetrics::received); optional, makes the per-key
  // check exact about transactions logged but not yet visible.
  std::function<uint64_t()> received;
  std::function<int64_t()> rows_per_s;  // read live; <= 0 or unset: unlimited
  const std::atomic<bool>* stop = nullptr;
  bool repair = false;
  int64_t chunk_rows = 10000;
  int max_key_checks = 30;       // exact per-key looks before a key is "not settled"
  int max_keys_per_table = 1000;  // differences listed per table
  int wait_timeout_s = 60;        // how long the flow may take to apply a position
  // Resume (the background job, control/verify_job.h): tables before this
  // one (TableId::ToString()) are skipped; it is verified again from its
  // start (MySQL resumes per table, not per key). Empty: from the first.
  std::string start_table;
  // Tables listed but not verified, with the reason the report gives (a
  // table a spec transform reshapes: its two sides hold different rows by design).
  std::map<TableId, std::string> not_verified;
  // Called once the other tables are done, when set: the tables of
  // not_verified it verifies after all (ReshapedVerified).
  std::function<Result<ReshapedVerified>()> reshaped;
  // Called after each table with what it found (on the verifying thread).
  std::function<void(const verify::TableResult&, int64_t estimated_rows)> on_table_done;
};

// Runs the verification; see the top of verify.cc for how.
Result<ReplicationOps::VerifyOutcome> Verify(const VerifyJob& job);

}  // namespace midflight::mysql
