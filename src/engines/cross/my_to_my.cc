#include "engines/cross/my_to_my.h"

#include <fmt/format.h>

#include "control/spec.h"
#include "engines/cross/canon_sides.h"
#include "engines/cross/cross_verify.h"
#include "engines/cross/my_to_pg_types.h"
#include "engines/mysql/catalog.h"
#include "engines/mysql/my_conn.h"
#include "pipeline/transform_sink.h"

namespace midflight {
namespace cross {
namespace {

std::vector<CanonTable> CanonOf(const std::vector<std::shared_ptr<const TableTransform>>& transforms,
                                const std::string& target_db) {
  std::vector<CanonTable> out;
  for (const auto& tr : transforms) out.push_back(MyReshaped(tr, target_db));
  return out;
}

Result<mysql::ReshapedVerified> Verify(Flow& flow, const mysql::ReshapedVerifyArgs& a) {
  // Repairs read the source's rows in the binlog's text forms; a key with no
  // row becomes a delete, its canonical key written back in MySQL's text
  // form through the source table's cast (the MySQL side's repairs need one).
  auto casts = std::make_shared<std::map<TableId, TableCast>>();
  if (a.repair)
    for (const auto& tr : a.transforms) {
      auto cast = CastTable(tr->source(), MyTableFacts{}, CastOptions{});
      if (cast.ok()) casts->emplace(tr->source().id, std::move(*cast));
    }
  // After the write switch the target is the reference, and the source's
  // rows are transformed forward and hashed by the target (Reversed).
  auto ref = a.reversed ? MySqlCanonSide(a.reference_uri, "target (MariaDB)")
                        : MySqlCanonSide(a.reference_uri, "source (MariaDB)", casts);
  auto other = a.reversed ? MySqlCanonSide(a.other_uri, "source (MariaDB)")
                          : MySqlCanonSide(a.other_uri, "target (MariaDB)");
  std::vector<CanonTable> canon = CanonOf(a.transforms, a.target_db);
  if (a.reversed)
    for (auto& c : canon) c = Reversed(std::move(c), nullptr);
  // Resumed inside a transformed table: from there; else every one.
  ReplicationOps::VerifyRun from;
  from.on_progress = a.run.on_progress;
  for (const auto& c : canon)
    if (c.id.ToString() == a.run.start_after.table) from.start_after = a.run.start_after;
  ASSIGN_OR_RETURN(CrossVerified v, CrossVerifyReport(JobAlong(flow, *ref, *other, std::move(canon), a.repair,
                                                               a.rows_per_s, a.stop, a.chunk_rows, from)));
  mysql::ReshapedVerified out;
  for (const auto& t : v.report.tables)
    for (auto& line : CrossLines(t)) out.lines.push_back(std::move(line));
  // After the switch the MySQL verifier lists the target's tables: each
  // result goes under its table's target name.
  if (a.reversed)
    for (auto& t : v.report.tables)
      for (const auto& tr : a.transforms)
        if (tr->source().id == t.table) t.table = TableId{a.target_db, tr->target()->id.name};
  out.report = std::move(v.report);
  out.repairs = std::move(v.repairs);
  return out;
}

Result<std::vector<TableComparison>> Compare(const MigrationSpec& spec) {
  const std::string reader = spec.source_replica.empty() ? spec.source : spec.source_replica;
  ASSIGN_OR_RETURN(auto su, mysql::ParseMyUri(reader));
  ASSIGN_OR_RETURN(auto tu, mysql::ParseMyUri(spec.target));
  mysql::ConnOptions o;
  o.program_name = "midflight-compare";
  ASSIGN_OR_RETURN(auto conn, mysql::MyConn::Connect(reader, o));
  ASSIGN_OR_RETURN(auto tables, mysql::LoadTables(*conn, su.database, spec.tables, spec.exclude));
  ASSIGN_OR_RETURN(TransformMap bound, mysql::BindTransformsForMySql(spec, tables));
  std::vector<std::shared_ptr<const TableTransform>> list;
  for (const auto& [id, tr] : bound) list.push_back(tr);
  auto source = MySqlCanonSide(reader, "source (MariaDB)");
  auto target = MySqlCanonSide(spec.target, "target (MariaDB)");
  return CrossCompare(*source, *target, CanonOf(list, tu.database), spec.verify.chunk_rows);
}

}  // namespace

ReshapedChecks MyToMyReshapedChecks() { return ReshapedChecks{Verify, Compare}; }

}  // namespace cross

const EngineKind& MySqlEngineWithReshapedChecks() {
  static const std::unique_ptr<EngineKind> kind = NewMySqlEngineKind(cross::MyToMyReshapedChecks());
  return *kind;
}

}  // namespace midflight
