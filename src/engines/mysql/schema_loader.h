// The target's schema for a MariaDB/MySQL migration, made from the source's
// own SHOW CREATE TABLE: each table is created before the copy with its
// columns (exact types, charsets, collations, defaults, generated columns),
// CHECK constraints, primary key and table options (AUTO_INCREMENT=N and
// PARTITION BY included), but without its secondary indexes and foreign keys.
// Those are added after the bulk copy, several tables at once (BuildDeferred).
// Both steps can be re-run after a crash: what exists already is left alone.
// CreateTables and EnsureBookkeeping use the caller's connections on the
// caller's thread; BuildDeferred opens its own connections and threads.
//
// Some secondary indexes stay in the CREATE TABLE because InnoDB needs them
// from the start: the index that keys an AUTO_INCREMENT column when the
// primary key does not begin with it (the table could not be created
// otherwise; the indexes listed before it stay too, so the target keeps the
// source's index order), and, in a table without a primary key, the first
// UNIQUE index over NOT NULL columns without prefixes (InnoDB clusters the
// table on it, so adding it later would rebuild the table, and the applier
// matches rows on it).
//
// Views, routines, triggers and events are migrated by schema_objects.h;
// sequences and packages are not: a warning names those found in the source
// databases.
#pragma once

#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/status.h"
#include "base/thread_annotations.h"
#include "core/schema.h"

namespace midflight {
class TableTransform;
}

namespace midflight::mysql {

class MyConn;

// What BuildDeferred adds to one table after the copy: ALTER TABLE clauses,
// e.g. "ADD UNIQUE KEY `k_email` (`email`)", "ADD FULLTEXT KEY `ft` (`body`)",
// "ADD CONSTRAINT `fk_c` FOREIGN KEY (`c`) REFERENCES `tgt`.`customers` (`id`) ON DELETE CASCADE".
// Each clause names its index or constraint (the first quoted identifier in it).
struct DeferredDdl {
  TableId table;  // the source's name: schema is the source database
  std::vector<std::string> indexes;
  std::vector<std::string> foreign_keys;
};

// Creates `tables` in `target_db` on `dst` as the source's SHOW CREATE TABLE
// describes them, minus the deferred definitions, with foreign_key_checks=0
// for the duration (restored afterwards). A table that already exists in
// `target_db` is left as it is (a resumed run); its deferred DDL is still
// returned. Foreign keys to a table of the source database are rewritten to
// reference `target_db`; references to other databases are kept as they are,
// with a warning. Both connections must have MyConn's session setup (no
// ANSI_QUOTES or NO_BACKSLASH_ESCAPES in sql_mode): InvalidArgument otherwise.
// A failure leaves the tables created so far in place; calling again
// continues. Returns the deferred DDL, one entry per table, in `tables` order.
Result<std::vector<DeferredDdl>> CreateTables(MyConn& src, MyConn& dst, const std::vector<TableId>& tables,
                                              const std::string& target_db);

// The target's table of a transformed source table (core/transform.h), from
// the source's SHOW CREATE TABLE `show`: CREATE TABLE IF NOT EXISTS in
// `target_db` under the transform's name, each column the transform keeps
// as the source defines it (renamed; a generated one as a plain column that
// holds what the source computed; AUTO_INCREMENT only on the key's first
// column), each column a cast or an expression makes in a MySQL type for
// its result (text: LONGTEXT, or VARCHAR(64) in the key, utf8mb4_bin;
// integer: BIGINT; decimal: DECIMAL(65,30); an expression typed as a source
// column, coalesce(a, b): that column's type), the key as the primary key,
// and the source's table options without PARTITION BY. Secondary indexes,
// foreign keys, CHECK constraints and triggers are not carried. Operator
// error naming the column for a result with no MySQL type here (a boolean:
// CheckTransformedTypes).
Result<std::string> TransformedTableSql(const TableTransform& tr, std::string_view show, const std::string& target_db);
// Preflight: every column `tr` casts or computes has a MySQL type
// (TransformedTableSql); else an operator error naming the transform and column.
Status CheckTransformedTypes(const TableTransform& tr);

// Adds the deferred indexes, `workers` tables at a time (largest first),
// each worker on its own connection to `target_uri`; then the foreign keys.
// Per table: each missing FULLTEXT index gets an ALTER TABLE of its own
// (InnoDB blocks writes to the table while building it, builds two FULLTEXT
// indexes only by copying the whole table, and rebuilds the table for the
// first one), then one ALTER TABLE adds the missing B-tree indexes, online
// (writes to the table go on), and each SPATIAL index gets its own (it blocks
// writes too).
// Foreign keys: one ALTER TABLE per table, with foreign_key_checks=0 (InnoDB
// then adds them in place, without copying the table or checking existing
// rows: the source enforced them).
// Idempotent: an index or foreign key already on the target (same name,
// compared without case) is skipped, and each ALTER TABLE is atomic, so a run
// killed halfway finishes on the next call; an ALTER TABLE that fails because
// a killed run's statement, still running on the server, added the same
// names first counts as done. On failure the first error is returned, naming
// the table; tables already done stay done.
Status BuildDeferred(const std::string& target_uri, const std::string& target_db, const std::vector<DeferredDdl>& ddl,
                     int workers);

// Adds each table's deferred indexes as soon as the copy has committed every
// chunk of it, while other tables are still copying (as PostgreSQL's
// early_indexes.h does; mydumper's --innodb-optimize-keys builds them per
// table too), on a pool of `jobs` target sessions. Foreign keys are left to
// BuildDeferred after the copy (they need every referenced key).
//
// Only ever a head start: BuildDeferred after the copy adds whatever is
// still missing (it skips what exists), so a build that fails here (the
// target restarting, say) is logged and left to it, and a build a stopped
// or killed run left running on the server is counted done by that call
// when it meets the names (AddMissing). A table is handed in only once all
// its chunks are committed, so nothing writes to it while its ALTER TABLE
// runs.
//
// Threads: construction, Finish and the destructor from the copy's caller;
// TableCopied and Cancel from any thread.
class EarlyIndexBuilder {
 public:
  EarlyIndexBuilder(std::string target_uri, std::string target_db, const std::vector<DeferredDdl>& ddl, int jobs);
  ~EarlyIndexBuilder();  // as Cancel + Finish
  EarlyIndexBuilder(const EarlyIndexBuilder&) = delete;
  EarlyIndexBuilder& operator=(const EarlyIndexBuilder&) = delete;

  // Every chunk of `table` (the source's name) is committed: queue its indexes.
  void TableCopied(const TableId& table);
  // Takes no new table (the builds running finish).
  void Cancel();
  // Waits until every queued table is built (after Cancel: the running
  // ones). Returns the number of tables whose indexes were added here.
  int Finish();

 private:
  void Work();

  const std::string target_uri_, target_db_;
  std::map<TableId, DeferredDdl> ddl_;  // tables with indexes to add; constant
  Mutex mu_;
  CondVar wake_;
  std::deque<const DeferredDdl*> queue_ GUARDED_BY(mu_);
  bool closing_ GUARDED_BY(mu_) = false;    // Finish: the workers exit once the queue is empty
  bool cancelled_ GUARDED_BY(mu_) = false;  // no new table
  int built_ GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
};

// Creates midflight's bookkeeping on the target if missing: database
// `midflight` with InnoDB tables
//   checkpoints(migration, partition_id, commit_pos, seq, updated_at, restart_pos, kafka_offset, worker)
//                                                                  PRIMARY KEY (migration, partition_id)
//   chunks(migration, table_name, chunk, snapshot_pos, rows_copied, bytes_copied)
//                                                                  PRIMARY KEY (migration, table_name, chunk)
// Tables that exist are kept; Operator error when one lacks a column listed here.
Status EnsureBookkeeping(MyConn& dst);

// The deferred DDL as JSON for the state store, and back. ParseDeferred fails
// with Internal on text that SerializeDeferred did not produce.
std::string SerializeDeferred(const std::vector<DeferredDdl>& ddl);
Result<std::vector<DeferredDdl>> ParseDeferred(const std::string& json);

}  // namespace midflight::mysql
