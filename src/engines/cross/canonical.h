// One canonical text form per value type, the same whichever engine holds the
// value, so that `verify` and `compare` can hash rows on both sides of a
// migration across engines and compare the hashes (engines/cross/cross_verify.h).
//
// PostgreSQL and MariaDB print the same value differently (numeric scale,
// float exponents, timestamp zones, JSON spacing and key order, booleans,
// bytes), so each side renders every column in the canonical form below,
// chosen by the column's Canon kind (from the casting table), and hashes it:
//
//   kind        canonical text                                  computed by
//   kNumber     decimal, no '+', no leading zeros, no trailing  SQL (both)
//               fractional zeros, no trailing '.', "-0" -> "0";
//               booleans as 0/1, YEAR as its number
//   kFloat      the shortest text that reads back to the same   midflight, from the double's text
//               double ("3.1415927410125732", "1e+20")          (engines print exponents differently)
//   kText       the UTF-8 bytes                                 SQL (MySQL converts other charsets)
//   kBytes      lowercase hex of the bytes                      SQL
//   kDate       YYYY-MM-DD                                      SQL
//   kTimestamp  microseconds since 1970-01-01 00:00:00 (UTC     SQL
//               for a zoned type), a signed integer
//   kTime       microseconds (signed; MySQL TIME and            SQL
//               PostgreSQL interval go past 24 h)
//   kBits       the n binary digits, most significant first     SQL
//   kJson       the document re-serialised: keys sorted by      midflight, from the document's text
//               bytes, a repeated key's last value, no spaces,  (no SQL of either engine can)
//               numbers as kNumber (exponents expanded),
//               strings with JSON's minimal escapes
//
// NULL is not a text: a row's hash input is, per column, "N" for NULL, else
// "<byte length>:<canonical text>", so NULL, '' and 'N' all differ.
//
// Key columns are compared through their canonical forms too; where the two
// engines order a key type differently (text under collations, ENUM by member
// index in MySQL and by label in PostgreSQL), range conditions on it compare
// the canonical bytes (cross_verify.cc says why). Pure: no connection.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "core/schema.h"
#include "core/value.h"
#include "engines/cross/my_to_pg_types.h"
#include "engines/cross/pg_to_my_types.h"

namespace midflight::cross {

enum class Canon : uint8_t { kNumber, kFloat, kText, kBytes, kDate, kTimestamp, kTime, kBits, kJson };

std::string_view CanonName(Canon kind);
// Computed by midflight from the value's text (the SQL selects it raw).
inline bool CanonInMidflight(Canon kind) { return kind == Canon::kFloat || kind == Canon::kJson; }
// Ordered the same by both engines' native comparisons (range conditions may use the column's index).
inline bool CanonNativeOrder(Canon kind) {
  return kind == Canon::kNumber || kind == Canon::kBytes || kind == Canon::kDate || kind == Canon::kTimestamp ||
         kind == Canon::kTime || kind == Canon::kBits;
}

// ---- canonical forms computed in midflight (and used by the unit tests as the definition) ----

// "00012.500" -> "12.5", "-0.0" -> "0", "1E+3" -> "1000", "+.5" -> "0.5"; InvalidArgument when not a number.
Result<std::string> CanonDecimal(std::string_view text);
// A double's text (any engine's form: "1e20", "1e+20", "0.0000001") -> its shortest round-trip text;
// "NaN", "Infinity", "-Infinity" as such.
Result<std::string> CanonFloat(std::string_view text);
// A JSON document's text -> its canonical text (see above); InvalidArgument naming the problem.
Result<std::string> CanonJson(std::string_view text);
// Microseconds <-> "YYYY-MM-DD HH:MM:SS.ffffff" (proleptic Gregorian; the key literals of kTimestamp).
std::string MicrosToTimestampText(int64_t micros);
// Microseconds -> "[-]HHH:MM:SS.ffffff" (the key literals of kTime).
std::string MicrosToTimeText(int64_t micros);
// Days since 1970-01-01 -> "YYYY-MM-DD".
std::string DaysToDateText(int32_t days);

// The canonical text of a typed-model value (core/value.h) of kind `kind`;
// nullopt for NULL. The reference the SQL expressions are tested against.
Result<std::optional<std::string>> CanonOfValue(const Value& v, Canon kind);

// ---- the casting table's columns ---------------------------------------------

// The canonical kind of a MySQL -> PostgreSQL column (its ColumnCast).
Canon CanonOfCast(const ColumnCast& cast);

// One column as both sides hold it: its name and type on each side, how it
// is compared, and what the reference's MySQL side maps to NULL.
struct CanonColumn {
  Canon kind = Canon::kText;
  ColumnSchema my;  // the MySQL/MariaDB column (name, native type, charset)
  ColumnSchema pg;  // the PostgreSQL column
  int bits = 0;     // kBits: the width
  bool my_zero_dates_null = false;  // kDate/kTimestamp: MySQL's zero dates read as NULL
  bool my_geometry = false;         // kBytes: MySQL's internal GEOMETRY (SRID + WKB); WKB is compared
  // PostgreSQL -> MySQL under `casting.out_of_range: null`: the PostgreSQL
  // side reads a value MySQL cannot hold (years outside 1000..9999, infinity,
  // BC, numeric NaN/Infinity or past DECIMAL(precision,scale), float NaN and
  // infinities) as NULL, which is what the casting stored.
  bool pg_out_of_range_null = false;
  int precision = 0, scale = 0;  // kNumber from a DECIMAL: its digits (for that guard)
  // False: read as NULL on both sides, so never a difference (a column a
  // transform computes, after the write switch: reverse replication does
  // not carry it, so the target's value and a recomputation may differ).
  bool compared = true;
  // PostgreSQL -> MySQL, kinds computed in midflight: the PostgreSQL side's
  // raw text goes through the pairing's casting first (an array becomes the
  // JSON array MySQL holds); nullopt from it is NULL.
  std::function<Result<std::optional<std::string>>(std::string_view)> pg_cast;
};

// The CanonColumn of a PostgreSQL -> MySQL column (pg: the PostgreSQL
// column, my: its MySQL twin). Sets *not_compared (and returns a kText
// column) when a `casting.columns` override stores it in a MySQL type whose
// values no canonical form relates to PostgreSQL's.
CanonColumn CanonOfPgCast(const PgColumnCast& cast, const ColumnSchema& pg, const ColumnSchema& my,
                          bool out_of_range_null, std::string* not_compared);

// ---- SQL per engine ----------------------------------------------------------
// Each returns an expression over the column (quoted by the engine's helper)
// that yields the canonical text (MySQL: a binary string; PostgreSQL: text),
// NULL for NULL. For the kinds computed in midflight, the raw text to canonicalise.

std::string MyCanonExpr(const CanonColumn& c);
std::string PgCanonExpr(const CanonColumn& c);
// The hash input piece of one column: "N" or "<length>:<text>".
std::string MyPieceExpr(const std::string& canon_expr);
std::string PgPieceExpr(const std::string& canon_expr);
// The row's hash (32 hex digits) over the pieces of the columns computed in SQL.
std::string MyRowMd5(const std::vector<std::string>& pieces);
std::string PgRowMd5(const std::vector<std::string>& pieces);

// A key value (canonical text) as a literal the column compares with,
// keeping its index usable; InvalidArgument when the text is not of the kind.
Result<std::string> MyKeyLiteral(const CanonColumn& c, const std::string& canon);
Result<std::string> PgKeyLiteral(const CanonColumn& c, const std::string& canon);
// The expression a range condition on a key column compares: the column
// itself where both engines order the kind alike, else its canonical bytes
// (binary comparison in MySQL, COLLATE "C" in PostgreSQL).
std::string MyRangeExpr(const CanonColumn& c);
std::string PgRangeExpr(const CanonColumn& c);
// The literal a range condition compares MyRangeExpr / PgRangeExpr with.
Result<std::string> MyRangeLiteral(const CanonColumn& c, const std::string& canon);
Result<std::string> PgRangeLiteral(const CanonColumn& c, const std::string& canon);

// The digest of a row: the SQL part's MD5 and the canonical forms of the
// columns computed in midflight (in column order, nullopt for NULL). With no
// midflight columns, the MD5 itself.
std::string RowDigest(std::string_view sql_md5, const std::vector<std::optional<std::string>>& midflight);
// A canonical key value back to the MySQL text form of the column (the
// binlog's: ENUM as its index, SET as its bitmask, BIT as its number, bytes
// raw): what a delete repair carries through the casting table.
// InvalidArgument where it has none (latin1 text, GEOMETRY).
Result<std::string> CanonToMyText(const ColumnCast& cast, const std::string& canon);
// Canonicalises one value of a kind computed in midflight; nullopt stays nullopt.
Result<std::optional<std::string>> CanonRaw(Canon kind, const std::optional<std::string>& raw);

}  // namespace midflight::cross
