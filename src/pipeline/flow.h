// One direction of replication: a change source, a sequencer, N partition
// logs and N appliers writing through N change sinks. The same Flow serves
// every engine and both directions (forward source -> target; reverse target
// -> source after a write switch); the engine supplies only the source and
// the sinks.
//
//   ChangeSource ─► Sequencer ─► PartitionLog[p] ─► Applier[p] ─► ChangeSink[p]
//     (thread)        (filter, barriers,              (thread each)
//                      route, repairs)                 barrier sink: ChangeSink[N]
//
// The stream thread reconnects a source that lost its connection (RetryCall),
// or whose barrier's target transaction must be retried (RetryTxn), with a
// backoff, for ever: a source that is down shows as not connected, and
// the lag grows. Any other failure of the source or of an applier stops the
// flow's progress and is reported by health().
//
// Thread-safety: Start and Stop from one thread; everything else from any.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "pipeline/applier.h"
#include "pipeline/apply_tracker.h"
#include "pipeline/change_source.h"
#include "pipeline/partition_log.h"
#include "pipeline/router.h"
#include "pipeline/sequencer.h"

namespace midflight {

struct FlowOptions {
  std::string label = "forward";  // for messages: "forward", "reverse"
  uint32_t partitions = 4;
  size_t partition_log_bytes = 64u << 20;  // per partition
  SnapshotFilter filter;                   // what the copy holds (empty: nothing to drop)
  uint64_t start = 0;                      // the position the stream starts from (zero: the source knows)
  ApplierOptions applier;                  // knobs, throttle board, rate, conflicts; label is set per flow
  PartitionLogFactory log_factory;         // empty: NewMemoryPartitionLog
  // Other processes apply the log (Kafka apply workers, kafka/apply_worker.h):
  // no Applier runs here; a watcher per partition reads the partition's
  // checkpoint from its sink every 200 ms and tells the tracker, so the
  // source is still confirmed only what the target holds (invariant 3).
  bool external_apply = false;
};

// Opens partition p's sink (p == partitions: the barrier sink). The tracker
// is the flow's, for sinks that record how far every partition got.
using SinkFactory = std::function<Result<std::unique_ptr<ChangeSink>>(PartitionId, const ApplyTracker&)>;

// One partition as status shows it. Every flow: queued_changes and lag_s.
// A log outside the process (Kafka): the producer's side. Other processes
// applying (external_apply): the holder and the consumer's side.
struct PartitionMetrics {
  uint64_t queued_changes = 0;    // changes routed to it, not applied yet
  double lag_s = 0;               // age of its oldest source transaction not applied (0: none)
  std::string worker;             // who last committed (or took) it, from its checkpoint row
  double worker_seen_s = 0;       // since that row was written
  int64_t applied_offset = -1;    // the log offset of its last change applied (-1: none recorded)
  int64_t end_offset = -1;        // the offset after the last message the log acknowledged
  uint64_t producer_lag = 0;      // messages handed to the log, not acknowledged yet
  double producer_lag_s = 0;      // how long the oldest of them has waited
  uint64_t consumer_lag = 0;      // messages acknowledged, not applied (end_offset - applied_offset - 1)
  double consumer_lag_s = 0;      // age of its oldest source transaction not applied
};

struct FlowMetrics {
  uint64_t received = 0;          // every source transaction before this was received
  uint64_t applied_through = 0;   // every source transaction before this is applied
  uint64_t confirmed = 0;         // what the source was last told is consumed
  uint64_t changes_applied = 0, retries = 0, skipped = 0;
  uint64_t changes_routed = 0;    // changes the stream handed to the partitions (not applied before)
  double lag_seconds = 0;         // age of the oldest transaction not applied yet
  bool connected = false;
  bool external_apply = false;    // the flow's option: partitions[].worker and the consumer side are known
  std::vector<PartitionMetrics> partitions;  // one per partition
};

class Flow {
 public:
  // Opens every sink (loading its checkpoint), then starts the appliers and
  // the stream thread.
  static Result<std::unique_ptr<Flow>> Start(FlowOptions options, std::unique_ptr<ChangeSource> source,
                                             const SinkFactory& open_sink);
  ~Flow();

  // Stops the stream, then the appliers (each finishes its batch), and closes
  // the sinks. Idempotent.
  void Stop();
  // The first error of the stream or an applier (Ok while healthy).
  Status health() const;
  FlowMetrics metrics() const;
  uint64_t AppliedThrough() const;
  // Asks the source for its current position now.
  void Poke();
  // Changes to apply in key order after everything routed so far (verify
  // --repair). Returns the RepairsRouted() value that means they are routed.
  uint64_t QueueRepairs(std::vector<Change> changes);
  uint64_t RepairsRouted() const;
  const std::string& label() const { return label_; }

 private:
  Flow() = default;
  struct Impl;
  std::string label_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace midflight
