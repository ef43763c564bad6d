#include "source/postgres/snapshot_copier.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "base/log.h"
#include "postgres/pg_conn.h"

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

std::string ChunkQuery(const TableSchema& t, const Chunk& c) {
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
                     UseBinaryCopy(t) ? " (FORMAT binary)" : "");
}

// Pipes one chunk from source to target inside the target's open transaction.
Status PipeChunk(PgConn& src, PgConn& dst, const TableSchema& t, const Chunk& c, TableProgress& progress,
                 int64_t* rows, int64_t* bytes, const std::atomic<bool>& stop) {
  std::string copy_in = fmt::format("COPY {} ({}) FROM STDIN{}", QuoteQualified(t.id.schema, t.id.name),
                                    ColumnList(t), UseBinaryCopy(t) ? " (FORMAT binary)" : "");
  PgResult in(PQexec(dst.raw(), copy_in.c_str()));
  if (PQresultStatus(in.raw()) != PGRES_COPY_IN) return StatusFromResult(dst.raw(), in.raw(), "COPY into " + t.id.ToString());
  std::string query = ChunkQuery(t, c);
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
    int put = PQputCopyData(dst.raw(), buf, n);
    PQfreemem(buf);
    if (put != 1) {
      failure = StatusFromResult(dst.raw(), nullptr, "writing COPY of " + t.id.ToString());
      break;
    }
    ++local_rows;  // one row per message (binary adds a trailer; the exact count comes from the command tag)
    local_bytes += n;
    if ((local_rows & 1023) == 0) {
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
  // Finish the source side (collect its final result).
  PgResult src_done(PQgetResult(src.raw()));
  if (failure.ok() && PQresultStatus(src_done.raw()) != PGRES_COMMAND_OK)
    failure = StatusFromResult(src.raw(), src_done.raw(), "COPY from " + t.id.ToString());
  if (failure.ok()) {
    // "COPY 123": the exact number of rows sent.
    int64_t exact = std::strtoll(PQcmdTuples(src_done.raw()), nullptr, 10);
    progress.rows += exact - local_rows;
    local_rows = exact;
    *rows = exact;
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
      int64_t pages = std::stoll(pages_text);
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
  std::mutex mu;
  std::condition_variable cv;
  size_t next = 0;
  int imported = 0;
  std::atomic<int> committed{0};
  bool import_failed = false;
  Status first_error;
  auto record_error = [&](Status st) {
    std::lock_guard lock(mu);
    if (first_error.ok()) first_error = std::move(st);
  };
  auto worker = [&](int id) {
    auto finish_import = [&](bool ok) {
      std::lock_guard lock(mu);
      ++imported;
      import_failed = import_failed || !ok;
      cv.notify_all();
    };
    ConnOptions so;
    so.application_name = fmt::format("midflight-copy-{}", id);
    auto src = PgConn::Connect(job.source_uri, so);
    if (!src.ok()) {
      finish_import(false);
      return record_error(src.status());
    }
    Status st = (*src)->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (st.ok()) st = (*src)->Exec(fmt::format("SET TRANSACTION SNAPSHOT {}", QuoteLiteral(job.snapshot_name)));
    finish_import(st.ok());
    if (!st.ok()) return record_error(st.WithContext("importing the copy snapshot"));
    ConnOptions to;
    to.application_name = so.application_name;
    auto dst = PgConn::Connect(job.target_uri, to);
    if (!dst.ok()) return record_error(dst.status());
    while (!stop) {
      size_t i;
      {
        std::lock_guard lock(mu);
        if (next >= job.chunks.size() || !first_error.ok()) return;
        i = next++;
      }
      const Chunk& c = job.chunks[i];
      const TableSchema& t = *job.tables.at(c.table);
      TableProgress& tp = *progress.at(c.table);
      int64_t rows = 0, bytes = 0;
      Status s = (*dst)->Exec("BEGIN");
      if (s.ok()) s = PipeChunk(**src, **dst, t, c, tp, &rows, &bytes, stop);
      if (s.ok()) {
        auto r = (*dst)->Query(kRecordChunkSql, {job.migration, t.id.ToString(), std::to_string(c.number),
                                                 job.snapshot_lsn.ToString(), std::to_string(rows), std::to_string(bytes)});
        s = r.status();
      }
      if (s.ok()) s = (*dst)->Exec("COMMIT");
      if (!s.ok()) {
        (void)(*dst)->Exec("ROLLBACK");
        return record_error(s.WithContext(fmt::format("copying {} chunk {}", t.id.ToString(), c.number)));
      }
      ++tp.chunks_done;
      if (job.on_chunk_committed) job.on_chunk_committed(++committed);
      LOG_DEBUG("copied {} chunk {}: {} rows", t.id.ToString(), c.number, rows);
    }
  };
  int n = std::max(1, job.workers);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back(worker, i);
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return imported == n; });
  }
  on_imported();
  for (auto& t : threads) t.join();
  if (!first_error.ok()) return first_error;
  if (stop) return Cancelled("copy stopped");
  (void)import_failed;
  return Status::Ok();
}

}  // namespace midflight::pg
