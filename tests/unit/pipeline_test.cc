// The pipeline (Sequencer, Flow, appliers, router, collapsing) driven by a
// scripted change source and an in-memory target: no servers.
//
//   FakeSource ── Begin / Emit / Commit / Idle ──► Sequencer ─► PartitionLog[p] ─► Applier[p] ─► FakeSink[p] ─┐
//     replays a script; drops the connection at chosen                                                       ▼
//     changes and resends from seq.Confirmable()                                                      FakeTarget
//                                                    barriers ──────────────────────► FakeSink[N] ─► (tables, checkpoints,
//                                                                                                     what it applied)
// Each test states the property it proves; the model every final target is
// compared with is the script applied serially.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "control/transport_spec.h"
#include "kafka/kafka_partition_log.h"
#include "kafka/mock_cluster.h"
#include "pipeline/batch.h"
#include "pipeline/change_source.h"
#include "pipeline/conflicts.h"
#include "pipeline/flow.h"
#include "pipeline/partition_log.h"
#include "pipeline/sequencer.h"
#include "test_tables.h"

namespace midflight {
// Readable failures: a row prints as its values.
static void PrintTo(const Datum& d, std::ostream* os) {
  *os << (d.is_null() ? "NULL" : d.is_unchanged() ? "<unchanged>" : "'" + d.text + "'");
}

using namespace testing;
namespace {

using Row = std::vector<Datum>;
using Rows = std::map<std::string, Row>;  // key text -> row
using Db = std::map<std::string, Rows>;   // table name -> rows

constexpr uint32_t kParts = 4;
constexpr uint32_t kBarrier = UINT32_MAX;  // Seen::partition of a change applied as a barrier

std::string KeyOf(const TableSchema& t, const Row& image) {
  std::string key;
  for (size_t i = 0; i < t.key_writable.size(); ++i) {
    if (i) key.push_back('\x1f');
    key += image.at(t.key_writable[i]).text;
  }
  return key;
}

// Applies one change as a target writing by key does (upsert, delete by key;
// an update fills its unchanged values from the row it replaces; a partial
// update of a missing row is a no-op). Returns whether the row the change
// addresses existed before it.
bool ApplyChange(Db& db, const Change& c) {
  if (c.kind == ChangeKind::kTruncate) {
    for (const auto& t : c.truncated) db[t->id.ToString()].clear();
    return true;
  }
  Rows& rows = db[c.table->id.ToString()];
  auto it = rows.find(c.KeyText());
  const bool existed = it != rows.end();
  switch (c.kind) {
    case ChangeKind::kInsert: rows[KeyOf(*c.table, c.values)] = c.values; break;
    case ChangeKind::kDelete:
      if (existed) rows.erase(it);
      break;
    case ChangeKind::kUpdate: {
      Row row = c.values;
      if (!existed && c.HasUnchangedValues()) break;
      if (existed) {
        for (size_t i = 0; i < row.size(); ++i)
          if (row[i].is_unchanged()) row[i] = it->second.at(i);
        rows.erase(it);
      }
      rows[KeyOf(*c.table, row)] = row;
      break;
    }
    case ChangeKind::kTruncate: break;
  }
  return existed;
}

// A value of the unique column (index 2) held by two rows, or empty.
std::string UniqueViolation(const Rows& rows) {
  std::set<std::string> seen;
  for (const auto& [key, row] : rows)
    if (!row.at(2).is_null() && !seen.insert(row.at(2).text).second) return row.at(2).text;
  return {};
}

// One change as the target applied it.
struct Seen {
  ChangePosition pos;
  std::string key;     // table and the key the change addressed (the old key of a delete)
  uint32_t partition;  // kBarrier for a barrier
  ChangeKind kind;
  ConflictCheck check;
  bool moves_key = false;
};

// The target: tables, per-partition checkpoints, and what it was asked to do.
// Everything is guarded by mu; sinks lock it for each call.
struct FakeTarget {
  explicit FakeTarget(uint32_t partitions) : checkpoints(partitions) {}

  std::mutex mu;
  Db db;
  std::vector<ChangePosition> checkpoints;
  std::vector<Seen> seen;                          // every change committed, in commit order
  std::map<ChangePosition, int> applications;      // commits per change position
  std::vector<Db> barrier_found;                   // the tables as each barrier found them
  std::vector<std::vector<ChangePosition>> barrier_checkpoints;  // every checkpoint right after each barrier
  std::map<uint32_t, std::set<std::thread::id>> threads;         // partition -> threads that applied its batches
  int batches = 0, conflicts = 0, calls = 0;
  std::set<std::string> unique_tables;             // tables whose column 2 is UNIQUE

  // Faults.
  std::deque<Status> fail_next;  // the next ApplyBatch calls fail with these, in turn (nothing applied)
  int lose_acks = 0;      // the next lose_acks batches commit, then report a lost connection
  std::optional<uint32_t> dead_partition;  // its every ApplyBatch fails with dead_status
  Status dead_status;
  int barrier_fail_calls = 0;  // the next barrier_fail_calls ApplyBarrier calls fail with barrier_fail_status
  Status barrier_fail_status;
  std::chrono::microseconds delay{0};  // each ApplyBatch takes at least this long
  uint64_t generation = 0;             // Crash() breaks every connection opened before it
  std::deque<std::pair<Db, std::vector<ChangePosition>>> history;  // state before each recent commit

  // The target crashed without flushing: the last `lost` commits are gone
  // and every connection is broken.
  void Crash(size_t lost) {
    std::lock_guard lock(mu);
    ASSERT_LE(lost, history.size());
    for (size_t i = 0; i < lost; ++i) {
      db = history.back().first;
      checkpoints = history.back().second;
      history.pop_back();
    }
    ++generation;
  }

  void Commit(Db work, uint32_t p, ChangePosition cp, std::vector<Seen> applied) {
    history.emplace_back(db, checkpoints);
    if (history.size() > 32) history.pop_front();
    db = std::move(work);
    if (p != kBarrier) checkpoints.at(p) = cp;
    for (auto& s : applied) {
      ++applications[s.pos];
      seen.push_back(std::move(s));
    }
  }

  std::map<ChangePosition, int> Applications() {
    std::lock_guard lock(mu);
    return applications;
  }
  Db Tables() {
    std::lock_guard lock(mu);
    return db;
  }
};

class FakeSink final : public ChangeSink {
 public:
  FakeSink(FakeTarget* t, uint32_t p) : t_(t), p_(p), generation_(t->generation) {}

  Result<ChangePosition> LoadCheckpoint() override {
    std::lock_guard lock(t_->mu);
    if (!Connected()) return RetryCall("fake target: connection lost");
    return p_ < t_->checkpoints.size() ? t_->checkpoints[p_] : ChangePosition{};
  }

  Status ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint, BatchConflicts* conflicts) override {
    if (t_->delay.count() > 0) std::this_thread::sleep_for(t_->delay);
    std::lock_guard lock(t_->mu);
    ++t_->calls;
    t_->threads[p_].insert(std::this_thread::get_id());
    if (!Connected()) return RetryCall("fake target: connection lost");
    if (!t_->fail_next.empty()) {
      Status st = t_->fail_next.front();
      t_->fail_next.pop_front();
      if (st.code() == StatusCode::kRetryCall) broken_ = true;
      return st;
    }
    if (t_->dead_partition == p_) return t_->dead_status;
    Db work = t_->db;
    std::vector<Seen> applied;
    for (const Change& c : changes) {
      const bool existed = ApplyChange(work, c);
      if (auto kind = ConflictOf(c, existed)) conflicts->found.push_back({*kind, &c});
      if (t_->unique_tables.count(c.table->id.ToString())) {
        std::string dup = UniqueViolation(work[c.table->id.ToString()]);
        if (!dup.empty())
          return OperatorError("duplicate key value violates unique constraint: note=" + dup + " at " +
                               c.pos.ToString());
      }
      applied.push_back({c.pos, c.table->id.ToString() + "/" + c.KeyText(), p_, c.kind, c.check, c.MovesKey()});
    }
    if (conflicts->stop && !conflicts->found.empty()) return ConflictStopError(conflicts->found.front());
    t_->conflicts += static_cast<int>(conflicts->found.size());
    ++t_->batches;
    t_->Commit(std::move(work), p_, checkpoint, std::move(applied));
    if (t_->lose_acks > 0) {
      --t_->lose_acks;
      broken_ = true;
      return RetryCall("fake target: connection lost after COMMIT");
    }
    return Status::Ok();
  }

  Status ApplyBarrier(const Change& change, uint32_t partitions) override {
    std::lock_guard lock(t_->mu);
    if (!Connected()) Resync();  // like PgChangeSink: a broken connection is reopened first
    if (t_->barrier_fail_calls > 0) {
      --t_->barrier_fail_calls;
      return t_->barrier_fail_status;
    }
    t_->barrier_found.push_back(t_->db);
    Db work = t_->db;
    ApplyChange(work, change);
    t_->Commit(std::move(work), kBarrier, change.pos,
               {{change.pos, change.table->id.ToString() + "/" + change.KeyText(), kBarrier, change.kind,
                 change.check, change.MovesKey()}});
    for (uint32_t p = 0; p < partitions; ++p) t_->checkpoints.at(p) = change.pos;
    t_->barrier_checkpoints.push_back(t_->checkpoints);
    return Status::Ok();
  }

  Status Reconnect() override {
    std::lock_guard lock(t_->mu);
    Resync();
    return Status::Ok();
  }

 private:
  bool Connected() const { return !broken_ && generation_ == t_->generation; }
  void Resync() {
    broken_ = false;
    generation_ = t_->generation;
  }
  FakeTarget* t_;
  const uint32_t p_;
  uint64_t generation_;
  bool broken_ = false;
};

// One source transaction of a script.
struct Txn {
  uint64_t pos = 0, end = 0;
  std::vector<Change> changes;
};

// What a FakeSource replays, and what it saw. The test sets the script up
// before the flow starts; the stream thread then owns it (except the atomics).
struct SourceScript {
  std::vector<Txn> txns;
  // The connection drops just before change .second of transaction .first, once each.
  std::set<std::pair<size_t, size_t>> drops;
  std::function<void(Sequencer&)> on_drop;                           // stream thread, just before a drop
  std::function<void(Sequencer&, size_t txn, size_t change)> before_emit;  // stream thread
  bool idle_on_connect = false;  // report Idle(0) as soon as connected, before resending anything
  // Skip decoding a transaction Begin() says every partition holds (the
  // MySQL source does; the PostgreSQL one sends it all regardless).
  bool honor_skip = false;
  std::atomic<size_t> pause_at{SIZE_MAX};  // send no transaction from this index on (idle) until it is raised

  std::atomic<Sequencer*> seq{nullptr};
  std::atomic<int> connects{0}, pokes{0};
  std::atomic<size_t> sent{0};               // transactions committed into the sequencer (index + 1)
  std::atomic<uint64_t> last_confirmable{0};  // seq.Confirmable() when the stream stopped: where a new run resumes
  std::vector<uint64_t> starts;               // where each connection resumed (stream thread; read after Stop)
};

class FakeSource final : public ChangeSource {
 public:
  explicit FakeSource(std::shared_ptr<SourceScript> s) : s_(std::move(s)) {}

  Status Stream(Sequencer& seq, StopRef stop) override {
    SourceScript& s = *s_;
    s.seq = &seq;
    ++s.connects;
    seq.stats().connected = true;
    // Like a real source: the server resends every transaction at or after
    // the position it was told is consumed.
    const uint64_t from = seq.Confirmable();
    s.starts.push_back(from);
    if (s.idle_on_connect) RETURN_IF_ERROR(seq.Idle(0));
    uint64_t last_end = 0;
    for (size_t i = 0; i < s.txns.size() && !stop; ++i) {
      const Txn& t = s.txns[i];
      if (t.pos < from) continue;
      while (i >= s.pause_at && !stop) {
        RETURN_IF_ERROR(seq.Idle(0));
        seq.Confirmed(seq.Confirmable());
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (stop) break;
      const bool skip = seq.Begin(Position::Pg(t.pos), 1'700'000'000'000'000 + static_cast<int64_t>(t.pos));
      for (size_t j = 0; j < t.changes.size(); ++j) {
        if (s.drops.erase({i, j})) {
          if (s.on_drop) s.on_drop(seq);
          return RetryCall("fake source: connection lost");
        }
        if (s.before_emit) s.before_emit(seq, i, j);
        if (!skip || !s.honor_skip) RETURN_IF_ERROR(seq.Emit(t.changes[j]));
      }
      RETURN_IF_ERROR(seq.Commit(t.end));
      seq.Confirmed(seq.Confirmable());  // the feedback a real source sends
      last_end = t.end;
      if (i + 1 > s.sent) s.sent = i + 1;
    }
    while (!stop) {  // caught up (or paused): keepalives until stopped
      RETURN_IF_ERROR(seq.Idle(last_end));
      seq.Confirmed(seq.Confirmable());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    s.last_confirmable = seq.Confirmable();
    return Status::Ok();
  }

  void Poke() override { ++s_->pokes; }

 private:
  std::shared_ptr<SourceScript> s_;
};

// Builds scripts over public.accounts (id, balance, note) and the source's
// state (the model) as it goes. Seeded: every run is the same.
class ScriptGen {
 public:
  ScriptGen(uint32_t seed, std::shared_ptr<const TableSchema> table, int keys)
      : rng_(seed), t_(std::move(table)), keys_(keys) {}

  struct Mix {
    int update = 5, partial = 2, del = 1, move = 1, toast_move = 0;
  };

  // A transaction of `n` random changes.
  Txn Random(int n, Mix mix) {
    Txn txn = Begin();
    for (int i = 0; i < n; ++i) {
      // Mostly one of the first `keys_`; sometimes any row (one a key move made).
      std::string key = std::to_string(rng_() % keys_);
      if (rng_() % 4 == 0 && pending_.count(t_->id.ToString()) && !pending_.at(t_->id.ToString()).empty()) {
        const Rows& rows = pending_.at(t_->id.ToString());
        key = std::next(rows.begin(), static_cast<long>(rng_() % rows.size()))->first;
      }
      if (!Has(key)) {
        Add(txn, Ins(key));
        continue;
      }
      int total = mix.update + mix.partial + mix.del + mix.move + mix.toast_move;
      int r = static_cast<int>(rng_() % total);
      if ((r -= mix.update) < 0) Add(txn, Upd(key, Datum::Text(Note())));
      else if ((r -= mix.partial) < 0) Add(txn, Upd(key, Datum::Unchanged()));
      else if ((r -= mix.del) < 0) Add(txn, Del(key));
      else if (std::string to = FreeKey(); (r -= mix.move) < 0) Add(txn, Move(key, to, Datum::Text(Note())));
      else Add(txn, Move(key, to, Datum::Unchanged()));
    }
    return End(std::move(txn));
  }

  Txn Begin() {
    Txn t;
    next_pos_ += 100;
    t.pos = next_pos_;
    t.end = next_pos_ + 50;
    return t;
  }
  Txn End(Txn t) {
    model_before_.emplace(t.pos, model_);
    for (const Change& c : t.changes) ApplyChange(model_, c);
    return t;
  }
  void Add(Txn& t, Change c) {
    // The model follows change by change so that the next change's choice sees it.
    ApplyChange(pending_, c);
    t.changes.push_back(std::move(c));
  }

  Change Ins(const std::string& key) {
    return Make(ChangeKind::kInsert, t_, 0, 0, {Datum::Text(key), Datum::Text(Val()), Datum::Text(Note())});
  }
  Change Upd(const std::string& key, Datum note) {
    return Make(ChangeKind::kUpdate, t_, 0, 0, {Datum::Text(key), Datum::Text(Val()), std::move(note)});
  }
  Change Del(const std::string& key) {
    return Make(ChangeKind::kDelete, t_, 0, 0, {}, {Datum::Text(key), Datum::Null(), Datum::Null()});
  }
  // An update that changes the key (the old image carries the key only, as
  // PostgreSQL sends it).
  Change Move(const std::string& from, const std::string& to, Datum note) {
    return Make(ChangeKind::kUpdate, t_, 0, 0, {Datum::Text(to), Datum::Text(Val()), std::move(note)},
                {Datum::Text(from), Datum::Null(), Datum::Null()});
  }
  Change Truncate() {
    Change c = Make(ChangeKind::kTruncate, t_, 0, 0, {});
    c.truncated = {t_};
    return c;
  }

  bool Has(const std::string& key) const {
    auto it = pending_.find(t_->id.ToString());
    return it != pending_.end() && it->second.count(key);
  }
  std::string FreeKey() {
    for (int i = 0; i < 100; ++i) {
      std::string k = std::to_string(keys_ + static_cast<int>(rng_() % (keys_ * 4)));
      if (!Has(k)) return k;
    }
    return std::to_string(keys_ * 5 + ++fresh_);
  }

  std::string AnyKey() const { return pending_.at(t_->id.ToString()).begin()->first; }
  const Db& model() const { return model_; }
  // The source's tables just before transaction `pos`.
  const Db& before(uint64_t pos) const { return model_before_.at(pos); }
  std::mt19937& rng() { return rng_; }

 private:
  std::string Val() { return std::to_string(++val_); }
  std::string Note() { return "n" + std::to_string(++val_); }
  std::mt19937 rng_;
  std::shared_ptr<const TableSchema> t_;
  int keys_;
  uint64_t next_pos_ = 1000;
  int val_ = 0, fresh_ = 0;
  Db model_, pending_;
  std::map<uint64_t, Db> model_before_;
};

// The rows two stores disagree on ("" when equal): readable failures.
std::string Diff(const Db& got, const Db& want) {
  std::string out;
  auto row = [](const Rows& rows, const std::string& k) {
    auto it = rows.find(k);
    if (it == rows.end()) return std::string("(none)");
    std::string s;
    for (const Datum& d : it->second) s += (d.is_null() ? "NULL" : d.is_unchanged() ? "<u>" : d.text) + " ";
    return s;
  };
  std::set<std::string> tables;
  for (const auto& [t, r] : got) tables.insert(t);
  for (const auto& [t, r] : want) tables.insert(t);
  for (const std::string& t : tables) {
    static const Rows kEmpty;
    const Rows& g = got.count(t) ? got.at(t) : kEmpty;
    const Rows& w = want.count(t) ? want.at(t) : kEmpty;
    std::set<std::string> keys;
    for (const auto& [k, v] : g) keys.insert(k);
    for (const auto& [k, v] : w) keys.insert(k);
    for (const std::string& k : keys)
      if (row(g, k) != row(w, k)) out += t + " key " + k + ": got " + row(g, k) + "want " + row(w, k) + "\n";
  }
  return out;
}

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// A Flow over a FakeSource and FakeSinks of one FakeTarget.
class PipelineTest : public ::testing::Test {
 protected:
  FlowOptions Options() {
    FlowOptions o;
    o.partitions = kParts;
    o.applier.defaults.batch_size = 8;
    o.applier.defaults.linger = std::chrono::milliseconds(1);
    o.applier.defaults.max_backoff = std::chrono::milliseconds(1);
    o.applier.defaults.fail_after_seconds = 30;
    return o;
  }

  std::unique_ptr<Flow> StartFlow(std::shared_ptr<SourceScript> script, FlowOptions o) {
    auto flow = Flow::Start(std::move(o), std::make_unique<FakeSource>(script),
                            [this](PartitionId p, const ApplyTracker&) -> Result<std::unique_ptr<ChangeSink>> {
                              return std::unique_ptr<ChangeSink>(std::make_unique<FakeSink>(&target_, p.value));
                            });
    EXPECT_TRUE(flow.ok()) << flow.status().ToString();
    return flow.ok() ? std::move(flow).value() : nullptr;
  }
  std::unique_ptr<Flow> StartFlow(std::shared_ptr<SourceScript> script) { return StartFlow(script, Options()); }

  static std::shared_ptr<SourceScript> Script(std::vector<Txn> txns) {
    auto s = std::make_shared<SourceScript>();
    s->txns = std::move(txns);
    return s;
  }

  // Waits until the flow applied every transaction of the script.
  void WaitApplied(Flow& flow, const SourceScript& s) {
    const uint64_t last = s.txns.back().end;
    ASSERT_TRUE(WaitFor([&] { return flow.AppliedThrough() >= last || !flow.health().ok(); }))
        << "applied through " << flow.AppliedThrough() << ", want " << last;
    ASSERT_TRUE(flow.health().ok()) << flow.health().ToString();
  }

  // Per-key order: the changes of every key reached the target in source
  // order, all through one partition (or a barrier).
  void ExpectPerKeyOrder(size_t from = 0) {
    std::lock_guard lock(target_.mu);
    std::map<std::string, ChangePosition> last;
    std::map<std::string, uint32_t> partition;
    for (size_t i = from; i < target_.seen.size(); ++i) {
      const Seen& s = target_.seen[i];
      if (s.kind == ChangeKind::kTruncate) continue;
      auto [it, fresh] = last.emplace(s.key, s.pos);
      if (!fresh) {
        EXPECT_LT(it->second, s.pos) << "key " << s.key << " applied out of source order";
        it->second = s.pos;
      }
      if (s.partition == kBarrier) continue;
      auto [pit, pfresh] = partition.emplace(s.key, s.partition);
      EXPECT_EQ(pit->second, s.partition) << "key " << s.key << " applied by two partitions";
    }
  }

  void ExpectAppliedAtMostOnce() {
    for (const auto& [pos, n] : target_.Applications()) EXPECT_EQ(n, 1) << "change at " << pos.ToString();
  }

  FakeTarget target_{kParts};
};

// (1) Per-key order across four partitions: many keys, many changes per key
// in random interleavings; the target ends equal to the script applied
// serially, every key's changes arrive in source order through one partition,
// no change is applied twice and no apply conflict is met.
TEST_F(PipelineTest, PerKeyOrderAcrossPartitions) {
  ScriptGen gen(1, Accounts(), 40);
  std::vector<Txn> txns;
  for (int i = 0; i < 400; ++i) txns.push_back(gen.Random(1 + static_cast<int>(gen.rng()() % 6), {}));
  auto s = Script(std::move(txns));
  auto flow = StartFlow(s);
  WaitApplied(*flow, *s);
  flow->Stop();
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
  ExpectPerKeyOrder();
  ExpectAppliedAtMostOnce();
  std::lock_guard lock(target_.mu);
  EXPECT_EQ(target_.conflicts, 0);
  EXPECT_TRUE(target_.barrier_found.empty());
  EXPECT_EQ(target_.threads.size(), kParts) << "every partition applied something";
  for (const auto& [p, threads] : target_.threads) EXPECT_EQ(threads.size(), 1u) << "partition " << p;
}

// (2) Key moves: a full-image update of the key is a delete of the old key
// and an insert of the new one, routed each by its own key (here: to
// different partitions); one that carries an unchanged TOAST value is applied
// once, as a barrier, after every partition applied everything before it.
TEST_F(PipelineTest, KeyMovesSplitOrApplyAtABarrier) {
  auto acc = Accounts();
  ScriptGen gen(2, acc, 30);
  Router router(kParts);
  std::vector<Txn> txns;
  std::set<uint64_t> toast_moves;
  int split_across = 0;
  for (int i = 0; i < 200; ++i) {
    if (i % 40 == 39) {
      // A TOAST-carrying move, alone in its transaction.
      Txn t = gen.Begin();
      gen.Add(t, gen.Move(gen.AnyKey(), gen.FreeKey(), Datum::Unchanged()));
      toast_moves.insert(t.pos);
      txns.push_back(gen.End(std::move(t)));
      continue;
    }
    txns.push_back(gen.Random(1 + static_cast<int>(gen.rng()() % 4), {.update = 3, .partial = 1, .del = 1, .move = 3}));
    for (const Change& c : txns.back().changes) {
      if (!c.MovesKey()) continue;
      Change ins = c;
      ins.old.clear();
      Change del = c;
      del.kind = ChangeKind::kDelete;
      if (router.Route(ins) != router.Route(del)) ++split_across;
    }
  }
  ASSERT_GT(split_across, 10);
  auto s = Script(std::move(txns));
  auto flow = StartFlow(s);
  WaitApplied(*flow, *s);
  flow->Stop();
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
  ExpectPerKeyOrder();
  ExpectAppliedAtMostOnce();
  std::lock_guard lock(target_.mu);
  EXPECT_EQ(target_.conflicts, 0);
  ASSERT_EQ(target_.barrier_found.size(), toast_moves.size());
  size_t b = 0;
  for (const Seen& seen : target_.seen) {
    if (seen.partition != kBarrier) {
      EXPECT_FALSE(seen.moves_key) << "a full-image key move reached a partition unsplit";
      continue;
    }
    EXPECT_TRUE(seen.moves_key);
    ASSERT_TRUE(toast_moves.count(seen.pos.commit_lsn.value()));
    // Every partition had applied everything before it.
    EXPECT_EQ(target_.barrier_found[b], gen.before(seen.pos.commit_lsn.value())) << "barrier at " << seen.pos.ToString();
    for (ChangePosition cp : target_.barrier_checkpoints[b]) EXPECT_EQ(cp, seen.pos);
    ++b;
  }
}

// (3) A truncate is a barrier: everything before it is applied in every
// partition first, it is applied once, and it sets every partition's
// checkpoint. A new run whose source resends everything from the start
// applies neither it nor anything else a second time.
TEST_F(PipelineTest, TruncateIsABarrierAppliedOnceAcrossRestarts) {
  ScriptGen gen(3, Accounts(), 30);
  std::vector<Txn> txns;
  for (int i = 0; i < 60; ++i) txns.push_back(gen.Random(3, {}));
  Txn tr = gen.Begin();
  gen.Add(tr, gen.Truncate());
  const uint64_t truncate_at = tr.pos;
  txns.push_back(gen.End(std::move(tr)));
  for (int i = 0; i < 60; ++i) txns.push_back(gen.Random(3, {}));

  auto s = Script(txns);
  auto flow = StartFlow(s);
  WaitApplied(*flow, *s);
  flow->Stop();
  {
    std::lock_guard lock(target_.mu);
    ASSERT_EQ(target_.barrier_found.size(), 1u);
    EXPECT_EQ(target_.barrier_found[0], gen.before(truncate_at));
    EXPECT_FALSE(target_.barrier_found[0].at("public.accounts").empty());
    const ChangePosition tpos{PgLsn::FromU64(truncate_at), 1};
    EXPECT_EQ(target_.barrier_checkpoints[0], std::vector<ChangePosition>(kParts, tpos));
  }
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");

  // A new run; its source resends from the very start.
  auto again = Script(txns);
  auto flow2 = StartFlow(again);
  WaitApplied(*flow2, *again);
  flow2->Stop();
  EXPECT_EQ(again->starts.front(), 0u);
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
  ExpectAppliedAtMostOnce();
  std::lock_guard lock(target_.mu);
  EXPECT_EQ(target_.barrier_found.size(), 1u) << "the truncate was applied again";
  EXPECT_EQ(target_.conflicts, 0);
}

// (4) Checkpoint skipping on restart: a run stops with changes still in
// flight; a new run with the same target (its checkpoints) and a source that
// resends from where the first run's Confirmable() said applies every change
// exactly once.
TEST_F(PipelineTest, RestartSkipsWhatEachPartitionHolds) {
  ScriptGen gen(4, Accounts(), 50);
  std::vector<Txn> txns;
  for (int i = 0; i < 300; ++i) txns.push_back(gen.Random(1 + static_cast<int>(gen.rng()() % 5), {}));
  target_.delay = std::chrono::milliseconds(2);  // the appliers lag: the stop finds work in flight
  auto first = Script(txns);
  first->pause_at = 150;
  auto flow = StartFlow(first);
  ASSERT_TRUE(WaitFor([&] { return first->sent.load() == 150 && target_.Applications().size() >= 20; }));
  flow->Stop();
  const uint64_t resume = first->last_confirmable;
  EXPECT_GT(resume, 0u);
  EXPECT_LE(resume, txns[149].end);
  const size_t applied_by_first = target_.Applications().size();
  EXPECT_GT(applied_by_first, 0u);

  target_.delay = std::chrono::microseconds(0);
  auto second = Script(txns);
  second->honor_skip = true;  // as the MySQL source does
  FlowOptions o = Options();
  o.start = resume;
  auto flow2 = StartFlow(second, o);
  WaitApplied(*flow2, *second);
  flow2->Stop();
  EXPECT_EQ(second->starts.front(), resume);
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
  ExpectAppliedAtMostOnce();
  std::lock_guard lock(target_.mu);
  EXPECT_EQ(target_.conflicts, 0);
}

// (5) The connection drops in the middle of transactions, some of whose
// changes were routed already; the source resends them whole. Nothing is
// applied twice, nothing is lost.
TEST_F(PipelineTest, ReconnectInTheMiddleOfATransaction) {
  ScriptGen gen(5, Accounts(), 20);
  std::vector<Txn> txns;
  for (int i = 0; i < 100; ++i) txns.push_back(gen.Random(8, {}));
  auto s = Script(std::move(txns));
  s->drops = {{30, 5}, {70, 3}};
  auto flow = StartFlow(s);
  WaitApplied(*flow, *s);
  flow->Stop();
  EXPECT_EQ(s->connects, 3);
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
  ExpectAppliedAtMostOnce();
  ExpectPerKeyOrder();
  std::lock_guard lock(target_.mu);
  EXPECT_EQ(target_.conflicts, 0);
}

// (6) A table with a secondary UNIQUE constraint goes whole to one partition,
// every change in source order, none collapsed: values swapped between rows
// never collide on the target (which enforces the constraint, as a real one
// does).
TEST_F(PipelineTest, SecondaryUniqueTableUsesOnePartitionInOrder) {
  auto uniq = Accounts(/*secondary_unique=*/true);
  target_.unique_tables.insert(uniq->id.ToString());
  ScriptGen gen(6, uniq, 16);
  auto note = [](int v) { return Datum::Text("v" + std::to_string(v)); };
  auto upd = [&](int key, Datum n) {
    return Make(ChangeKind::kUpdate, uniq, 0, 0, {Datum::Text(std::to_string(key)), T("0"), std::move(n)});
  };
  std::vector<Txn> txns;
  std::vector<int> holds(16);  // row -> its note value
  Txn setup = gen.Begin();
  for (int k = 0; k < 16; ++k) {
    holds[k] = k;
    gen.Add(setup, Make(ChangeKind::kInsert, uniq, 0, 0, {Datum::Text(std::to_string(k)), T("0"), note(k)}));
  }
  txns.push_back(gen.End(std::move(setup)));
  size_t changes = txns[0].changes.size();
  for (int i = 0; i < 150; ++i) {
    // Row a gives its value up, row b takes it, a takes b's old one.
    int a = static_cast<int>(gen.rng()() % 16), b = static_cast<int>(gen.rng()() % 16);
    if (a == b) continue;
    Txn t = gen.Begin();
    gen.Add(t, upd(a, Datum::Null()));
    gen.Add(t, upd(b, note(holds[a])));
    gen.Add(t, upd(a, note(holds[b])));
    std::swap(holds[a], holds[b]);
    changes += t.changes.size();
    txns.push_back(gen.End(std::move(t)));
  }
  auto s = Script(std::move(txns));
  FlowOptions o = Options();
  o.applier.defaults.batch_size = 3;
  auto flow = StartFlow(s, o);
  WaitApplied(*flow, *s);
  flow->Stop();
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
  std::lock_guard lock(target_.mu);
  ASSERT_EQ(target_.seen.size(), changes) << "every change applied, none collapsed";
  for (size_t i = 1; i < target_.seen.size(); ++i) {
    EXPECT_LT(target_.seen[i - 1].pos, target_.seen[i].pos);
    EXPECT_EQ(target_.seen[i].partition, target_.seen[0].partition);
  }
  EXPECT_EQ(target_.threads.size(), 1u);
}

// (7) After a copy resumed from a newer snapshot, changes below a chunk's
// snapshot position for rows inside that chunk are dropped (the copy holds
// them); every other change is applied. A key move across chunks is judged
// half by half; one carrying an unchanged TOAST value into rows the copy
// holds only deletes its old key (it must not overwrite the copied row).
TEST_F(PipelineTest, SnapshotFilterDropsWhatTheChunkHolds) {
  auto acc = Accounts();
  ScriptGen gen(7, acc, 200);
  // Keys 0..99: chunk copied at 3000; keys 100..: chunk copied at 8000.
  auto in_first = [](const std::string& key) { return std::stoll(key) < 100; };
  std::vector<Txn> txns;
  uint64_t cross_at = 0;
  std::string from, toast_to;
  for (int i = 0; i < 100; ++i) {
    if (i == 40) {  // a move from the first chunk into the second, below the second's snapshot
      Txn cross = gen.Begin();
      for (int k = 0; from.empty() && k < 100; ++k)
        if (gen.Has(std::to_string(k))) from = std::to_string(k);
      gen.Add(cross, gen.Move(from, gen.FreeKey(), T("crossing")));
      cross_at = cross.pos;
      txns.push_back(gen.End(std::move(cross)));
      continue;
    }
    if (i == 45) {  // the same with an unchanged TOAST value (a barrier), then an update the copy holds too
      Txn toast = gen.Begin();
      std::string src;
      for (int k = 0; src.empty() && k < 100; ++k)
        if (gen.Has(std::to_string(k))) src = std::to_string(k);
      toast_to = gen.FreeKey();
      gen.Add(toast, gen.Move(src, toast_to, Datum::Unchanged()));
      txns.push_back(gen.End(std::move(toast)));
      continue;
    }
    if (i == 50) {
      Txn later = gen.Begin();
      gen.Add(later, gen.Upd(toast_to, T("after the move")));
      txns.push_back(gen.End(std::move(later)));
      continue;
    }
    txns.push_back(gen.Random(3, {.update = 4, .partial = 1, .del = 1, .move = 2}));
  }
  ASSERT_FALSE(in_first(toast_to));
  ASSERT_TRUE(in_first(from));
  ASSERT_LT(cross_at, 8000u);
  ASSERT_GT(cross_at, 3000u);

  // The copy: each chunk's rows as the source had them at its snapshot.
  auto chunk_at = [&](uint64_t snapshot, bool first) {
    Rows rows;
    const Db& db = gen.before(snapshot);
    auto it = db.find("public.accounts");
    if (it != db.end())
      for (const auto& [k, row] : it->second)
        if (in_first(k) == first) rows.emplace(k, row);
    return rows;
  };
  ASSERT_EQ(txns[19].pos, 3000u);
  ASSERT_EQ(txns[69].pos, 8000u);
  Rows copied = chunk_at(3000, true);
  copied.merge(chunk_at(8000, false));
  target_.db["public.accounts"] = copied;

  FlowOptions o = Options();
  o.filter.AddRange(acc->id, std::nullopt, 100, PgLsn::FromU64(3000));
  o.filter.AddRange(acc->id, 100, std::nullopt, PgLsn::FromU64(8000));
  o.start = 3000;  // the slot's position: the older snapshot
  auto s = Script(std::move(txns));
  auto flow = StartFlow(s, o);
  WaitApplied(*flow, *s);
  flow->Stop();
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
  std::lock_guard lock(target_.mu);
  EXPECT_EQ(target_.conflicts, 0) << "a change the copy held was applied again";
  bool first_half = false;
  for (const Seen& seen : target_.seen) {
    const std::string key = seen.key.substr(seen.key.find('/') + 1);
    const uint64_t at = seen.pos.commit_lsn.value();
    EXPECT_GE(at, 3000u);
    if (!in_first(key)) {
      EXPECT_GE(at, 8000u) << "key " << key << " is in the copy of 8000";
    }
    if (at == cross_at) {
      EXPECT_EQ(key, from);
      first_half = true;
    }
  }
  EXPECT_TRUE(first_half) << "the move's delete of its old key was dropped";
}

// (8) Collapsing: whatever a batch does to a key, its collapsed form has the
// same effect on a target in the state the stream expects, and keeps the
// conflict check of the key's first change (so a target in another state is
// still caught). Random well-formed batches, seeded.
TEST(CollapseTest, CollapsedBatchHasTheSameEffectAndTheFirstChangesCheck) {
  auto acc = Accounts();
  std::mt19937 rng(8);
  int val = 0;
  auto v = [&] { return Datum::Text(std::to_string(++val)); };
  for (int round = 0; round < 500; ++round) {
    SCOPED_TRACE(round);
    Db start;
    for (int k = 0; k < 4; ++k)
      if (rng() % 2) start["public.accounts"][std::to_string(k)] = {Datum::Text(std::to_string(k)), v(), v()};
    Db state = start;
    std::vector<Change> batch;
    std::map<std::string, ConflictCheck> first;
    const int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      std::string key = std::to_string(rng() % 4);
      bool exists = state["public.accounts"].count(key) > 0;
      Change c;
      if (!exists) {
        c = Make(ChangeKind::kInsert, acc, 10, i + 1, {Datum::Text(key), v(), v()});
      } else {
        switch (rng() % 3) {
          case 0: c = Make(ChangeKind::kUpdate, acc, 10, i + 1, {Datum::Text(key), v(), v()}); break;
          case 1: c = Make(ChangeKind::kUpdate, acc, 10, i + 1, {Datum::Text(key), v(), Datum::Unchanged()}); break;
          default: c = Make(ChangeKind::kDelete, acc, 10, i + 1, {}, {Datum::Text(key), Datum::Null(), Datum::Null()});
        }
      }
      c.check = c.kind == ChangeKind::kInsert   ? ConflictCheck::kInsert
                : c.kind == ChangeKind::kUpdate ? ConflictCheck::kUpdate
                                                : ConflictCheck::kDelete;
      first.emplace(key, c.check);
      ApplyChange(state, c);
      batch.push_back(std::move(c));
    }
    auto out = CollapseBatch(batch);
    EXPECT_EQ(out.size(), first.size()) << "one change per key";
    Db target = start;
    std::set<std::string> keys;
    for (const Change& c : out) {
      const std::string key = c.KeyText();
      EXPECT_TRUE(keys.insert(key).second);
      EXPECT_EQ(c.check, first.at(key)) << "key " << key;
      const bool existed = ApplyChange(target, c);
      EXPECT_EQ(ConflictOf(c, existed), std::nullopt) << "key " << key << ": a consistent target met a conflict";
      // The opposite state is a conflict.
      EXPECT_NE(ConflictOf(c, !existed), std::nullopt) << "key " << key;
    }
    EXPECT_EQ(target, state);
  }
}

// (9) Confirmable() (what the source is told is consumed) never passes a
// transaction that some partition has not applied on the target: sampled
// concurrently while a slow target applies a long script.
TEST_F(PipelineTest, ConfirmableNeverPassesWhatSomePartitionLacks) {
  ScriptGen gen(9, Accounts(), 60);
  std::vector<Txn> txns;
  for (int i = 0; i < 300; ++i) txns.push_back(gen.Random(1 + static_cast<int>(gen.rng()() % 4), {.move = 0}));
  // Where each change goes: (partition, position), in the sequencer's numbering.
  Router router(kParts);
  std::vector<std::vector<std::pair<uint32_t, ChangePosition>>> routed(txns.size());
  for (size_t i = 0; i < txns.size(); ++i)
    for (size_t j = 0; j < txns[i].changes.size(); ++j) {
      Change c = txns[i].changes[j];
      if (c.kind == ChangeKind::kUpdate) c.old.clear();
      routed[i].push_back({router.Route(c).value, {PgLsn::FromU64(txns[i].pos), static_cast<uint32_t>(j + 1)}});
    }
  target_.delay = std::chrono::microseconds(500);
  auto s = Script(txns);
  auto flow = StartFlow(s);
  std::atomic<bool> done{false};
  int samples = 0, violations = 0;
  uint64_t highest = 0;
  std::thread sampler([&] {
    while (!done) {
      Sequencer* seq = s->seq;
      if (!seq) continue;
      const uint64_t c = std::max(seq->Confirmable(), flow->AppliedThrough());
      std::vector<ChangePosition> cps;
      {
        std::lock_guard lock(target_.mu);
        cps = target_.checkpoints;
      }
      ++samples;
      highest = std::max(highest, c);
      for (size_t i = 0; i < txns.size() && txns[i].pos < c; ++i)
        for (auto [p, pos] : routed[i])
          if (cps[p] < pos) ++violations;
    }
  });
  struct Join {
    std::atomic<bool>& done;
    std::thread& t;
    ~Join() {
      done = true;
      t.join();
    }
  };
  {
    Join join{done, sampler};
    WaitApplied(*flow, *s);
  }
  flow->Stop();
  EXPECT_GT(samples, 100);
  EXPECT_EQ(violations, 0);
  EXPECT_GT(highest, txns[txns.size() / 2].end) << "the samples saw the flow progress";
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
}

// Per-partition status: the changes routed and not applied, and the commit
// time of the oldest transaction they belong to.
TEST(ApplyTrackerTest, PendingOfCountsChangesPerPartition) {
  ApplyTracker tracker(2);
  const PartitionId p0{0}, p1{1};
  EXPECT_EQ(tracker.PendingOf(p0).changes, 0u);
  tracker.Routed(p0, ChangePosition{Position::Pg(100), 1}, 5'000'000);
  tracker.Routed(p0, ChangePosition{Position::Pg(100), 2}, 5'000'000);
  tracker.Routed(p1, ChangePosition{Position::Pg(100), 3}, 5'000'000);
  tracker.Routed(p0, ChangePosition{Position::Pg(200), 1}, 6'000'000);
  ApplyTracker::PartitionPending p = tracker.PendingOf(p0);
  EXPECT_EQ(p.transactions, 2u);
  EXPECT_EQ(p.changes, 3u);
  EXPECT_EQ(p.oldest_commit_us, 5'000'000);
  tracker.Applied(p0, ChangePosition{Position::Pg(100), 2});
  p = tracker.PendingOf(p0);
  EXPECT_EQ(p.changes, 1u);
  EXPECT_EQ(p.oldest_commit_us, 6'000'000);
  EXPECT_EQ(tracker.PendingOf(p1).changes, 1u);
  tracker.Applied(p0, ChangePosition{Position::Pg(200), 1});
  EXPECT_EQ(tracker.PendingOf(p0).transactions, 0u);
  EXPECT_EQ(tracker.PendingOf(p0).changes, 0u);
}

// (10) Verification repairs are routed after everything routed before them,
// at a transaction boundary: one queued in the middle of a transaction lands
// after that transaction's later changes of the same key, and is not checked
// for conflicts.
TEST(SequencerTest, RepairsWaitForTheTransactionBoundary) {
  auto acc = Accounts();
  FakeTarget target(kParts);
  FakeSink barrier(&target, kParts);
  auto log = NewMemoryPartitionLog(kParts, 1 << 20);
  ApplyTracker tracker(kParts);
  StopSource never;
  Sequencer seq(kParts, SnapshotFilter(), log.get(), &tracker, &barrier, std::vector<ChangePosition>(kParts), 0,
                never);
  auto upd = [&](const char* note) { return Make(ChangeKind::kUpdate, acc, 0, 0, {T("3"), T("1"), T(note)}); };
  const PartitionId p = Router(kParts).Route(upd("x"));
  seq.Begin(Position::Pg(1000), 0);
  ASSERT_TRUE(seq.Emit(upd("first")).ok());
  EXPECT_EQ(seq.QueueRepairs({Make(ChangeKind::kInsert, acc, 0, 0, {T("3"), T("777"), T("repaired")})}), 1u);
  ASSERT_TRUE(seq.Idle(0).ok());  // inside the transaction: nothing routed
  ASSERT_TRUE(seq.Emit(upd("second")).ok());
  EXPECT_EQ(seq.stats().repairs_routed, 0u);
  ASSERT_TRUE(seq.Commit(1050).ok());
  EXPECT_EQ(seq.stats().repairs_routed, 1u);
  std::vector<Change> got;
  ASSERT_TRUE(log->Poll(p, 1, 100, std::chrono::milliseconds(0), &got).ok());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].values[2].text, "first");
  EXPECT_EQ(got[1].values[2].text, "second");
  EXPECT_EQ(got[2].values[2].text, "repaired");
  EXPECT_EQ(got[2].check, ConflictCheck::kNone);
  EXPECT_EQ(got[1].check, ConflictCheck::kUpdate);
  EXPECT_LT(got[1].pos, got[2].pos);
}

// (10) Through a Flow: repairs queued while the stream is idle are routed at
// the next keepalive and applied after everything before them.
TEST_F(PipelineTest, RepairsQueuedThroughTheFlowAreApplied) {
  auto acc = Accounts();
  ScriptGen gen(10, acc, 10);
  std::vector<Txn> txns;
  for (int i = 0; i < 30; ++i) txns.push_back(gen.Random(3, {.move = 0}));
  auto s = Script(std::move(txns));
  auto flow = StartFlow(s);
  WaitApplied(*flow, *s);
  Db want = gen.model();
  Rows& rows = want["public.accounts"];
  ASSERT_GE(rows.size(), 2u);
  const std::string gone = rows.begin()->first, fixed = rows.rbegin()->first;
  rows.erase(gone);
  rows[fixed] = {Datum::Text(fixed), T("777"), T("repaired")};
  const uint64_t token = flow->QueueRepairs(
      {Make(ChangeKind::kDelete, acc, 0, 0, {}, {Datum::Text(gone), Datum::Null(), Datum::Null()}),
       Make(ChangeKind::kInsert, acc, 0, 0, {Datum::Text(fixed), T("777"), T("repaired")})});
  EXPECT_EQ(token, 2u);
  ASSERT_TRUE(WaitFor([&] { return flow->RepairsRouted() >= token; }));
  ASSERT_TRUE(WaitFor([&] { return target_.Tables() == want; }));
  flow->Stop();
  std::lock_guard lock(target_.mu);
  EXPECT_EQ(target_.conflicts, 0);
}

// (10, continued) A repair queued while the connection is down must not take
// the position of a change of the transaction the source is about to resend:
// that change would be dropped as already routed.
TEST_F(PipelineTest, RepairQueuedDuringAReconnectLosesNoChange) {
  auto acc = Accounts();
  Router router(kParts);
  // Two keys of one partition.
  std::string a = "0", b;
  for (int k = 1; b.empty(); ++k)
    if (router.Route(Make(ChangeKind::kInsert, acc, 0, 0, {Datum::Text(std::to_string(k)), T("0"), T("")})) ==
        router.Route(Make(ChangeKind::kInsert, acc, 0, 0, {Datum::Text(a), T("0"), T("")})))
      b = std::to_string(k);
  ScriptGen gen(11, acc, 10);
  std::vector<Txn> txns;
  Txn setup = gen.Begin();
  gen.Add(setup, gen.Ins(a));
  gen.Add(setup, gen.Ins(b));
  txns.push_back(gen.End(std::move(setup)));
  Txn t = gen.Begin();
  gen.Add(t, gen.Upd(a, T("a2")));
  gen.Add(t, gen.Upd(b, T("b2")));
  txns.push_back(gen.End(std::move(t)));

  auto s = Script(std::move(txns));
  s->drops = {{1, 1}};  // after a's update was routed, before b's
  s->idle_on_connect = true;
  s->on_drop = [&](Sequencer& seq) {
    (void)seq.QueueRepairs({Make(ChangeKind::kInsert, acc, 0, 0, {Datum::Text(a), T("9"), T("a2")})});
  };
  auto flow = StartFlow(s);
  WaitApplied(*flow, *s);
  ASSERT_TRUE(WaitFor([&] { return flow->RepairsRouted() >= 1; }));
  ASSERT_TRUE(WaitFor([&] { return target_.Tables()["public.accounts"].at(a).at(1).text == "9"; }));
  flow->Stop();
  Db got = target_.Tables();
  EXPECT_EQ(got["public.accounts"].at(b), gen.model().at("public.accounts").at(b)) << "b's update was lost";
  ExpectAppliedAtMostOnce();
}

// (11) Apply failures: a deadlock or lock timeout (RetryTxn) and a connection
// lost before COMMIT (RetryCall) are retried and go through; a connection
// lost after COMMIT does not apply the batch twice; a permanent failure stops
// the flow, health() says why, and Stop() still returns; a target that lost
// commits it had acknowledged is DataLoss.
TEST_F(PipelineTest, RetryTxnIsRetriedAndALostAckIsNotReapplied) {
  ScriptGen gen(12, Accounts(), 30);
  std::vector<Txn> txns;
  for (int i = 0; i < 100; ++i) txns.push_back(gen.Random(3, {}));
  target_.fail_next = {RetryTxn("deadlock detected"), RetryCall("server closed the connection unexpectedly"),
                       RetryTxn("canceling statement due to lock timeout")};
  target_.lose_acks = 2;
  auto s = Script(std::move(txns));
  auto flow = StartFlow(s);
  WaitApplied(*flow, *s);
  EXPECT_GE(flow->metrics().retries, 5u);
  flow->Poke();
  EXPECT_EQ(s->pokes, 1);
  flow->Stop();
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
  ExpectAppliedAtMostOnce();
  std::lock_guard lock(target_.mu);
  EXPECT_TRUE(target_.fail_next.empty());
  EXPECT_EQ(target_.lose_acks, 0);
  EXPECT_EQ(target_.conflicts, 0);
}

TEST_F(PipelineTest, PermanentApplyFailureStopsTheFlow) {
  ScriptGen gen(13, Accounts(), 200);
  std::vector<Txn> txns;
  for (int i = 0; i < 300; ++i) txns.push_back(gen.Random(4, {}));
  target_.dead_partition = 2;
  target_.dead_status = OperatorError("permission denied for table accounts");
  FlowOptions o = Options();
  o.partition_log_bytes = 4096;  // the failed partition's log fills: the stream blocks on it
  auto s = Script(std::move(txns));
  auto flow = StartFlow(s, o);
  ASSERT_TRUE(WaitFor([&] { return !flow->health().ok(); }));
  Status st = flow->health();
  EXPECT_EQ(st.code(), StatusCode::kOperator);
  EXPECT_EQ(st.message(), "forward apply: permission denied for table accounts");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto stopped = std::async(std::launch::async, [&] { flow->Stop(); });
  if (stopped.wait_for(std::chrono::seconds(3)) != std::future_status::ready) {
    ADD_FAILURE() << "Flow::Stop() hangs: the stream is blocked on the failed partition's full log";
    std::fflush(nullptr);
    std::_Exit(1);
  }
}

TEST_F(PipelineTest, StopReturnsWhileAPartitionRetriesATargetThatIsDown) {
  ScriptGen gen(16, Accounts(), 200);
  std::vector<Txn> txns;
  for (int i = 0; i < 300; ++i) txns.push_back(gen.Random(4, {}));
  target_.dead_partition = 1;
  target_.dead_status = RetryCall("connection refused");
  FlowOptions o = Options();
  o.partition_log_bytes = 4096;
  auto s = Script(std::move(txns));
  auto flow = StartFlow(s, o);
  ASSERT_TRUE(WaitFor([&] { return flow->metrics().retries >= 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(flow->health().ok()) << "still retrying: " << flow->health().ToString();
  auto stopped = std::async(std::launch::async, [&] { flow->Stop(); });
  if (stopped.wait_for(std::chrono::seconds(3)) != std::future_status::ready) {
    ADD_FAILURE() << "Flow::Stop() waits for the retrying partition (fail_after_seconds)";
    std::fflush(nullptr);
    std::_Exit(1);
  }
}

TEST_F(PipelineTest, TargetThatLostAcknowledgedCommitsIsDataLoss) {
  ScriptGen gen(14, Accounts(), 30);
  std::vector<Txn> txns;
  for (int i = 0; i < 80; ++i) txns.push_back(gen.Random(4, {}));
  auto s = Script(txns);
  s->pause_at = 40;
  auto flow = StartFlow(s);
  ASSERT_TRUE(WaitFor([&] { return s->sent == 40 && flow->AppliedThrough() >= txns[39].end; }));
  target_.Crash(3);  // the last three commits were acknowledged, never flushed
  s->pause_at = SIZE_MAX;
  ASSERT_TRUE(WaitFor([&] { return !flow->health().ok(); }));
  Status st = flow->health();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
  EXPECT_NE(st.message().find("the target lost changes it had acknowledged"), std::string::npos) << st.ToString();
  flow->Stop();
}

// A barrier that meets a deadlock or a lock timeout (RetryTxn) is retried
// like any target transaction, not the end of the flow.
TEST_F(PipelineTest, BarrierRetryTxnIsRetried) {
  ScriptGen gen(15, Accounts(), 20);
  std::vector<Txn> txns;
  for (int i = 0; i < 20; ++i) txns.push_back(gen.Random(3, {}));
  Txn tr = gen.Begin();
  gen.Add(tr, gen.Truncate());
  txns.push_back(gen.End(std::move(tr)));
  for (int i = 0; i < 20; ++i) txns.push_back(gen.Random(3, {}));
  target_.barrier_fail_calls = 1;
  target_.barrier_fail_status = RetryTxn("canceling statement due to lock timeout");
  auto s = Script(std::move(txns));
  auto flow = StartFlow(s);
  WaitApplied(*flow, *s);
  flow->Stop();
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
  ExpectAppliedAtMostOnce();
}

// Sequencer alone (no threads): a partition's checkpoint may lie inside a
// transaction (a batch ends mid-transaction); a repair routed before the
// source resent that transaction must not take a position the rest of it
// needs.
TEST(SequencerTest, RepairAfterRestartWaitsForTheTransactionTheCheckpointIsIn) {
  auto acc = Accounts();
  Router router(kParts);
  auto ins = [&](const std::string& k, const char* bal) {
    return Make(ChangeKind::kInsert, acc, 0, 0, {Datum::Text(k), T(bal), T("x")});
  };
  std::string a = "0", b;
  const PartitionId pa = router.Route(ins(a, "0"));
  for (int k = 1; b.empty(); ++k)
    if (router.Route(ins(std::to_string(k), "0")) == pa) b = std::to_string(k);

  FakeTarget target(kParts);
  FakeSink barrier(&target, kParts);
  auto log = NewMemoryPartitionLog(kParts, 1 << 20);
  ApplyTracker tracker(kParts);
  std::atomic<bool> stop{false};
  // Transaction 2000 = {insert a, insert b}; a's partition applied the first only.
  std::vector<ChangePosition> cps(kParts);
  cps[pa.value] = {PgLsn::FromU64(2000), 1};
  Sequencer seq(kParts, SnapshotFilter(), log.get(), &tracker, &barrier, cps, 0, stop);
  seq.QueueRepairs({ins(a, "5")});
  ASSERT_TRUE(seq.Idle(0).ok());  // a keepalive before the resend
  EXPECT_FALSE(seq.Begin(Position::Pg(2000), 0));
  ASSERT_TRUE(seq.Emit(ins(a, "1")).ok());
  ASSERT_TRUE(seq.Emit(ins(b, "2")).ok());
  ASSERT_TRUE(seq.Commit(2050).ok());
  ASSERT_TRUE(seq.Idle(0).ok());
  std::vector<Change> got;
  ASSERT_TRUE(log->Poll(pa, 1, 100, std::chrono::milliseconds(0), &got).ok());
  std::vector<std::string> keys;
  for (const Change& c : got) keys.push_back(c.KeyText() + "@" + c.pos.ToString());
  ASSERT_EQ(got.size(), 2u) << ::testing::PrintToString(keys);
  EXPECT_EQ(got[0].KeyText(), b) << "b's insert, the rest of transaction 2000, comes first";
  EXPECT_EQ(got[1].KeyText(), a);
  EXPECT_EQ(got[1].check, ConflictCheck::kNone) << "then the repair";
  EXPECT_LT(got[0].pos, got[1].pos);
  EXPECT_EQ(seq.stats().repairs_routed, 1u);
}

// Sequencer alone: a transaction every partition holds is reported skippable,
// and one some partition lacks is not.
TEST(SequencerTest, BeginSaysWhenEveryPartitionHoldsTheTransaction) {
  FakeTarget target(kParts);
  FakeSink barrier(&target, kParts);
  auto log = NewMemoryPartitionLog(kParts, 1 << 20);
  ApplyTracker tracker(kParts);
  std::vector<ChangePosition> cps(kParts, {PgLsn::FromU64(3000), 2});
  cps[1] = {PgLsn::FromU64(4000), 1};
  StopSource never;
  Sequencer seq(kParts, SnapshotFilter(), log.get(), &tracker, &barrier, cps, 0, never);
  EXPECT_TRUE(seq.Begin(Position::Pg(2000), 0));
  ASSERT_TRUE(seq.Commit(2050).ok());
  EXPECT_FALSE(seq.Begin(Position::Pg(3000), 0)) << "partition 0 holds only the first two changes of 3000";
  ASSERT_TRUE(seq.Commit(3050).ok());
  EXPECT_FALSE(seq.Begin(Position::Pg(4000), 0));
}

// The same pipeline over the Kafka partition log (kafka/kafka_partition_log.h),
// on librdkafka's mock cluster: the router and the appliers are unchanged,
// only FlowOptions::log_factory differs.
class KafkaPipelineTest : public PipelineTest {
 protected:
  void SetUp() override {
    auto mc = kafka::MockCluster::Start(1);
    ASSERT_TRUE(mc.ok()) << mc.status().ToString();
    cluster_ = std::move(*mc);
    ASSERT_TRUE(cluster_->CreateTopic(transport_.Topic("m"), kParts).ok());
  }
  FlowOptions KafkaOptions() {
    FlowOptions o = Options();
    transport_.kind = TransportSpec::Kind::kKafka;
    transport_.brokers = cluster_->bootstraps();
    o.log_factory = kafka::KafkaLogFactory(transport_, "m");
    o.partition_log_bytes = 2048;  // the producer waits for acknowledgements often
    return o;
  }
  void WaitAppliedLong(Flow& flow, const SourceScript& s) {
    const uint64_t last = s.txns.back().end;
    ASSERT_TRUE(WaitFor([&] { return flow.AppliedThrough() >= last || !flow.health().ok(); }, std::chrono::seconds(60)))
        << "applied through " << flow.AppliedThrough() << ", want " << last;
    ASSERT_TRUE(flow.health().ok()) << flow.health().ToString();
  }

  std::unique_ptr<kafka::MockCluster> cluster_;
  TransportSpec transport_;
};

// (K1) Per-key order, every change applied once, target equal to the model:
// as PerKeyOrderAcrossPartitions, through Kafka, with barriers (TOAST key
// moves, two truncates): the log publishes them, its appliers never get them.
TEST_F(KafkaPipelineTest, PerKeyOrderAcrossPartitions) {
  ScriptGen gen(11, Accounts(), 40);
  std::vector<Txn> txns;
  for (int i = 0; i < 200; ++i) {
    txns.push_back(gen.Random(1 + static_cast<int>(gen.rng()() % 6), {.toast_move = 1}));
    if (i == 70 || i == 140) {
      Txn tr = gen.Begin();
      gen.Add(tr, gen.Truncate());
      txns.push_back(gen.End(std::move(tr)));
    }
  }
  auto s = Script(std::move(txns));
  auto flow = StartFlow(s, KafkaOptions());
  ASSERT_TRUE(flow);
  WaitAppliedLong(*flow, *s);
  flow->Stop();
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
  ExpectPerKeyOrder();
  ExpectAppliedAtMostOnce();
  std::lock_guard lock(target_.mu);
  EXPECT_EQ(target_.conflicts, 0);
}

// (K2) The correctness rule: a run stops with changes produced to Kafka but
// not applied (and the source drops its connection mid-transaction once); the
// next run opens a new log on the same topic, the source resends from
// Confirmable(), and nothing is lost or applied twice: what the first run
// left unread in the topic is never read, what it resends is produced again.
TEST_F(KafkaPipelineTest, RestartResendsFromConfirmableAndLosesNothing) {
  ScriptGen gen(12, Accounts(), 50);
  std::vector<Txn> txns;
  for (int i = 0; i < 200; ++i) txns.push_back(gen.Random(1 + static_cast<int>(gen.rng()() % 5), {}));
  target_.delay = std::chrono::milliseconds(3);  // the appliers lag: the stop finds work in Kafka
  auto first = Script(txns);
  first->pause_at = 120;
  first->drops = {{40, 1}};
  auto flow = StartFlow(first, KafkaOptions());
  ASSERT_TRUE(flow);
  ASSERT_TRUE(WaitFor([&] { return first->sent.load() == 120 && target_.Applications().size() >= 20; },
                      std::chrono::seconds(60)));
  flow->Stop();
  const uint64_t resume = first->last_confirmable;
  EXPECT_GT(resume, 0u);
  EXPECT_LT(resume, txns[119].end) << "the first run stopped with changes not applied";

  target_.delay = std::chrono::microseconds(0);
  auto second = Script(txns);
  FlowOptions o = KafkaOptions();
  o.start = resume;
  auto flow2 = StartFlow(second, o);
  ASSERT_TRUE(flow2);
  WaitAppliedLong(*flow2, *second);
  flow2->Stop();
  EXPECT_EQ(second->starts.front(), resume);
  EXPECT_EQ(Diff(target_.Tables(), gen.model()), "");
  ExpectPerKeyOrder();
  ExpectAppliedAtMostOnce();
  std::lock_guard lock(target_.mu);
  EXPECT_EQ(target_.conflicts, 0);
}

// (K3) A log that cannot be opened (the topic has another partition count)
// fails Flow::Start with the log's reason.
TEST_F(KafkaPipelineTest, AFlowWhoseLogCannotOpenDoesNotStart) {
  ASSERT_TRUE(cluster_->CreateTopic(transport_.Topic("other"), 3).ok());
  FlowOptions o = KafkaOptions();
  o.log_factory = kafka::KafkaLogFactory(transport_, "other");
  auto flow = Flow::Start(std::move(o), std::make_unique<FakeSource>(Script({})),
                          [this](PartitionId p, const ApplyTracker&) -> Result<std::unique_ptr<ChangeSink>> {
                            return std::unique_ptr<ChangeSink>(std::make_unique<FakeSink>(&target_, p.value));
                          });
  ASSERT_FALSE(flow.ok());
  EXPECT_EQ(flow.status().code(), StatusCode::kOperator);
  EXPECT_NE(flow.status().message().find("has 3 partitions but the migration has 4"), std::string::npos)
      << flow.status().message();
}

}  // namespace
}  // namespace midflight
