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

#include <string>
#include <vector>

#include "base/status.h"
#include "core/schema.h"

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

// Creates midflight's bookkeeping on the target if missing: database
// `midflight` with InnoDB tables
//   checkpoints(migration, partition_id, commit_pos, seq, updated_at, restart_pos)
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
