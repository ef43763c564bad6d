// The Engine: everything a migration needs from one kind of database, behind
// one interface, so the runner (control/runner.cc), the service and the CLI
// are written once. An engine is chosen from the spec's URIs by OpenEngine
// (engines/registry.cc); its implementation lives in its own folder
// (engines/postgres, engines/mysql), the only place its client library is
// included.
//
// One Engine object serves one run of one migration: the runner calls, in
// phase order (control/phase_driver.h),
//
//   Preflight ─► CreateSchema ─► PlanChunks, LoadDoneChunks, PrepareCopy, CopyChunks ─► FinishSchema ─► Replication
//
// from one thread; Preflight opens the control connections the later steps
// use (each step reconnects what a server restart broke). The other entry
// points (CleanUpAbort, Compare, StartTrafficSwitch) stand alone: the service
// and the CLI call them without a run.
//
// To add an engine: implement this interface in engines/<name>/engine.cc
// (with the engine's catalog, copier, ChangeSource, ChangeSink), and add one
// line to engines/registry.cc.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "base/status.h"
#include "control/gates.h"
#include "core/change.h"
#include "core/copy.h"
#include "core/position.h"
#include "core/schema.h"
#include "pipeline/partition_log.h"
#include "pipeline/router.h"

namespace midflight {

class StateStore;
struct MigrationSpec;
struct MigrationRuntime;
struct TableComparison;
namespace proxy {
class TrafficSwitch;
enum class Side;
}  // namespace proxy
class Flow;
class ChangeSink;

using TablePtr = std::shared_ptr<const TableSchema>;

// A chunk the target holds: recorded with its rows in one target transaction.
struct DoneChunk {
  Position snapshot;  // the source position of the snapshot it was copied from
  int64_t rows = 0, bytes = 0;
};
// (table "schema.name", chunk number) -> what its transaction recorded.
using DoneChunks = std::map<std::pair<std::string, int>, DoneChunk>;

// What the replicate phase starts from, computed by the runner from the copy
// plan and the chunks recorded on the target.
struct ReplicateStart {
  uint32_t partitions = 4;  // fixed when the migration started
  SnapshotFilter filter;    // what the copy holds
  uint64_t oldest_snapshot = 0;  // the oldest chunk snapshot: no change before it is needed
  PartitionLogFactory log_factory;  // the forward flow's partition log (empty: in memory)
  // transport apply: workers: the forward flow routes and produces only;
  // `midflight apply-worker` processes apply (FlowOptions::external_apply).
  bool external_apply = false;
};

// What the engine-neutral replication and cutover (control/cutover.h) need
// from an engine: the flows between the two sides (proxy::Side), positions,
// and, for an engine with a traffic plane (EngineKind::has_traffic_plane),
// sequences, clean-up and verification. Returned by Engine::Replication()
// for one run. Calls come from the replication's monitor thread and from the
// operation being served (one at a time); the methods marked "monitor" only
// from the monitor thread.
class ReplicationOps {
 public:
  virtual ~ReplicationOps() = default;

  struct StartedFlow {
    std::unique_ptr<Flow> flow;
    std::map<TableId, TablePtr> tables;  // the migrated tables as the flow's from-side has them
    // Set when the flow must be started again from what the target holds
    // (a MySQL target connection was lost: it may have come back without
    // commits it had acknowledged). Null when the flow never asks.
    std::shared_ptr<std::atomic<bool>> restart;
  };
  // Forward (from the source; `start` says what the copy holds): starts
  // replication source -> target from the target's checkpoints. Reverse
  // (from the target, once the first write switch asks for it): checks its
  // prerequisites, creates what it needs on the target (PostgreSQL:
  // publication and slot) and starts replication target -> source, skipping
  // what the forward flow applied. RetryCall when a server cannot be reached
  // now (the caller retries).
  virtual Result<StartedFlow> StartFlow(proxy::Side from, const std::vector<TablePtr>& tables,
                                        const ReplicateStart& start) = 0;
  // Bytes from `applied` to `current`, two positions of `side`'s change
  // stream (the source's for the forward flow, the target's for reverse),
  // as exactly as that side's engine can tell. The default is for positions
  // that count bytes (PostgreSQL LSNs); a MySQL side's positions span binlog
  // files, whose sizes the ops read (mysql::BinlogSizes).
  virtual uint64_t LagBytes(proxy::Side side, uint64_t current, uint64_t applied) const {
    (void)side;
    return current > applied ? current - applied : 0;
  }
  // A position of `side` as messages and status show it; "" when both
  // sides' positions are of the engine's own kind (Engine::FormatPosition).
  // Across engines the target's are the other engine's.
  virtual std::string FormatPositionOf(proxy::Side side, uint64_t pos) const {
    (void)side;
    (void)pos;
    return "";
  }
  // True when lag in seconds is the age of the oldest source position seen
  // (CurrentPosition, sampled) that is not applied yet, rather than the age
  // of the oldest received transaction not applied (the source's commit
  // times are too coarse, or changes wait unread on the source).
  virtual bool lag_from_positions() const { return false; }
  // Opens (or checks) the connections CommittedPosition and SyncSequences
  // use, so that nothing slow happens inside a write pause. Called before
  // the pause; Ok when there is nothing to open.
  virtual Status PrepareSwitch() { return Status::Ok(); }
  // A position every transaction committed on `side` so far is before, and
  // that the side has made durable (a flow can reach it at once).
  virtual Result<uint64_t> CommittedPosition(proxy::Side side) = 0;
  // Monitor: the write position of `side` now, for lag (0: cannot be read now).
  virtual uint64_t CurrentPosition(proxy::Side side) = 0;
  // Monitor: the source's tables in the spec's scope (to find new ones).
  virtual Result<std::vector<TableId>> TablesInScope() = 0;
  // Monitor: the lag of the target's own replicas, (seconds, name of the
  // worst), or nullopt when it has none or it cannot be read.
  virtual std::optional<std::pair<double, std::string>> TargetReplicaLag() = 0;
  // Carries sequence values from `from` to the other side.
  virtual Status SyncSequences(proxy::Side from) = 0;
  // Writes now go to side `to`: what the servers run on their own and that
  // writes (MySQL/MariaDB events) is made to run there only, stopped on the
  // other side. Called inside a write switch (and rollback) once `to` holds
  // everything the other side committed and its counters are carried
  // (SyncSequences), before writes resume; again, with the side the phase
  // names, when a run resumes after a first write switch (a crash between
  // this call and the phase change). Idempotent. Not called by `sequences
  // sync`. Default (PostgreSQL, whose server runs no scheduled jobs of the
  // migrated database): nothing.
  virtual Status WritesGoTo(proxy::Side to) {
    (void)to;
    return Status::Ok();
  }
  // The servers' part of the gates of a write switch to `to` (or a
  // rollback, `to` the source; control/gates.h): read-only, changes nothing,
  // used by the switch itself and by its dry run. `reverse_needed`: this
  // switch would start reverse replication, so its prerequisites are checked
  // (PostgreSQL: wal_level = logical on the target, the users' rights, a free
  // slot). Sequences: each one carried over is readable on the side writes
  // leave and settable on the other. Default: no check.
  virtual std::vector<GateCheck> SwitchChecks(proxy::Side to, bool reverse_needed) {
    (void)to;
    (void)reverse_needed;
    return {};
  }
  // `complete`: removes what replication left on both sides; returns what
  // it removed, for the operator.
  virtual std::vector<std::string> CleanUpOnComplete() = 0;

  struct VerifyOutcome {
    bool clean = false;
    std::string summary;             // one line
    std::string json;                // the report
    std::vector<std::string> lines;  // what differed, one line each
    std::vector<Change> repairs;     // with repair: the reference's current rows (or deletes) to apply
  };
  // Where a verification starts, and what it reports after each chunk (the
  // background job, control/verify_job.h, records it and resumes from it
  // after a restart). Tables are verified in `tables`' order (TableId order).
  struct VerifyCursor {
    std::string table;                            // TableId::ToString(); empty: from the first table
    std::vector<std::optional<std::string>> key;  // rows up to this key (text, key order) are done; empty: none
  };
  struct VerifyProgress {
    std::string table;  // the table of the chunk just finished
    bool table_done = false;
    VerifyCursor done_through;  // resume point: `table` and its chunk's upper key (empty key with table_done)
    int64_t table_rows = 0;     // rows of `table` checked in this call
    int64_t table_rows_estimate = 0;
    std::vector<std::string> lines;  // `table`'s differences found in this call, one line each (as VerifyOutcome)
  };
  struct VerifyRun {
    VerifyCursor start_after;                                // resume: skip what it says is done
    std::function<void(const VerifyProgress&)> on_progress;  // optional; on the verifying thread
  };
  // Live verification while `flow` replicates from `reference` (the side the
  // applications write to) to the other side. `rows_per_s` is read live;
  // `stop` cancels. An engine that cannot resume answers InvalidArgument to
  // a non-empty start_after (MySQL: not yet).
  virtual Result<VerifyOutcome> Verify(proxy::Side reference, Flow& flow, const std::map<TableId, TablePtr>& tables,
                                       bool repair, std::function<int64_t()> rows_per_s,
                                       const std::atomic<bool>* stop, const VerifyRun& run) = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;

  // "postgres" or "mysql": recorded with the migration.
  virtual std::string_view name() const = 0;

  // Connects to both sides and checks everything that would make the run fail
  // later, adding one line per problem to *problems (the runner adds the
  // engine-neutral ones). `fresh`: nothing was done yet (the target must be
  // empty, the slot must not exist...). A returned error stops preflight
  // itself (a catalog query failed). Fills tables().
  virtual Status Preflight(bool fresh, std::vector<std::string>* problems) = 0;
  // The migrated tables as the source has them (after Preflight).
  virtual const std::vector<TablePtr>& tables() const = 0;
  // One line after "preflight ok: N tables, about M rows; " naming the sides.
  virtual std::string Sides() const = 0;
  // State recorded when a migration starts (besides tables and partitions).
  virtual std::vector<std::pair<std::string, std::string>> InitialState() const = 0;
  // Why a table cannot be migrated as it is (no key...), or "".
  virtual std::string TableProblem(const TableSchema& table) const = 0;

  // Creates the tables on the target (without what FinishSchema builds) and
  // midflight's bookkeeping there. Idempotent.
  virtual Status CreateSchema() = 0;

  // Splits every table into chunks of about `chunk_rows` rows.
  virtual Result<std::vector<Chunk>> PlanChunks(int64_t chunk_rows) = 0;
  // The chunks the target holds (recorded with their rows).
  virtual Result<DoneChunks> LoadDoneChunks() = 0;
  // Before copying: what the copy needs on the source (PostgreSQL: the
  // publication; the slot), and chunks that must be copied again (a table
  // copied from one snapshot as a whole that was left half-copied: its rows
  // go and its chunks leave *done). `todo` is false when every chunk is done.
  virtual Status PrepareCopy(const std::vector<Chunk>& plan, DoneChunks* done, bool todo) = 0;
  // Copies `chunks`, updating `progress`; each chunk is recorded on the
  // target with its rows. Cancelled when `stop` is set. Prints its first line.
  // An engine may also build a table's keys and indexes here once all its
  // chunks are committed (PostgreSQL does, engines/postgres/early_indexes.h);
  // whatever it did not build, FinishSchema does.
  virtual Status CopyChunks(std::vector<Chunk> chunks, CopyProgress& progress, const std::atomic<bool>& stop,
                            std::function<void(int)> on_chunk_committed) = 0;
  // transport.publish_snapshot: CopyChunks also publishes every copied row
  // through `publisher` (core/copy.h; it outlives the copy). Engines whose
  // copy does not publish refuse, naming the setting.
  virtual Status PublishCopy(CopyPublisher* publisher) {
    (void)publisher;
    return OperatorError(fmt::format("transport.publish_snapshot: a {} migration's copy is not published to Kafka "
                                     "(PostgreSQL to PostgreSQL and MySQL to MySQL only so far); remove the setting",
                                     name()));
  }
  // After the copy: keys, indexes, constraints not built yet (and sequences).
  virtual Status FinishSchema() = 0;

  // The engine's side of the replicate phase (after Preflight).
  virtual ReplicationOps& Replication() = 0;

  // Formats a source position for messages and status ("16/B374D848",
  // "binlog.000012:4711").
  virtual std::string FormatPosition(uint64_t pos) const = 0;
};

// Everything an engine offers without a run.
class EngineKind {
 public:
  virtual ~EngineKind() = default;
  virtual std::string_view name() const = 0;
  // A new run's engine object.
  virtual std::unique_ptr<Engine> New(const MigrationSpec& spec, MigrationRuntime& runtime,
                                      StateStore& store) const = 0;
  // `midflight abort`: removes what midflight created on the servers (slots,
  // publications); the rows copied to the target stay. Returns what it did,
  // for the operator ("slot and publication dropped").
  virtual Result<std::string> CleanUpAbort(const MigrationSpec& spec) const = 0;
  // `midflight compare`: per table, row counts and an order-independent or
  // ordered hash computed by each server.
  virtual Result<std::vector<TableComparison>> Compare(const MigrationSpec& spec) const = 0;
  // The proxy of a spec with `proxy:`, routed as the migration's stored phase
  // says. Unimplemented where the engine has no traffic plane yet.
  virtual Result<std::unique_ptr<proxy::TrafficSwitch>> StartTrafficSwitch(const MigrationSpec& spec,
                                                                          StateStore& store) const = 0;
  // `midflight apply-worker` and `replay` (kafka/apply_worker.h): the forward
  // flow's two ends without a run: the migrated tables as the source has them
  // now, and partition p's sink on the target with its checkpoints under
  // `checkpoint_key` (the spec's name: the migration's own rows, applied as
  // the forward flow's replication origin of p). Default: not supported.
  struct ApplyEnds {
    std::function<Result<std::vector<TablePtr>>()> load_tables;
    std::function<Result<std::unique_ptr<ChangeSink>>(PartitionId p, const std::string& checkpoint_key)> open_sink;
  };
  virtual Result<ApplyEnds> ApplyEndsOf(const MigrationSpec& spec) const {
    (void)spec;
    return InvalidArgument(fmt::format("apply workers: a {} migration is applied by its run process only (transport "
                                       "apply: run)",
                                       name()));
  }
  // Whether the engine takes switch/verify/rollback/complete operations.
  virtual bool has_traffic_plane() const = 0;  // `midflight schema SPEC --dry-run`: the DDL a run would create on the
  // target, each lossy or semantic change flagged. Engines that copy the
  // source's own DDL (same engine on both sides) say so instead.
  virtual Result<std::string> SchemaDdl(const MigrationSpec& spec) const {
    (void)spec;
    return InvalidArgument(fmt::format("schema --dry-run: a {} migration creates the target's tables as the source "
                                       "has them (no casting table between engines)",
                                       name()));
  }
};

// The engine of a spec, from its source and target URIs' schemes
// ("postgres://", "mysql://"): the same engine on both sides, or a pair built
// across engines (mysql -> postgres). InvalidArgument naming the scheme when
// no engine takes it, or both engines when the pair is not supported.
Result<const EngineKind*> EngineFor(const MigrationSpec& spec);
// The engine of a name stored with a migration ("postgres", "mysql").
Result<const EngineKind*> EngineNamed(std::string_view name);

}  // namespace midflight
