// PostgreSQL -> MySQL/MariaDB: the casting table (which MySQL type each
// PostgreSQL column becomes, and what the change loses or changes in
// meaning) and the conversion of one PostgreSQL value to the MySQL text form
// the MySQL engine's target side writes (LOAD DATA fields, and the literals
// of engines/mysql/my_applier.h).
//
// PostgreSQL values arrive in their text forms: COPY's text format (after
// its escapes are undone) and pgoutput's text tuples, both produced under
// midflight's session settings (engines/postgres/pg_conn.h: ISO dates, UTC,
// extra_float_digits = 3, hex bytea). Both go through one converter, through
// the typed model's rules (core/value.h, engines/postgres/pg_types.h): exact
// decimals, microseconds, bytes unchanged, NULL apart from the empty string.
// A value MySQL cannot hold exactly (a year outside 1000..9999, infinity,
// BC, numeric NaN, a float NaN or infinity, a number past the DECIMAL's
// digits, text past a key column's length) is refused, or NULL when the
// spec says `out_of_range: null`; it is never rounded or clamped.
//
// Pure: no client library, unit-tested (tests/unit/pg_to_my_types_test.cc).
// The table itself is documented in engines/README.md.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "core/schema.h"

namespace midflight::cross {

// What the spec's `casting:` section says for this direction (control/spec.h CastingSpec).
struct PgCastOptions {
  bool numeric_decimal = false;    // numeric without precision -> DECIMAL(65,30) (else refused at preflight)
  bool out_of_range_null = false;  // values MySQL cannot hold -> NULL (else the row is refused)
  bool mariadb = true;             // the target is MariaDB (else MySQL 8): names the binary collation
  std::string collation;           // non-key text columns' collation; empty: the binary one
  std::string target_db;           // the MySQL database the tables go to
  // "table.column" or "schema.table.column" -> the MySQL type to create instead.
  std::map<std::string, std::string> column_types;
};

enum class PgConv : uint8_t {
  kInt,          // decimal text as is
  kBool,         // t/f -> 1/0
  kDecimal,      // exact text; NaN/Infinity and digits past DECIMAL(p,s) refused
  kFloat,        // NaN/Infinity refused; the float's exact value as shortest double text
  kDate,         // year 1000..9999, else refused (infinity, BC too)
  kDateTime,     // timestamp: same range, microseconds kept
  kDateTimeUtc,  // timestamptz: the instant in UTC, same range
  kTime,         // time of day as is (24:00:00 included)
  kText,         // UTF-8 as is; past `max_chars` (a key column's limit) refused
  kBytes,        // bytea hex -> raw bytes
  kJson,         // document text as is
  kArray,        // PostgreSQL array -> JSON array (nested for several dimensions)
  kEnum,         // label, which must be a member
  kBit,          // '0101' -> its unsigned number (BIT(n), n <= 64)
  kAsText,       // PostgreSQL's text form as is (interval, inet, varbit, overrides)
};

struct PgColumnCast {
  std::string name;
  std::string my_type;  // "DECIMAL(12,2)", "VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
  PgConv conv = PgConv::kAsText;
  ColumnType source_type;           // the PostgreSQL type (a domain's base type)
  std::vector<std::string> labels;  // kEnum members
  int precision = 0, scale = 0;     // kDecimal: the DECIMAL's digits
  int max_chars = 0;                // kText: refuse longer values (a key column's limit); 0 none
  int bits = 0;                     // kBit
  bool not_null = false;
  bool auto_increment = false;
  bool key = false;  // part of the primary key (or a unique index): binary collation kept
  bool overridden = false;
  std::vector<std::string> notes;  // lossy or semantic changes, one phrase each
};

// What pg_catalog says of a table beyond core::TableSchema.
struct PgTableFacts {
  std::map<std::string, std::vector<std::string>> enum_labels;  // column -> labels in sort order
  // column -> (domain name, its base type): values arrive in the base type's text form.
  std::map<std::string, std::pair<std::string, ColumnType>> domains;
  std::string identity;                  // its identity or serial column ("" none)
  std::set<std::string> unique_columns;  // columns of secondary unique indexes
};

// One table's cast: the PostgreSQL table, its MySQL twin (what the applier
// and the copy write: the source's columns except generated ones, which
// PostgreSQL 15's stream does not carry), and a cast per twin column.
struct PgTableCast {
  std::shared_ptr<const TableSchema> source;
  std::shared_ptr<const TableSchema> target;
  std::vector<PgColumnCast> columns;     // one per target column, same order
  std::vector<int> source_index;         // target column i is source column source_index[i]
  std::vector<std::string> table_notes;  // generated columns left out, ...
};

// The cast of `table` into options.target_db.
// InvalidArgument naming the table and column for a type with no cast (an
// override may give one).
Result<PgTableCast> CastPgTable(const TableSchema& table, const PgTableFacts& facts, const PgCastOptions& options);

// CREATE TABLE for the target (primary key included), one column a line, each
// lossy or semantic change flagged in a comment at the end of its line.
std::string CreateMyTableSql(const PgTableCast& cast);

// One PostgreSQL text-form value -> the typed model -> MySQL's text form for
// `column`; nullopt is NULL (a value MySQL cannot hold, under
// out_of_range_null). The error names the column and the problem; the
// caller adds the table and key.
Result<std::optional<std::string>> ToMyText(const PgColumnCast& column, std::string_view value, bool out_of_range_null);

// Undoes COPY text format's escapes in one field (\\, \t, \n, \r, \b, \f, \v,
// \ooo octal, \xhh). "\N" (NULL) is the caller's to recognise first.
std::string UnescapeCopyField(std::string_view field);

}  // namespace midflight::cross
