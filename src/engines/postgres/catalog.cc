#include "engines/postgres/catalog.h"

#include <fmt/format.h>

#include <map>

#include "engines/postgres/pg_conn.h"
#include "engines/postgres/pg_types.h"

namespace midflight::pg {
namespace {

constexpr const char* kTablesSql = R"sql(
SELECT c.oid, n.nspname, c.relname, c.relkind = 'p' AS partitioned, c.relreplident,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(greatest(p.reltuples, 0)), 0)::bigint
                    FROM pg_partition_tree(c.oid) t JOIN pg_class p ON p.oid = t.relid)
            ELSE greatest(c.reltuples, 0)::bigint END AS est_rows,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_table_size(t.relid)), 0)::bigint FROM pg_partition_tree(c.oid) t)
            ELSE pg_table_size(c.oid) END AS est_bytes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'midflight')
   AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY n.nspname, c.relname
)sql";

constexpr const char* kColumnsSql = R"sql(
SELECT a.attrelid, a.attnum, a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod),
       a.attnotnull, a.attgenerated <> '' AS generated, a.attidentity = 'a' AS identity_always,
       t.typtype, coalesce(e.oid, 0), coalesce(format_type(e.oid, NULL), ''), format_type(a.atttypid, NULL)
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
 WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
)sql";

// Key index (primary key, else the replica identity index) and whether any
// other unique index or exclusion constraint exists.
constexpr const char* kIndexesSql = R"sql(
SELECT i.indrelid, i.indisprimary, i.indisreplident, i.indisunique,
       i.indisexclusion, array_to_string(i.indkey, ' ')
  FROM pg_index i
 WHERE i.indrelid = ANY($1::oid[]) AND i.indisvalid
UNION ALL
SELECT c.conrelid, false, false, false, true, ''
  FROM pg_constraint c
 WHERE c.conrelid = ANY($1::oid[]) AND c.contype = 'x'
)sql";

}  // namespace

Result<std::vector<std::shared_ptr<const TableSchema>>> LoadTables(
    PgConn& conn, const std::vector<std::string>& include, const std::vector<std::string>& exclude) {
  ASSIGN_OR_RETURN(PgResult tables, conn.Query(kTablesSql));
  std::map<uint32_t, std::shared_ptr<TableSchema>> by_oid;
  std::vector<std::shared_ptr<TableSchema>> ordered;
  std::string oids = "{";
  for (int r = 0; r < tables.rows(); ++r) {
    TableId id{tables.GetString(r, 1), tables.GetString(r, 2)};
    if (!TableSelected(include, exclude, id)) continue;
    auto t = std::make_shared<TableSchema>();
    t->id = id;
    t->source_oid = static_cast<uint32_t>(tables.GetInt(r, 0));
    t->partitioned = tables.GetBool(r, 3);
    char replident = tables.Get(r, 4).empty() ? 'd' : tables.Get(r, 4)[0];
    t->key_kind = replident == 'f' ? KeyKind::kFullRow : KeyKind::kNone;
    t->estimated_rows = tables.GetInt(r, 5);
    t->estimated_bytes = tables.GetInt(r, 6);
    by_oid[t->source_oid] = t;
    ordered.push_back(t);
    if (oids.size() > 1) oids += ',';
    oids += std::to_string(t->source_oid);
  }
  oids += '}';
  if (ordered.empty()) return std::vector<std::shared_ptr<const TableSchema>>{};

  ASSIGN_OR_RETURN(PgResult cols, conn.Query(kColumnsSql, {oids}));
  std::map<std::pair<uint32_t, int>, int> attnum_to_index;
  for (int r = 0; r < cols.rows(); ++r) {
    auto& t = by_oid.at(static_cast<uint32_t>(cols.GetInt(r, 0)));
    ColumnSchema c;
    c.name = cols.GetString(r, 2);
    char typtype = cols.Get(r, 8).empty() ? 'b' : cols.Get(r, 8)[0];
    c.type = PgColumnType(static_cast<uint32_t>(cols.GetInt(r, 3)), cols.GetString(r, 4), typtype,
                          static_cast<uint32_t>(cols.GetInt(r, 9)), cols.GetString(r, 10));
    c.type.native_base = cols.GetString(r, 11);
    c.not_null = cols.GetBool(r, 5);
    c.generated = cols.GetBool(r, 6);
    c.identity_always = cols.GetBool(r, 7);
    attnum_to_index[{t->source_oid, static_cast<int>(cols.GetInt(r, 1))}] =
        static_cast<int>(t->columns.size());
    t->columns.push_back(std::move(c));
  }

  ASSIGN_OR_RETURN(PgResult idx, conn.Query(kIndexesSql, {oids}));
  struct IndexInfo {
    bool primary, replident, unique, exclusion;
    std::vector<int> attnums;
  };
  std::map<uint32_t, std::vector<IndexInfo>> indexes;
  for (int r = 0; r < idx.rows(); ++r) {
    IndexInfo info{idx.GetBool(r, 1), idx.GetBool(r, 2), idx.GetBool(r, 3), idx.GetBool(r, 4), {}};
    std::string keys = idx.GetString(r, 5);
    size_t pos = 0;
    while (pos < keys.size()) {
      size_t end = keys.find(' ', pos);
      if (end == std::string::npos) end = keys.size();
      info.attnums.push_back(std::stoi(keys.substr(pos, end - pos)));
      pos = end + 1;
    }
    indexes[static_cast<uint32_t>(idx.GetInt(r, 0))].push_back(std::move(info));
  }
  for (auto& t : ordered) {
    const IndexInfo* key_index = nullptr;
    for (const auto& i : indexes[t->source_oid])
      if (i.primary) key_index = &i;
    if (!key_index && t->key_kind != KeyKind::kFullRow) {
      for (const auto& i : indexes[t->source_oid])
        if (i.replident && i.unique) key_index = &i;
    }
    if (key_index) {
      bool expression = false;
      for (int attnum : key_index->attnums) {
        auto it = attnum_to_index.find({t->source_oid, attnum});
        if (it == attnum_to_index.end()) {
          expression = true;
          break;
        }
        t->key.push_back(it->second);
      }
      if (expression) {
        t->key.clear();
      } else {
        t->key_kind = key_index->primary ? KeyKind::kPrimaryKey : KeyKind::kUniqueIndex;
      }
    }
    for (const auto& i : indexes[t->source_oid]) {
      if (&i == key_index) continue;
      if (i.unique || i.exclusion) t->has_secondary_unique = true;
    }
    // A full-row table with a primary key still matches rows by key.
    t->Finalize();
  }
  std::vector<std::shared_ptr<const TableSchema>> out(ordered.begin(), ordered.end());
  return out;
}

Result<std::vector<TableId>> ListUserTables(PgConn& conn) {
  // Names only: the cutover runs this every few seconds, so no size estimates.
  ASSIGN_OR_RETURN(PgResult tables, conn.Query(R"sql(
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'midflight')
   AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype = 'e'))sql"));
  std::vector<TableId> out;
  for (int r = 0; r < tables.rows(); ++r) out.push_back({tables.GetString(r, 0), tables.GetString(r, 1)});
  return out;
}

Result<std::set<std::string>> ColumnsWithDefault(PgConn& conn, const TableId& id) {
  ASSIGN_OR_RETURN(PgResult r, conn.Query(R"sql(
SELECT a.attname FROM pg_attribute a
 WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND (a.atthasdef OR a.attidentity <> '')
)sql",
                                          {QuoteQualified(id.schema, id.name)}));
  std::set<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.insert(r.GetString(i, 0));
  return out;
}

}  // namespace midflight::pg
