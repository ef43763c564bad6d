// Live verification, PostgreSQL -> PostgreSQL.
//
// How a table is verified (see README.md for the picture):
//   1. Chunks of the key, bounds found on the source by keyset pagination.
//   2. Chunk hash on the source, in a REPEATABLE READ READ ONLY transaction
//      whose first statement reads pg_current_wal_insert_lsn() = L.
//   3. Wait until the target has applied the source through L, hash the same
//      range on the target. Equal: the chunk is fine.
//   4. Different: (key, md5(row)) of the chunk on both sides (source at a new
//      snapshot and L, target once it has applied L), merged by key. The keys
//      that differ are only candidates: most are rows in flight.
//   5. Each candidate gets the exact per-key check (below), repeated with a
//      short growing sleep until it is conclusive, at most max_key_checks
//      times; a key that never is goes to `unsettled`.
//
// Why the exact check never reports a row that is merely in flight
// ------------------------------------------------------------------
// One attempt for key k:
//   a. source, snapshot S1 (first statement reads L1): (xmin, md5) of k, or absent;
//   b. wait until the target has applied the source through L1, read k's md5 there;
//   c. source, snapshot S2 taken after (b) returned: (xmin, md5) of k at L2.
// The versions of one key form a single chain v0, v1, v2, ... ordered the same
// way in commit-LSN order and in visibility order: a writer of k waits on the
// row lock (or, for an insert, on the unique index) of the previous writer,
// which is released only after that writer's commit record is in the WAL and
// its commit is visible. Let S1 see v_i and S2 see v_j (j >= i).
//   - Every transaction visible in S1 committed before L1 (the snapshot is
//     taken by the statement that reads L1, before it reads it). The target
//     had applied the source through L1 when it was read, so it holds v_i or a
//     later version.
//   - Whatever the target held when read, it had got from transactions that
//     had committed on the source by then, so before S2 was taken: they are
//     visible in S2, and the target holds v_j or an earlier version. This
//     holds per key even though partitions apply at different positions: one
//     key lives in one partition and its changes are applied in source order.
//   So the target holds some v_k with i <= k <= j. Any new version of k gets a
//   new xmin (the writing transaction's id), so when S1 and S2 show the same
//   (xmin, md5), i == j == k and comparing the target's md5 with the source's
//   is conclusive. When they differ the row moved while we looked: the attempt
//   says nothing and is repeated.
// The one chain xmin cannot see is absent -> inserted -> deleted between S1 and
// S2 (absent at both ends, yet the target may hold the inserted version), and
// a commit that is flushed and decoded before it becomes visible on the source
// (a synchronous standby holding the committing backend). Both are rare and
// transient, so a key is reported only after TWO conclusive differing
// observations; a conclusive agreeing one clears it.
//
// Every source transaction is short (one chunk or one batch of keys) and read
// only; the target is only read, with single statements.

#include "engines/postgres/pg_verify.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <thread>

#include "engines/postgres/pg_conn.h"

namespace midflight::verify {
namespace {

using Key = std::vector<std::optional<std::string>>;
using Clock = std::chrono::steady_clock;

constexpr const char* kBeginSnapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
// First statement of every source transaction: it takes the snapshot, so
// every transaction visible in it committed before the position it returns.
constexpr const char* kPositionSql = "SELECT pg_current_wal_insert_lsn()";
// Keys looked up per statement in the exact check.
constexpr size_t kKeysPerLookup = 200;

bool Stopped(const Context& ctx) {
  return (ctx.stop && ctx.stop->load()) || (ctx.stop_source && ctx.stop_source->stop_requested());
}

// Waits `d`, or less when stopped; true when stopped. Only an atomic `stop`,
// which nothing can wait on, needs the wait cut into 50 ms slices.
bool WaitOrStopped(const Context& ctx, Clock::duration d) {
  const Clock::time_point until = Clock::now() + d;
  for (;;) {
    if (Stopped(ctx)) return true;
    Clock::time_point now = Clock::now();
    if (now >= until) return false;
    Clock::duration slice = until - now;
    if (ctx.stop) slice = std::min<Clock::duration>(slice, std::chrono::milliseconds(50));
    if (ctx.stop_source) {
      if (ctx.stop_source->WaitFor(slice)) return true;
    } else {
      std::this_thread::sleep_for(slice);
    }
  }
}

Status StoppedStatus() {
  return Cancelled("verify stopped");
}

// The SQL of one table, built once: identifiers quoted by QuoteIdent, values
// always parameters cast to the key columns' own types, so that comparisons
// and ORDER BY are the ones the key's index uses, identically on both servers.
class TableSql {
 public:
  explicit TableSql(const TableSchema& t) : t_(t) {
    // The whole-row reference needs an alias no column shadows.
    alias_ = "mf_r";
    while (t.ColumnIndex(alias_) >= 0) alias_ += "_";
    from_ = fmt::format("{}{} {}", t.partitioned ? "" : "ONLY ", pg::QuoteQualified(t.id.schema, t.id.name), alias_);
    for (size_t i = 0; i < t.key.size(); ++i) {
      keys_ += fmt::format("{}{}.{}", i ? ", " : "", alias_, pg::QuoteIdent(t.columns[t.key[i]].name));
    }
    row_hash_ = fmt::format("md5({}::text)", alias_);
  }

  size_t key_size() const { return t_.key.size(); }

  // "(mf_r.a, mf_r.b) > (CAST($1 AS integer), CAST($2 AS text))"; params appended.
  std::string Compare(const char* op, const Key& bound, std::vector<pg::Param>* params) const {
    return fmt::format("({}) {} ({})", keys_, op, ParamRow(bound, params));
  }

  // Rows strictly above `lower` and up to `upper`, either missing meaning unbounded.
  std::string Range(const std::optional<Key>& lower, const std::optional<Key>& upper,
                    std::vector<pg::Param>* params) const {
    std::string where;
    if (lower) where = Compare(">", *lower, params);
    if (upper) where += (where.empty() ? "" : " AND ") + Compare("<=", *upper, params);
    return where.empty() ? "true" : where;
  }

  std::string Boundary(const std::optional<Key>& lower, int64_t chunk_rows, std::vector<pg::Param>* params) const {
    return fmt::format("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT 1 OFFSET {}", keys_, from_,
                       Range(lower, std::nullopt, params), keys_, std::max<int64_t>(chunk_rows - 1, 0));
  }

  // The chunk hash: the same formula as the offline compare (control/compare.cc).
  std::string Hash(const std::optional<Key>& lower, const std::optional<Key>& upper,
                   std::vector<pg::Param>* params) const {
    return fmt::format("SELECT count(*), coalesce(md5(string_agg({}, '' ORDER BY {})), '') FROM {} WHERE {}", row_hash_,
                       keys_, from_, Range(lower, upper, params));
  }

  // Key columns then md5 of each row of the range, in key order.
  std::string Rows(const std::optional<Key>& lower, const std::optional<Key>& upper,
                   std::vector<pg::Param>* params) const {
    return fmt::format("SELECT {}, {} FROM {} WHERE {} ORDER BY {}", keys_, row_hash_, from_,
                       Range(lower, upper, params), keys_);
  }

  // For keys[0..n): ordinal (position in `keys`), xmin, md5 of each present row.
  // The lookup joins by value on the server, so it does not depend on text forms.
  std::string Lookup(const std::vector<const Key*>& keys, std::vector<pg::Param>* params) const {
    return Select(fmt::format("v.mf_ord, {}.xmin::text, {}", alias_, row_hash_), keys, params);
  }

  // The writable columns of the rows of `keys` (ordinal first).
  std::string Image(const std::vector<const Key*>& keys, std::vector<pg::Param>* params) const {
    std::string cols = "v.mf_ord";
    for (int c : t_.writable) cols += fmt::format(", {}.{}", alias_, pg::QuoteIdent(t_.columns[c].name));
    return Select(cols, keys, params);
  }

  // "(aid, bid)=(1, 2)", like the server's own messages.
  std::string Display(const Key& key) const {
    std::string names, values;
    for (size_t i = 0; i < t_.key.size() && i < key.size(); ++i) {
      names += (i ? ", " : "") + t_.columns[t_.key[i]].name;
      values += (i ? ", " : "") + key[i].value_or("NULL");
    }
    return fmt::format("({})=({})", names, values);
  }

  std::string DisplayRange(const std::optional<Key>& lower, const std::optional<Key>& upper) const {
    std::string out = "chunk";
    if (lower) out += " above " + Display(*lower);
    if (upper) out += (lower ? " and" : "") + std::string(" up to ") + Display(*upper);
    if (!lower && !upper) out += " (whole table)";
    return out;
  }

 private:
  std::string ParamRow(const Key& key, std::vector<pg::Param>* params) const {
    std::string row;
    for (size_t i = 0; i < t_.key.size(); ++i) {
      params->push_back(i < key.size() ? key[i] : std::nullopt);
      row += fmt::format("{}CAST(${} AS {})", i ? ", " : "", params->size(), t_.columns[t_.key[i]].type.native);
    }
    return row;
  }

  std::string Select(const std::string& cols, const std::vector<const Key*>& keys,
                     std::vector<pg::Param>* params) const {
    std::string values, names = "mf_ord", on;
    for (size_t i = 0; i < keys.size(); ++i) {
      values += fmt::format("{}({}, {})", i ? ", " : "", i, ParamRow(*keys[i], params));
    }
    for (size_t k = 0; k < t_.key.size(); ++k) {
      names += fmt::format(", k{}", k);
      on += fmt::format("{}{}.{} = v.k{}", k ? " AND " : "", alias_, pg::QuoteIdent(t_.columns[t_.key[k]].name), k);
    }
    return fmt::format("SELECT {} FROM (VALUES {}) AS v({}) JOIN {} ON {}", cols, values, names, from_, on);
  }

  const TableSchema& t_;
  std::string alias_, from_, keys_, row_hash_;
};

Key KeyFromRow(const pg::PgResult& r, int row, size_t n) {
  Key key;
  key.reserve(n);
  for (size_t c = 0; c < n; ++c) {
    int col = static_cast<int>(c);
    key.push_back(r.IsNull(row, col) ? std::nullopt : std::optional<std::string>(r.GetString(row, col)));
  }
  return key;
}

struct ChunkHash {
  int64_t count = 0;
  std::string md5;
  bool operator==(const ChunkHash&) const = default;
};

// What one exact look at a key found on one side.
struct Version {
  std::string xmin, md5;
  bool operator==(const Version&) const = default;
};

// The outcome of one chunk, merged into the table's result only when the
// whole chunk succeeded (a chunk retried after a reconnect counts once).
struct ChunkOutcome : verify::ChunkFindings {
  std::optional<Key> upper;
};

// Runs body(L) inside a REPEATABLE READ READ ONLY transaction on the source
// connection `conn` whose first statement reads L (see the top of the file),
// then commits. On failure the transaction is rolled back when the connection
// still allows it. Errors of body() are returned as they are.
template <typename Body>
Status InSnapshot(pg::PgConn& conn, Body&& body) {
  RETURN_IF_ERROR(conn.Exec(kBeginSnapshot).WithContext("source"));
  Status st = [&]() -> Status {
    Result<std::string> text = conn.QueryValue(kPositionSql);
    if (!text.ok()) return text.status().WithContext("source");
    ASSIGN_OR_RETURN(PgLsn position, PgLsn::Parse(*text));
    RETURN_IF_ERROR(body(position));
    return conn.Exec("COMMIT").WithContext("source");
  }();
  if (!st.ok() && !conn.IsBroken()) (void)conn.Exec("ROLLBACK");
  return st;
}

Result<pg::PgResult> QueryOn(pg::PgConn& conn, const char* side, const std::string& sql,
                             const std::vector<pg::Param>& params) {
  Result<pg::PgResult> r = conn.Query(sql, params);
  if (!r.ok()) return r.status().WithContext(side);
  return r;
}

const char* KindOf(const std::optional<std::string>& source_md5, const std::optional<std::string>& target_md5) {
  if (!target_md5) return "missing on target";
  if (!source_md5) return "extra on target";
  return "differs";
}

// One verification run: a connection to each server, tables one after another.
class Verifier {
 public:
  Verifier(const Context& ctx, const Options& options) : ctx_(ctx), options_(options) {}

  Status Connect() {
    pg::ConnOptions src;
    src.application_name = "midflight-verify";
    // The source's transactions are short (one chunk); a stuck verify must not
    // hold a snapshot (and so vacuum) back for long.
    src.settings = {"statement_timeout=60s", "idle_in_transaction_session_timeout=60s"};
    pg::ConnOptions dst;
    dst.application_name = "midflight-verify";
    dst.settings = {"statement_timeout=60s"};
    src_.reset();
    dst_.reset();
    ASSIGN_OR_RETURN(src_, pg::PgConn::Connect(ctx_.source_uri, src));
    ASSIGN_OR_RETURN(dst_, pg::PgConn::Connect(ctx_.target_uri, dst));
    return Status::Ok();
  }

  Status VerifyTable(const TableSchema& t, TableResult* out, std::optional<Key> start_after = std::nullopt) {
    TableSql sql(t);
    std::optional<Key> lower = std::move(start_after);
    // The source side of the next chunk, read while the target hashed this one.
    std::optional<SourceChunk> ahead;
    for (;;) {
      if (Stopped(ctx_)) return StoppedStatus();
      Clock::time_point start = Clock::now();
      bool list_keys = static_cast<int64_t>(out->differences.size()) < options_.max_keys_per_table;
      ChunkOutcome chunk;
      std::optional<SourceChunk> next;
      Status st = Chunk(t, sql, lower, std::move(ahead), list_keys, &next, &chunk);
      if (st.code() == StatusCode::kRetryCall || st.code() == StatusCode::kRetryTxn) {
        // Once per chunk: reconnect after a dropped connection (or just rerun
        // after a timeout or a conflict), then do the same chunk again.
        if (st.code() == StatusCode::kRetryCall) {
          Status rc = Connect();
          if (!rc.ok())
            return rc.WithContext(fmt::format("verify {}, {}: reconnecting after \"{}\"", t.id.ToString(),
                                              sql.DisplayRange(lower, chunk.upper), st.message()));
        }
        chunk = ChunkOutcome();
        next.reset();
        st = Chunk(t, sql, lower, std::nullopt, list_keys, &next, &chunk);
      }
      if (st.code() == StatusCode::kCancelled) return st;
      if (!st.ok())
        return st.WithContext(fmt::format("verify {}, {}", t.id.ToString(), sql.DisplayRange(lower, chunk.upper)));
      verify::AddChunk(chunk, static_cast<size_t>(options_.max_keys_per_table), out);
      if (ctx_.on_progress)
        ctx_.on_progress(Progress{t.id, out->rows, std::max(t.estimated_rows, out->rows), chunk.upper, out});
      RETURN_IF_ERROR(Pace(chunk.rows_read, start));
      if (!chunk.upper) return Status::Ok();
      lower = std::move(chunk.upper);
      ahead = std::move(next);
    }
  }

 private:
  // Steps 1 and 2 for one chunk: its upper bound and its hash on the source.
  struct SourceChunk {
    std::optional<Key> upper;  // none: the last chunk
    ChunkHash hash;
    PgLsn position;  // every transaction the hash saw committed before it
  };

  Status SourceSide(const TableSql& sql, const std::optional<Key>& lower, SourceChunk* out) {
    return InSnapshot(*src_, [&](PgLsn at) -> Status {
      out->position = at;
      std::vector<pg::Param> p;
      ASSIGN_OR_RETURN(pg::PgResult b, QueryOn(*src_, "source", sql.Boundary(lower, options_.chunk_rows, &p), p));
      if (b.rows() > 0) out->upper = KeyFromRow(b, 0, sql.key_size());
      p.clear();
      ASSIGN_OR_RETURN(pg::PgResult h, QueryOn(*src_, "source", sql.Hash(lower, out->upper, &p), p));
      out->hash = {h.GetInt(0, 0), h.GetString(0, 1)};
      return Status::Ok();
    });
  }

  // Steps 1-5 for the chunk above `lower`, whose source side may already have
  // been read (`source`); sets out->upper (none: the last chunk). While the
  // target hashes this chunk, the source side of the next one is read into
  // *next (left empty if that fails: the next call reads it again, with the
  // retry that every chunk gets).
  Status Chunk(const TableSchema& t, const TableSql& sql, const std::optional<Key>& lower,
               std::optional<SourceChunk> source, bool list_keys, std::optional<SourceChunk>* next, ChunkOutcome* out) {
    if (!source) {
      source.emplace();
      RETURN_IF_ERROR(SourceSide(sql, lower, &*source));
    }
    out->upper = source->upper;
    out->rows = source->hash.count;
    out->rows_read += source->hash.count;

    RETURN_IF_ERROR(WaitForTarget(source->position));
    // The target connection is used by this task only until get() below; the
    // source connection by this thread only.
    std::future<Result<pg::PgResult>> target_hash = std::async(std::launch::async, [&] {
      std::vector<pg::Param> p;
      return QueryOn(*dst_, "target", sql.Hash(lower, out->upper, &p), p);
    });
    if (out->upper && !Stopped(ctx_)) {
      SourceChunk n;
      if (SourceSide(sql, out->upper, &n).ok()) *next = std::move(n);
    }
    ASSIGN_OR_RETURN(pg::PgResult h, target_hash.get());
    if (ChunkHash{h.GetInt(0, 0), h.GetString(0, 1)} == source->hash) return Status::Ok();

    out->differed = true;
    if (!list_keys) {
      out->not_listed = true;
      return Status::Ok();
    }
    std::vector<Key> candidates;
    RETURN_IF_ERROR(Candidates(sql, lower, out->upper, &candidates, out));
    out->keys_rechecked = static_cast<int64_t>(candidates.size());
    return CheckKeys(t, sql, candidates, out);
  }

  // Step 4: the keys whose row differs between the two sides' listings of the chunk.
  Status Candidates(const TableSql& sql, const std::optional<Key>& lower, const std::optional<Key>& upper,
                    std::vector<Key>* candidates, ChunkOutcome* out) {
    pg::PgResult source_rows;
    PgLsn position;
    RETURN_IF_ERROR(InSnapshot(*src_, [&](PgLsn at) -> Status {
      position = at;
      std::vector<pg::Param> p;
      ASSIGN_OR_RETURN(source_rows, QueryOn(*src_, "source", sql.Rows(lower, upper, &p), p));
      return Status::Ok();
    }));
    out->rows_read += source_rows.rows();
    RETURN_IF_ERROR(WaitForTarget(position));
    std::vector<pg::Param> p;
    ASSIGN_OR_RETURN(pg::PgResult target_rows, QueryOn(*dst_, "target", sql.Rows(lower, upper, &p), p));

    const size_t n = sql.key_size();
    const int md5_col = static_cast<int>(n);
    std::map<Key, std::string> target;
    for (int r = 0; r < target_rows.rows(); ++r)
      target.emplace(KeyFromRow(target_rows, r, n), target_rows.GetString(r, md5_col));
    for (int r = 0; r < source_rows.rows(); ++r) {
      Key key = KeyFromRow(source_rows, r, n);
      auto it = target.find(key);
      if (it == target.end() || it->second != source_rows.Get(r, md5_col)) candidates->push_back(key);
      if (it != target.end()) target.erase(it);
    }
    for (auto& [key, md5] : target) candidates->push_back(key);
    return Status::Ok();
  }

  // Step 5: the exact check of every candidate, all keys of the chunk at once
  // (each key's reasoning is independent of the others': see the top of the file).
  Status CheckKeys(const TableSchema& t, const TableSql& sql, const std::vector<Key>& keys, ChunkOutcome* out) {
    struct Pending {
      const Key* key;
      int differing = 0;  // conclusive observations that the target differs
    };
    std::vector<Pending> pending;
    pending.reserve(keys.size());
    for (const Key& k : keys) pending.push_back({&k});
    auto pause = std::chrono::milliseconds(10);
    for (int attempt = 0; attempt < options_.max_key_checks && !pending.empty(); ++attempt) {
      if (attempt > 0) {
        RETURN_IF_ERROR(Sleep(pause));
        pause = std::min(pause * 2, std::chrono::milliseconds(200));
      }
      std::vector<const Key*> look;
      look.reserve(pending.size());
      for (const Pending& k : pending) look.push_back(k.key);
      std::vector<std::optional<Version>> first, target, second;
      PgLsn position;
      RETURN_IF_ERROR(InSnapshot(*src_, [&](PgLsn at) -> Status {
        position = at;
        return Look(*src_, "source", sql, look, &first);
      }));
      RETURN_IF_ERROR(WaitForTarget(position));
      RETURN_IF_ERROR(Look(*dst_, "target", sql, look, &target));
      RETURN_IF_ERROR(InSnapshot(*src_, [&](PgLsn) -> Status { return Look(*src_, "source", sql, look, &second); }));
      out->rows_read += 2 * static_cast<int64_t>(look.size());

      std::vector<Pending> again;
      for (size_t i = 0; i < pending.size(); ++i) {
        if (first[i] != second[i]) {  // the row moved on the source while we looked
          again.push_back(pending[i]);
          continue;
        }
        std::optional<std::string> source_md5, target_md5;
        if (first[i]) source_md5 = first[i]->md5;
        if (target[i]) target_md5 = target[i]->md5;
        if (source_md5 == target_md5) continue;  // in sync
        if (++pending[i].differing < 2) {
          again.push_back(pending[i]);
          continue;
        }
        const Key& key = *pending[i].key;
        out->differences.push_back(Difference{t.id, key, sql.Display(key), KindOf(source_md5, target_md5)});
      }
      pending = std::move(again);
    }
    for (const Pending& k : pending) out->unsettled.push_back(sql.Display(*k.key));
    return Status::Ok();
  }

  // (xmin, md5) of each key's row on `conn` (nullopt: absent), in `keys` order.
  Status Look(pg::PgConn& conn, const char* side, const TableSql& sql, const std::vector<const Key*>& keys,
              std::vector<std::optional<Version>>* out) {
    out->assign(keys.size(), std::nullopt);
    for (size_t begin = 0; begin < keys.size(); begin += kKeysPerLookup) {
      size_t end = std::min(keys.size(), begin + kKeysPerLookup);
      std::vector<const Key*> part(keys.begin() + static_cast<std::ptrdiff_t>(begin),
                                   keys.begin() + static_cast<std::ptrdiff_t>(end));
      std::vector<pg::Param> p;
      ASSIGN_OR_RETURN(pg::PgResult r, QueryOn(conn, side, sql.Lookup(part, &p), p));
      for (int row = 0; row < r.rows(); ++row) {
        size_t ord = static_cast<size_t>(r.GetInt(row, 0));
        if (ord < part.size()) (*out)[begin + ord] = Version{r.GetString(row, 1), r.GetString(row, 2)};
      }
    }
    return Status::Ok();
  }

  // Step 3's wait: until the target has applied the source through `position`.
  Status WaitForTarget(PgLsn position) {
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(options_.target_wait_timeout_s);
    bool flushed = false;
    for (;;) {
      PgLsn applied = ctx_.target_applied_through();
      if (applied >= position) return Status::Ok();
      if (Stopped(ctx_)) return StoppedStatus();
      if (!flushed) {
        // The source's WAL up to `position` may wait a WAL-writer cycle
        // (up to wal_writer_delay) before a walsender can decode it, when
        // commits are asynchronous. A transactional logical message committed
        // with synchronous_commit on flushes it now; it writes one WAL record
        // and nothing else. If the server refuses, the wait is just longer.
        flushed = true;
        if (flush_works_) {
          Status st = src_->Exec("BEGIN; SET LOCAL synchronous_commit = on; "
                                 "SELECT pg_logical_emit_message(true, 'midflight', 'verify'); COMMIT");
          if (!st.ok()) {
            flush_works_ = false;
            if (!src_->IsBroken()) (void)src_->Exec("ROLLBACK");
          }
        }
        continue;
      }
      if (Clock::now() >= deadline)
        return OperatorError(fmt::format(
            "the target is not catching up: after {} s it has applied the source only through {}, "
            "short of {} ({} bytes behind)",
            options_.target_wait_timeout_s, applied.ToString(), position.ToString(), position.BytesSince(applied)));
      // Short sleeps: the per-key check is only conclusive when the row did
      // not change on the source meanwhile, so every millisecond counts.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // Step 6: keeps rows read from the source under *rows_per_s, the knob read
  // again on every slice so a change takes effect during the wait.
  Status Pace(int64_t rows, Clock::time_point chunk_start) const {
    if (!options_.rows_per_s || rows <= 0) return Status::Ok();
    for (;;) {
      int64_t rate = options_.rows_per_s();
      if (rate <= 0) return Status::Ok();
      auto due = chunk_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                   static_cast<double>(rows) / static_cast<double>(rate)));
      Clock::time_point now = Clock::now();
      if (now >= due) return Status::Ok();
      // Slices of 50 ms at most: the knob is read again after each.
      if (WaitOrStopped(ctx_, std::min<Clock::duration>(due - now, std::chrono::milliseconds(50))))
        return StoppedStatus();
    }
  }

  Status Sleep(std::chrono::milliseconds d) const {
    return WaitOrStopped(ctx_, d) ? StoppedStatus() : Status::Ok();
  }

  const Context& ctx_;
  const Options& options_;
  std::unique_ptr<pg::PgConn> src_, dst_;
  bool flush_works_ = true;
};

std::string SkipReason(const TableSchema& t) {
  if (t.key_kind == KeyKind::kFullRow)
    return "REPLICA IDENTITY FULL without a key: rows cannot be told apart, compare it offline";
  if (t.key.empty()) return "no primary key or replica identity index";
  return {};
}

}  // namespace

Result<Report> Run(const Context& ctx, const Options& options) {
  if (!ctx.target_applied_through) return InvalidArgument("verify: target_applied_through is required");
  if (options.chunk_rows < 1 || options.max_key_checks < 1 || options.max_keys_per_table < 1 ||
      options.target_wait_timeout_s < 1)
    return InvalidArgument(fmt::format(
        "verify: chunk_rows ({}), max_key_checks ({}), max_keys_per_table ({}) and target_wait_timeout_s ({}) "
        "must be at least 1",
        options.chunk_rows, options.max_key_checks, options.max_keys_per_table, options.target_wait_timeout_s));
  const Clock::time_point start = Clock::now();
  Verifier verifier(ctx, options);
  RETURN_IF_ERROR(verifier.Connect().WithContext("verify"));
  Report report;
  bool started = !ctx.start_table;
  for (const auto& t : ctx.tables) {
    if (Stopped(ctx)) return StoppedStatus();
    std::optional<Key> start_after;
    if (!started) {
      if (t->id != *ctx.start_table) continue;  // verified before the resume point
      started = true;
      if (!ctx.start_after.empty()) start_after = ctx.start_after;
    }
    TableResult result;
    result.table = t->id;
    result.skipped = ctx.skip.count(t->id) ? ctx.skip.at(t->id) : SkipReason(*t);
    if (result.skipped.empty()) {
      RETURN_IF_ERROR(verifier.VerifyTable(*t, &result, std::move(start_after)));
    } else if (ctx.on_progress) {
      ctx.on_progress(Progress{t->id, 0, 0, std::nullopt, &result});
    }
    report.rows += result.rows;
    report.tables.push_back(std::move(result));
  }
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

Result<RowImage> ReadSourceRow(pg::PgConn& source, const TableSchema& t, const Key& key) {
  if (!SkipReason(t).empty())
    return InvalidArgument(fmt::format("reading {} from the source: {}", t.id.ToString(), SkipReason(t)));
  TableSql sql(t);
  if (key.size() != t.key.size())
    return InvalidArgument(fmt::format("reading {} {} from the source: {} key values for the key {}", t.id.ToString(),
                                       sql.Display(key), key.size(), t.KeyDescription()));
  RowImage image;
  Status st = InSnapshot(source, [&](PgLsn at) -> Status {
    image.as_of = at;
    std::vector<const Key*> keys{&key};
    std::vector<pg::Param> p;
    ASSIGN_OR_RETURN(pg::PgResult r, source.Query(sql.Image(keys, &p), p));
    if (r.rows() == 0) return Status::Ok();
    image.exists = true;
    for (int c = 1; c < r.cols(); ++c)
      image.values.push_back(r.IsNull(0, c) ? std::nullopt : std::optional<std::string>(r.GetString(0, c)));
    return Status::Ok();
  });
  if (!st.ok()) return st.WithContext(fmt::format("reading {} {} from the source", t.id.ToString(), sql.Display(key)));
  return image;
}

}  // namespace midflight::verify
