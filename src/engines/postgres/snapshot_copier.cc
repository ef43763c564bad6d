#include "engines/postgres/snapshot_copier.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "base/log.h"
#include "base/parse.h"
#include "base/stop.h"
#include "base/thread_annotations.h"
#include "control/knobs.h"
#include "engines/postgres/pg_conn.h"

namespace midflight::pg {
namespace {

constexpr const char* kRecordChunkSql = R"sql(
INSERT INTO midflight.chunks (migration, table_name, chunk, snapshot_lsn, rows_copied, bytes_copied)
VALUES ($1, $2, $3, $4, $5, $6)
)sql";

std::string ColumnList(const TableSchema& t) {
  std::string out;
  for (int i : t.writable) {
    if (!out.empty()) out += ", ";
    out += QuoteIdent(t.columns[i].name);
  }
  return out;
}

// Binary COPY is cheaper to produce and to parse, but it carries type oids
// inside arrays and composite values, which differ between two servers for
// user-defined types. It is used only when every column has a built-in type
// (oid below FirstNormalObjectId), whose oids are the same everywhere.
bool UseBinaryCopy(const TableSchema& t) {
  constexpr uint32_t kFirstNormalObjectId = 16384;
  for (int i : t.writable)
    if (t.columns[i].type.native_oid == 0 || t.columns[i].type.native_oid >= kFirstNormalObjectId) return false;
  return true;
}

// COPY's text format (one row per line: fields split by tabs, \N for NULL,
// backslash escapes), decoded into the Datums a transform reads and encoded
// back for the target.
bool DecodeCopyRow(std::string_view line, std::vector<Datum>* out) {
  out->clear();
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  std::string field;
  bool null = false;
  auto flush = [&] {
    out->push_back(null ? Datum::Null() : Datum::Text(std::move(field)));
    field.clear();
    null = false;
  };
  for (size_t i = 0; i < line.size(); ++i) {
    char ch = line[i];
    if (ch == '\t') {
      flush();
      continue;
    }
    if (ch != '\\') {
      field.push_back(ch);
      continue;
    }
    if (++i >= line.size()) return false;
    char e = line[i];
    switch (e) {
      case 'N': null = true; break;
      case 'b': field.push_back('\b'); break;
      case 'f': field.push_back('\f'); break;
      case 'n': field.push_back('\n'); break;
      case 'r': field.push_back('\r'); break;
      case 't': field.push_back('\t'); break;
      case 'v': field.push_back('\v'); break;
      case 'x': {
        int v = 0, n = 0;
        while (n < 2 && i + 1 < line.size() && std::isxdigit(static_cast<unsigned char>(line[i + 1]))) {
          char h = line[++i];
          v = v * 16 + (std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
          ++n;
        }
        field.push_back(static_cast<char>(v));
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          int v = e - '0', n = 1;
          while (n < 3 && i + 1 < line.size() && line[i + 1] >= '0' && line[i + 1] <= '7') {
            v = v * 8 + (line[++i] - '0');
            ++n;
          }
          field.push_back(static_cast<char>(v));
        } else {
          field.push_back(e);
        }
    }
  }
  flush();
  return true;
}

void EncodeCopyRow(const std::vector<Datum>& row, std::string* out) {
  out->clear();
  for (size_t i = 0; i < row.size(); ++i) {
    if (i) out->push_back('\t');
    if (row[i].is_null()) {
      *out += "\\N";
      continue;
    }
    for (char ch : row[i].text) {
      switch (ch) {
        case '\\': *out += "\\\\"; break;
        case '\t': *out += "\\t"; break;
        case '\n': *out += "\\n"; break;
        case '\r': *out += "\\r"; break;
        default: out->push_back(ch);
      }
    }
  }
  out->push_back('\n');
}

std::string TargetColumnList(const TableSchema& t) {
  std::string out;
  for (const auto& c : t.columns) out += (out.empty() ? "" : ", ") + QuoteIdent(c.name);
  return out;
}

std::string ChunkQuery(const TableSchema& t, const Chunk& c, bool force_text = false) {
  std::string from = t.partitioned ? QuoteQualified(t.id.schema, t.id.name)
                                   : "ONLY " + QuoteQualified(t.id.schema, t.id.name);
  std::vector<std::string> conds;
  if (c.kind == Chunk::Kind::kIntRange) {
    std::string col = QuoteIdent(t.columns[*t.IntegerChunkColumn()].name);
    if (c.lo) conds.push_back(fmt::format("{} >= {}", col, *c.lo));
    if (c.hi) conds.push_back(fmt::format("{} < {}", col, *c.hi));
  } else if (c.kind == Chunk::Kind::kPageRange) {
    if (c.lo) conds.push_back(fmt::format("ctid >= '({},0)'::tid", *c.lo));
    if (c.hi) conds.push_back(fmt::format("ctid < '({},0)'::tid", *c.hi));
  }
  std::string where;
  for (size_t i = 0; i < conds.size(); ++i) where += (i ? " AND " : " WHERE ") + conds[i];
  return fmt::format("COPY (SELECT {} FROM {}{}) TO STDOUT{}", ColumnList(t), from, where,
                     UseBinaryCopy(t) && !force_text ? " (FORMAT binary)" : "");
}

// Stops a source COPY that is still sending and drains what is in flight,
// or collecting its result would wait for the whole chunk (the source
// transaction is then aborted; the caller does not use it again).
void CancelCopyOut(PgConn& src) {
  if (PGcancel* cancel = PQgetCancel(src.raw())) {
    char err[256];
    PQcancel(cancel, err, sizeof err);
    PQfreeCancel(cancel);
  }
  for (;;) {
    char* buf = nullptr;
    int n = PQgetCopyData(src.raw(), &buf, 0);
    if (buf) PQfreemem(buf);
    if (n < 0) break;
  }
}

// A chunk's COPY TO STDOUT (text format) read row by row for a ChunkTarget.
class SourceRows final : public CopyRows {
 public:
  SourceRows(PgConn& src, const TableSchema& t) : src_(src), t_(t) {}
  ~SourceRows() override { Release(); }

  Result<bool> Next(std::string_view* line) override {
    Release();
    if (done_) return false;
    int n = PQgetCopyData(src_.raw(), &buf_, 0);
    if (n == -1) {
      done_ = true;
      return false;
    }
    if (n < 0) return StatusFromResult(src_.raw(), nullptr, "reading COPY of " + t_.id.ToString());
    ++rows_;
    *line = std::string_view(buf_, n > 0 && buf_[n - 1] == '\n' ? n - 1 : n);
    return true;
  }
  bool done() const { return done_; }
  int64_t rows() const { return rows_; }

 private:
  void Release() {
    if (buf_) PQfreemem(buf_);
    buf_ = nullptr;
  }
  PgConn& src_;
  const TableSchema& t_;
  char* buf_ = nullptr;
  bool done_ = false;
  int64_t rows_ = 0;
};

// One chunk from the source into a ChunkTarget: the target's Load reads the
// rows; the source's final count must match what it wrote.
Status CopyToTarget(PgConn& src, ChunkTarget& target, const TableSchema& t, const Chunk& c, PgLsn snapshot,
                    TableProgress& progress, RateLimiter* rate, const std::atomic<bool>& stop) {
  const std::string query = ChunkQuery(t, c, /*text=*/true);
  PgResult out(PQexec(src.raw(), query.c_str()));
  if (PQresultStatus(out.raw()) != PGRES_COPY_OUT)
    return StatusFromResult(src.raw(), out.raw(), "COPY from " + t.id.ToString());
  SourceRows rows(src, t);
  int64_t written = 0;
  Status st = target.Load(t, c, snapshot, rows, progress, rate, stop, &written);
  if (!rows.done()) {
    CancelCopyOut(src);
    if (st.ok()) st = Internal(fmt::format("copy of {}: the target stopped reading before the end", t.id.ToString()));
  }
  PgResult src_done(PQgetResult(src.raw()));
  if (st.ok() && PQresultStatus(src_done.raw()) != PGRES_COMMAND_OK)
    st = StatusFromResult(src.raw(), src_done.raw(), "COPY from " + t.id.ToString());
  while (PGresult* extra = PQgetResult(src.raw())) PQclear(extra);
  if (st.ok() && written != rows.rows())
    st = Internal(fmt::format("copy of {} chunk {}: {} rows read, {} written", t.id.ToString(), c.number, rows.rows(),
                              written));
  return st;
}

// Pipes one chunk from source to target inside the target's open transaction.
// With a transform (core/transform.h) the rows go through it in text form
// into the target's table; a row it cannot apply fails the chunk, naming it.
// With `pub` (transport.publish_snapshot) both COPYs are text and every row
// is also handed to it, decoded, as the source sent it.
Status PipeChunk(PgConn& src, PgConn& dst, const TableSchema& t, const Chunk& c, TableProgress& progress,
                 int64_t* rows, int64_t* bytes, const std::atomic<bool>& stop, RateLimiter* rate,
                 const TableTransform* transform, ChunkPublication* pub) {
  std::string copy_in =
      transform ? fmt::format("COPY {} ({}) FROM STDIN", QuoteQualified(transform->target()->id.schema,
                                                                        transform->target()->id.name),
                              TargetColumnList(*transform->target()))
                : fmt::format("COPY {} ({}) FROM STDIN{}", QuoteQualified(t.id.schema, t.id.name), ColumnList(t),
                              UseBinaryCopy(t) && !pub ? " (FORMAT binary)" : "");
  PgResult in(PQexec(dst.raw(), copy_in.c_str()));
  if (PQresultStatus(in.raw()) != PGRES_COPY_IN) return StatusFromResult(dst.raw(), in.raw(), "COPY into " + t.id.ToString());
  std::string query = ChunkQuery(t, c, transform != nullptr || pub != nullptr);
  std::vector<Datum> row;
  std::string encoded;
  PgResult out(PQexec(src.raw(), query.c_str()));
  if (PQresultStatus(out.raw()) != PGRES_COPY_OUT) {
    Status st = StatusFromResult(src.raw(), out.raw(), "COPY from " + t.id.ToString());
    PQputCopyEnd(dst.raw(), "source failed");
    PgResult(PQgetResult(dst.raw()));
    return st;
  }
  int64_t local_rows = 0, local_bytes = 0;
  Status failure;
  while (true) {
    char* buf = nullptr;
    int n = PQgetCopyData(src.raw(), &buf, 0);
    if (n == -1) break;  // done
    if (n == -2) {
      failure = StatusFromResult(src.raw(), nullptr, "reading COPY of " + t.id.ToString());
      break;
    }
    int put = 1;
    if (transform || pub) {
      if (!DecodeCopyRow(std::string_view(buf, static_cast<size_t>(n)), &row) ||
          row.size() != t.writable.size()) {
        PQfreemem(buf);
        failure = Internal(fmt::format("COPY from {}: a row of text COPY could not be read", t.id.ToString()));
        break;
      }
    }
    if (pub) {
      if (Status st = pub->Row(transform ? row : std::move(row)); !st.ok()) {
        PQfreemem(buf);
        failure = st;
        break;
      }
    }
    if (transform) {
      auto out = transform->Row(row);
      if (!out.ok()) {
        PQfreemem(buf);
        failure = out.status();
        break;
      }
      if (out->has_value()) {
        EncodeCopyRow(**out, &encoded);
        put = PQputCopyData(dst.raw(), encoded.data(), static_cast<int>(encoded.size()));
      }
    } else {
      put = PQputCopyData(dst.raw(), buf, n);
    }
    PQfreemem(buf);
    if (put != 1) {
      failure = StatusFromResult(dst.raw(), nullptr, "writing COPY of " + t.id.ToString());
      break;
    }
    ++local_rows;  // one row per message (binary adds a trailer; the exact count comes from the command tag)
    local_bytes += n;
    if ((local_rows & 1023) == 0) {
      if (rate) rate->Acquire(1024, stop);
      progress.rows += 1024;
      progress.bytes += local_bytes;
      *bytes += local_bytes;
      local_bytes = 0;
      if (stop) {
        failure = Cancelled("stopping");
        break;
      }
    }
  }
  progress.rows += local_rows & 1023;
  progress.bytes += local_bytes;
  *bytes += local_bytes;
  *rows = local_rows;
  // Stopped or failed mid-stream: the source is still sending. Cancel its
  // COPY and drain what is in flight, or collecting its result would wait
  // for the whole chunk (the source transaction is then aborted; the caller
  // does not use it again).
  if (!failure.ok()) CancelCopyOut(src);
  // Finish the source side (collect its final result).
  PgResult src_done(PQgetResult(src.raw()));
  if (failure.ok() && PQresultStatus(src_done.raw()) != PGRES_COMMAND_OK)
    failure = StatusFromResult(src.raw(), src_done.raw(), "COPY from " + t.id.ToString());
  if (failure.ok()) {
    // "COPY 123": the exact number of rows sent.
    int64_t exact = 0;
    if (ParseI64(PQcmdTuples(src_done.raw()), &exact)) {
      progress.rows += exact - local_rows;
      local_rows = exact;
      *rows = exact;
    } else {
      failure = Internal(fmt::format("COPY from {}: the source's row count is not a number: '{}'", t.id.ToString(),
                                     PQcmdTuples(src_done.raw())));
    }
  }
  while (PGresult* extra = PQgetResult(src.raw())) PQclear(extra);
  if (!failure.ok()) {
    PQputCopyEnd(dst.raw(), "midflight: source side failed");
    while (PGresult* r = PQgetResult(dst.raw())) PQclear(r);
    progress.rows -= local_rows;
    return failure;
  }
  if (PQputCopyEnd(dst.raw(), nullptr) != 1) return StatusFromResult(dst.raw(), nullptr, "ending COPY into " + t.id.ToString());
  PgResult dst_done(PQgetResult(dst.raw()));
  Status st;
  if (PQresultStatus(dst_done.raw()) != PGRES_COMMAND_OK)
    st = StatusFromResult(dst.raw(), dst_done.raw(), "COPY into " + t.id.ToString());
  while (PGresult* extra = PQgetResult(dst.raw())) PQclear(extra);
  if (!st.ok()) progress.rows -= local_rows;
  return st;
}

}  // namespace

Result<std::vector<Chunk>> PlanChunks(PgConn& source, const std::vector<std::shared_ptr<const TableSchema>>& tables,
                                      int64_t chunk_rows) {
  std::vector<std::shared_ptr<const TableSchema>> by_size = tables;
  std::stable_sort(by_size.begin(), by_size.end(),
                   [](const auto& a, const auto& b) { return a->estimated_bytes > b->estimated_bytes; });
  std::vector<Chunk> out;
  for (const auto& t : by_size) {
    int64_t rows = std::max<int64_t>(t->estimated_rows, 0);
    int64_t n = std::max<int64_t>(1, (rows + chunk_rows - 1) / std::max<int64_t>(chunk_rows, 1));
    auto int_col = t->IntegerChunkColumn();
    // Tables that must be copied from one snapshot as a whole (see router.h) are
    // still split, by pages, when they are large: only resumption is per table.
    if (n > 1 && int_col && !t->has_secondary_unique) {
      std::string col = QuoteIdent(t->columns[*int_col].name);
      std::string from = QuoteQualified(t->id.schema, t->id.name);
      ASSIGN_OR_RETURN(PgResult r, source.Query(fmt::format("SELECT min({0})::bigint, max({0})::bigint FROM {1}", col, from)));
      if (!r.IsNull(0, 0)) {
        int64_t lo = r.GetInt(0, 0), hi = r.GetInt(0, 1);
        int64_t span = hi - lo + 1;
        n = std::min<int64_t>(n, span);
        int64_t step = (span + n - 1) / n;
        for (int64_t i = 0; i < n; ++i) {
          Chunk c{t->id, static_cast<int>(i), Chunk::Kind::kIntRange, std::nullopt, std::nullopt};
          if (i > 0) c.lo = lo + i * step;
          if (i + 1 < n) c.hi = lo + (i + 1) * step;
          out.push_back(c);
        }
        continue;
      }
    }
    if (n > 1 && !t->partitioned) {
      ASSIGN_OR_RETURN(std::string pages_text,
                       source.QueryValue(fmt::format("SELECT (pg_relation_size({}) / current_setting('block_size')::int)::bigint",
                                                     QuoteLiteral(QuoteQualified(t->id.schema, t->id.name)))));
      int64_t pages = 0;
      if (!ParseI64(pages_text, &pages))
        return Internal(fmt::format("planning chunks of {}: the source's page count is not a number: '{}'",
                                    t->id.ToString(), pages_text));
      if (pages > n) {
        int64_t step = (pages + n - 1) / n;
        for (int64_t i = 0; i < n; ++i) {
          Chunk c{t->id, static_cast<int>(i), Chunk::Kind::kPageRange, std::nullopt, std::nullopt};
          if (i > 0) c.lo = i * step;
          if (i + 1 < n) c.hi = (i + 1) * step;
          out.push_back(c);
        }
        continue;
      }
    }
    out.push_back(Chunk{t->id, 0, Chunk::Kind::kWhole, std::nullopt, std::nullopt});
  }
  return out;
}

Status CopyChunks(const CopyJob& job, CopyProgress& progress, const std::atomic<bool>& stop,
                  const std::function<void()>& on_imported) {
  // What the workers and the supervisor share; `changed` wakes the
  // supervisor when a worker exits (it may start another, or be done).
  struct Shared {
    Mutex mu;
    CondVar changed;
    size_t next GUARDED_BY(mu) = 0;
    std::vector<size_t> retry GUARDED_BY(mu);  // chunks handed back by a retiring or failing worker
    int running GUARDED_BY(mu) = 0;
    std::set<int> alive GUARDED_BY(mu);  // workers whose thread has not returned yet
    Status first_error GUARDED_BY(mu);
  } sh;
  std::atomic<int> committed{0};
  std::atomic<int> flushed{0};
  // Chunks of each table not committed yet.
  struct Left {
    Mutex mu;
    std::map<TableId, int> chunks GUARDED_BY(mu);
  } left;
  {
    MutexLock lock(&left.mu);
    for (const auto& c : job.chunks) ++left.chunks[c.table];
  }
  auto record_error = [&](Status st) {
    MutexLock lock(&sh.mu);
    if (sh.first_error.ok()) sh.first_error = std::move(st);
  };
  auto wanted = [&] {
    int64_t n = job.knobs ? job.knobs->Int(Knob::kParallelism) : job.workers;
    return static_cast<int>(std::clamp<int64_t>(n, 1, 64));
  };
  // Takes the next chunk for worker `id`; none when the job is done, failed,
  // or this worker is beyond the parallelism knob.
  auto take = [&](int id) -> std::optional<size_t> {
    MutexLock lock(&sh.mu);
    if (!sh.first_error.ok() || stop || id >= wanted()) return std::nullopt;
    if (!sh.retry.empty()) {
      size_t i = sh.retry.back();
      sh.retry.pop_back();
      return i;
    }
    if (sh.next >= job.chunks.size()) return std::nullopt;
    return sh.next++;
  };
  // One worker's connections: a source transaction in the exported snapshot, and a target session.
  struct Conns {
    std::unique_ptr<PgConn> src, dst;
    std::unique_ptr<ChunkTarget> target;  // job.open_target's, instead of dst
  };
  auto open = [&](int id) -> Result<Conns> {
    ConnOptions o;
    o.application_name = fmt::format("midflight-copy-{}", id);
    Conns c;
    ASSIGN_OR_RETURN(c.src, PgConn::Connect(job.source_uri, o));
    Status st = c.src->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (st.ok()) st = c.src->Exec(fmt::format("SET TRANSACTION SNAPSHOT {}", QuoteLiteral(job.snapshot_name)));
    if (!st.ok()) return st.WithContext("importing the copy snapshot");
    // A chunk and its row in midflight.chunks commit together; flushed before
    // the copy counts it done, whatever the target's synchronous_commit.
    if (job.open_target) {
      ASSIGN_OR_RETURN(c.target, job.open_target());
      return c;
    }
    o.settings.push_back("synchronous_commit=local");
    ASSIGN_OR_RETURN(c.dst, PgConn::Connect(job.target_uri, o));
    return c;
  };
  auto copy_one = [&](Conns& cn, size_t i) -> Status {
    const Chunk& c = job.chunks[i];
    const TableSchema& t = *job.tables.at(c.table);
    TableProgress& tp = *progress.at(c.table);
    int64_t rows = 0, bytes = 0;
    if (cn.target) {
      Status s = CopyToTarget(*cn.src, *cn.target, t, c, job.snapshot_lsn, tp, job.rate, stop);
      if (!s.ok()) {
        const bool named = s.message().find(t.id.ToString()) != std::string::npos;
        return s.code() == StatusCode::kCancelled || named
                   ? s
                   : s.WithContext(fmt::format("copying {} chunk {}", t.id.ToString(), c.number));
      }
    }
    Status s = cn.target ? Status::Ok() : cn.dst->Exec("BEGIN");
    const TableTransform* transform = nullptr;
    if (auto tr = job.transforms.find(c.table); tr != job.transforms.end()) transform = tr->second.get();
    std::unique_ptr<ChunkPublication> pub;
    if (s.ok() && job.publisher) {
      if (cn.target) return Internal("transport.publish_snapshot: not with a target of another engine");
      auto begun = job.publisher->Begin(job.tables.at(c.table), c, Position(job.snapshot_lsn));
      if (begun.ok())
        pub = std::move(*begun);
      else
        s = begun.status();
    }
    if (s.ok() && !cn.target)
      s = PipeChunk(*cn.src, *cn.dst, t, c, tp, &rows, &bytes, stop, job.rate, transform, pub.get());
    if (s.ok() && !cn.target) {
      auto r = cn.dst->Query(kRecordChunkSql, {job.migration, t.id.ToString(), std::to_string(c.number),
                                               job.snapshot_lsn.ToString(), std::to_string(rows), std::to_string(bytes)});
      s = r.status();
    }
    // The chunk is recorded copied only once Kafka holds its rows (core/copy.h).
    if (s.ok() && pub) {
      s = pub->Flush();
      if (s.ok() && job.on_chunk_flushed) job.on_chunk_flushed(++flushed);
    }
    if (s.ok() && !cn.target) s = cn.dst->Exec("COMMIT");
    if (s.ok() && pub) pub->Committed();
    if (!s.ok()) {
      (void)cn.dst->Exec("ROLLBACK");
      return s.WithContext(fmt::format("copying {} chunk {}", t.id.ToString(), c.number));
    }
    ++tp.chunks_done;
    if (job.on_chunk_committed) job.on_chunk_committed(++committed);
    bool table_done = false;
    {
      MutexLock lock(&left.mu);
      table_done = --left.chunks[c.table] == 0;
    }
    if (table_done && job.on_table_copied) job.on_table_copied(c.table);
    LOG_DEBUG("copied {} chunk {}: {} rows", t.id.ToString(), c.number, rows);
    return Status::Ok();
  };
  auto worker = [&](int id) {
    const std::string where = fmt::format("copy worker {}", id);
    std::unique_ptr<Conns> cn;  // (not optional<>: GCC 12 then warns of maybe-uninitialized members)
    auto backoff = std::chrono::milliseconds(200);
    std::chrono::steady_clock::time_point first_failure{};
    std::optional<size_t> chunk;
    while ((chunk = take(id))) {
      Status st;
      if (!cn) {
        auto opened = open(id);
        if (opened.ok()) cn = std::make_unique<Conns>(std::move(*opened));
        else st = opened.status();
      }
      if (st.ok()) st = copy_one(*cn, *chunk);
      if (st.ok()) {
        if (first_failure != std::chrono::steady_clock::time_point{} && job.throttle) job.throttle->Clear(where);
        first_failure = {};
        backoff = std::chrono::milliseconds(200);
        continue;
      }
      {
        MutexLock lock(&sh.mu);
        sh.retry.push_back(*chunk);  // another worker, or this one after the backoff, copies it
      }
      if (st.code() == StatusCode::kCancelled) break;
      auto now = std::chrono::steady_clock::now();
      if (first_failure == std::chrono::steady_clock::time_point{}) first_failure = now;
      double fail_after = job.knobs ? job.knobs->Get(Knob::kFailAfterSeconds) : 0;
      bool retryable = st.code() == StatusCode::kRetryTxn || st.code() == StatusCode::kRetryCall;
      if (!retryable || std::chrono::duration<double>(now - first_failure).count() >= fail_after) {
        if (job.throttle) job.throttle->Clear(where);
        record_error(retryable ? OperatorError(fmt::format("{}; still failing after {:.0f} s of retries (knob "
                                                           "fail_after_seconds)",
                                                           st.message(), fail_after))
                               : st);
        break;
      }
      if (job.throttle) job.throttle->Report(where, -1, ClassifyDistress(st), st.message(), backoff);
      LOG_WARN("{}: {}; retrying the chunk in {} ms", where, st.message(), backoff.count());
      cn.reset();  // a failed COPY leaves the source transaction unusable: import again
      // The next take() sees `stop` and ends the worker.
      if (StopRef(stop).WaitFor(backoff)) continue;
      int64_t max_ms = job.knobs ? job.knobs->Int(Knob::kThrottleMaxBackoffMs) : 5000;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(max_ms));
    }
    if (job.throttle) job.throttle->Clear(where);
    MutexLock lock(&sh.mu);
    --sh.running;
  };
  // The supervisor: keeps as many workers as the parallelism knob asks while
  // chunks remain; a worker beyond it retires after its current chunk.
  // It wakes when a worker exits, and at least every 50 ms for what has no
  // notification: `stop` (an atomic the caller sets) and the knob.
  std::map<int, std::thread> threads;
  {
    MutexLock lock(&sh.mu);
    while (true) {
      bool work_left = sh.next < job.chunks.size() || !sh.retry.empty();
      if (!sh.first_error.ok() || stop || (!work_left && sh.running == 0)) break;
      if (work_left) {
        for (int id = 0; id < wanted() && sh.running < wanted(); ++id) {
          if (sh.alive.count(id)) continue;
          auto it = threads.find(id);
          if (it != threads.end()) {
            it->second.join();  // its worker has returned (not in `alive`): this does not wait
            threads.erase(it);
          }
          ++sh.running;
          sh.alive.insert(id);
          threads.emplace(id, std::thread([&, id] {
            worker(id);
            {
              MutexLock l(&sh.mu);
              sh.alive.erase(id);
            }
            sh.changed.NotifyAll();
          }));
        }
      }
      const int running = sh.running;
      sh.changed.WaitFor(&sh.mu, std::chrono::milliseconds(50), [&]() REQUIRES(sh.mu) {
        return sh.running != running || !sh.first_error.ok() || stop;
      });
    }
  }
  for (auto& [id, t] : threads) t.join();
  on_imported();
  Status first_error;
  {
    MutexLock lock(&sh.mu);
    first_error = sh.first_error;
  }
  if (!first_error.ok()) return first_error;
  if (stop) return Cancelled("copy stopped");
  return Status::Ok();
}

}  // namespace midflight::pg
