#include "engines/mysql/durable_copy.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "base/log.h"
#include "base/parse.h"
#include "base/stop.h"
#include "control/knobs.h"
#include "control/phase_driver.h"

namespace midflight::mysql {

std::chrono::milliseconds CommitDurableAfter(const std::string& flush_log_at_trx_commit,
                                             const std::string& flush_log_at_timeout) {
  if (flush_log_at_trx_commit == "1") return std::chrono::milliseconds(0);
  int64_t timeout = 1;
  if (!ParseI64(flush_log_at_timeout, &timeout) || timeout < 0) timeout = 1;
  return std::chrono::milliseconds(timeout * 1000 + 2000);
}

Result<DoneChunks> LoadChunkRecords(MyConn& target, const std::string& migration, PositionKind kind) {
  ASSIGN_OR_RETURN(MyResult r, target.Query(fmt::format("SELECT table_name, chunk, snapshot_pos, rows_copied, "
                                                        "bytes_copied FROM midflight.chunks WHERE migration = {}",
                                                        QuoteString(migration))));
  DoneChunks done;
  for (int i = 0; i < r.rows(); ++i) {
    uint64_t snapshot = 0;
    if (!ParseU64(r.Get(i, 2), &snapshot))
      return DataLoss(fmt::format("target: midflight.chunks has snapshot_pos '{}' for chunk {} of {}, not a position",
                                  r.Get(i, 2), r.Get(i, 1), r.Get(i, 0)));
    done[{r.Get(i, 0), static_cast<int>(r.GetInt(i, 1))}] = {Position::Of(kind, snapshot), r.GetInt(i, 3),
                                                             r.GetInt(i, 4)};
  }
  return done;
}

Status EmptyForCopyAgain(MyConn& target, const std::string& migration, const TableId& source,
                         const TableId& target_table) {
  RETURN_IF_ERROR(target.Exec("START TRANSACTION"));
  RETURN_IF_ERROR(target.Exec(fmt::format("DELETE FROM {}", QuoteQualified(target_table.schema, target_table.name))));
  RETURN_IF_ERROR(target.Exec(fmt::format("DELETE FROM midflight.chunks WHERE migration = {} AND table_name = {}",
                                          QuoteString(migration), QuoteString(source.ToString()))));
  return target.Exec("COMMIT");
}

namespace {

// The chunks the target records once `how.delay` has passed (then durable).
// The target may be down right now (it crashed during the wait): retried as
// the copy workers retry, up to fail_after_seconds.
Result<DoneChunks> DurableRecords(const DurableCopy& how, const std::atomic<bool>& stop) {
  if (StopRef(stop).WaitFor(how.delay)) return Cancelled("copy stopped");
  const auto first = std::chrono::steady_clock::now();
  auto backoff = std::chrono::milliseconds(200);
  while (true) {
    auto loaded = how.load_done();
    if (loaded.ok()) return loaded;
    const double failing = std::chrono::duration<double>(std::chrono::steady_clock::now() - first).count();
    const double fail_after = how.knobs ? how.knobs->Get(Knob::kFailAfterSeconds) : 0;
    if (failing >= fail_after)
      return OperatorError(
          fmt::format("copying: checking the target holds every chunk: {}; still failing after "
                      "{:.0f} s (knob fail_after_seconds)",
                      loaded.status().message(), failing));
    LOG_WARN("copying: checking the target holds every chunk: {}; retrying in {} ms", loaded.status().message(),
             backoff.count());
    if (StopRef(stop).WaitFor(backoff)) return Cancelled("copy stopped");
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

// The chunks of `copied` the target does not hold durably, with every chunk
// of a table not split by key value that lost one (emptied here).
Result<std::vector<Chunk>> LostChunks(const DurableCopy& how, const std::vector<Chunk>& copied, CopyProgress& progress,
                                      const std::atomic<bool>& stop) {
  ASSIGN_OR_RETURN(DoneChunks done, DurableRecords(how, stop));
  std::vector<Chunk> lost;
  std::set<TableId> whole;  // tables copied from one snapshot (not split by key value) that lost a chunk
  std::map<TableId, int> in_copied;
  for (const auto& c : copied) {
    ++in_copied[c.table];
    if (done.count({c.table.ToString(), c.number})) continue;
    lost.push_back(c);
    if (c.kind != Chunk::Kind::kIntRange) whole.insert(c.table);
  }
  if (lost.empty()) return lost;
  Say(
      fmt::format("copying: the target lost {} chunk(s) it had acknowledged (it restarted before its log reached "
                  "the disk); copying them again",
                  lost.size()));
  for (const auto& c : lost) {
    LOG_INFO("copying: chunk {} of {} is not on the target any more", c.number, c.table.ToString());
    --progress.at(c.table)->chunks_done;  // its rows stay counted: the copied-rows figure runs over by them
  }
  // A table not split by key value must come from one snapshot: whole again.
  for (const TableId& id : whole) {
    if (in_copied[id] != progress.at(id)->chunks_total)
      return DataLoss(
          fmt::format("copying: the target lost a chunk of {} it had acknowledged, and the table's "
                      "other chunks came from an earlier run; run midflight again to copy the table again "
                      "whole",
                      id.ToString()));
    if (in_copied[id] > 1)
      Say(fmt::format("copying: {} is copied from one snapshot; copying it again whole", id.ToString()));
    RETURN_IF_ERROR(how.empty_table(id));
    std::erase_if(lost, [&](const Chunk& c) { return c.table == id; });
    for (const auto& c : copied) {
      if (c.table != id) continue;
      if (done.count({c.table.ToString(), c.number})) --progress.at(id)->chunks_done;
      lost.push_back(c);
    }
    progress.at(id)->rows = 0;
    progress.at(id)->bytes = 0;
  }
  return lost;
}

}  // namespace

Status CopyUntilDurable(const DurableCopy& how, std::vector<Chunk> chunks, CopyProgress& progress,
                        const std::atomic<bool>& stop) {
  const std::vector<Chunk> copied = chunks;
  while (true) {
    RETURN_IF_ERROR(how.copy_round(std::move(chunks)));
    if (how.delay.count() == 0) return Status::Ok();
    ASSIGN_OR_RETURN(chunks, LostChunks(how, copied, progress, stop));
    if (chunks.empty()) return Status::Ok();
  }
}

}  // namespace midflight::mysql
