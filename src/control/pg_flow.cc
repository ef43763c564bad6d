#include "control/pg_flow.h"

#include <fmt/format.h>

#include <mutex>

#include "base/clock.h"
#include "base/log.h"
#include "pipeline/applier.h"
#include "pipeline/apply_tracker.h"
#include "pipeline/partition_log.h"
#include "engines/postgres/pg_conn.h"
#include "engines/postgres/catalog.h"
#include "engines/postgres/change_stream.h"
#include "engines/postgres/pg_applier.h"
#include "engines/postgres/schema_loader.h"

namespace midflight {

using pg::PgConn;

struct PgFlow::Impl {
  std::unique_ptr<PartitionLog> log;
  std::unique_ptr<ApplyTracker> tracker;
  std::vector<std::unique_ptr<pg::PgChangeSink>> sinks;
  std::unique_ptr<pg::PgChangeSink> barrier_sink;
  std::vector<std::unique_ptr<Applier>> appliers;
  pg::StreamStats stream_stats;
  std::unique_ptr<pg::ChangeStream> stream;
  std::unique_ptr<PgConn> catalog;  // used by the stream thread only
  std::atomic<bool> appliers_stop{false}, stream_stop{false};
  std::vector<std::thread> threads;
  std::thread stream_thread;
  mutable std::mutex mu;
  Status stream_status;  // GUARDED_BY(mu)
  std::atomic<bool> stream_done{false};
  std::atomic<bool> stopped{false};  // read by health() on other threads
};

PgFlow::PgFlow(FlowConfig config) : config_(std::move(config)), impl_(std::make_unique<Impl>()) {}

PgFlow::~PgFlow() { Stop(); }

Result<std::unique_ptr<PgFlow>> PgFlow::Start(FlowConfig config) {
  std::unique_ptr<PgFlow> flow(new PgFlow(std::move(config)));
  Impl& m = *flow->impl_;
  const FlowConfig& c = flow->config_;
  const uint32_t n = c.partitions;
  m.log = NewMemoryPartitionLog(n, static_cast<size_t>(c.partition_log_mb) << 20);
  m.tracker = std::make_unique<ApplyTracker>(n);
  std::vector<ChangePosition> checkpoints;
  for (uint32_t p = 0; p < n; ++p) {
    ASSIGN_OR_RETURN(auto sink, pg::PgChangeSink::Open(c.to_uri, c.checkpoint_key, PartitionId{p},
                                                       fmt::format("{}{}", c.origin_prefix, p)));
    ASSIGN_OR_RETURN(ChangePosition cp, sink->LoadCheckpoint());
    checkpoints.push_back(cp);
    ApplierOptions ao;
    ao.label = c.label == "forward" ? "apply" : c.label + " apply";
    if (MigrationRuntime* rt = c.runtime) {
      ao.knobs = &rt->knobs;
      ao.throttle = &rt->throttle;
      ao.rate = &rt->apply_rate;
      // Forward only: reverse replication writes to a source the
      // application wrote too until the switch; its conflicts are not ours.
      if (c.label == "forward") ao.conflicts = &rt->conflicts;
      sink->SetLockTimeoutSource([rt] { return rt->knobs.Int(Knob::kLockTimeoutMs); });
    }
    m.appliers.push_back(std::make_unique<Applier>(PartitionId{p}, m.log.get(), sink.get(), m.tracker.get(), ao));
    m.sinks.push_back(std::move(sink));
  }
  ASSIGN_OR_RETURN(m.barrier_sink, pg::PgChangeSink::Open(c.to_uri, c.checkpoint_key, PartitionId{n},
                                                          fmt::format("{}{}", c.origin_prefix, n)));

  pg::StreamConfig sc;
  sc.source_uri = c.from_uri;
  sc.slot = c.slot;
  sc.publication = c.publication;
  sc.tables = c.tables;
  sc.skip_origin_prefix = c.skip_origin_prefix;
  sc.application_name = "midflight-stream-" + c.label;
  Impl* impl = &m;
  std::string to_uri = c.to_uri;
  sc.target_columns = [impl, to_uri](const TableId& id) -> Result<std::vector<ColumnSchema>> {
    if (!impl->catalog || impl->catalog->IsBroken()) {
      pg::ConnOptions co;
      co.application_name = "midflight-catalog";
      ASSIGN_OR_RETURN(impl->catalog, PgConn::Connect(to_uri, co));
    }
    return pg::TargetWritableColumns(*impl->catalog, id);
  };
  m.stream = std::make_unique<pg::ChangeStream>(sc, Router(n), c.filter, m.log.get(), m.tracker.get(),
                                                m.barrier_sink.get(), checkpoints, &m.stream_stats);
  for (auto& a : m.appliers) {
    Applier* ap = a.get();
    m.threads.emplace_back([ap, impl] { ap->Run(impl->appliers_stop); });
  }
  m.stream_thread = std::thread([impl] {
    Status st = impl->stream->Run(impl->stream_stop);
    {
      std::lock_guard lock(impl->mu);
      impl->stream_status = st;
    }
    impl->stream_done = true;
  });
  LOG_INFO("{} replication started: slot {} -> {} partitions", flow->config_.label, flow->config_.slot, n);
  return flow;
}

void PgFlow::Stop() {
  Impl& m = *impl_;
  if (m.stopped.exchange(true)) return;
  m.stream_stop = true;
  if (m.stream_thread.joinable()) m.stream_thread.join();
  m.appliers_stop = true;
  if (m.log) m.log->Close();
  for (auto& t : m.threads) t.join();
  m.threads.clear();
  // Close the apply sessions: they hold their replication origins.
  m.sinks.clear();
  m.barrier_sink.reset();
}

Status PgFlow::health() const {
  const Impl& m = *impl_;
  for (const auto& a : m.appliers)
    if (Status st = a->status(); !st.ok()) return st.WithContext(config_.label + " apply");
  if (m.stream_done) {
    std::lock_guard lock(m.mu);
    if (!m.stopped)
      return m.stream_status.ok() ? Internal(config_.label + " change stream ended")
                                  : m.stream_status.WithContext(config_.label + " replication");
  }
  return Status::Ok();
}

uint64_t PgFlow::AppliedThrough() const {
  const Impl& m = *impl_;
  // Received first, then pending: every transaction received by then is
  // either still pending below or applied.
  uint64_t received = m.stream_stats.received_lsn.load();
  auto pending = m.tracker->OldestPending();
  return pending ? std::min<uint64_t>(pending->commit_lsn.value(), received) : received;
}

FlowMetrics PgFlow::metrics() const {
  const Impl& m = *impl_;
  FlowMetrics out;
  out.received = m.stream_stats.received_lsn.load();
  out.applied_through = AppliedThrough();
  out.confirmed = m.stream_stats.confirmed_lsn.load();
  out.skipped = m.stream_stats.skipped.load();
  out.connected = m.stream_stats.connected.load();
  if (auto pending = m.tracker->OldestPending())
    out.lag_seconds = std::max<double>(0, (NowUnixMicros() - pending->commit_time_us) / 1e6);
  for (const auto& a : m.appliers) {
    out.changes_applied += a->stats().received;
    out.retries += a->stats().retries;
  }
  return out;
}

void PgFlow::Poke() { impl_->stream_stats.poke = true; }

uint64_t PgFlow::QueueRepairs(std::vector<Change> changes) { return impl_->stream->QueueRepairs(std::move(changes)); }

uint64_t PgFlow::RepairsRouted() const { return impl_->stream_stats.repairs_routed.load(); }

}  // namespace midflight
