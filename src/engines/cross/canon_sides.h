// The two engines' CanonSides (cross_verify.h): MySQL/MariaDB and
// PostgreSQL, each one connection, the canonical SQL of canonical.h, and the
// reference's snapshot with its change-stream position:
//   MySQL       START TRANSACTION WITH CONSISTENT SNAPSHOT; MariaDB's
//               Binlog_snapshot_file/position (else SHOW MASTER STATUS read
//               after the snapshot): the binlog up to it is what the snapshot sees
//   PostgreSQL  REPEATABLE READ, READ ONLY; pg_current_wal_insert_lsn() read as the
//               snapshot's first statement, so every commit it sees is before it;
//               repairs (as the reference of PostgreSQL -> MySQL) in the text
//               forms pgoutput sends (each column's output function)
// Sessions: MySQL time_zone '+00:00' (MyConn's), PostgreSQL TimeZone UTC,
// DateStyle ISO, extra_float_digits 1, IntervalStyle postgres.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "core/transform.h"
#include "engines/cross/cross_verify.h"
#include "engines/cross/my_to_pg_types.h"
#include "engines/cross/pg_to_my_types.h"

namespace midflight::cross {

// `casts` (source table -> its cast): what the MySQL side's repairs need
// (ENUM and SET members to rebuild a deleted key); empty for a side that repairs nothing.
std::unique_ptr<CanonSide> MySqlCanonSide(std::string uri, std::string label,
                                          std::shared_ptr<const std::map<TableId, TableCast>> casts = nullptr);
std::unique_ptr<CanonSide> PostgresCanonSide(std::string uri, std::string label);

// The CanonTables of MySQL -> PostgreSQL casts: each column's kind from its
// ColumnCast; a table whose key has a float or JSON column is skipped (named).
std::vector<CanonTable> CanonTablesOf(const std::vector<TableCast>& casts, bool zero_dates_null);

// The CanonTables of PostgreSQL -> MySQL casts: PostgreSQL is the
// reference, each CanonTable's `table` the layout its stream gives (the
// source's columns less generated ones, which are not carried), so its
// repairs go through the casting sink like any change. Skipped (named): a
// table whose key has a JSON or float column, or with a column an override
// stores in a type no canonical form relates to PostgreSQL's.
std::vector<CanonTable> PgCanonTablesOf(const std::vector<PgTableCast>& casts, bool out_of_range_null);

// A transformed table verified through its transform (cross_verify.h
// Reshape), into a PostgreSQL target: `base` is the table as both sides
// would hold it untransformed, `tr` the transform bound to its PostgreSQL
// columns (base's `pg`), `row` one reference row in its stream form ->
// the transform's input (nullopt when the filter drops it) -> the target's
// row. The result's columns are the target's: a column kept, renamed or not,
// is compared as `base` compares it; a cast or computed one by its new
// type. Not verified (skipped, named) when a key column is cast: a cast
// key (int_to_text, timestamp_to_timestamptz) may order or render its values
// otherwise on the target, so ranges would not select the same rows.
CanonTable ReshapedToPg(const CanonTable& base, const TableTransform& tr,
                        std::function<Result<std::optional<std::vector<Datum>>>(const CanonSide::Row&)> row);

// The CanonTable of a PostgreSQL -> PostgreSQL table that `tr` (bound to the
// source table) transforms, verified through it like ReshapedToPg: both
// sides PostgreSQL, each column compared by its type's canonical form, the
// reference's rows read in the stream's layout (the source's columns less
// generated ones, in the text forms pgoutput sends), which `tr` takes as it is.
CanonTable PgReshaped(std::shared_ptr<const TableTransform> tr);
// The CanonTable of a MySQL -> MySQL table that `tr` (bound to the source
// table, as the MySQL catalog reads it) transforms, verified through it as
// PgReshaped: each column compared by its type's canonical form, the
// reference's rows read in the binlog's text forms (the stream's), the
// target's table `target_db`.`renamed`. A table with a BIT, SET, UUID or
// INET column is named as not verified (its values cannot be written into
// the scratch table as text), as is one whose key column is cast.
CanonTable MyReshaped(std::shared_ptr<const TableTransform> tr, const std::string& target_db);
// A PostgreSQL -> MySQL table that `tr` (bound to the PostgreSQL source
// table) transforms, verified through it: `t` is the CanonTable of the cast
// of the transformed shape (PgCanonTablesOf: its columns and key the MySQL
// target's), `row` one source row in the stream's layout -> the transform ->
// the casting table's MySQL text forms (nullopt when the filter drops it).
// The reference's ranges are on the source key, compared as `t`'s key.
CanonTable ReshapedToMy(CanonTable t, const TableTransform& tr,
                        std::function<Result<std::optional<std::vector<Datum>>>(const CanonSide::Row&)> row);
// The CanonTable that verifies a transformed table after the write switch
// (CanonTable::reversed), from the one that verifies it before (ReshapedToPg,
// PgReshaped, ReshapedToMy; one not verified stays so): the target is the
// reference, the source's rows are transformed forward and hashed by the
// target's SQL, the computed columns not compared. `layout`: the target
// table as the reverse stream reads it (its writable columns, in the
// transform's target order), for repairs; null when repairs are not built.
// A cast key column is mapped the other way: the chunks are on the target's
// key, and the source is read by the source's values of it.
CanonTable Reversed(CanonTable forward, TablePtr layout);

// PgReshaped of each table of `tables` that `specs` transforms, in order; a
// table not verified names its transform. An error: a transform that no
// longer binds to its table.
Result<std::vector<CanonTable>> PgReshapedTables(const std::vector<TableTransformSpec>& specs,
                                                 const std::vector<TablePtr>& tables);

}  // namespace midflight::cross
