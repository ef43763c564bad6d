#include "engines/mysql/catalog.h"

#include <fmt/format.h>

#include <map>

#include "base/parse.h"
#include "engines/mysql/my_conn.h"

namespace midflight::mysql {

namespace {

// Whether a collation compares some different byte strings as equal: every
// collation but `binary` and the *_bin ones (MariaDB's *_nopad_bin too).
bool CollationFolds(const std::string& collation) {
  if (collation.empty() || collation == "binary") return false;
  return !(collation.size() >= 4 && collation.compare(collation.size() - 4, 4, "_bin") == 0);
}

ColumnType TypeOf(const std::string& data_type, const std::string& column_type, const std::string& charset,
                  int64_t precision, int64_t scale, int64_t datetime_precision) {
  ColumnType t;
  t.native = column_type;
  t.native_base = data_type;
  t.is_signed = column_type.find("unsigned") == std::string::npos;
  t.charset = charset;
  static const std::map<std::string, int> kIntWidth = {
      {"tinyint", 1}, {"smallint", 2}, {"mediumint", 3}, {"int", 4}, {"bigint", 8}};
  if (auto it = kIntWidth.find(data_type); it != kIntWidth.end()) {
    t.kind = TypeKind::kInt;
    t.width = it->second;
  } else if (data_type == "decimal") {
    t.kind = TypeKind::kDecimal;
    t.precision = static_cast<int>(precision);
    t.scale = static_cast<int>(scale);
  } else if (data_type == "float" || data_type == "double") {
    t.kind = TypeKind::kFloat;
    t.width = data_type == "float" ? 4 : 8;
  } else if (data_type == "date") {
    t.kind = TypeKind::kDate;
  } else if (data_type == "time") {
    t.kind = TypeKind::kTime;
    t.precision = static_cast<int>(datetime_precision);
  } else if (data_type == "datetime" || data_type == "timestamp") {
    t.kind = TypeKind::kTimestamp;
    t.precision = static_cast<int>(datetime_precision);
    t.with_zone = data_type == "timestamp";
  } else if (data_type == "enum") {
    t.kind = TypeKind::kEnum;
  } else if (data_type == "json") {
    t.kind = TypeKind::kJson;
  } else if (!charset.empty() && (data_type.find("char") != std::string::npos || data_type.find("text") != std::string::npos)) {
    t.kind = TypeKind::kText;
  } else if (data_type.find("binary") != std::string::npos || data_type.find("blob") != std::string::npos) {
    t.kind = TypeKind::kBytes;
  } else {
    t.kind = TypeKind::kOther;  // year, bit, set, geometry types
  }
  return t;
}

}  // namespace

LiteralKind LiteralKindOf(const ColumnSchema& column) {
  const ColumnType& t = column.type;
  switch (t.kind) {
    case TypeKind::kInt:
    case TypeKind::kDecimal:
    case TypeKind::kFloat:
    case TypeKind::kEnum:  // the binlog gives the member's index
      return LiteralKind::kNumber;
    case TypeKind::kDate:
    case TypeKind::kTime:
    case TypeKind::kTimestamp:
      return LiteralKind::kQuoted;
    case TypeKind::kText:
    case TypeKind::kJson:
      return t.charset.empty() ? LiteralKind::kBinary : LiteralKind::kText;
    default:
      break;
  }
  if (t.native_base == "year" || t.native_base == "bit" || t.native_base == "set") return LiteralKind::kNumber;
  return LiteralKind::kBinary;
}

uint8_t FixedBinarySize(const ColumnSchema& column) {
  const std::string& base = column.type.native_base;
  if (base == "uuid" || base == "inet6") return 16;
  if (base == "inet4") return 4;
  if (base != "binary") return 0;
  const std::string& native = column.type.native;  // "binary(16)"
  const size_t open = native.find('('), close = native.find(')');
  uint64_t n = 0;
  if (open == std::string::npos || close == std::string::npos || close < open ||
      !ParseU64(std::string_view(native).substr(open + 1, close - open - 1), &n) || n > 255)
    return 0;
  return static_cast<uint8_t>(n);
}

std::string BinlogFormSelect(const ColumnSchema& column) {
  const std::string q = QuoteIdent(column.name);
  const std::string& base = column.type.native_base;
  if (base == "bit") return fmt::format("CAST({} AS UNSIGNED)", q);
  if (base == "enum" || base == "set") return fmt::format("({} + 0)", q);  // the index / bitmask, as the binlog has it
  if (base == "float") return fmt::format("CAST({} AS DOUBLE)", q);
  // MariaDB's UUID, INET6 and INET4: the binlog carries their stored bytes.
  if (base == "uuid" || base == "inet6") return fmt::format("CAST({} AS BINARY(16))", q);
  if (base == "inet4") return fmt::format("CAST({} AS BINARY(4))", q);
  return q;
}

Result<std::vector<TableId>> ListTables(MyConn& conn, const std::string& database) {
  ASSIGN_OR_RETURN(MyResult r, conn.Query(fmt::format(
      "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE = 'BASE TABLE' "
      "ORDER BY TABLE_NAME",
      QuoteString(database))));
  std::vector<TableId> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back({database, r.Get(i, 0)});
  return out;
}

Result<std::vector<std::shared_ptr<const TableSchema>>> LoadTables(MyConn& conn, const std::string& database,
                                                                   const std::vector<std::string>& include,
                                                                   const std::vector<std::string>& exclude) {
  const std::string db = QuoteString(database);
  ASSIGN_OR_RETURN(MyResult tables, conn.Query(fmt::format(
      "SELECT TABLE_NAME, COALESCE(TABLE_ROWS, 0), COALESCE(DATA_LENGTH, 0), COALESCE(ENGINE, '') "
      "FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
      db)));
  std::map<std::string, std::shared_ptr<TableSchema>> by_name;
  std::vector<std::shared_ptr<TableSchema>> ordered;
  for (int r = 0; r < tables.rows(); ++r) {
    TableId id{database, tables.Get(r, 0)};
    if (!TableSelected(include, exclude, id)) continue;
    auto t = std::make_shared<TableSchema>();
    t->id = id;
    t->estimated_rows = tables.GetInt(r, 1);
    t->estimated_bytes = tables.GetInt(r, 2);
    t->images_carry_generated = true;
    by_name[id.name] = t;
    ordered.push_back(t);
  }
  std::map<std::string, std::vector<std::string>> collations;  // table -> each column's collation ("" = none)
  ASSIGN_OR_RETURN(MyResult cols, conn.Query(fmt::format(
      "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COALESCE(CHARACTER_SET_NAME, ''), "
      "COALESCE(NUMERIC_PRECISION, -1), COALESCE(NUMERIC_SCALE, -1), COALESCE(DATETIME_PRECISION, -1), "
      "IS_GENERATED, EXTRA, COALESCE(COLLATION_NAME, '') FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} "
      "ORDER BY TABLE_NAME, ORDINAL_POSITION",
      db)));
  for (int r = 0; r < cols.rows(); ++r) {
    auto it = by_name.find(cols.Get(r, 0));
    if (it == by_name.end()) continue;
    ColumnSchema c;
    c.name = cols.Get(r, 1);
    c.type = TypeOf(cols.Get(r, 2), cols.Get(r, 3), cols.Get(r, 5), cols.GetInt(r, 6), cols.GetInt(r, 7),
                    cols.GetInt(r, 8));
    c.not_null = cols.Get(r, 4) == "NO";
    c.generated = cols.Get(r, 9) == "ALWAYS" || cols.Get(r, 10).find("GENERATED") != std::string::npos;
    it->second->columns.push_back(std::move(c));
    collations[cols.Get(r, 0)].push_back(cols.Get(r, 11));
  }
  // Indexes: the primary key, else the first unique index of NOT NULL columns.
  ASSIGN_OR_RETURN(MyResult idx, conn.Query(fmt::format(
      "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART IS NOT NULL FROM information_schema.STATISTICS "
      "WHERE TABLE_SCHEMA = {} ORDER BY TABLE_NAME, INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
      db)));
  struct Index {
    std::vector<int> columns;
    bool usable = true;  // every column NOT NULL, no prefix part
  };
  std::map<std::string, std::vector<std::pair<std::string, Index>>> uniques;  // table -> ordered (name, index)
  for (int r = 0; r < idx.rows(); ++r) {
    auto it = by_name.find(idx.Get(r, 0));
    if (it == by_name.end() || idx.GetInt(r, 2) != 0) continue;
    auto& list = uniques[idx.Get(r, 0)];
    if (list.empty() || list.back().first != idx.Get(r, 1)) list.push_back({idx.Get(r, 1), {}});
    int col = it->second->ColumnIndex(idx.Get(r, 3));
    Index& ix = list.back().second;
    ix.columns.push_back(col);
    if (col < 0 || !it->second->columns[col].not_null || idx.GetInt(r, 4) != 0) ix.usable = false;
  }
  for (auto& [name, t] : by_name) {
    auto it = uniques.find(name);
    if (it == uniques.end()) continue;
    const Index* key = nullptr;
    for (const auto& [iname, ix] : it->second) {
      if (iname == "PRIMARY") {
        key = &ix;
        t->key_kind = KeyKind::kPrimaryKey;
        break;
      }
    }
    if (!key)
      for (const auto& [iname, ix] : it->second)
        if (ix.usable) {
          key = &ix;
          t->key_kind = KeyKind::kUniqueIndex;
          break;
        }
    if (key) t->key = key->columns;
    t->has_secondary_unique = it->second.size() > (key ? 1u : 0u);
    // A key column under a collation that folds case or accents (anything but
    // binary and *_bin) can spell one row's key in several byte strings.
    const std::vector<std::string>& coll = collations[name];
    for (int c : t->key)
      if (c >= 0 && static_cast<size_t>(c) < coll.size() && CollationFolds(coll[c])) t->key_collation_folds = true;
  }
  std::vector<std::shared_ptr<const TableSchema>> out;
  for (auto& t : ordered) {
    t->Finalize();
    out.push_back(t);
  }
  return out;
}

Result<std::set<std::string>> ColumnsWithDefault(MyConn& conn, const std::string& database, const std::string& table) {
  ASSIGN_OR_RETURN(MyResult r, conn.Query(fmt::format(
      "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} AND "
      "(COLUMN_DEFAULT IS NOT NULL OR EXTRA LIKE '%auto_increment%' OR IS_NULLABLE = 'YES')",
      QuoteString(database), QuoteString(table))));
  std::set<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.insert(r.Get(i, 0));
  return out;
}

}  // namespace midflight::mysql
