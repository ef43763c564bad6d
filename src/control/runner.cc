#include "control/runner.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <utility>

#include "base/log.h"
#include "base/parse.h"
#include "control/cutover.h"
#include "control/phase_driver.h"
#include "control/run_util.h"
#include "kafka/kafka_partition_log.h"
#include "kafka/snapshot_publisher.h"

namespace midflight {
namespace {

class Runner {
 public:
  Runner(Engine& engine, RunContext& ctx) : engine_(engine), ctx_(ctx), spec_(ctx.spec), store_(ctx.store) {}

  Status Run() {
    PhaseSteps steps;
    steps.preflight = [this](bool fresh) { return Preflight(fresh); };
    steps.schema_message = [this] { return fmt::format("creating {} tables on the target", engine_.tables().size()); };
    steps.create_schema = [this] {
      RETURN_IF_ERROR(engine_.CreateSchema());
      CrashPoint("after-pre-data");
      return Status::Ok();
    };
    steps.copy_message = "copying a consistent snapshot";
    steps.copy = [this] { return Copy(); };
    steps.finish_schema = [this] { return engine_.FinishSchema(); };
    steps.replicate = [this] { return Replicate(); };
    return DrivePhases(store_, spec_.name, ctx_.stop, steps);
  }

 private:
  Status Preflight(bool fresh);
  Status Copy();
  Status Replicate();
  Result<std::vector<Chunk>> Plan();
  Result<uint32_t> Partitions();
  Result<std::unique_ptr<CopyPublisher>> Publisher(bool some_done);

  Engine& engine_;
  RunContext& ctx_;
  const MigrationSpec& spec_;
  StateStore& store_;
};

Status Runner::Preflight(bool fresh) {
  std::vector<std::string> problems;
  RETURN_IF_ERROR(engine_.Preflight(fresh, &problems));
  const auto& tables = engine_.tables();
  if (tables.empty())
    problems.push_back(fmt::format("source: no table matches tables [{}] minus exclude [{}]",
                                   fmt::join(spec_.tables, ", "), fmt::join(spec_.exclude, ", ")));
  for (const auto& t : tables)
    if (std::string why = engine_.TableProblem(*t); !why.empty()) problems.push_back(why);
  std::string names;
  for (const auto& t : tables) names += t->id.ToString() + "\n";
  if (!fresh) {
    std::string then = store_.Get("tables").value_or(names);
    if (then != names)
      return OperatorError(fmt::format(
          "the tables selected by the spec changed since the migration started (then: {}; now: {}); restore the "
          "spec's tables/exclude, or start a new migration",
          then, names));
  }
  if (!problems.empty()) return OperatorError(fmt::format("preflight failed:\n  {}", fmt::join(problems, "\n  ")));
  if (fresh) {
    std::vector<std::pair<std::string, std::string>> kv = engine_.InitialState();
    kv.push_back({"tables", names});
    kv.push_back({"engine", std::string(engine_.name())});
    kv.push_back({"partitions", std::to_string(spec_.partitions)});
    RETURN_IF_ERROR(store_.PutMany(kv));
  }
  int64_t rows = 0;
  for (const auto& t : tables) rows += t->estimated_rows;
  Say(fmt::format("preflight ok: {} tables, about {} rows; {}", tables.size(), Commas(rows), engine_.Sides()));
  return Status::Ok();
}

// The copy plan, fixed at the first attempt: the chunks stored in the state.
Result<std::vector<Chunk>> Runner::Plan() {
  std::vector<Chunk> out;
  for (const auto& c : store_.Chunks()) {
    auto dot = c.table.find('.');
    if (dot == std::string::npos || c.kind < 0 || c.kind > static_cast<int>(Chunk::Kind::kPageRange))
      return Internal(fmt::format("state store: chunk {} of '{}' is malformed", c.number, c.table));
    out.push_back({TableId{c.table.substr(0, dot), c.table.substr(dot + 1)}, c.number,
                   static_cast<Chunk::Kind>(c.kind), c.lo, c.hi});
  }
  return out;
}

Result<uint32_t> Runner::Partitions() {
  const std::string v = store_.Get("partitions").value_or(std::to_string(spec_.partitions));
  uint64_t n = 0;
  if (!ParseU64(v, &n) || n == 0 || n > 4096)
    return Internal(fmt::format("state store: partitions '{}' is not a partition count", v));
  // A Kafka topic's partitions hold each key's changes in order: another
  // count would send a key's later changes to another partition.
  if (static_cast<int>(n) != spec_.partitions && spec_.transport.kind == TransportSpec::Kind::kKafka)
    return OperatorError(fmt::format(
        "the spec asks for {} partitions, but this migration started with {} and its Kafka topic {} is split so: "
        "changing the count would break each key's order; set partitions: {} (or transport.partitions)",
        spec_.partitions, n, spec_.transport.Topic(spec_.name), n));
  if (static_cast<int>(n) != spec_.partitions)
    LOG_WARN("the spec asks for {} partitions, but this migration runs with {} (fixed when it started)",
             spec_.partitions, n);
  return static_cast<uint32_t>(n);
}

Status Runner::Copy() {
  ASSIGN_OR_RETURN(std::vector<Chunk> plan, Plan());
  const auto& tables = engine_.tables();
  if (plan.empty()) {
    ASSIGN_OR_RETURN(plan, engine_.PlanChunks(spec_.chunk_rows));
    std::vector<ChunkRow> rows;
    for (const auto& c : plan) rows.push_back({c.table.ToString(), c.number, static_cast<int>(c.kind), c.lo, c.hi});
    RETURN_IF_ERROR(store_.SaveChunks(rows));
  }
  ASSIGN_OR_RETURN(DoneChunks done, engine_.LoadDoneChunks());
  bool todo = false;
  for (const auto& c : plan) todo = todo || !done.count({c.table.ToString(), c.number});
  RETURN_IF_ERROR(engine_.PrepareCopy(plan, &done, todo));

  CopyProgress progress;
  std::map<TableId, int> total;
  for (const auto& c : plan) ++total[c.table];
  // Rows copied by earlier runs, per table. Filled before the progress ticker
  // starts and only read (with at()) afterwards: the ticker runs on its own thread.
  std::map<TableId, int64_t> rows_at_start;
  for (const auto& t : tables) {
    auto p = std::make_unique<TableProgress>();
    p->chunks_total = total[t->id];
    progress[t->id] = std::move(p);
    rows_at_start[t->id] = 0;
  }
  std::vector<Chunk> chunks;
  for (const auto& c : plan) {
    auto it = done.find({c.table.ToString(), c.number});
    if (it == done.end()) {
      chunks.push_back(c);
    } else {
      progress[c.table]->rows += it->second.rows;
      progress[c.table]->bytes += it->second.bytes;
      ++progress[c.table]->chunks_done;
      rows_at_start[c.table] += it->second.rows;
    }
  }
  auto started = std::chrono::steady_clock::now();
  auto save_progress = [&](const char* final_state) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    SaveCopyProgress(store_, tables, progress, rows_at_start, secs, final_state);
  };
  if (!chunks.empty()) {
    Ticker ticker(std::chrono::milliseconds(1000), [&] { save_progress(nullptr); });
    auto last_print = std::chrono::steady_clock::now();
    std::map<TableId, int64_t> rows_at_print = rows_at_start;  // the printer thread's
    Ticker printer(std::chrono::milliseconds(5000), [&] {
      const auto now = std::chrono::steady_clock::now();
      const double secs = std::chrono::duration<double>(now - last_print).count();
      if (secs < 4) return;
      last_print = now;
      for (const auto& t : tables) {
        const auto& p = *progress.at(t->id);
        const int64_t rows = p.rows;
        const int64_t since = rows - std::exchange(rows_at_print[t->id], rows);
        if (p.chunks_done == p.chunks_total || rows == 0) continue;
        // The estimate comes from the catalog's statistics: the percentage may pass 100 before the end.
        Say(fmt::format("  {:<36} {:>12} / ~{} rows ({:.0f} %), {} rows/s  chunk {}/{}", t->id.ToString(),
                        Commas(rows), Commas(t->estimated_rows),
                        t->estimated_rows > 0 ? 100.0 * static_cast<double>(rows) / static_cast<double>(t->estimated_rows) : 0.0,
                        Commas(static_cast<int64_t>(static_cast<double>(since) / secs)), p.chunks_done.load(),
                        p.chunks_total));
      }
    });
    ASSIGN_OR_RETURN(std::unique_ptr<CopyPublisher> publisher, Publisher(chunks.size() < plan.size()));
    Status st = engine_.CopyChunks(std::move(chunks), progress, ctx_.stop, [](int n) { CrashPoint("copy-chunks", n); });
    save_progress(nullptr);
    if (!st.ok()) return st;
    if (publisher) RETURN_IF_ERROR(publisher->Finish());
  }
  save_progress("copied");
  int64_t rows = 0;
  for (const auto& [id, p] : progress) rows += p->rows;
  Say(fmt::format("copying: done, {} rows in {:.1f} s", Commas(rows),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()));
  return Status::Ok();
}

// transport.publish_snapshot: the producer the copy publishes its rows
// through (kafka/snapshot_publisher.h), or null. `some_done`: chunks were
// copied by an earlier run. A run that copies chunks after an earlier one
// published some may copy a chunk again from a newer snapshot: reset
// records first. The setting cannot change while the copy is unfinished.
Result<std::unique_ptr<CopyPublisher>> Runner::Publisher(bool some_done) {
  const bool wanted = spec_.transport.kind == TransportSpec::Kind::kKafka && spec_.transport.publish_snapshot;
  const bool before = store_.Get("snapshot_published").has_value();
  if (wanted && some_done && !before)
    return OperatorError(fmt::format("transport.publish_snapshot: the copy of migration {} began without it, so its "
                                     "topic lacks the chunks copied already; finish it without the setting, or start "
                                     "a new migration with it",
                                     spec_.name));
  if (!wanted && before)
    return OperatorError(fmt::format("transport.publish_snapshot: the copy of migration {} began with it; the rest of "
                                     "the copy must be published too: set it again",
                                     spec_.name));
  if (!wanted) return std::unique_ptr<CopyPublisher>();
  ASSIGN_OR_RETURN(uint32_t partitions, Partitions());
  RETURN_IF_ERROR(store_.Put("snapshot_published", "true"));
  ASSIGN_OR_RETURN(std::unique_ptr<CopyPublisher> publisher,
                   kafka::OpenSnapshotPublisher(
                       kafka::SnapshotPublisherOptionsOf(spec_.transport, spec_.name, partitions, before)));
  RETURN_IF_ERROR(engine_.PublishCopy(publisher.get()));
  Say(fmt::format("copying: every copied row is published to {} (and its table topic){}",
                  spec_.transport.Topic(spec_.name), before ? "; chunks copied again are reset first" : ""));
  return publisher;
}

Status Runner::Replicate() {
  ReplicateStart start;
  ASSIGN_OR_RETURN(start.partitions, Partitions());
  if (spec_.transport.kind == TransportSpec::Kind::kKafka)
    start.log_factory = kafka::KafkaLogFactory(spec_.transport, spec_.name);
  start.external_apply = spec_.transport.kind == TransportSpec::Kind::kKafka && spec_.transport.apply_by_workers;
  if (start.external_apply) {
    // The engines whose target side `midflight apply-worker` can open.
    ASSIGN_OR_RETURN(const EngineKind* kind, EngineNamed(engine_.name()));
    if (auto ends = kind->ApplyEndsOf(spec_); !ends.ok())
      return OperatorError(fmt::format("transport.apply: workers: {}", ends.status().message()));
  }
  // What the copy holds: per chunk (value ranges) or per table. A completed
  // migration no longer replicates from the copy, nor one whose `complete`
  // was interrupted (Cutover::Run finishes it; its drops may have removed the
  // target's chunk records already).
  if (store_.phase() != Phase::kCompleted && store_.Get("completing").value_or("") != "true") {
    ASSIGN_OR_RETURN(DoneChunks done, engine_.LoadDoneChunks());
    ASSIGN_OR_RETURN(std::vector<Chunk> plan, Plan());
    uint64_t oldest = UINT64_MAX;
    for (const auto& c : plan) {
      auto it = done.find({c.table.ToString(), c.number});
      if (it == done.end())
        return DataLoss(fmt::format("chunk {} of {} is not recorded on the target; the copy is incomplete", c.number,
                                    c.table.ToString()));
      const Position snap = it->second.snapshot;
      if (c.kind == Chunk::Kind::kIntRange)
        start.filter.AddRange(c.table, c.lo, c.hi, snap);
      else
        start.filter.AddTable(c.table, snap);
      oldest = std::min(oldest, it->second.snapshot.value());
    }
    start.oldest_snapshot = oldest == UINT64_MAX ? 0 : oldest;
  }
  // Replication (and, where the engine has a traffic plane, the switches,
  // served while it runs).
  Cutover cutover(spec_, store_, ctx_.traffic, ctx_.runtime, engine_.Replication(),
                  [this](uint64_t pos) { return engine_.FormatPosition(pos); });
  if (ctx_.publish_operations)
    ctx_.publish_operations([&cutover](const TrafficRequest& r) { return cutover.Do(r); });
  Status st = cutover.Run(engine_.tables(), std::move(start), ctx_.stopping);
  if (ctx_.publish_operations) ctx_.publish_operations(nullptr);
  return st;
}

}  // namespace

Status RunMigration(const EngineKind& kind, RunContext& ctx) {
  RETURN_IF_ERROR(ctx.store.PutMany({{"name", ctx.spec.name}, {"pid", std::to_string(getpid())}}));
  std::unique_ptr<Engine> engine = kind.New(ctx.spec, ctx.runtime, ctx.store);
  Runner runner(*engine, ctx);
  Status st = runner.Run();
  if (ctx.publish_operations) ctx.publish_operations(nullptr);
  return st;
}

}  // namespace midflight
