#include "engines/cross/pg_to_my_types.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "engines/mysql/my_conn.h"
#include "engines/postgres/pg_types.h"

namespace midflight::cross {
namespace {

using mysql::QuoteIdent;

// InnoDB's index key limit (DYNAMIC rows) and MySQL's row size limit, in bytes.
constexpr int kKeyBytes = 3072;
constexpr int kRowBytes = 65535;
// DECIMAL's limits on both servers (MariaDB allows scale 38, MySQL 30).
constexpr int kMaxPrecision = 65;
constexpr int kMaxScale = 30;

// The first two numbers inside the parentheses of "numeric(12,2)"; -1 absent.
std::pair<int, int> ParenInts(const std::string& native) {
  size_t open = native.find('(');
  if (open == std::string::npos) return {-1, -1};
  int a = -1, b = -1;
  if (std::sscanf(native.c_str() + open, "(%d,%d)", &a, &b) < 1) return {-1, -1};
  return {a, b};
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string QuoteMyString(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'' || c == '\\') out += c;
    out += c;
  }
  return out + "'";
}

int Utf8Length(std::string_view s) {
  int n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

// The year of "YYYY-MM-DD..." (several digits possible), or -1.
int64_t YearOf(std::string_view s) {
  int64_t y = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), y);
  if (ec != std::errc() || p == s.data() || p == s.data() + s.size() || *p != '-') return -1;
  return y;
}

void AppendJsonString(std::string_view s, std::string* out) {
  *out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      default:
        if (c < 0x20)
          *out += fmt::format("\\u{:04x}", c);
        else
          *out += static_cast<char>(c);
    }
  }
  *out += '"';
}

// One element of a PostgreSQL array, as JSON: numbers and booleans as such,
// everything else as a string of its text form.
Status ElementToJson(const ColumnType& type, std::string_view text, std::string* out) {
  ASSIGN_OR_RETURN(Value v, pg::PgTextToValue(type, text));
  if (auto* b = std::get_if<bool>(&v.v)) {
    *out += *b ? "true" : "false";
  } else if (std::holds_alternative<int64_t>(v.v) || std::holds_alternative<uint64_t>(v.v)) {
    *out += text;
  } else if (auto* d = std::get_if<Decimal>(&v.v);
             d && d->digits != "NaN" && d->digits.find("Inf") == std::string::npos) {
    *out += d->digits;
  } else if (auto* f = std::get_if<double>(&v.v); f && std::isfinite(*f)) {
    *out += fmt::format("{}", *f);
  } else if (auto* j = std::get_if<Json>(&v.v)) {
    *out += j->text;
  } else {
    AppendJsonString(text, out);
  }
  return Status::Ok();
}

// A PostgreSQL array literal ({1,2}, {{"a b",NULL},{c,d}}) -> a JSON array,
// nested for several dimensions. Explicit bounds ([0:1]={...}) are refused:
// JSON arrays start at 0 and PostgreSQL's at 1 unless said otherwise.
Status ArrayToJson(const ColumnType& element, std::string_view s, size_t* i, std::string* out) {
  if (*i >= s.size() || s[*i] != '{') return InvalidArgument("not an array literal");
  ++*i;
  *out += '[';
  bool first = true;
  if (*i < s.size() && s[*i] == '}') {
    ++*i;
    *out += ']';
    return Status::Ok();
  }
  while (*i < s.size()) {
    if (!first) *out += ',';
    first = false;
    if (s[*i] == '{') {
      RETURN_IF_ERROR(ArrayToJson(element, s, i, out));
    } else {
      std::string item;
      bool quoted = false;
      if (s[*i] == '"') {
        quoted = true;
        ++*i;
        while (*i < s.size() && s[*i] != '"') {
          if (s[*i] == '\\' && *i + 1 < s.size()) ++*i;
          item += s[(*i)++];
        }
        if (*i >= s.size()) return InvalidArgument("unterminated quoted array element");
        ++*i;
      } else {
        while (*i < s.size() && s[*i] != ',' && s[*i] != '}') item += s[(*i)++];
      }
      if (!quoted && item == "NULL")
        *out += "null";
      else
        RETURN_IF_ERROR(ElementToJson(element, item, out));
    }
    if (*i >= s.size()) return InvalidArgument("unterminated array");
    if (s[*i] == '}') {
      ++*i;
      *out += ']';
      return Status::Ok();
    }
    if (s[*i] != ',') return InvalidArgument("malformed array");
    ++*i;
  }
  return InvalidArgument("unterminated array");
}

std::string DecimalType(int p, int s) {
  return fmt::format("DECIMAL({},{})", p, s);
}

// The MySQL column type for the twin table's TableSchema (what the
// applier's literals and LOAD DATA go by: engines/mysql/catalog.h LiteralKindOf).
ColumnType MyColumnType(const std::string& my_type) {
  ColumnType t;
  t.native = my_type;
  const std::string lower = Lower(my_type);
  t.native_base = lower.substr(0, lower.find_first_of(" ("));
  const std::string& b = t.native_base;
  if (b == "tinyint" || b == "smallint" || b == "mediumint" || b == "int" || b == "integer" || b == "bigint") {
    t.kind = TypeKind::kInt;
  } else if (b == "decimal" || b == "numeric") {
    t.kind = TypeKind::kDecimal;
  } else if (b == "float" || b == "double" || b == "real") {
    t.kind = TypeKind::kFloat;
  } else if (b == "date") {
    t.kind = TypeKind::kDate;
  } else if (b == "datetime" || b == "timestamp") {
    t.kind = TypeKind::kTimestamp;
  } else if (b == "time") {
    t.kind = TypeKind::kTime;
  } else if (b == "bit") {
    t.kind = TypeKind::kOther;  // written as its number
  } else if (b.find("blob") != std::string::npos || b == "binary" || b == "varbinary") {
    t.kind = TypeKind::kBytes;
  } else if (b == "json") {
    t.kind = TypeKind::kJson;
    t.charset = "utf8mb4";
  } else {
    t.kind = TypeKind::kText;  // text, varchar, char, enum, uuid and the rest take text
    t.charset = lower.find("character set ascii") != std::string::npos ? "ascii" : "utf8mb4";
  }
  return t;
}

bool IsTextType(const std::string& base) {
  return base == "text" || base == "character varying" || base == "character" || base == "bpchar" || base == "name" ||
         base == "citext";
}

}  // namespace

std::string UnescapeCopyField(std::string_view f) {
  std::string out;
  out.reserve(f.size());
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] != '\\' || i + 1 >= f.size()) {
      out += f[i];
      continue;
    }
    char c = f[++i];
    switch (c) {
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': {
        int v = 0, n = 0;
        while (n < 2 && i + 1 < f.size() && std::isxdigit(static_cast<unsigned char>(f[i + 1]))) {
          char h = f[++i];
          v = v * 16 + (h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
          ++n;
        }
        out += static_cast<char>(v);
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          int v = c - '0', n = 1;
          while (n < 3 && i + 1 < f.size() && f[i + 1] >= '0' && f[i + 1] <= '7') {
            v = v * 8 + (f[++i] - '0');
            ++n;
          }
          out += static_cast<char>(v);
        } else {
          out += c;  // \\ and any other escaped character
        }
    }
  }
  return out;
}

Result<PgTableCast> CastPgTable(const TableSchema& table, const PgTableFacts& facts, const PgCastOptions& options) {
  PgTableCast out;
  out.source = std::make_shared<TableSchema>(table);
  auto target = std::make_shared<TableSchema>();
  target->id = {options.target_db, table.id.name};
  target->key_kind = table.key_kind;
  target->has_secondary_unique = table.has_secondary_unique;
  target->estimated_rows = table.estimated_rows;
  target->estimated_bytes = table.estimated_bytes;
  const std::string bin = options.mariadb ? "utf8mb4_nopad_bin" : "utf8mb4_0900_bin";
  const std::string text_collation = options.collation.empty() ? bin : options.collation;
  const bool ci_collation = Lower(text_collation).ends_with("_ci");

  // The key's text columns share what InnoDB's key limit leaves after its other columns.
  int key_fixed_bytes = 0, key_text_columns = 0;
  for (int k : table.key) {
    const ColumnType& t = table.columns[k].type;
    if (t.kind == TypeKind::kText || t.kind == TypeKind::kBytes)
      ++key_text_columns;
    else
      key_fixed_bytes += 16;  // generous: DECIMAL(65) takes 30, most take 8 or less
  }
  const int key_text_chars = key_text_columns ? (kKeyBytes - key_fixed_bytes) / key_text_columns / 4 : 0;

  for (int i = 0; i < static_cast<int>(table.columns.size()); ++i) {
    const ColumnSchema& c = table.columns[i];
    if (c.generated) {
      out.table_notes.push_back(
          fmt::format("generated column {} is left out: PostgreSQL 15's stream does not carry "
                      "its values; add it on the target with a MySQL expression",
                      c.name));
      continue;
    }
    PgColumnCast cc;
    cc.name = c.name;
    cc.not_null = c.not_null;
    cc.key = std::find(table.key.begin(), table.key.end(), i) != table.key.end();
    const bool unique = cc.key || facts.unique_columns.count(c.name);
    ColumnType t = c.type;
    if (auto d = facts.domains.find(c.name); d != facts.domains.end()) {
      t = d->second.second;
      cc.notes.push_back(fmt::format("domain {} as its base type {}: its CHECK constraints are not carried",
                                     d->second.first, t.native));
    }
    cc.source_type = t;
    const std::string base = t.native_base.empty() ? t.native : t.native_base;
    const std::string where = fmt::format("table {} column {} ({})", table.id.ToString(), c.name, c.type.native);
    const std::string text_suffix = fmt::format(" CHARACTER SET utf8mb4 COLLATE {}", unique ? bin : text_collation);
    auto note_ci = [&] {
      if (!unique && ci_collation)
        cc.notes.push_back(
            fmt::format("collation {} is case-insensitive, PostgreSQL text is not: 'a' = 'A' in "
                        "MySQL, and queries comparing it change results",
                        text_collation));
    };
    auto [p1, p2] = ParenInts(t.native);
    if (t.kind == TypeKind::kInt) {
      cc.conv = PgConv::kInt;
      cc.my_type = t.width == 2 ? "SMALLINT" : t.width == 4 ? (t.is_signed ? "INT" : "INT UNSIGNED") : "BIGINT";
    } else if (t.kind == TypeKind::kBool) {
      cc.conv = PgConv::kBool;
      cc.my_type = "TINYINT(1)";
      cc.notes.push_back("boolean as TINYINT(1) (MySQL's BOOLEAN): 0 and 1; the column also accepts -128..127");
    } else if (t.kind == TypeKind::kDecimal) {
      cc.conv = PgConv::kDecimal;
      if (t.precision > 0) {
        cc.precision = t.precision;
        cc.scale = std::max(t.scale, 0);
        if (cc.precision > kMaxPrecision || cc.scale > kMaxScale || t.scale < 0)
          cc.my_type = "";  // refused below unless overridden
        else
          cc.my_type = DecimalType(cc.precision, cc.scale);
      } else if (options.numeric_decimal) {
        cc.precision = kMaxPrecision;
        cc.scale = kMaxScale;
        cc.my_type = DecimalType(kMaxPrecision, kMaxScale);
        cc.notes.push_back(
            "numeric without precision as DECIMAL(65,30): values with more than 35 integer or 30 "
            "fractional digits are refused by row, never rounded");
      } else {
        cc.my_type = "";
      }
      if (!cc.my_type.empty())
        cc.notes.push_back("NaN and Infinity have no DECIMAL value: refused by row (out_of_range: null stores NULL)");
    } else if (t.kind == TypeKind::kFloat) {
      cc.conv = PgConv::kFloat;
      cc.my_type = t.width == 4 ? "FLOAT" : "DOUBLE";
      cc.notes.push_back("NaN and Infinity have no MySQL value: refused by row (out_of_range: null stores NULL)");
    } else if (t.kind == TypeKind::kDate) {
      cc.conv = PgConv::kDate;
      cc.my_type = "DATE";
    } else if (t.kind == TypeKind::kTimestamp) {
      const int p = t.precision >= 0 ? t.precision : 6;
      cc.my_type = fmt::format("DATETIME({})", p);
      if (t.with_zone) {
        cc.conv = PgConv::kDateTimeUtc;
        cc.notes.push_back(
            "timestamptz as DATETIME in UTC: the instant is kept, the zone is not (MySQL's TIMESTAMP "
            "ends in 2038)");
      } else {
        cc.conv = PgConv::kDateTime;
      }
    } else if (t.kind == TypeKind::kTime && !t.with_zone) {
      cc.conv = PgConv::kTime;
      cc.my_type = fmt::format("TIME({})", t.precision >= 0 ? t.precision : 6);
    } else if (t.kind == TypeKind::kText && IsTextType(base)) {
      cc.conv = PgConv::kText;
      const bool bounded = (base == "character varying" || base == "character") && p1 > 0;
      if (cc.key && (!bounded || p1 > key_text_chars)) {
        cc.max_chars = key_text_chars;
        cc.my_type = fmt::format("VARCHAR({}){}", key_text_chars, text_suffix);
        cc.notes.push_back(
            fmt::format("key column as VARCHAR({}) (InnoDB's {}-byte key limit): longer values are "
                        "refused by row",
                        key_text_chars, kKeyBytes));
      } else if (base == "character" && p1 > 0 && p1 <= 255) {
        cc.my_type = fmt::format("CHAR({}){}", p1, text_suffix);
        cc.notes.push_back("char(n): MySQL returns it without the trailing spaces PostgreSQL pads it with");
      } else if (bounded && p1 <= 16383) {
        cc.my_type = fmt::format("VARCHAR({}){}", p1, text_suffix);
        if (base == "character") cc.notes.push_back("char(n) over 255 as VARCHAR(n): the padding is stored");
      } else {
        cc.my_type = "LONGTEXT" + text_suffix;
      }
      note_ci();
    } else if (t.kind == TypeKind::kBytes) {
      cc.conv = PgConv::kBytes;
      if (cc.key) {
        cc.max_chars = key_text_chars * 4;
        cc.my_type = fmt::format("VARBINARY({})", cc.max_chars);
        cc.notes.push_back(fmt::format("bytea key as VARBINARY({}): longer values are refused by row", cc.max_chars));
      } else {
        cc.my_type = "LONGBLOB";
      }
    } else if (t.kind == TypeKind::kUuid) {
      cc.conv = PgConv::kText;
      cc.my_type = "CHAR(36) CHARACTER SET ascii COLLATE ascii_bin";
    } else if (t.kind == TypeKind::kJson) {
      cc.conv = PgConv::kJson;
      cc.my_type = "JSON";
      if (t.binary_json)
        cc.notes.push_back(
            "jsonb as JSON: stored as jsonb prints it (keys reordered, duplicate keys already "
            "dropped); MySQL compares the documents' text");
    } else if (t.kind == TypeKind::kArray && t.element) {
      cc.conv = PgConv::kArray;
      cc.my_type = "JSON";
      cc.notes.push_back(
          fmt::format("{} as a JSON array (nested for several dimensions): no array operators, "
                      "elements that are not numbers or booleans become strings",
                      t.native));
    } else if (t.kind == TypeKind::kEnum || facts.enum_labels.count(c.name)) {
      cc.conv = PgConv::kEnum;
      auto it = facts.enum_labels.find(c.name);
      if (it != facts.enum_labels.end()) cc.labels = it->second;
      std::vector<std::string> quoted;
      for (const auto& l : cc.labels) quoted.push_back(QuoteMyString(l));
      cc.my_type = fmt::format("ENUM({}){}", fmt::join(quoted, ","), text_suffix);
      if (cc.labels.empty()) cc.my_type = "";
    } else if (base == "bit" && p1 > 0 && p1 <= 64) {
      cc.conv = PgConv::kBit;
      cc.bits = p1;
      cc.my_type = fmt::format("BIT({})", p1);
    } else if (base == "bit" || base == "bit varying") {
      cc.conv = PgConv::kAsText;
      cc.my_type = p1 > 0 && p1 <= 16383 ? fmt::format("VARCHAR({}) CHARACTER SET ascii COLLATE ascii_bin", p1)
                                         : "LONGTEXT CHARACTER SET ascii COLLATE ascii_bin";
      cc.notes.push_back(
          fmt::format("{} as text of 0s and 1s: no bit operators (MySQL's BIT holds 64 bits, "
                      "fixed length)",
                      t.native));
    } else if (base == "inet" || base == "cidr") {
      cc.conv = PgConv::kAsText;
      cc.my_type = "VARCHAR(43) CHARACTER SET ascii COLLATE ascii_bin";
      cc.notes.push_back(
          fmt::format("{} as text: no network operators, sorts as text (MariaDB's INET6 holds no "
                      "prefix length)",
                      base));
    } else if (t.kind == TypeKind::kInterval) {
      cc.conv = PgConv::kAsText;
      cc.my_type = "VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin";
      cc.notes.push_back(
          "interval as its PostgreSQL text ('1 year 2 mons 3 days 04:05:06'): MySQL has no interval "
          "type and TIME holds neither months nor days past 34");
    } else {
      cc.conv = PgConv::kAsText;
      cc.my_type = "";
    }
    if (c.name == facts.identity && cc.conv == PgConv::kInt) {
      if (cc.key && table.key.size() == 1) {
        cc.auto_increment = true;
      } else {
        cc.notes.push_back(
            "identity/serial column that is not the whole primary key: MySQL allows AUTO_INCREMENT "
            "only on an indexed column, none is created");
      }
    }
    if (cc.conv == PgConv::kDate || cc.conv == PgConv::kDateTime || cc.conv == PgConv::kDateTimeUtc)
      cc.notes.push_back(options.out_of_range_null
                             ? "years outside 1000..9999, BC and infinity become NULL"
                             : "years outside 1000..9999, BC and infinity are refused by row (out_of_range: null "
                               "stores NULL)");
    if (options.out_of_range_null && !cc.key &&
        (cc.conv == PgConv::kDate || cc.conv == PgConv::kDateTime || cc.conv == PgConv::kDateTimeUtc ||
         cc.conv == PgConv::kDecimal || cc.conv == PgConv::kFloat) &&
        cc.not_null) {
      cc.not_null = false;
      cc.notes.push_back("NOT NULL dropped (out_of_range: null)");
    }
    // The spec's override, by "table.column" or "schema.table.column".
    auto ov = options.column_types.find(table.id.ToString() + "." + c.name);
    if (ov == options.column_types.end()) ov = options.column_types.find(table.id.name + "." + c.name);
    if (ov != options.column_types.end()) {
      const std::string default_type = cc.my_type.empty() ? "none" : cc.my_type;
      cc.overridden = true;
      cc.my_type = ov->second;
      const ColumnType mt = MyColumnType(ov->second);
      if (cc.conv == PgConv::kDecimal) {
        auto [p, s] = ParenInts(mt.native);
        if (mt.kind != TypeKind::kDecimal || p <= 0)
          cc.conv = PgConv::kAsText;
        else
          cc.precision = p, cc.scale = std::max(s, 0);
      }
      if (cc.conv == PgConv::kEnum && mt.native_base != "enum") cc.conv = PgConv::kAsText;
      if (cc.conv == PgConv::kBit && mt.native_base != "bit") cc.conv = PgConv::kAsText;
      cc.notes.push_back(fmt::format("type set by the spec (default cast: {})", default_type));
    }
    if (cc.my_type.empty())
      return InvalidArgument(fmt::format(
          "{}: no cast to MySQL{}; set one in casting.columns (\"{}.{}\": <MySQL "
          "type>, the value is carried as PostgreSQL's text form){}",
          where,
          cc.conv == PgConv::kDecimal
              ? fmt::format(" (DECIMAL holds at most {} digits, {} after the point)", kMaxPrecision, kMaxScale)
              : "",
          table.id.name, c.name,
          cc.conv == PgConv::kDecimal && t.precision <= 0 ? ", or set casting.numeric: decimal for DECIMAL(65,30)"
                                                          : ""));
    ColumnSchema mc;
    mc.name = c.name;
    mc.not_null = cc.not_null;
    mc.type = MyColumnType(cc.my_type);
    target->columns.push_back(std::move(mc));
    out.source_index.push_back(i);
    out.columns.push_back(std::move(cc));
  }
  // MySQL's row size limit counts every VARCHAR at its largest: the widest
  // non-key ones become LONGTEXT (stored off the row) until the row fits.
  for (;;) {
    int bytes = 0, widest = -1, widest_chars = 0;
    for (int i = 0; i < static_cast<int>(out.columns.size()); ++i) {
      const auto& cc = out.columns[i];
      int n = 0;
      if (std::sscanf(cc.my_type.c_str(), "VARCHAR(%d)", &n) != 1) {
        bytes += 16;
        continue;
      }
      bytes += n * (cc.my_type.find("ascii") != std::string::npos ? 1 : 4) + 2;
      if (!cc.key && !cc.overridden && n > widest_chars) widest = i, widest_chars = n;
    }
    if (bytes <= kRowBytes - 1000 || widest < 0) break;
    auto& cc = out.columns[widest];
    cc.my_type = "LONGTEXT" + cc.my_type.substr(cc.my_type.find(' '));
    cc.notes.push_back(
        fmt::format("as LONGTEXT: the VARCHARs would exceed MySQL's {}-byte row limit; lengths past "
                    "{} characters are no longer refused",
                    kRowBytes, widest_chars));
    target->columns[widest].type = MyColumnType(cc.my_type);
  }
  for (int k : table.key) {
    auto it = std::find(out.source_index.begin(), out.source_index.end(), k);
    if (it == out.source_index.end())
      return InvalidArgument(fmt::format("table {}: key column {} is generated, and generated columns are not carried",
                                         table.id.ToString(), table.columns[k].name));
    target->key.push_back(static_cast<int>(it - out.source_index.begin()));
  }
  target->Finalize();
  out.target = std::move(target);
  return out;
}

std::string CreateMyTableSql(const PgTableCast& cast) {
  const TableSchema& t = *cast.target;
  std::string sql;
  for (const auto& n : cast.table_notes) sql += fmt::format("-- LOSSY/SEMANTIC: {}\n", n);
  sql += fmt::format("CREATE TABLE IF NOT EXISTS {} (\n", mysql::QuoteQualified(t.id.schema, t.id.name));
  std::vector<std::string> lines;
  for (const auto& c : cast.columns) {
    std::string line = fmt::format("  {} {}", QuoteIdent(c.name), c.my_type);
    if (c.not_null) line += " NOT NULL";
    if (c.auto_increment) line += " AUTO_INCREMENT";
    lines.push_back(std::move(line));
  }
  if (t.key_kind == KeyKind::kPrimaryKey || t.key_kind == KeyKind::kUniqueIndex) {
    std::vector<std::string> key;
    for (int k : t.key) key.push_back(QuoteIdent(t.columns[k].name));
    lines.push_back(fmt::format("  {} ({})", t.key_kind == KeyKind::kPrimaryKey ? "PRIMARY KEY" : "UNIQUE KEY",
                                fmt::join(key, ", ")));
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    sql += lines[i];
    if (i + 1 < lines.size()) sql += ",";
    if (i < cast.columns.size() && !cast.columns[i].notes.empty())
      sql += fmt::format("  -- LOSSY/SEMANTIC: {}", fmt::join(cast.columns[i].notes, "; "));
    sql += "\n";
  }
  return sql + ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n";
}

Result<std::optional<std::string>> ToMyText(const PgColumnCast& c, std::string_view v, bool out_of_range_null) {
  using Out = std::optional<std::string>;
  auto bad = [&](std::string_view problem) -> Status {
    return InvalidArgument(fmt::format("column {}: {}", c.name, problem));
  };
  // A value MySQL cannot hold: NULL when the spec says so, else the row stops.
  auto unholdable = [&](std::string_view problem) -> Result<Out> {
    if (out_of_range_null) return Out();
    return bad(fmt::format("{}; MySQL cannot hold it (casting.out_of_range: null stores NULL)", problem));
  };
  switch (c.conv) {
    case PgConv::kInt:
    case PgConv::kAsText: return Out(std::string(v));
    case PgConv::kBool:
      if (v == "t" || v == "true") return Out("1");
      if (v == "f" || v == "false") return Out("0");
      return bad(fmt::format("'{}' is not a boolean", v));
    case PgConv::kDecimal: {
      if (v == "NaN" || v == "Infinity" || v == "-Infinity") return unholdable(fmt::format("numeric {}", v));
      std::string_view digits = v;
      if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) digits.remove_prefix(1);
      size_t dot = digits.find('.');
      std::string_view ip = digits.substr(0, dot);
      std::string_view fp = dot == std::string_view::npos ? std::string_view() : digits.substr(dot + 1);
      while (!fp.empty() && fp.back() == '0') fp.remove_suffix(1);  // trailing zeros: the same value
      while (ip.size() > 1 && ip.front() == '0') ip.remove_prefix(1);
      bool ok = !ip.empty();
      for (char ch : ip) ok = ok && ch >= '0' && ch <= '9';
      for (char ch : fp) ok = ok && ch >= '0' && ch <= '9';
      if (!ok) return bad(fmt::format("'{}' is not a decimal number", v.substr(0, 80)));
      const int int_digits = ip == "0" ? 0 : static_cast<int>(ip.size());
      if (int_digits > c.precision - c.scale || static_cast<int>(fp.size()) > c.scale)
        return unholdable(
            fmt::format("numeric {} has more digits than DECIMAL({},{})", v.substr(0, 80), c.precision, c.scale));
      return Out(std::string(v));
    }
    case PgConv::kFloat: {
      ASSIGN_OR_RETURN(Value value, pg::PgTextToValue(c.source_type, v));
      const double d = std::get<double>(value.v);
      if (!std::isfinite(d)) return unholdable(fmt::format("float {}", v));
      // The float's exact value, printed as the shortest double that reads back
      // to it: MySQL parses a double, and rounding that to FLOAT is then exact.
      return Out(fmt::format("{}", d));
    }
    case PgConv::kDate:
    case PgConv::kDateTime:
    case PgConv::kDateTimeUtc: {
      ColumnType t = c.source_type;
      auto value = pg::PgTextToValue(t, v);
      if (!value.ok() || std::holds_alternative<OtherText>(value->v))
        return unholdable(fmt::format("'{}' is infinity or before the common era", v));
      std::string text;
      if (std::holds_alternative<Date>(value->v)) {
        ASSIGN_OR_RETURN(text, pg::ValueToPgText(t, *value));
      } else {
        Timestamp ts = std::get<Timestamp>(value->v);
        ts.with_zone = false;  // the instant in UTC, without the "+00"
        ASSIGN_OR_RETURN(text, pg::ValueToPgText(t, Value{ts}));
      }
      const int64_t year = YearOf(text);
      if (year < 1000 || year > 9999) return unholdable(fmt::format("'{}' is outside MySQL's years 1000..9999", v));
      return Out(std::move(text));
    }
    case PgConv::kTime: return Out(std::string(v));
    case PgConv::kText:
      if (c.max_chars > 0 && Utf8Length(v) > c.max_chars)
        return unholdable(
            fmt::format("text of {} characters is longer than the key column's {}", Utf8Length(v), c.max_chars));
      return Out(std::string(v));
    case PgConv::kJson: return Out(std::string(v));
    case PgConv::kBytes: {
      ASSIGN_OR_RETURN(Value value, pg::PgTextToValue(c.source_type, v));
      const auto& b = std::get<Bytes>(value.v).data;
      if (c.max_chars > 0 && static_cast<int>(b.size()) > c.max_chars)
        return unholdable(fmt::format("bytea of {} bytes is longer than the key column's {}", b.size(), c.max_chars));
      return Out(std::string(b.begin(), b.end()));
    }
    case PgConv::kArray: {
      std::string json;
      size_t i = 0;
      if (!v.empty() && v[0] == '[')
        return bad(fmt::format("array '{}' has explicit bounds, which a JSON array cannot keep", v.substr(0, 80)));
      Status st = ArrayToJson(*c.source_type.element, v, &i, &json);
      if (!st.ok() || i != v.size())
        return bad(fmt::format("array '{}': {}", v.substr(0, 80), st.ok() ? "trailing text" : st.message()));
      return Out(std::move(json));
    }
    case PgConv::kEnum:
      if (std::find(c.labels.begin(), c.labels.end(), v) == c.labels.end())
        return bad(
            fmt::format("'{}' is not a member of the ENUM (a label added on the source after the schema was "
                        "created? add it to the target's ENUM)",
                        v.substr(0, 80)));
      return Out(std::string(v));
    case PgConv::kBit: {
      if (v.empty() || static_cast<int>(v.size()) > c.bits) return bad(fmt::format("bit string '{}'", v));
      uint64_t n = 0;
      for (char ch : v) {
        if (ch != '0' && ch != '1') return bad(fmt::format("'{}' is not a bit string", v.substr(0, 80)));
        n = n << 1 | static_cast<uint64_t>(ch == '1');
      }
      return Out(std::to_string(n));
    }
  }
  return bad("no conversion");
}

}  // namespace midflight::cross
