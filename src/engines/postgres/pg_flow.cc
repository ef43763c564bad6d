#include "engines/postgres/pg_flow.h"

#include <fmt/format.h>

#include <mutex>

#include "base/log.h"
#include "engines/postgres/catalog.h"
#include "engines/postgres/change_stream.h"
#include "engines/postgres/pg_applier.h"
#include "engines/postgres/pg_conn.h"
#include "engines/postgres/schema_loader.h"

namespace midflight {

using pg::PgConn;

namespace {

// A connection to the to-side for the stream's column checks, opened on
// first use (by the stream thread only) and reopened when broken.
struct Catalog {
  std::string uri;
  std::unique_ptr<PgConn> conn;
};

}  // namespace

Result<std::unique_ptr<Flow>> StartPgFlow(const FlowConfig& c) {
  auto catalog = std::make_shared<Catalog>();
  catalog->uri = c.to_uri;

  pg::StreamConfig sc;
  sc.source_uri = c.from_uri;
  sc.slot = c.slot;
  sc.publication = c.publication;
  sc.tables = c.tables;
  sc.skip_origin_prefix = c.skip_origin_prefix;
  sc.application_name = "midflight-stream-" + c.label;
  sc.target_columns = [cat = catalog, tr = c.transforms](const TableId& id) -> Result<std::vector<ColumnSchema>> {
    // A transformed table has another shape on the target: its stream layout
    // must be the one its transform was bound to (a column added on the
    // source since is not there, and stops the stream naming it).
    if (tr)
      if (auto it = tr->find(id); it != tr->end()) {
        const TableSchema& src = it->second->source();
        std::vector<ColumnSchema> cols;
        for (int i : src.writable) cols.push_back(src.columns[i]);
        return cols;
      }
    if (!cat->conn || cat->conn->IsBroken()) {
      pg::ConnOptions co;
      co.application_name = "midflight-catalog";
      ASSIGN_OR_RETURN(cat->conn, PgConn::Connect(cat->uri, co));
    }
    return pg::TargetWritableColumns(*cat->conn, id);
  };

  FlowOptions fo;
  fo.label = c.label;
  fo.partitions = c.partitions;
  fo.partition_log_bytes = static_cast<size_t>(c.partition_log_mb) << 20;
  fo.filter = c.filter;
  fo.log_factory = c.log_factory;
  fo.external_apply = c.external_apply;
  MigrationRuntime* rt = c.runtime;
  if (rt) {
    fo.applier.settings = [rt] { return rt->ApplyNow(); };
    fo.applier.throttle = &rt->throttle;
    fo.applier.rate = &rt->apply_rate;
    // Forward only: reverse replication writes to a source the application
    // wrote too until the switch; its conflicts are not ours.
    if (c.label == "forward") fo.applier.conflicts = &rt->conflicts;
  }
  SinkFactory open_sink = [&c, rt](PartitionId p, const ApplyTracker&) -> Result<std::unique_ptr<ChangeSink>> {
    // With apply workers, a partition's sink here only reads its checkpoint:
    // the replication origin is the worker's that applies it.
    const bool reads_only = c.external_apply && p.value < c.partitions;
    ASSIGN_OR_RETURN(auto sink, pg::PgChangeSink::Open(c.to_uri, c.checkpoint_key, p,
                                                       reads_only ? "" : fmt::format("{}{}", c.origin_prefix, p.value)));
    if (rt) sink->SetLockTimeoutSource([rt] { return rt->knobs.Int(Knob::kLockTimeoutMs); });
    if (c.transforms && !c.transforms->empty())
      return std::unique_ptr<ChangeSink>(std::make_unique<TransformSink>(std::move(sink), c.transforms));
    return std::unique_ptr<ChangeSink>(std::move(sink));
  };
  ASSIGN_OR_RETURN(auto flow, Flow::Start(std::move(fo), std::make_unique<pg::ChangeStream>(std::move(sc)), open_sink));
  LOG_INFO("{} replication: slot {}", c.label, c.slot);
  return flow;
}

}  // namespace midflight
