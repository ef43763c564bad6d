#include "pipeline/flow.h"

#include <fmt/format.h>

#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/stop.h"
#include "base/thread_annotations.h"
#include "pipeline/partition_log.h"

namespace midflight {

struct Flow::Impl {
  std::unique_ptr<PartitionLog> log;
  std::unique_ptr<ApplyTracker> tracker;
  std::vector<std::unique_ptr<ChangeSink>> sinks;
  std::unique_ptr<ChangeSink> barrier_sink;
  std::vector<std::unique_ptr<Applier>> appliers;
  std::unique_ptr<ChangeSource> source;
  std::unique_ptr<Sequencer> seq;
  StopSource appliers_stop, stream_stop;  // waits (backoffs, barriers) wake at once on Stop
  std::vector<std::thread> threads;
  std::thread stream_thread;
  mutable Mutex mu;
  Status stream_status GUARDED_BY(mu);
  bool stream_done GUARDED_BY(mu) = false;
  std::atomic<bool> stopped{false};
  // external_apply: each partition's checkpoint row as its watcher last read it.
  bool external = false;
  std::vector<ChangeSink::CheckpointRow> rows GUARDED_BY(mu);

  void RunStream(const std::string& label);
  void WatchCheckpoint(PartitionId p);
};

void Flow::Impl::WatchCheckpoint(PartitionId p) {
  ChangeSink* sink = sinks[p.value].get();
  ChangePosition seen;
  while (!appliers_stop.WaitFor(std::chrono::milliseconds(200))) {
    Result<ChangeSink::CheckpointRow> row = sink->LoadCheckpointRow();
    if (!row.ok()) {
      LOG_DEBUG("partition {}: reading the checkpoint: {}", p.value, row.status().message());
      (void)sink->Reconnect();
      continue;
    }
    if (row->pos > seen) {
      seen = row->pos;
      tracker->Applied(p, seen);
    }
    MutexLock lock(&mu);
    rows[p.value] = *row;
  }
}

Flow::~Flow() { Stop(); }

Result<std::unique_ptr<Flow>> Flow::Start(FlowOptions o, std::unique_ptr<ChangeSource> source,
                                          const SinkFactory& open_sink) {
  std::unique_ptr<Flow> flow(new Flow());
  flow->label_ = o.label;
  flow->impl_ = std::make_unique<Impl>();
  Impl& m = *flow->impl_;
  const uint32_t n = o.partitions;
  if (o.log_factory) {
    ASSIGN_OR_RETURN(m.log, o.log_factory(n, o.partition_log_bytes));
  } else {
    m.log = NewMemoryPartitionLog(n, o.partition_log_bytes);
  }
  m.tracker = std::make_unique<ApplyTracker>(n);
  // The flow's threads log under the migration of the thread that started it.
  const std::string context = CurrentLogContext();
  // The partitions' sinks (and the barrier sink, p == n) are opened at once,
  // one thread each, and the source prepares its connection beside them:
  // every open is a connection and a few round trips, and a resumed run
  // waits for all of them before it streams.
  const auto opening = std::chrono::steady_clock::now();
  std::vector<Result<std::unique_ptr<ChangeSink>>> opened;
  std::vector<Result<ChangePosition>> loaded;
  for (uint32_t p = 0; p <= n; ++p) {
    opened.emplace_back(Internal("not opened"));
    loaded.emplace_back(ChangePosition{});
  }
  {
    std::vector<std::thread> openers;
    openers.emplace_back([&] {
      ScopedLogContext log_context(context);
      source->Prepare();
    });
    for (uint32_t p = 0; p <= n; ++p)
      openers.emplace_back([&, p] {
        ScopedLogContext log_context(context);
        opened[p] = open_sink(PartitionId{p}, *m.tracker);
        if (opened[p].ok() && p < n) loaded[p] = (*opened[p])->LoadCheckpoint();
      });
    for (auto& t : openers) t.join();
  }
  std::vector<ChangePosition> checkpoints;
  ApplierOptions ao = o.applier;
  ao.label = o.label == "forward" ? "apply" : o.label + " apply";
  for (uint32_t p = 0; p < n; ++p) {
    ASSIGN_OR_RETURN(auto sink, std::move(opened[p]));
    ASSIGN_OR_RETURN(ChangePosition cp, std::move(loaded[p]));
    checkpoints.push_back(cp);
    m.appliers.push_back(std::make_unique<Applier>(PartitionId{p}, m.log.get(), sink.get(), m.tracker.get(), ao));
    m.sinks.push_back(std::move(sink));
  }
  ASSIGN_OR_RETURN(m.barrier_sink, std::move(opened[n]));
  LOG_INFO("{} replication: {} apply sessions open, checkpoints read, in {:.0f} ms", o.label, n + 1,
           std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - opening).count());
  m.source = std::move(source);
  m.seq = std::make_unique<Sequencer>(n, std::move(o.filter), m.log.get(), m.tracker.get(), m.barrier_sink.get(),
                                      std::move(checkpoints), o.start, m.stream_stop);
  Impl* impl = &m;
  if (o.external_apply) {
    m.external = true;
    {
      MutexLock lock(&m.mu);
      m.rows.resize(n);
    }
    m.appliers.clear();
    for (uint32_t p = 0; p < n; ++p)
      m.threads.emplace_back([impl, p, context] {
        ScopedLogContext log_context(context);
        impl->WatchCheckpoint(PartitionId{p});
      });
  }
  for (auto& a : m.appliers) {
    Applier* ap = a.get();
    m.threads.emplace_back([ap, impl, context] {
      ScopedLogContext log_context(context);
      ap->Run(impl->appliers_stop);
    });
  }
  m.stream_thread = std::thread([impl, label = o.label, context] {
    ScopedLogContext log_context(context);
    impl->RunStream(label);
  });
  LOG_INFO("{} replication started: {} partitions", o.label, n);
  return flow;
}

void Flow::Impl::RunStream(const std::string& label) {
  auto backoff = std::chrono::milliseconds(500);
  Status result;
  while (!stream_stop.stop_requested()) {
    seq->Reset();
    const auto began = std::chrono::steady_clock::now();
    Status st = source->Stream(*seq, stream_stop);
    seq->stats().connected = false;
    if (stream_stop.stop_requested()) break;
    // A stream that ran a while before it was lost starts a new episode.
    if (std::chrono::steady_clock::now() - began > std::chrono::seconds(60)) backoff = std::chrono::milliseconds(500);
    // RetryTxn: a barrier's target transaction met a deadlock or a lock
    // timeout (a TRUNCATE waits for its ACCESS EXCLUSIVE lock); it was rolled
    // back and not recorded, so the resent stream runs it again.
    if (st.code() != StatusCode::kRetryCall && st.code() != StatusCode::kRetryTxn) {
      result = st.ok() ? Internal(label + " change stream ended") : st;
      break;
    }
    LOG_WARN("{} change stream: {}; reconnecting in {} ms", label, st.message(), backoff.count());
    if (stream_stop.WaitFor(backoff)) break;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
  }
  MutexLock lock(&mu);
  stream_status = result;
  stream_done = true;
}

void Flow::Stop() {
  if (!impl_) return;
  Impl& m = *impl_;
  if (m.stopped.exchange(true)) return;
  m.stream_stop.Stop();
  // Closed before the stream is joined: the stream may be blocked appending
  // to a full partition whose applier stopped (failed, or retrying a target
  // that is down); Append then returns Cancelled. The appliers still drain
  // what the log holds until they are stopped below.
  if (m.log) m.log->Close();
  if (m.stream_thread.joinable()) m.stream_thread.join();
  m.appliers_stop.Stop();
  for (auto& t : m.threads) t.join();
  m.threads.clear();
  // Close the apply sessions (PostgreSQL's hold their replication origins).
  m.sinks.clear();
  m.barrier_sink.reset();
}

Status Flow::health() const {
  const Impl& m = *impl_;
  for (const auto& a : m.appliers)
    if (Status st = a->status(); !st.ok()) return st.WithContext(label_ + " apply");
  MutexLock lock(&m.mu);
  if (m.stream_done && !m.stopped)
    return m.stream_status.ok() ? Internal(label_ + " change stream ended")
                                : m.stream_status.WithContext(label_ + " replication");
  return Status::Ok();
}

uint64_t Flow::AppliedThrough() const { return impl_->seq->AppliedThrough(); }

FlowMetrics Flow::metrics() const {
  const Impl& m = *impl_;
  const SequencerStats& s = m.seq->stats();
  FlowMetrics out;
  out.received = s.received.load();
  out.applied_through = m.seq->AppliedThrough();
  out.confirmed = s.confirmed.load();
  out.skipped = s.skipped.load();
  out.changes_routed = s.changes.load();
  out.connected = s.connected.load();
  if (auto pending = m.tracker->OldestPending())
    out.lag_seconds = std::max<double>(0, (NowUnixMicros() - pending->commit_time_us) / 1e6);
  for (const auto& a : m.appliers) {
    out.changes_applied += a->stats().received;
    out.retries += a->stats().retries;
  }
  std::vector<ChangeSink::CheckpointRow> rows;
  if (m.external) {
    MutexLock lock(&m.mu);
    rows = m.rows;
  }
  out.external_apply = m.external;
  const int64_t now_us = NowUnixMicros();
  for (uint32_t p = 0; p < m.log->partitions(); ++p) {
    PartitionMetrics pm;
    const ApplyTracker::PartitionPending pending = m.tracker->PendingOf(PartitionId{p});
    pm.queued_changes = pending.changes;
    if (pending.transactions > 0) pm.lag_s = std::max<double>(0, (now_us - pending.oldest_commit_us) / 1e6);
    const PartitionLog::ProducerStats ps = m.log->Stats(PartitionId{p});
    pm.end_offset = ps.end_offset;
    pm.producer_lag = ps.unacked;
    pm.producer_lag_s = ps.oldest_unacked_s;
    if (p < rows.size()) {
      pm.worker = rows[p].worker;
      pm.worker_seen_s = rows[p].age_seconds;
      pm.applied_offset = rows[p].log_offset;
      if (ps.end_offset > pm.applied_offset + 1)
        pm.consumer_lag = static_cast<uint64_t>(ps.end_offset - pm.applied_offset - 1);
      pm.consumer_lag_s = pm.lag_s;
    }
    out.partitions.push_back(std::move(pm));
  }
  return out;
}

void Flow::Poke() { impl_->source->Poke(); }

uint64_t Flow::QueueRepairs(std::vector<Change> changes) { return impl_->seq->QueueRepairs(std::move(changes)); }

uint64_t Flow::RepairsRouted() const { return impl_->seq->stats().repairs_routed.load(); }

}  // namespace midflight
