#include "engines/mysql/snapshot_copier.h"

#include <fmt/format.h>
#include <mysql.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "base/log.h"
#include "base/parse.h"
#include "base/stop.h"
#include "base/thread_annotations.h"
#include "engines/mysql/my_conn.h"
#include "engines/mysql/binlog_pos.h"
#include "engines/mysql/catalog.h"

namespace midflight::mysql {

namespace {

using TablePtr = std::shared_ptr<const TableSchema>;

// The source's select list and the target's LOAD DATA column list for one table.
struct LoadShape {
  std::string select_list;  // "`id`, CAST(`f` AS DOUBLE), ..."
  std::string load_list;    // "(`id`, `f`, @v2)"
  std::string set_clause;   // " SET `b` = CAST(@v2 AS UNSIGNED)" or ""
  std::vector<int> key_positions;  // positions of key columns in the select list
};

LoadShape ShapeOf(const TableSchema& t) {
  LoadShape s;
  std::vector<std::string> sel, load, sets;
  for (int i = 0; i < static_cast<int>(t.columns.size()); ++i) {
    const ColumnSchema& c = t.columns[i];
    if (c.generated) continue;
    const std::string q = QuoteIdent(c.name);
    if (std::find(t.key.begin(), t.key.end(), i) != t.key.end()) s.key_positions.push_back(static_cast<int>(sel.size()));
    const std::string& base = c.type.native_base;
    if (base == "bit") {
      // The text protocol sends BIT as raw bytes and LOAD DATA cannot read b'..': travel as a number.
      sel.push_back(fmt::format("CAST({} AS UNSIGNED)", q));
      load.push_back(fmt::format("@v{}", sel.size()));
      sets.push_back(fmt::format("{} = CAST(@v{} AS UNSIGNED)", q, sel.size()));
    } else if (base == "uuid" || base == "inet4" || base == "inet6") {
      // These parse text, but read a binary string as their raw stored bytes: travel as text.
      sel.push_back(q);
      load.push_back(fmt::format("@v{}", sel.size()));
      sets.push_back(fmt::format("{} = CONVERT(@v{} USING latin1)", q, sel.size()));
    } else if (base == "float") {
      // FLOAT prints with 6 significant digits; its exact double reads back to the same float.
      sel.push_back(fmt::format("CAST({} AS DOUBLE)", q));
      load.push_back(q);
    } else {
      sel.push_back(q);
      load.push_back(q);
    }
  }
  s.select_list = fmt::format("{}", fmt::join(sel, ", "));
  s.load_list = fmt::format("({})", fmt::join(load, ", "));
  if (!sets.empty()) s.set_clause = fmt::format(" SET {}", fmt::join(sets, ", "));
  return s;
}

std::string RangeWhere(const TableSchema& t, const Chunk& c) {
  if (c.kind != Chunk::Kind::kIntRange) return "";
  const std::string col = QuoteIdent(t.columns[*t.IntegerChunkColumn()].name);
  std::vector<std::string> parts;
  if (c.lo) parts.push_back(fmt::format("{} >= {}", col, *c.lo));
  if (c.hi) parts.push_back(fmt::format("{} < {}", col, *c.hi));
  return parts.empty() ? "" : fmt::format(" WHERE {}", fmt::join(parts, " AND "));
}

// Feeds LOAD DATA LOCAL INFILE from a source row stream, in LOAD DATA's
// default text format: tab between fields, newline after rows, backslash
// escapes, \N for NULL.
struct Feed {
  MyConn::Stream* rows = nullptr;
  const TableSchema* table = nullptr;
  const LoadShape* shape = nullptr;
  const std::atomic<bool>* stop = nullptr;
  int64_t max_row_bytes = 0;
  std::string buf;
  size_t off = 0;
  bool eof = false;
  int64_t row_count = 0, byte_count = 0;
  Status error;

  std::string KeyOf() const {
    std::vector<std::string> names, values;
    for (size_t k = 0; k < shape->key_positions.size(); ++k) {
      int col = shape->key_positions[k];
      names.push_back(table->columns[table->key[k]].name);
      values.push_back(rows->data(col) ? std::string(rows->data(col), std::min<unsigned long>(rows->length(col), 64))
                                       : "NULL");
    }
    return fmt::format("({})=({})", fmt::join(names, ", "), fmt::join(values, ", "));
  }

  // Appends the next row to buf; false at the end or on error.
  bool Fill() {
    if (stop->load()) {
      error = Cancelled("stopped");
      return false;
    }
    auto more = rows->Next();
    if (!more.ok()) {
      error = more.status();
      return false;
    }
    if (!*more) {
      eof = true;
      return false;
    }
    int64_t row_bytes = 0;
    for (int i = 0; i < rows->cols(); ++i) {
      if (i) buf.push_back('\t');
      const char* d = rows->data(i);
      if (!d) {
        buf += "\\N";
        continue;
      }
      unsigned long n = rows->length(i);
      row_bytes += n;
      for (unsigned long j = 0; j < n; ++j) {
        char ch = d[j];
        switch (ch) {
          case '\\': buf += "\\\\"; break;
          case '\t': buf += "\\t"; break;
          case '\n': buf += "\\n"; break;
          case '\r': buf += "\\r"; break;
          case '\0': buf += "\\0"; break;
          default: buf.push_back(ch);
        }
      }
    }
    buf.push_back('\n');
    if (max_row_bytes > 0 && row_bytes > max_row_bytes) {
      error = OperatorError(fmt::format("table {} row {} is {} bytes, over max_row_bytes {}; raise max_row_bytes "
                                        "(and max_allowed_packet on the target) or exclude the table",
                                        table->id.ToString(), KeyOf(), row_bytes, max_row_bytes));
      return false;
    }
    ++row_count;
    byte_count += row_bytes;
    return true;
  }

  int Read(char* out, unsigned int len) {
    while (buf.size() - off < len && !eof && error.ok()) {
      if (off > 0 && off == buf.size()) {
        buf.clear();
        off = 0;
      }
      if (!Fill()) break;
      if (buf.size() - off >= 1 << 16) break;
    }
    if (!error.ok()) return -1;
    size_t n = std::min<size_t>(len, buf.size() - off);
    std::memcpy(out, buf.data() + off, n);
    off += n;
    if (off == buf.size()) {
      buf.clear();
      off = 0;
    }
    return static_cast<int>(n);
  }
};

int InfileInit(void** ptr, const char*, void* userdata) {
  *ptr = userdata;
  return 0;
}
int InfileRead(void* ptr, char* buf, unsigned int len) { return static_cast<Feed*>(ptr)->Read(buf, len); }
void InfileEnd(void*) {}
int InfileError(void* ptr, char* msg, unsigned int len) {
  auto* f = static_cast<Feed*>(ptr);
  std::snprintf(msg, len, "%s", f->error.message().c_str());
  return 2000;
}

class Worker {
 public:
  Worker(const CopyJob& job, CopyProgress& progress, const std::atomic<bool>& stop)
      : job_(job), progress_(progress), stop_(stop) {}

  Status Open() {
    ConnOptions so;
    so.program_name = "midflight-copy";
    ASSIGN_OR_RETURN(src_, MyConn::Connect(job_.source_uri, so));
    ConnOptions to;
    to.program_name = "midflight-copy";
    to.local_infile = true;
    ASSIGN_OR_RETURN(dst_, MyConn::Connect(job_.target_uri, to));
    RETURN_IF_ERROR(dst_->Exec("SET foreign_key_checks = 0, unique_checks = 0, autocommit = 0"));
    RETURN_IF_ERROR(src_->Exec("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"));
    return Status::Ok();
  }

  Status Copy(const Chunk& c) {
    const TableSchema& t = *job_.tables.at(c.table);
    const LoadShape shape = ShapeOf(t);
    RETURN_IF_ERROR(src_->Exec("START TRANSACTION WITH CONSISTENT SNAPSHOT"));
    ASSIGN_OR_RETURN(MyResult snap, src_->Query("SHOW STATUS LIKE 'binlog_snapshot_%'"));
    std::string file, offset;
    for (int i = 0; i < snap.rows(); ++i) {
      if (snap.Get(i, 0) == "Binlog_snapshot_file") file = snap.Get(i, 1);
      if (snap.Get(i, 0) == "Binlog_snapshot_position") offset = snap.Get(i, 1);
    }
    auto number = ParseBinlogFileNumber(file);
    if (!number || offset.empty())
      return OperatorError(fmt::format("source: no binlog position for the snapshot (Binlog_snapshot_file '{}'); is "
                                       "log_bin on?",
                                       file));
    uint64_t offset_value = 0;
    if (!ParseU64(offset, &offset_value) || offset_value > UINT32_MAX)
      return Internal(fmt::format("source: Binlog_snapshot_position is not a binlog offset: '{}'", offset));
    const uint64_t snapshot = EncodeBinlogPos(*number, static_cast<uint32_t>(offset_value));

    ASSIGN_OR_RETURN(auto rows, src_->QueryStream(fmt::format("SELECT {} FROM {}{}", shape.select_list,
                                                              QuoteQualified(t.id.schema, t.id.name),
                                                              RangeWhere(t, c))));
    Feed feed;
    feed.rows = rows.get();
    feed.table = &t;
    feed.shape = &shape;
    feed.stop = &stop_;
    feed.max_row_bytes = job_.max_row_bytes;
    mysql_set_local_infile_handler(dst_->raw(), InfileInit, InfileRead, InfileEnd, InfileError, &feed);
    const std::string load = fmt::format(
        "LOAD DATA LOCAL INFILE 'midflight-{}-{}' INTO TABLE {} CHARACTER SET binary FIELDS TERMINATED BY '\\t' "
        "ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' {}{}",
        c.table.name, c.number, QuoteQualified(job_.target_db, t.id.name), shape.load_list, shape.set_clause);
    Status st = dst_->Exec(load);
    mysql_set_local_infile_default(dst_->raw());
    if (!feed.error.ok()) st = feed.error;
    if (st.ok() && mysql_warning_count(dst_->raw()) > 0) {
      auto w = dst_->Query("SHOW WARNINGS LIMIT 1");
      std::string what = w.ok() && w->rows() > 0 ? w->Get(0, 2) : "a warning";
      st = DataLoss(fmt::format("loading table {} into the target changed a value: {} (the target's column "
                                "definitions differ from the source's?)",
                                t.id.ToString(), what));
    }
    rows.reset();
    (void)src_->Exec("COMMIT");
    if (st.ok())
      st = dst_->Exec(fmt::format(
          "INSERT INTO midflight.chunks (migration, table_name, chunk, snapshot_pos, rows_copied, bytes_copied) "
          "VALUES ({}, {}, {}, {}, {}, {})",
          QuoteString(job_.migration), QuoteString(t.id.ToString()), c.number, snapshot, feed.row_count,
          feed.byte_count));
    if (st.ok()) st = dst_->Exec("COMMIT");
    if (!st.ok()) {
      (void)dst_->Exec("ROLLBACK");
      const bool named = st.message().find(t.id.ToString()) != std::string::npos;
      return st.code() == StatusCode::kCancelled || named ? st
                                                          : st.WithContext(fmt::format("copying table {}", t.id.ToString()));
    }
    auto& p = *progress_.at(c.table);
    p.rows += feed.row_count;
    p.bytes += feed.byte_count;
    ++p.chunks_done;
    return Status::Ok();
  }

 private:
  const CopyJob& job_;
  CopyProgress& progress_;
  const std::atomic<bool>& stop_;
  std::unique_ptr<MyConn> src_, dst_;
};

}  // namespace

Result<std::vector<Chunk>> PlanChunks(MyConn& source, const std::vector<TablePtr>& tables, int64_t chunk_rows) {
  std::vector<TablePtr> order = tables;
  std::stable_sort(order.begin(), order.end(),
                   [](const TablePtr& a, const TablePtr& b) { return a->estimated_bytes > b->estimated_bytes; });
  std::vector<Chunk> out;
  for (const auto& t : order) {
    auto col = t->IntegerChunkColumn();
    if (!col) {
      out.push_back({t->id, 0, Chunk::Kind::kWhole, std::nullopt, std::nullopt});
      continue;
    }
    int64_t n = chunk_rows > 0 ? (t->estimated_rows + chunk_rows - 1) / chunk_rows : 1;
    if (n <= 1) {
      out.push_back({t->id, 0, Chunk::Kind::kIntRange, std::nullopt, std::nullopt});
      continue;
    }
    const std::string q = QuoteIdent(t->columns[*col].name);
    ASSIGN_OR_RETURN(MyResult mm, source.Query(fmt::format("SELECT MIN({0}), MAX({0}) FROM {1}", q,
                                                           QuoteQualified(t->id.schema, t->id.name))));
    if (mm.IsNull(0, 0)) {
      out.push_back({t->id, 0, Chunk::Kind::kIntRange, std::nullopt, std::nullopt});
      continue;
    }
    int64_t lo = mm.GetInt(0, 0), hi = mm.GetInt(0, 1);
    int64_t step = std::max<int64_t>(1, (hi - lo) / n + 1);
    std::optional<int64_t> prev;
    int number = 0;
    for (int64_t b = lo + step; b <= hi; b += step) {
      out.push_back({t->id, number++, Chunk::Kind::kIntRange, prev, b});
      prev = b;
    }
    out.push_back({t->id, number, Chunk::Kind::kIntRange, prev, std::nullopt});
  }
  return out;
}

Status CopyChunks(const CopyJob& job, CopyProgress& progress, const std::atomic<bool>& stop) {
  struct Shared {
    Mutex mu;
    size_t next GUARDED_BY(mu) = 0;
    int committed GUARDED_BY(mu) = 0;
    Status first_error GUARDED_BY(mu);
  } sh;
  std::atomic<bool> failed{false};
  std::atomic<bool> halt{false};
  auto body = [&] {
    Worker w(job, progress, halt);
    if (Status st = w.Open(); !st.ok()) {
      MutexLock lock(&sh.mu);
      if (sh.first_error.ok()) sh.first_error = st;
      failed = true;
      halt = true;
      return;
    }
    for (;;) {
      if (stop) halt = true;
      const Chunk* c = nullptr;
      {
        MutexLock lock(&sh.mu);
        if (halt || sh.next >= job.chunks.size()) return;
        c = &job.chunks[sh.next++];
      }
      Status st = w.Copy(*c);
      if (!st.ok()) {
        MutexLock lock(&sh.mu);
        if (sh.first_error.ok() && st.code() != StatusCode::kCancelled) sh.first_error = st;
        failed = true;
        halt = true;
        return;
      }
      int n;
      {
        MutexLock lock(&sh.mu);
        n = ++sh.committed;
      }
      if (job.on_chunk_committed) job.on_chunk_committed(n);
    }
  };
  // Passes the caller's `stop` (an atomic, which nothing can wait on) to the
  // workers' `halt` within 50 ms; it ends at once when the workers are done.
  StopSource workers_done;
  std::thread watcher([&] {
    do {
      if (stop) halt = true;
    } while (!workers_done.WaitFor(std::chrono::milliseconds(50)));
  });
  std::vector<std::thread> threads;
  int workers = std::max(1, std::min<int>(job.workers, static_cast<int>(job.chunks.size())));
  for (int i = 0; i < workers; ++i) threads.emplace_back(body);
  for (auto& t : threads) t.join();
  workers_done.Stop();
  watcher.join();
  Status first_error;
  {
    MutexLock lock(&sh.mu);
    first_error = sh.first_error;
  }
  if (!first_error.ok()) return first_error;
  if (failed || stop) return Cancelled("copy stopped");
  return Status::Ok();
}

}  // namespace midflight::mysql
