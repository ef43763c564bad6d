// Apply outside the `midflight run` process: `midflight apply-worker` and
// `midflight replay` read the migration's change topic (<prefix>.<name>.changes)
// and apply it to the target with the pipeline's own Applier and the target
// engine's ChangeSink, one Applier per partition held.
//
//   apply-worker:  consumer group midflight.<name> ─rebalance─► partitions held ─► Applier p ─► ChangeSink p ─► target
//                  (any number of workers;            on assign: start at the       batch + checkpoint
//                   partitions move when one           TARGET's (offset, position)   (position, topic offset,
//                   joins, leaves or dies)             for p, not Kafka's            worker) in one txn
//                                                      on revoke: stop Applier p
//                                                      (its batch commits or is
//                                                      abandoned), close sink p
//
// EFFECTIVELY ONCE ACROSS WORKERS. The target's checkpoint row of partition p
// (midflight.checkpoints) commits with each batch and holds the source
// position of the last change applied, the topic offset of that change and
// the worker that applied it. A worker that takes p over reads that row and
// starts at offset + 1 (the beginning of the partition when no offset was
// recorded yet), and its Applier drops every change at or below the recorded
// position, exactly as after a restart of the embedded path. Two workers
// never apply one partition at once after a clean handover (the old one stops
// its Applier before it gives p up); after a worker is killed the group
// gives p away only when the dead member's session expires. A worker that
// lost p without knowing it (paused, or cut off, past the session timeout)
// is fenced by the sink (ChangeSink::EnableFencing): each batch locks the
// row first and is dropped when the row records an offset at or above its
// own, so a stale batch never lands over the new holder's work. Kafka's
// consumer-group offsets are committed after the target commit, for
// monitoring tools only; nothing reads them back.
//
// Positions are strictly increasing along a partition of the source's stream,
// but not along the topic: after `midflight run` restarts, the source resends
// from its confirmed position and the router produces again every change past
// each partition's checkpoint, so the topic holds a stretch twice. The reader
// delivers a change only when its position is past the last one it delivered
// for the partition; what it drops is the same change again (the source's log
// does not change). Truncates and key moves that carry unchanged TOASTed
// values are applied by the run process at a barrier (pipeline/sequencer.h)
// and skipped here.
//
// Replay reads every partition from an offset (or the first offset at or after
// a time) up to the partition's end, through the same Applier, with its own
// checkpoint rows (<name>/replay) and without skipping anything: apply is
// idempotent, so replaying over a live target converges to the source (the
// replay stops only when, after its last commit, nothing newer is in the
// partition: any change the live workers applied before that is applied again
// by the replay after its older ones). Tables without a key are left out
// (an insert there cannot be applied twice without duplicating the row); the
// report counts what was left.
//
// SNAPSHOT RECORDS (transport.publish_snapshot, kafka/snapshot_publisher.h)
// sit at the beginning of each partition, before every change. Workers skip
// them (the run's copy wrote those rows to the target). A replay applies a
// copied row as an upsert at position {0, n} (n counting the partition's
// snapshot rows: below every change, so the Applier's checkpoint never
// passes one), and a chunk reset between two batches: it deletes the rows of
// the chunk's range (or table) that route to the partition, on the
// partition's own sink. Only partition p's records write a key that routes
// to p (a key move is a delete and an insert, each in its key's partition),
// so at that point the target holds of those rows exactly what p's records
// before the reset wrote: the older copy, which the rows after it replace.
//
// Thread-safety: RunApplyWorker and RunReplay own every object they create;
// call them from one thread each.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/stop.h"
#include "control/transport_spec.h"
#include "core/schema.h"
#include "pipeline/applier.h"

namespace midflight::kafka {

struct ApplyWorkerOptions {
  std::string migration;  // the spec's name: topic, group and checkpoint rows
  TransportSpec transport;
  uint32_t partitions = 0;  // the spec's partitions: the topic must have exactly these
  std::string worker;       // this worker's name in the checkpoint rows and status ("host:pid")
  ApplySettings apply;      // batch size, linger, backoff, stop_on_conflict
  // The migrated tables as the source has them now (messages name tables by
  // schema and name; reloaded once when a message's image does not fit).
  std::function<Result<std::vector<std::shared_ptr<const TableSchema>>>()> load_tables;
  // Partition p's sink on the target, its checkpoints under `checkpoint_key`.
  std::function<Result<std::unique_ptr<ChangeSink>>(PartitionId p, const std::string& checkpoint_key)> open_sink;
  std::chrono::milliseconds open_timeout{10000};  // metadata at start
  PositionKind positions = PositionKind::kPgLsn;  // the source's kind of position, for messages
  // Called with a line whenever the partitions held change ("holds [0, 2]").
  std::function<void(const std::string&)> on_assignment;
};

// Joins the group and applies until `stop` (SIGTERM) or an error that stops
// an Applier (returned; the partitions then go to the other workers).
// Errors at start, one line each: an unreachable broker (RetryCall naming
// the brokers), a topic that does not exist (OperatorError naming the topic
// and the migration) or whose partition count differs from `partitions`.
Status RunApplyWorker(const ApplyWorkerOptions& options, const StopSource& stop);

struct ReplayFrom {
  static constexpr int64_t kEarliest = -2;
  // >= 0: this offset of every partition (an error when it is gone);
  // kEarliest: the first each partition keeps, following the retention if
  // it drops more while the replay reads (fine over a live target).
  int64_t offset = -1;
  int64_t time_ms = -1;  // >= 0: the first message at or after this time (ms since the epoch)
};

struct ReplayReport {
  struct Part {
    int64_t from = 0, to = 0;  // offsets read: [from, to)
    uint64_t changes = 0;      // changes applied (snapshot rows included)
    uint64_t snapshot_rows = 0;  // copied rows read (transport.publish_snapshot)
    uint64_t resets = 0;         // chunk resets applied
  };
  std::vector<Part> parts;
  // Changes of tables without a key, by table, not applied: re-inserting a
  // keyless row would duplicate it.
  std::map<std::string, uint64_t> not_replayed;
};

// Replays every partition from `from` to its end (see the header comment),
// with checkpoints under <migration>/replay.
Result<ReplayReport> RunReplay(const ApplyWorkerOptions& options, ReplayFrom from, const StopSource& stop);

}  // namespace midflight::kafka
