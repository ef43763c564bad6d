// Builds a table's primary key, unique and exclusion constraints and plain
// indexes as soon as the copy has committed every chunk of that table, while
// other tables are still copying (pgcopydb's approach), on a bounded pool of
// target sessions. What it does not build (foreign keys, triggers, rules,
// policies, statistics, comments, anything on a partitioned table or a
// partition, and what failed to start because the copy stopped) is left to
// FinishSchema's post-data restore, which skips every object the target has.
//
//   Start ─► TableCopied(t) ... (from copy workers) ─► Finish
//
// Each table's entries are one pg_restore of those TOC entries of the schema
// dump (the same entries RestorePostData restores), so the DDL is pg_dump's
// own; the pool builds different tables at once. (One pg_restore per entry,
// to build one table's indexes at once, was measured slower on 2 cores: the
// start of each process and the lock the key's ALTER TABLE takes cost more
// than the overlap gave.)
//
// Crash and resume: an index or constraint is one transaction on the target,
// so a killed run leaves it built or absent. Start lists only entries whose
// object the target lacks (matched by catalog oid in the source, as
// RestorePostData does), and first ends the target sessions a killed run
// left building (they carry this migration's application_name): none of
// them can commit an object after it was found missing. A table is only
// handed in once all its chunks are committed, so a table PrepareCopy
// empties to copy again whole (it was half-copied) never has early indexes.
//
// Threads: Start, Finish and the destructor from the copy's caller;
// TableCopied from any thread. Members after construction: constant
// (options, entries by table) or guarded by mu_.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "base/thread_annotations.h"
#include "core/schema.h"

namespace midflight::pg {

class PgConn;

struct EarlyIndexOptions {
  std::string target_uri;
  std::string dump_path;  // the schema dump (custom format) CreateSchema made
  std::string work_dir;   // for the TOC list files
  std::string migration;  // names the sessions (application_name)
  int jobs = 2;           // pool size: target sessions building at once
  int index_memory_mb = 512;
};

// The application_name of the sessions that build indexes and constraints
// for `migration` (early and in FinishSchema).
std::string IndexSessionName(const std::string& migration);

// Ends the target's sessions named IndexSessionName(migration) (left by a
// killed run) and waits until they are gone.
Status EndOrphanIndexSessions(PgConn& target, const std::string& migration);

class EarlyIndexBuilder {
 public:
  // Lists the post-data entries of `tables` (non-partitioned, not partitions)
  // that the target lacks, and starts the pool. `source` is the dumped
  // database.
  static Result<std::unique_ptr<EarlyIndexBuilder>> Start(PgConn& source, PgConn& target,
                                                          const std::vector<std::shared_ptr<const TableSchema>>& tables,
                                                          EarlyIndexOptions options);
  ~EarlyIndexBuilder();  // stops taking entries and joins (as Finish, ignoring the result)

  // Every chunk of `table` is committed: queue its entries.
  void TableCopied(const TableId& table);
  // Stops taking new entries (the ones running finish). Any thread.
  void Cancel();
  // Waits until every queued entry is built (or, after Cancel, until the
  // running ones end); returns the first failure. Entries of tables never
  // handed in stay for FinishSchema.
  Status Finish();

  int entries_total() const { return total_; }

 private:
  EarlyIndexBuilder(EarlyIndexOptions options, std::map<TableId, std::vector<std::string>> entries, int total);
  void Work(int id);
  Status Build(const std::vector<std::string>& toc_lines, int id);

  const EarlyIndexOptions options_;
  const std::map<TableId, std::vector<std::string>> entries_;  // per table: TOC lines, constraints first
  const int total_;

  Mutex mu_;
  CondVar changed_;
  std::deque<std::vector<std::string>> queue_ GUARDED_BY(mu_);  // one table's entries each
  bool finishing_ GUARDED_BY(mu_) = false;  // no more tables: workers exit when the queue is empty
  bool cancelled_ GUARDED_BY(mu_) = false;
  int built_ GUARDED_BY(mu_) = 0;
  Status first_error_ GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace midflight::pg
