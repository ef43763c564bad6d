#include "engines/cross/my_to_pg_types.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

#include "engines/mysql/catalog.h"
#include "engines/mysql/my_conn.h"
#include "engines/postgres/pg_conn.h"
#include "engines/postgres/pg_types.h"

namespace midflight::cross {
namespace {

using pg::QuoteIdent;
using pg::QuoteLiteral;

// The number inside the first parentheses of "varchar(120)", or -1.
int ParenNumber(const std::string& native) {
  size_t open = native.find('(');
  if (open == std::string::npos) return -1;
  int n = 0;
  auto [p, ec] = std::from_chars(native.data() + open + 1, native.data() + native.size(), n);
  if (ec != std::errc() || p == native.data() + open + 1) return -1;
  return n;
}

bool ParseU64(std::string_view s, uint64_t* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

const std::set<std::string> kGeometry = {"geometry",      "point",           "linestring",        "polygon",
                                         "multipoint",    "multilinestring", "multipolygon",      "geometrycollection"};

// The fractional-seconds modifier: "(3)" for precision 3, "" for 0 or unknown.
std::string Frac(int precision) { return precision > 0 ? fmt::format("({})", precision) : ""; }

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xc0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    *out += static_cast<char>(0xe0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    *out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// MariaDB's latin1 is Windows-1252 (0x80..0x9f are printable there); the
// five bytes cp1252 leaves undefined map to the C1 control of the same value.
constexpr uint16_t kCp1252High[32] = {0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                      0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
                                      0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                      0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

std::string Latin1ToUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (unsigned char c : s) AppendUtf8(c >= 0x80 && c < 0xa0 ? kCp1252High[c - 0x80] : c, &out);
  return out;
}

// "0000-00-00...", "2024-00-15": a date MySQL accepts that no calendar has.
bool IsZeroDate(std::string_view v) {
  if (v.size() < 10) return false;
  return v.substr(0, 4) == "0000" || v.substr(5, 2) == "00" || v.substr(8, 2) == "00";
}

bool UtfCharset(const std::string& cs) {
  return cs == "utf8mb4" || cs == "utf8mb3" || cs == "utf8" || cs == "ascii";
}

}  // namespace

std::vector<std::string> ParseMembers(std::string_view type) {
  std::vector<std::string> out;
  size_t i = type.find('(');
  if (i == std::string_view::npos) return out;
  ++i;
  while (i < type.size() && type[i] == '\'') {
    std::string m;
    ++i;
    while (i < type.size()) {
      if (type[i] == '\'' && i + 1 < type.size() && type[i + 1] == '\'') {
        m += '\'';
        i += 2;
      } else if (type[i] == '\\' && i + 1 < type.size()) {
        m += type[i + 1];
        i += 2;
      } else if (type[i] == '\'') {
        ++i;
        break;
      } else {
        m += type[i++];
      }
    }
    out.push_back(std::move(m));
    if (i < type.size() && type[i] == ',') ++i;
  }
  return out;
}

Result<TableCast> CastTable(const TableSchema& table, const MyTableFacts& facts, const CastOptions& options) {
  TableCast out;
  auto source = std::make_shared<TableSchema>(table);
  out.source = source;
  auto target = std::make_shared<TableSchema>();
  target->id = {options.target_schema.empty() ? table.id.schema : options.target_schema, table.id.name};
  target->key = table.key;
  target->key_kind = table.key_kind;
  target->has_secondary_unique = table.has_secondary_unique;
  target->estimated_rows = table.estimated_rows;
  target->estimated_bytes = table.estimated_bytes;
  for (int i = 0; i < static_cast<int>(table.columns.size()); ++i) {
    const ColumnSchema& c = table.columns[i];
    const ColumnType& t = c.type;
    const std::string& base = t.native_base;
    const bool is_key = std::find(table.key.begin(), table.key.end(), i) != table.key.end();
    ColumnCast cc;
    cc.name = c.name;
    cc.not_null = c.not_null;
    cc.charset = t.charset;
    TypeKind kind = TypeKind::kOther;
    const std::string where = fmt::format("table {} column {} ({})", table.id.ToString(), c.name, t.native);
    if (t.kind == TypeKind::kInt) {
      kind = TypeKind::kInt;
      cc.conv = Conv::kInt;
      if (base == "tinyint" && t.native.rfind("tinyint(1)", 0) == 0 && options.tinyint1_boolean) {
        cc.pg_type = "boolean";
        cc.conv = Conv::kBool;
        kind = TypeKind::kBool;
        cc.notes.push_back("tinyint(1) as boolean: values other than 0 and 1 are refused");
      } else if (t.width == 1 || (t.width == 2 && t.is_signed)) {
        cc.pg_type = "smallint";
      } else if (t.width <= 4 && !(t.width == 4 && !t.is_signed)) {
        cc.pg_type = "integer";
      } else if (t.width == 4 || (t.width == 8 && t.is_signed)) {
        cc.pg_type = "bigint";
      } else {
        cc.pg_type = "numeric(20)";
        kind = TypeKind::kDecimal;
      }
      if (!t.is_signed && cc.conv == Conv::kInt) cc.notes.push_back("unsigned: PostgreSQL accepts negative values too");
    } else if (t.kind == TypeKind::kDecimal) {
      kind = TypeKind::kDecimal;
      cc.conv = Conv::kDecimal;
      cc.pg_type = t.precision > 0 ? fmt::format("numeric({},{})", t.precision, std::max(t.scale, 0)) : "numeric";
      if (!t.is_signed) cc.notes.push_back("unsigned: PostgreSQL accepts negative values too");
    } else if (t.kind == TypeKind::kFloat) {
      kind = TypeKind::kFloat;
      cc.conv = Conv::kFloat;
      cc.pg_type = t.width == 4 ? "real" : "double precision";
    } else if (t.kind == TypeKind::kDate) {
      kind = TypeKind::kDate;
      cc.conv = Conv::kDate;
      cc.pg_type = "date";
    } else if (t.kind == TypeKind::kTimestamp) {
      kind = TypeKind::kTimestamp;
      if (t.with_zone) {
        cc.conv = Conv::kTimestamp;
        cc.pg_type = fmt::format("timestamp{} with time zone", Frac(t.precision));
        cc.notes.push_back("TIMESTAMP as timestamptz: the instant is kept, shown in the session's time zone");
      } else {
        cc.conv = Conv::kDateTime;
        cc.pg_type = fmt::format("timestamp{} without time zone", Frac(t.precision));
      }
    } else if (t.kind == TypeKind::kTime) {
      kind = TypeKind::kTime;
      cc.conv = Conv::kTime;
      cc.pg_type = fmt::format("time{} without time zone", Frac(t.precision));
      cc.notes.push_back("TIME as time of day: values outside 00:00:00..23:59:59 are refused (override: interval)");
    } else if (t.kind == TypeKind::kEnum) {
      kind = TypeKind::kText;
      cc.conv = Conv::kEnum;
      cc.labels = ParseMembers(t.native);
      cc.pg_type = "text";
      std::vector<std::string> quoted;
      for (const auto& l : cc.labels) quoted.push_back(QuoteLiteral(l));
      cc.check = fmt::format("{} IN ({})", QuoteIdent(c.name), fmt::join(quoted, ", "));
      cc.notes.push_back("ENUM as text with a CHECK: sorts by label, MySQL by member order");
    } else if (base == "set") {
      kind = TypeKind::kText;
      cc.conv = Conv::kSet;
      cc.labels = ParseMembers(t.native);
      cc.pg_type = "text";
      cc.notes.push_back("SET as comma-separated text: FIND_IN_SET and bit tests need rewriting");
    } else if (t.kind == TypeKind::kJson || facts.json_columns.count(c.name)) {
      kind = TypeKind::kJson;
      cc.conv = Conv::kJson;
      cc.pg_type = "jsonb";
      cc.notes.push_back("JSON as jsonb: key order, duplicate keys and spacing are not kept");
    } else if (t.kind == TypeKind::kText) {
      kind = TypeKind::kText;
      cc.conv = Conv::kText;
      if (!UtfCharset(t.charset) && t.charset != "latin1")
        return InvalidArgument(fmt::format("{}: character set {} has no conversion to UTF-8 yet (utf8mb4, utf8mb3, "
                                           "ascii and latin1 have); override the column's type in casting.columns "
                                           "or convert it on the source",
                                           where, t.charset));
      const int n = ParenNumber(t.native);
      if ((base == "char" || base == "varchar") && n > 0) {
        cc.pg_type = fmt::format("varchar({})", n);
      } else {
        cc.pg_type = "text";
      }
      if (base == "char") cc.notes.push_back("CHAR as varchar: MySQL drops trailing spaces, values arrive without them");
      if (t.charset == "latin1") cc.notes.push_back("latin1 (cp1252) converted to UTF-8");
      if (is_key && table.key_collation_folds)
        cc.notes.push_back("key under a case-insensitive MySQL collation, case-sensitive in PostgreSQL: keys equal in "
                           "MySQL ('a' = 'A') differ, and queries comparing them change results");
    } else if (kGeometry.count(base)) {
      kind = TypeKind::kBytes;
      cc.conv = Conv::kGeometry;
      cc.pg_type = "bytea";
      cc.notes.push_back("GEOMETRY as WKB bytea: the SRID is dropped (no PostGIS)");
    } else if (t.kind == TypeKind::kBytes) {
      kind = TypeKind::kBytes;
      cc.conv = Conv::kBytes;
      cc.pg_type = "bytea";
      if (base == "binary") cc.length = std::max(ParenNumber(t.native), 0);
    } else if (base == "year") {
      kind = TypeKind::kInt;
      cc.conv = Conv::kYear;
      cc.pg_type = "smallint";
      cc.notes.push_back("YEAR as smallint (0 for 0000)");
    } else if (base == "bit") {
      kind = TypeKind::kOther;
      cc.conv = Conv::kBit;
      cc.length = std::max(ParenNumber(t.native), 1);
      cc.pg_type = fmt::format("bit({})", cc.length);
    } else {
      cc.conv = Conv::kText;
      cc.pg_type = "";
    }
    if (c.generated)
      cc.notes.push_back("generated in MySQL: a plain column holding the source's computed values (the expression "
                         "is not translated)");
    if (c.name == facts.auto_increment && (kind == TypeKind::kInt || kind == TypeKind::kDecimal)) {
      cc.identity = true;
      if (cc.pg_type == "numeric(20)") {
        cc.identity = false;
        cc.notes.push_back("AUTO_INCREMENT on bigint unsigned: numeric has no identity, no default is created");
      }
    }
    if (cc.conv == Conv::kDate || cc.conv == Conv::kDateTime || cc.conv == Conv::kTimestamp) {
      if (options.zero_dates_null) {
        cc.notes.push_back("zero dates become NULL");
        if (cc.not_null && !is_key) {
          cc.not_null = false;
          cc.notes.push_back("NOT NULL dropped (zero dates become NULL)");
        }
      } else {
        cc.notes.push_back("zero dates are refused (casting.zero_dates: null makes them NULL)");
      }
    }
    // The spec's override, by "table.column" or "database.table.column".
    auto ov = options.column_types.find(table.id.ToString() + "." + c.name);
    if (ov == options.column_types.end()) ov = options.column_types.find(table.id.name + "." + c.name);
    if (ov != options.column_types.end()) {
      cc.overridden = true;
      cc.pg_type = ov->second;
      std::string lower = ov->second;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
      if (cc.conv == Conv::kTime && lower.rfind("interval", 0) == 0) {
        cc.conv = Conv::kInterval;
        cc.notes.erase(std::remove_if(cc.notes.begin(), cc.notes.end(),
                                      [](const std::string& n) { return n.rfind("TIME as", 0) == 0; }),
                       cc.notes.end());
      }
      if (cc.conv == Conv::kInt && (lower == "boolean" || lower == "bool")) {
        cc.conv = Conv::kBool;
        cc.notes.push_back("as boolean: values other than 0 and 1 are refused");
      }
      if (cc.conv == Conv::kText && lower == "bytea") cc.conv = Conv::kBytes;
      if (cc.conv == Conv::kEnum && lower.rfind("text", 0) != 0) cc.check.clear();
      cc.notes.push_back(fmt::format("type set by the spec (default cast: {})",
                                     cc.pg_type == ov->second ? "see the casting table" : cc.pg_type));
    }
    if (cc.pg_type.empty())
      return InvalidArgument(fmt::format("{}: no cast to PostgreSQL for MySQL type {}; set one in casting.columns "
                                         "(\"{}.{}\": <PostgreSQL type>, the value is carried as text)",
                                         where, t.native, table.id.name, c.name));
    ColumnSchema pc;
    pc.name = c.name;
    pc.not_null = cc.not_null;
    pc.type.kind = kind;
    pc.type.native = cc.pg_type;
    pc.type.native_base = PgTypeBase(cc.pg_type);
    target->columns.push_back(std::move(pc));
    out.columns.push_back(std::move(cc));
  }
  target->Finalize();
  out.target = std::move(target);
  return out;
}

std::string PgTypeBase(std::string_view type) {
  // Lower case, the typmods "(...)" cut out, spaces collapsed.
  std::string t;
  int depth = 0;
  for (char ch : type) {
    if (ch == '(') ++depth;
    else if (ch == ')') depth = std::max(0, depth - 1);
    else if (depth == 0) t += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  std::string flat;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == ' ' && (flat.empty() || flat.back() == ' ' || i + 1 == t.size() || t[i + 1] == '[')) continue;
    flat += t[i];
  }
  while (!flat.empty() && flat.back() == ' ') flat.pop_back();
  std::string dims;
  if (size_t b = flat.find('['); b != std::string::npos) {
    for (size_t i = b; i < flat.size(); ++i)
      if (flat[i] == '[') dims += "[]";
    flat.erase(b);
    while (!flat.empty() && flat.back() == ' ') flat.pop_back();
  }
  static const std::map<std::string, std::string, std::less<>> kAlias = {
      {"varchar", "character varying"},  {"char", "character"},     {"bpchar", "character"},
      {"int", "integer"},                {"int4", "integer"},        {"int2", "smallint"},
      {"int8", "bigint"},                {"float8", "double precision"}, {"float", "double precision"},
      {"float4", "real"},                {"bool", "boolean"},        {"decimal", "numeric"},
      {"timestamptz", "timestamp with time zone"}, {"timestamp", "timestamp without time zone"},
      {"timetz", "time with time zone"}, {"time", "time without time zone"}, {"varbit", "bit varying"},
  };
  if (auto a = kAlias.find(flat); a != kAlias.end()) flat = a->second;
  return flat + dims;
}

std::string CreateTableSql(const TableCast& cast) {
  const TableSchema& t = *cast.target;
  std::string sql = fmt::format("CREATE TABLE IF NOT EXISTS {}.{} (\n", QuoteIdent(t.id.schema), QuoteIdent(t.id.name));
  std::vector<std::string> lines;
  for (const auto& c : cast.columns) {
    std::string line = fmt::format("  {} {}", QuoteIdent(c.name), c.pg_type);
    if (c.identity) line += " GENERATED BY DEFAULT AS IDENTITY";
    if (c.not_null) line += " NOT NULL";
    if (!c.check.empty()) line += fmt::format(" CHECK ({})", c.check);
    lines.push_back(std::move(line));
  }
  if (t.key_kind == KeyKind::kPrimaryKey || t.key_kind == KeyKind::kUniqueIndex) {
    std::vector<std::string> key;
    for (int k : t.key) key.push_back(QuoteIdent(t.columns[k].name));
    lines.push_back(fmt::format("  {} ({})", t.key_kind == KeyKind::kPrimaryKey ? "PRIMARY KEY" : "UNIQUE",
                                fmt::join(key, ", ")));
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    sql += lines[i];
    if (i + 1 < lines.size()) sql += ",";
    if (i < cast.columns.size() && !cast.columns[i].notes.empty())
      sql += fmt::format("  -- LOSSY/SEMANTIC: {}", fmt::join(cast.columns[i].notes, "; "));
    sql += "\n";
  }
  return sql + ");\n";
}

std::string SnapshotSelectList(const TableSchema& table) {
  std::vector<std::string> sel;
  for (const auto& c : table.columns) sel.push_back(mysql::BinlogFormSelect(c));
  return fmt::format("{}", fmt::join(sel, ", "));
}

Result<Value> MyTextToValue(const ColumnCast& c, std::string_view v, bool zero_dates_null) {
  auto bad = [&](std::string_view problem) -> Status {
    return InvalidArgument(fmt::format("column {}: {}", c.name, problem));
  };
  auto of = [](auto x) { return Value{std::move(x)}; };
  switch (c.conv) {
    case Conv::kInt: {
      int64_t i = 0;
      uint64_t u = 0;
      if (!v.empty() && v[0] == '-') {
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), i);
        if (ec == std::errc() && p == v.data() + v.size()) return of(i);
      } else if (ParseU64(v, &u)) {
        return of(u);
      }
      return bad(fmt::format("'{}' is not an integer", v));
    }
    case Conv::kDecimal: {
      std::string_view d = v;
      if (c.trim_zeros && d.find('.') != std::string_view::npos) {
        while (d.back() == '0') d.remove_suffix(1);
        if (d.back() == '.') d.remove_suffix(1);
      }
      return of(Decimal{std::string(d)});
    }
    case Conv::kFloat: {
      double d = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
      if (ec != std::errc() || p != v.data() + v.size()) return bad(fmt::format("'{}' is not a number", v));
      return of(d);
    }
    case Conv::kInterval:
      return of(OtherText{std::string(v)});
    case Conv::kBool:
      if (v == "0") return of(false);
      if (v == "1") return of(true);
      return bad(fmt::format("value {} is not 0 or 1, and the column is boolean in PostgreSQL", v));
    case Conv::kDate:
    case Conv::kDateTime:
    case Conv::kTimestamp: {
      if (IsZeroDate(v)) {
        if (zero_dates_null) return Value{};
        return bad(fmt::format("zero date '{}' has no PostgreSQL value (casting.zero_dates: null stores NULL)", v));
      }
      // MySQL's date and datetime texts are the ISO forms PostgreSQL's parser
      // reads ("2024-02-29 12:34:56.000001"); TIMESTAMP values are UTC.
      ColumnType t;
      t.kind = c.conv == Conv::kDate ? TypeKind::kDate : TypeKind::kTimestamp;
      t.with_zone = c.conv == Conv::kTimestamp;
      ASSIGN_OR_RETURN(Value out, pg::PgTextToValue(t, t.with_zone ? std::string(v) + "+00" : std::string(v)));
      if (std::holds_alternative<OtherText>(out.v)) return bad(fmt::format("'{}' is not a valid date", v));
      return out;
    }
    case Conv::kTime: {
      size_t colon = v.find(':');
      uint64_t hours = 0;
      // 24:00:00 is a time of day to PostgreSQL too (a PostgreSQL time column holding it comes back so).
      if (!v.empty() && v[0] != '-' && colon != std::string_view::npos && ParseU64(v.substr(0, colon), &hours) &&
          (hours < 24 || (hours == 24 && v.substr(colon).find_first_not_of(":0.") == std::string_view::npos)))
        return of(OtherText{std::string(v)});
      return bad(fmt::format("TIME '{}' is not a time of day (00:00:00..24:00:00); set the column's type to interval "
                             "in casting.columns",
                             v));
    }
    case Conv::kYear: {
      uint64_t y = 0;
      if (!ParseU64(v, &y)) return bad(fmt::format("YEAR '{}' is not a number", v));
      return of(static_cast<int64_t>(y));
    }
    case Conv::kBit: {
      uint64_t bits = 0;
      if (!ParseU64(v, &bits)) return bad(fmt::format("BIT value '{}' is not a number", v));
      std::string s(c.length, '0');
      for (int i = 0; i < c.length && i < 64; ++i)
        if (bits >> i & 1) s[c.length - 1 - i] = '1';
      return of(OtherText{std::move(s)});
    }
    case Conv::kEnum: {
      uint64_t idx = 0;
      if (!ParseU64(v, &idx)) return bad(fmt::format("ENUM index '{}' is not a number", v));
      if (idx == 0) return bad("holds MySQL's invalid ENUM value '' (index 0), which the CHECK refuses");
      if (idx > c.labels.size()) return bad(fmt::format("ENUM index {} beyond its {} members", idx, c.labels.size()));
      return of(EnumLabel{c.labels[idx - 1]});
    }
    case Conv::kSet: {
      uint64_t mask = 0;
      if (!ParseU64(v, &mask)) return bad(fmt::format("SET value '{}' is not a bitmask", v));
      std::string s;
      for (size_t i = 0; i < c.labels.size() && i < 64; ++i)
        if (mask >> i & 1) {
          if (!s.empty()) s += ',';
          s += c.labels[i];
        }
      if (c.labels.size() < 64 && (mask >> c.labels.size()) != 0)
        return bad(fmt::format("SET bitmask {} names members beyond its {}", mask, c.labels.size()));
      return of(std::move(s));
    }
    case Conv::kJson:
    case Conv::kText: {
      if (v.find('\0') != std::string_view::npos)
        return bad("the value holds a NUL byte, which PostgreSQL text cannot store");
      std::string text = c.charset == "latin1" ? Latin1ToUtf8(v) : std::string(v);
      if (c.conv == Conv::kJson) return of(Json{std::move(text)});
      return of(std::move(text));
    }
    case Conv::kBytes: {
      Bytes b;
      b.data.assign(v.begin(), v.end());
      // The binlog drops BINARY(n)'s trailing zero bytes.
      if (c.length > 0 && b.data.size() < static_cast<size_t>(c.length)) b.data.resize(c.length, 0);
      return of(std::move(b));
    }
    case Conv::kGeometry: {
      if (v.size() < 4) return bad("GEOMETRY value shorter than its SRID");
      Bytes b;
      b.data.assign(v.begin() + 4, v.end());
      return of(std::move(b));
    }
  }
  return bad("no conversion");
}

Result<std::optional<std::string>> ToPgText(const ColumnCast& c, std::string_view v, bool zero_dates_null) {
  ASSIGN_OR_RETURN(Value value, MyTextToValue(c, v, zero_dates_null));
  if (std::holds_alternative<Null>(value.v)) return std::optional<std::string>();
  ColumnType t;
  t.width = c.pg_type == "real" ? 4 : 8;  // how a float is printed
  auto text = pg::ValueToPgText(t, value);
  if (!text.ok()) return InvalidArgument(fmt::format("column {}: {}", c.name, text.status().message()));
  return std::optional<std::string>(std::move(*text));
}

}  // namespace midflight::cross
