// Transforms: what the spec's `transforms:` section does to a table's rows on
// the way to the target, written once for every engine pairing.
//
// Per table: keep or drop columns (include / exclude), rename the table and
// its columns, convert a column with a named cast, add computed columns from
// a small expression language, and keep only the rows a filter accepts.
//
//   TableTransformSpec (spec text, checked for syntax at spec load)
//        │ Bind(spec, source TableSchema)     names and types checked, key rules
//        ▼
//   TableTransform: target() = the table the target gets (renamed, columns dropped,
//                   cast, added); Row(source image) -> target image, or "filtered out"
//
// Values are read and written in their text form (Datum), the form the
// pipeline carries to a PostgreSQL target: integers and decimals as digits,
// booleans t/f, timestamps ISO 8601, JSON as its text. The casts and
// expressions below are defined on those forms, so one implementation serves
// PostgreSQL -> PostgreSQL, MySQL -> PostgreSQL (after the casting table) and
// PostgreSQL -> MySQL (before it) alike.
//
// Casts (`columns: {col: {cast: NAME}}`):
//   text_to_int       text -> bigint (surrounding spaces ignored; anything else stops the run)
//   text_to_numeric   text -> numeric
//   int_to_text       integer -> text
//   numeric_to_text   decimal -> text (the exact digits)
//   json_to_text      json/jsonb -> text (the JSON text as the source prints it)
//   timestamp_to_timestamptz   timestamp without zone -> timestamptz, read in `zone`
//                     (UTC, +HH, +HH:MM, -HH:MM; fixed offsets only)
//   trim, lower, upper   text -> text (spaces; ASCII letters only: other characters are kept)
//
// Expressions (`add: {col: EXPR}`) and the filter (`filter: PRED`):
//   column names (plain, or "double quoted"), 'text' literals ('' for a quote),
//   numbers (42, -1.5), null, true, false;
//   concat(a, b, ...)  (NULL parts are skipped, like PostgreSQL's concat)
//   coalesce(a, b, ...), lower(a), upper(a), trim(a), sha256(a) (hex; for masking)
//   a + b, a - b, a * b on integers and decimals (or text columns holding them), exact
//   (NULL in, NULL out; a value that is not a number, or an overflow, stops the run)
//   a = b, a != b (or <>), a < b, a <= b, a > b, a >= b, a is null, a is not null,
//   p and q, p or q, not p, parentheses.
// Comparisons are numeric when either side is a number (a numeric column or
// a number literal), boolean against true/false, else byte-wise on the text
// (dates and timestamps compare as their ISO text). A comparison with NULL
// is false, so the filter drops rows whose compared column is NULL unless it
// says `is null`.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "core/change.h"
#include "core/schema.h"
#include "core/value.h"

namespace midflight {

struct ColumnTransformSpec {
  std::string column;  // the source column
  std::string rename;  // empty: keep the name
  std::string cast;    // empty: none; else one of the casts above
  std::string zone;    // timestamp_to_timestamptz only
};

struct AddedColumnSpec {
  std::string name;
  std::string expr;
};

struct TableTransformSpec {
  std::string table;   // as the spec names it: "schema.table", or "table" (any schema)
  std::string rename;  // "table" (same schema) or "schema.table"; empty: keep
  std::vector<std::string> include;  // columns kept (empty: all); key columns must be kept
  std::vector<std::string> exclude;  // columns dropped
  std::vector<ColumnTransformSpec> columns;
  std::vector<AddedColumnSpec> add;
  std::string filter;  // empty: every row
  // Where the spec said it, for messages ("transforms.public.orders").
  std::string where() const { return "transforms." + table; }
};

// Checks a spec's syntax without a table: cast names, zones, expressions and
// the filter parse. Errors name the table, the column and the bad part.
Status CheckTransformSyntax(const TableTransformSpec& spec);

// The transform of the spec that names `id` (an exact "schema.table" entry
// wins over a bare "table" one), or nullptr.
const TableTransformSpec* TransformFor(const std::vector<TableTransformSpec>& specs, const TableId& id);

namespace transform_detail {
struct Expr;
}

// One table's transform, bound to its source schema. Immutable; shared by
// the copy workers and the appliers (any thread).
class TableTransform {
 public:
  // Checks the spec against the table: every named column exists, key columns
  // are kept and only renamed or cast one-to-one (int_to_text,
  // timestamp_to_timestamptz), casts fit the column's type, expressions
  // and the filter refer to existing columns. The table needs a key.
  static Result<std::shared_ptr<const TableTransform>> Bind(const TableTransformSpec& spec,
                                                            std::shared_ptr<const TableSchema> source);
  ~TableTransform();

  const TableSchema& source() const { return *source_; }
  // The target's table: renamed, its columns kept (writable ones only, in
  // source order, renamed and cast) then the added ones; the same key.
  const std::shared_ptr<const TableSchema>& target() const { return target_; }
  bool has_filter() const { return filter_ != nullptr; }
  // The source column (an index in source().columns) that target column i
  // holds, renamed or cast or as it is; -1 for a computed column.
  int SourceColumn(size_t i) const { return out_[i].from < 0 ? -1 : source_->writable[out_[i].from]; }
  // The cast target column i goes through ("" for none, or a computed
  // column), and the zone offset in minutes of a timestamp cast.
  const std::string& ColumnCast(size_t i) const { return out_[i].cast; }
  int ColumnZoneMinutes(size_t i) const { return out_[i].zone_minutes; }
  // Where the spec says it, for messages ("transforms.public.orders").
  const std::string& where() const { return where_; }

  // The target image of one source image (TableSchema::writable layout of
  // the source), or nullopt when the filter drops the row. A cast or
  // expression that cannot apply is an error naming table, key, column and
  // value. Unchanged values pass through a rename or cast as unchanged; an
  // added column or the filter that needs one is an error (the source did
  // not send the value).
  Result<std::optional<std::vector<Datum>>> Row(const std::vector<Datum>& values) const;
  // The target's key image (others NULL) of a source image holding at
  // least the key columns (a delete's `old`).
  std::vector<Datum> KeyImage(const std::vector<Datum>& source_image) const;
  // One change as the target applies it, or nullopt when nothing is to be
  // applied. With a filter: an insert or update whose new row passes becomes
  // an upsert (kInsert; the target may or may not hold the row, so it is not
  // checked for conflicts), one that does not becomes a delete by key (the
  // row may have left the filter), and deletes are by key (unchecked).
  Result<std::optional<Change>> Apply(const Change& change) const;
  // What the transform does, one line per column, for `schema --dry-run`.
  std::vector<std::string> Describe() const;

  // Reverse replication (target -> source, after `switch writes`): the
  // transform that carries a change of target() back to the source table,
  // or an error naming the transform that has no inverse, one line:
  //   "transforms.public.orders: filter 'qty > 0' cannot be reversed: ...".
  // `as_read` is the target table as the reverse stream reads it (its
  // catalog's layout, checked against target(): same writable columns, same
  // names); null: target() itself (a refusal check, or a flow whose stream
  // uses target()'s own schema). `defaulted` names the source table's
  // columns the server fills when an insert leaves them out (a DEFAULT, an
  // identity or serial, AUTO_INCREMENT), which the engine reads from its
  // catalog; null: the columns left out are not checked (a check before
  // the servers are asked).
  //
  // The inverse's source() is that target table; its target() is the source
  // table holding only the columns this transform carries (same id, key,
  // types and order; the others are not written). Renames go back, casts go
  // back through their inverse, added columns are dropped. So an insert on
  // the target leaves the source's dropped columns to their default (or
  // NULL), an update writes only the carried columns (the dropped ones keep
  // their source values), and a key move, which sinks apply as a delete
  // plus an insert, resets them to their default.
  //
  // Reversible: table and column renames; include/exclude, unless a dropped
  // column is NOT NULL without a default on the source (an insert could not
  // be written back; generated ones are the server's); added columns;
  // the casts int_to_text <-> text_to_int, numeric_to_text <->
  // text_to_numeric (the target value written back as the source's text
  // form: ' 42' or '007' copied as 42 comes back as '42'; a value the
  // inverse cannot read, 'abc' written to an int_to_text column, stops the
  // reverse flow naming table, key and value), and timestamp_to_timestamptz
  // (the instant read back as the wall-clock time in its fixed zone, exact:
  // fixed offsets have no gaps or repeats).
  // Refused: a filter (a row the target holds that the filter would have
  // left out has no defined place on the source: written back, it would
  // appear in a table whose rows the filter never carried; left out, the
  // rollback would lose it), lower, upper and trim (the original text is
  // gone), json_to_text (the target holds free text the source's JSON
  // column may refuse or reformat, so a value does not come back as written).
  Result<std::shared_ptr<const TableTransform>> Inverse(std::shared_ptr<const TableSchema> as_read = nullptr,
                                                        const std::set<std::string>* defaulted = nullptr) const;

 private:
  TableTransform() = default;
  Status RowError(const std::vector<Datum>& values, const std::string& column, const std::string& problem) const;

  struct OutColumn {
    int from = -1;  // index in the source's writable layout; -1: computed
    std::string cast;
    int zone_minutes = 0;
    std::shared_ptr<transform_detail::Expr> expr;  // computed
    std::string describe;
  };
  std::shared_ptr<const TableSchema> source_, target_;
  std::vector<OutColumn> out_;
  std::shared_ptr<transform_detail::Expr> filter_;
  std::string filter_text_;
  std::string where_;  // "transforms.public.orders", for Inverse's refusals
};

// The tables of `tables` with a transform in `specs`, bound; an error names the
// first problem (also a spec entry that names no migrated table).
Result<std::vector<std::shared_ptr<const TableTransform>>> BindTransforms(
    const std::vector<TableTransformSpec>& specs, const std::vector<std::shared_ptr<const TableSchema>>& tables);

}  // namespace midflight
