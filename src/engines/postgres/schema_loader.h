// The target's schema, made by PostgreSQL's own pg_dump / pg_restore:
// pre-data (types, domains, sequences, tables with defaults, generated and
// identity columns, check constraints) before the copy, post-data (primary
// keys, unique and foreign-key constraints, indexes, triggers) after it,
// built in parallel; a table's own keys and indexes may be built earlier, as
// its copy ends (early_indexes.h). Both steps can be re-run after a crash.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "core/schema.h"
#include "core/transform.h"

namespace midflight::pg {

class PgConn;

// Dumps the schema (no data) of the selected tables and of every type,
// function and sequence in their schemas, to `dump_path` (custom format).
Status DumpSchema(const std::string& source_uri, const std::vector<std::shared_ptr<const TableSchema>>& selected,
                  const std::vector<TableId>& all_source_tables, const std::string& dump_path);

// Creates the pre-data objects in one transaction: all or nothing. Objects
// that already exist on the target (the public schema, usually) are not
// created again; `source` is the dumped database, where the dump's entries
// are identified.
Status RestorePreData(PgConn& source, PgConn& target, const std::string& target_uri, const std::string& dump_path,
                      const std::string& work_dir);

// Builds the post-data objects with `jobs` parallel connections, each with
// `index_memory_mb` of maintenance_work_mem, skipping those that already
// exist on the target (a re-run after a crash). An entry is matched to a
// target object by what its catalog oid names in `source` (the dumped
// database), never by the names of the TOC list, which are printed unquoted.
// Its sessions are named `application_name`, so a later run can end what a
// killed one left building (early_indexes.h).
Status RestorePostData(PgConn& source, PgConn& target, const std::string& target_uri, const std::string& dump_path,
                       int jobs, int index_memory_mb, const std::string& work_dir,
                       const std::string& application_name);

// The post-data entries (TOC lines of `pg_restore --list`) that build one
// table's primary key, unique or exclusion constraint, or index, keyed by
// that table, for the `tables` that are neither partitioned nor partitions,
// constraints before indexes. Entries whose object the target already has
// are left out (matched as RestorePostData matches them).
Result<std::map<TableId, std::vector<std::string>>> TableLocalPostData(
    PgConn& source, PgConn& target, const std::string& dump_path, const std::string& work_dir,
    const std::vector<std::shared_ptr<const TableSchema>>& tables);

// Restores exactly the TOC `lines` of the dump (written to `list_path`) with
// `jobs` connections named `application_name`, each with `index_memory_mb`
// of maintenance_work_mem.
Status RestoreTocLines(const std::string& target_uri, const std::string& dump_path, const std::string& list_path,
                       const std::vector<std::string>& lines, int jobs, int index_memory_mb,
                       const std::string& application_name);

// The numbers of one entry line of `pg_restore --list`
// ("3222; 2606 16393 CONSTRAINT we"ird my table my table_pkey owner"): the
// dump id, the catalog of the object (2606 = pg_constraint) and its oid in the
// dumped database, 0 and 0 for entries that are not a catalog object. The
// names after them are printed unquoted, spaces and all, and are not read.
// nullopt for comments and anything else.
struct TocEntry {
  int dump_id = 0;
  uint32_t catalog = 0;
  uint32_t oid = 0;
};
std::optional<TocEntry> ParseTocLine(std::string_view line);

// The writable (not generated) columns of `table` on the target, in order,
// with their type names; NotFound when the table does not exist.
Result<std::vector<ColumnSchema>> TargetWritableColumns(PgConn& target, const TableId& table);

// The target's table of a transformed source table (core/transform.h), in
// one statement run as one transaction: its schema if missing, its columns
// (renamed, cast, added; NOT NULL kept from the source) and its key as the
// primary key. Idempotent (IF NOT EXISTS). Indexes, constraints, defaults,
// triggers and generated columns of the source table are not carried.
std::string TransformedTableDdl(const TableTransform& transform);

// Sets the sequences the selected tables use (owned by them, serial or
// identity, or named in a column default) on the target to the source's
// value, never backwards. Tables are found by name on `source`, so the two may
// be either pair of servers; other sequences of their schemas are not touched.
Status SyncSequences(PgConn& source, PgConn& target, const std::vector<std::shared_ptr<const TableSchema>>& selected);
// What SyncSequences would need, without changing anything: every sequence it
// carries readable on `source` (SELECT) and, when the target has it,
// settable there (UPDATE). One line per sequence that is not, naming the
// sequence, the side and the GRANT that fixes it.
Result<std::vector<std::string>> SequenceProblems(PgConn& source, PgConn& target,
                                                  const std::vector<std::shared_ptr<const TableSchema>>& selected,
                                                  const std::string& source_name, const std::string& target_name,
                                                  int* checked);

}  // namespace midflight::pg
