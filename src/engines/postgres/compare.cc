#include "control/compare.h"

#include <fmt/format.h>

#include <future>

#include "engines/postgres/pg_conn.h"
#include "engines/postgres/catalog.h"

namespace midflight {

Result<std::vector<TableComparison>> CompareTables(const MigrationSpec& spec) {
  pg::ConnOptions o;
  o.application_name = "midflight-compare";
  ASSIGN_OR_RETURN(auto src, pg::PgConn::Connect(spec.source, o));
  ASSIGN_OR_RETURN(auto dst, pg::PgConn::Connect(spec.target, o));
  ASSIGN_OR_RETURN(auto tables, pg::LoadTables(*src, spec.tables, spec.exclude));
  std::vector<TableComparison> out;
  for (const auto& t : tables) {
    if (auto skipped = SkippedAsTransformed(spec, t->id)) {
      out.push_back(std::move(*skipped));
      continue;
    }
    // The whole-row reference is the bare alias, which a column of the same
    // name would shadow (then only that column would be hashed): the alias is
    // one no column has. The same formula as verify's chunk hash.
    std::string alias = "mf_r";
    while (t->ColumnIndex(alias) >= 0) alias += "_";
    std::string row = fmt::format("{}::text", alias);
    std::string order;
    for (int k : t->key)
      order += fmt::format("{}{}.{}", order.empty() ? "" : ", ", alias, pg::QuoteIdent(t->columns[k].name));
    if (order.empty()) order = row;
    std::string from = (t->partitioned ? "" : "ONLY ") + pg::QuoteQualified(t->id.schema, t->id.name);
    std::string sql = fmt::format("SELECT count(*), coalesce(md5(string_agg(md5({}), '' ORDER BY {})), '') FROM {} {}",
                                  row, order, from, alias);
    auto hash = [&sql](pg::PgConn& conn) -> Result<TableHash> {
      ASSIGN_OR_RETURN(pg::PgResult r, conn.Query(sql));
      return TableHash{r.GetInt(0, 0), r.GetString(0, 1)};
    };
    ASSIGN_OR_RETURN(TableComparison c, CompareSides(t->id.ToString(), [&] { return hash(*src); },
                                                     [&] { return hash(*dst); }));
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace midflight
