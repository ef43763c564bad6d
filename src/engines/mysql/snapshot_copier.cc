#include "engines/mysql/snapshot_copier.h"

#include <fmt/format.h>
#include <mysql.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "base/log.h"
#include "base/parse.h"
#include "base/stop.h"
#include "base/thread_annotations.h"
#include "control/knobs.h"
#include "engines/mysql/infile_feed.h"
#include "engines/mysql/my_conn.h"
#include "engines/mysql/binlog_pos.h"
#include "engines/mysql/catalog.h"
#include "core/transform.h"

namespace midflight::mysql {

namespace {

using TablePtr = std::shared_ptr<const TableSchema>;

// Rows between two progress updates (and rate limiter calls) inside a chunk.

// The source's select list and the target's LOAD DATA column list for one table.
struct LoadShape {
  std::vector<std::string> select;  // the select list's expressions; the first `loaded` go to LOAD DATA
  size_t loaded = 0;
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
  s.loaded = sel.size();
  s.select = std::move(sel);
  s.select_list = fmt::format("{}", fmt::join(s.select, ", "));
  s.load_list = fmt::format("({})", fmt::join(load, ", "));
  if (!sets.empty()) s.set_clause = fmt::format(" SET {}", fmt::join(sets, ", "));
  return s;
}

// transport.publish_snapshot: the row image a published row carries, every
// writable column in the binlog's text form (catalog.h BinlogFormSelect), so a
// reader applies it as it applies the stream's changes. Expressions LOAD DATA
// does not read already are added to the select list; `published` are the
// image's positions in it.
void AddPublished(const TableSchema& t, LoadShape* s, std::vector<int>* published) {
  for (int col : t.writable) {
    const std::string e = BinlogFormSelect(t.columns[col]);
    auto it = std::find(s->select.begin(), s->select.end(), e);
    if (it == s->select.end()) it = s->select.insert(s->select.end(), e);
    published->push_back(static_cast<int>(it - s->select.begin()));
  }
  s->select_list = fmt::format("{}", fmt::join(s->select, ", "));
}

std::string RangeWhere(const TableSchema& t, const Chunk& c) {
  if (c.kind != Chunk::Kind::kIntRange) return "";
  const std::string col = QuoteIdent(t.columns[*t.IntegerChunkColumn()].name);
  std::vector<std::string> parts;
  if (c.lo) parts.push_back(fmt::format("{} >= {}", col, *c.lo));
  if (c.hi) parts.push_back(fmt::format("{} < {}", col, *c.hi));
  return parts.empty() ? "" : fmt::format(" WHERE {}", fmt::join(parts, " AND "));
}

// Appends one field in LOAD DATA's default text format (backslash escapes).
void AppendField(std::string& buf, const char* d, unsigned long n) {
  // Runs of bytes that need no escape are appended whole, not byte by byte
  // (most values are one run).
  unsigned long run = 0;
  for (unsigned long j = 0; j < n; ++j) {
    const char* esc = nullptr;
    switch (d[j]) {
      case '\\': esc = "\\\\"; break;
      case '\t': esc = "\\t"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\0': esc = "\\0"; break;
      default: continue;
    }
    buf.append(d + run, j - run);
    buf.append(esc, 2);
    run = j + 1;
  }
  buf.append(d + run, n - run);
}

// Feeds LOAD DATA LOCAL INFILE from a source row stream, in LOAD DATA's
// default text format: tab between fields, newline after rows, backslash
// escapes, \N for NULL.
// One chunk's rows, read from the source as they arrive.
struct Feed : InfileFeed {
  MyConn::Stream* rows = nullptr;
  const TableSchema* table = nullptr;
  const LoadShape* shape = nullptr;
  // transport.publish_snapshot: every row is also handed to `pub` as the
  // image at `published` (AddPublished).
  ChunkPublication* pub = nullptr;
  const std::vector<int>* published = nullptr;

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

  // The next source row; false at the end (eof), when stopped or on an error (error).
  bool NextRow() {
    if (stop->load()) {
      error = Cancelled("stopped");
      return false;
    }
    auto more = rows->Next();
    if (!more.ok()) {
      error = more.status();
      return false;
    }
    if (!*more) eof = true;
    return *more;
  }

  bool Fill() override {
    if (!NextRow()) return false;
    if (pub) {
      std::vector<Datum> image;
      image.reserve(published->size());
      for (int i : *published)
        image.push_back(rows->data(i) ? Datum::Text(std::string(rows->data(i), rows->length(i))) : Datum::Null());
      if (Status st = pub->Row(std::move(image)); !st.ok()) {
        error = st;
        return false;
      }
    }
    int64_t row_bytes = 0;
    for (int i = 0; i < static_cast<int>(shape->loaded); ++i) {
      if (i) buf.push_back('\t');
      const char* d = rows->data(i);
      if (!d) {
        buf += "\\N";
        continue;
      }
      unsigned long n = rows->length(i);
      row_bytes += n;
      AppendField(buf, d, n);
    }
    buf.push_back('\n');
    return Fits(row_bytes);
  }

  // Counts a row of `row_bytes` source bytes; false (error set) when it is
  // over max_row_bytes.
  bool Fits(int64_t row_bytes) {
    if (max_row_bytes > 0 && row_bytes > max_row_bytes) {
      error = OperatorError(fmt::format("table {} row {} is {} bytes, over max_row_bytes {}; raise max_row_bytes "
                                        "(and max_allowed_packet on the target) or exclude the table",
                                        table->id.ToString(), KeyOf(), row_bytes, max_row_bytes));
      return false;
    }
    Counted(row_bytes);
    return true;
  }
};

// A transformed table's load (CopyJob::transforms): the source's select
// list (ShapeOf's LOAD DATA forms, then the binlog forms not already there)
// and the target's LOAD DATA column list.
struct TransformShape {
  LoadShape load;          // the source's select list and key positions (its load_list is unused)
  std::vector<int> image;  // the transform's input: source writable column i -> its select position
  std::vector<int> field;  // target column i -> the select position of its LOAD DATA form; -1: the transform's value
  std::string load_list, set_clause;  // the target's, as LoadShape's
};

TransformShape TransformShapeOf(const TableSchema& t, const TableTransform& tr) {
  TransformShape s;
  s.load = ShapeOf(t);
  std::map<int, int> loaded;  // source column -> its LOAD DATA form's select position
  for (int i = 0, pos = 0; i < static_cast<int>(t.columns.size()); ++i)
    if (!t.columns[i].generated) loaded[i] = pos++;
  AddPublished(t, &s.load, &s.image);
  const TableSchema& target = *tr.target();
  std::vector<std::string> load, sets;
  for (size_t i = 0; i < target.columns.size(); ++i) {
    const std::string q = QuoteIdent(target.columns[i].name);
    const int from = tr.SourceColumn(i);
    auto at = from >= 0 && tr.ColumnCast(i).empty() ? loaded.find(from) : loaded.end();
    s.field.push_back(at == loaded.end() ? -1 : at->second);
    if (at == loaded.end()) {
      load.push_back(q);
      continue;
    }
    // As ShapeOf loads the source column.
    const std::string& base = t.columns[from].type.native_base;
    const std::string var = fmt::format("@t{}", i);
    if (base == "bit") {
      load.push_back(var);
      sets.push_back(fmt::format("{} = CAST({} AS UNSIGNED)", q, var));
    } else if (base == "uuid" || base == "inet4" || base == "inet6") {
      load.push_back(var);
      sets.push_back(fmt::format("{} = CONVERT({} USING latin1)", q, var));
    } else {
      load.push_back(q);
    }
  }
  s.load_list = fmt::format("({})", fmt::join(load, ", "));
  if (!sets.empty()) s.set_clause = fmt::format(" SET {}", fmt::join(sets, ", "));
  return s;
}

// One chunk of a transformed table: each source row through the transform.
struct TransformFeed final : Feed {
  const TableTransform* transform = nullptr;
  const TransformShape* tshape = nullptr;
  int64_t dropped = 0;  // rows the filter left out

  bool Fill() override {
    while (NextRow()) {
      std::vector<Datum> image;
      image.reserve(tshape->image.size());
      int64_t row_bytes = 0;
      for (int i : tshape->image) {
        image.push_back(rows->data(i) ? Datum::Text(std::string(rows->data(i), rows->length(i))) : Datum::Null());
        row_bytes += rows->data(i) ? static_cast<int64_t>(rows->length(i)) : 0;
      }
      if (pub) {
        if (Status st = pub->Row(image); !st.ok()) {
          error = st;
          return false;
        }
      }
      auto row = transform->Row(image);
      if (!row.ok()) {
        error = row.status();
        return false;
      }
      if (!*row) {
        ++dropped;
        if (!Fits(row_bytes)) return false;
        continue;  // the filter leaves it out: read and counted, not loaded
      }
      for (size_t i = 0; i < (*row)->size(); ++i) {
        if (i) buf.push_back('\t');
        const int f = tshape->field[i];
        const char* d = f >= 0 ? rows->data(f) : nullptr;
        const Datum& v = (**row)[i];
        if (f >= 0 ? !d : v.is_null()) {
          buf += "\\N";
          continue;
        }
        if (f >= 0) AppendField(buf, d, rows->length(f));
        else AppendField(buf, v.text.data(), v.text.size());
      }
      buf.push_back('\n');
      return Fits(row_bytes);
    }
    return false;
  }
};

class Worker {
 public:
  // `flushed`: chunks whose published rows Kafka acknowledged, over all workers.
  Worker(const CopyJob& job, CopyProgress& progress, const std::atomic<bool>& stop, std::atomic<int>& flushed)
      : job_(job), progress_(progress), stop_(stop), flushed_(flushed) {}

  Status Open() {
    ConnOptions so;
    so.program_name = "midflight-copy";
    ASSIGN_OR_RETURN(src_, MyConn::Connect(job_.source_uri, so));
    RETURN_IF_ERROR(src_->Exec("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"));
    if (job_.open_target) {
      // TIMESTAMP values read in UTC, as the binlog has them.
      RETURN_IF_ERROR(src_->Exec("SET time_zone = '+00:00'"));
      ASSIGN_OR_RETURN(target_, job_.open_target());
      return Status::Ok();
    }
    ConnOptions to;
    to.program_name = "midflight-copy";
    to.local_infile = true;
    ASSIGN_OR_RETURN(dst_, MyConn::Connect(job_.target_uri, to));
    // @midflight_apply: the target's triggers stay quiet on midflight's sessions (schema_objects.h).
    // unique_checks stays 1: with both checks off, MariaDB (10.6+) loads into
    // an empty table as one table-locked bulk insert, so every other chunk
    // of that table waits for the first to commit (and may time out), and on
    // 2 cores that path measured slower, not faster (1 M rows, PK only: 45
    // and 36 s against 25-29 and 22 s, with and without the binlog). The
    // unique indexes it would skip are built after the load anyway.
    RETURN_IF_ERROR(dst_->Exec("SET foreign_key_checks = 0, unique_checks = 1, autocommit = 0, @midflight_apply = 1"));
    // The rows once more in the target's binlog cost a second write of the
    // whole copy (ROW format): skipped only when the spec says no one needs them.
    if (!job_.log_bin) RETURN_IF_ERROR(dst_->Exec("SET sql_log_bin = 0").WithContext("target (copy_binlog: false)"));
    return Status::Ok();
  }

  Status Copy(const Chunk& c) {
    const TableSchema& t = *job_.tables.at(c.table);
    LoadShape shape = ShapeOf(t);
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
    if (target_) {
      if (job_.publisher) return Internal("transport.publish_snapshot: not with a target of another engine");
      ASSIGN_OR_RETURN(auto rows, src_->QueryStream(fmt::format("SELECT {} FROM {}{}", target_->SelectList(t),
                                                                QuoteQualified(t.id.schema, t.id.name),
                                                                RangeWhere(t, c))));
      Status st = target_->Load(t, c, snapshot, *rows, *progress_.at(c.table), job_.rate, stop_);
      rows.reset();
      (void)src_->Exec("COMMIT");
      RETURN_IF_ERROR(st);
      ++progress_.at(c.table)->chunks_done;
      return Status::Ok();
    }

    const TableTransform* transform = nullptr;
    if (job_.transforms)
      if (auto it = job_.transforms->find(c.table); it != job_.transforms->end()) transform = it->second.get();
    TransformShape tshape;
    if (transform) tshape = TransformShapeOf(t, *transform);
    const LoadShape& select = transform ? tshape.load : shape;
    std::unique_ptr<ChunkPublication> pub;
    std::vector<int> published;
    if (job_.publisher) {
      if (transform) published = tshape.image;
      else AddPublished(t, &shape, &published);
      ASSIGN_OR_RETURN(pub, job_.publisher->Begin(job_.tables.at(c.table), c, Position::Binlog(snapshot)));
    }
    ASSIGN_OR_RETURN(auto rows, src_->QueryStream(fmt::format("SELECT {} FROM {}{}", select.select_list,
                                                              QuoteQualified(t.id.schema, t.id.name),
                                                              RangeWhere(t, c))));
    Feed plain;
    TransformFeed transformed;
    Feed& feed = transform ? transformed : plain;
    transformed.transform = transform;
    transformed.tshape = &tshape;
    feed.pub = pub.get();
    feed.published = &published;
    feed.rows = rows.get();
    feed.table = &t;
    feed.shape = &select;
    feed.stop = &stop_;
    feed.max_row_bytes = job_.max_row_bytes;
    feed.progress = progress_.at(c.table).get();
    feed.rate = job_.rate;
    const std::string load = fmt::format(
        "LOAD DATA LOCAL INFILE 'midflight-{}-{}' INTO TABLE {} CHARACTER SET binary FIELDS TERMINATED BY '\\t' "
        "ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' {}{}",
        c.table.name, c.number,
        QuoteQualified(job_.target_db, transform ? transform->target()->id.name : t.id.name),
        transform ? tshape.load_list : shape.load_list, transform ? tshape.set_clause : shape.set_clause);
    Status st = feed.Load(*dst_, load);
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
    // The chunk is recorded copied only once Kafka holds its rows (core/copy.h).
    if (st.ok() && pub) {
      st = pub->Flush();
      if (st.ok() && job_.on_chunk_flushed) job_.on_chunk_flushed(++flushed_);
    }
    if (st.ok()) st = dst_->Exec("COMMIT");
    if (st.ok() && pub) pub->Committed();
    feed.Settle(st.ok());
    if (!st.ok()) {
      (void)dst_->Exec("ROLLBACK");
      const bool named = st.message().find(t.id.ToString()) != std::string::npos;
      return st.code() == StatusCode::kCancelled || named ? st
                                                          : st.WithContext(fmt::format("copying table {}", t.id.ToString()));
    }
    ++progress_.at(c.table)->chunks_done;
    LOG_DEBUG("copied {} chunk {}: {} rows", t.id.ToString(), c.number, feed.row_count);
    return Status::Ok();
  }

 private:
  const CopyJob& job_;
  CopyProgress& progress_;
  const std::atomic<bool>& stop_;
  std::atomic<int>& flushed_;
  std::unique_ptr<MyConn> src_, dst_;
  std::unique_ptr<ChunkTarget> target_;  // job_.open_target's, instead of dst_
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

Result<std::optional<ReplicaLag>> ReadReplicaLag(MyConn& conn, std::optional<unsigned> master_port) {
  ASSIGN_OR_RETURN(MyResult r, conn.Query(master_port ? "SHOW ALL SLAVES STATUS" : "SHOW SLAVE STATUS"));
  std::map<std::string, int> col;
  for (int i = 0; i < r.cols(); ++i) col[r.names()[i]] = i;
  int row = r.rows() == 0 ? -1 : 0;
  if (master_port) {
    // The connection from that primary (a replica may have several).
    row = -1;
    auto port = col.find("Master_Port");
    for (int i = 0; port != col.end() && i < r.rows(); ++i)
      if (r.Get(i, port->second) == std::to_string(*master_port)) row = i;
  }
  if (row < 0) return std::optional<ReplicaLag>();
  auto get = [&](const char* name) -> std::optional<std::string> {
    auto it = col.find(name);
    if (it == col.end() || r.IsNull(row, it->second)) return std::nullopt;
    return r.Get(row, it->second);
  };
  ReplicaLag lag;
  lag.sql_running = get("Slave_SQL_Running").value_or("") == "Yes";
  lag.io_running = get("Slave_IO_Running").value_or("") == "Yes";
  if (auto s = get("Seconds_Behind_Master")) {
    uint64_t v = 0;
    if (ParseU64(*s, &v)) lag.seconds_behind = static_cast<double>(v);
  }
  // Events received and not executed yet: the relay log is ahead of the SQL thread.
  lag.executed = get("Relay_Master_Log_File").value_or("") + ":" + get("Exec_Master_Log_Pos").value_or("");
  lag.pending = lag.executed != get("Master_Log_File").value_or("") + ":" + get("Read_Master_Log_Pos").value_or("");
  return std::optional<ReplicaLag>(lag);
}

double ReplicaLagTracker::Observe(const ReplicaLag& s, std::chrono::steady_clock::time_point now) {
  if (s.executed != last_executed_ || !s.pending) {
    last_executed_ = s.executed;
    last_progress_ = now;
  }
  // Seconds_Behind_Master is NULL while the SQL thread is stopped: the
  // replica is then as far behind as the time it has not executed anything
  // while events were waiting, at least what it last reported.
  if (s.seconds_behind && s.sql_running) {
    last_reported_ = *s.seconds_behind;
    return *s.seconds_behind;
  }
  if (!s.pending) return 0;
  return std::max(last_reported_, std::chrono::duration<double>(now - last_progress_).count());
}

namespace {

// The source replica's lag, sampled by the copy's supervisor; while it is
// over the replica_max_lag_seconds knob, workers take no new chunk (a chunk
// paused halfway would hold its snapshot open on the lagging replica, and
// its LOAD DATA transaction on the target). Shown on the throttle board as
// "copy: source replica lag"; cleared below 80 % of the knob.
class LagGate {
 public:
  LagGate(const CopyJob& job) : job_(job) {}
  ~LagGate() {
    if (paused_ && job_.throttle) job_.throttle->Clear(kWhere);
  }
  // Samples at most once a second; true while the copy should hold.
  bool Hold() {
    const double max_lag = job_.knobs ? job_.knobs->Get(Knob::kReplicaMaxLagSeconds) : 0;
    if (max_lag <= 0 || job_.source_uri.empty()) return Set(false, 0, max_lag, "");
    auto now = std::chrono::steady_clock::now();
    if (now - last_sample_ < std::chrono::seconds(1)) return paused_;
    last_sample_ = now;
    if (!conn_ || conn_->IsBroken()) {
      ConnOptions o;
      o.program_name = "midflight-copy-monitor";
      auto c = MyConn::Connect(job_.source_uri, o);
      if (!c.ok()) return paused_;  // the workers meet the same server and report it
      conn_ = std::move(*c);
    }
    auto sample = ReadReplicaLag(*conn_);
    if (!sample.ok()) {
      if (!warned_) LOG_WARN("copy: cannot read the source replica's lag: {}", sample.status().message());
      warned_ = true;
      return paused_;
    }
    if (!*sample) return Set(false, 0, max_lag, "");  // not a replica
    const double lag = tracker_.Observe(**sample, now);
    std::string why = (*sample)->sql_running ? "" : " (its SQL thread is stopped)";
    if (lag > max_lag) return Set(true, lag, max_lag, why);
    if (lag <= max_lag * 0.8) return Set(false, lag, max_lag, why);
    return paused_;
  }

 private:
  static constexpr const char* kWhere = "copy: source replica lag";

  bool Set(bool paused, double lag, double max_lag, const std::string& why) {
    if (paused) {
      const std::string message =
          fmt::format("the source replica is {:.1f} s behind its primary{} (knob replica_max_lag_seconds is {:.1f}); "
                      "copy workers take no new chunk until it catches up",
                      lag, why, max_lag);
      if (!paused_) LOG_WARN("copy: {}", message);
      if (job_.throttle) job_.throttle->Report(kWhere, -1, Distress::kReplicaLag, message, std::chrono::seconds(1));
    } else if (paused_) {
      LOG_INFO("copy: the source replica is {:.1f} s behind its primary; copying again", lag);
      if (job_.throttle) job_.throttle->Clear(kWhere);
    }
    paused_ = paused;
    return paused_;
  }

  const CopyJob& job_;
  std::unique_ptr<MyConn> conn_;
  ReplicaLagTracker tracker_;
  std::chrono::steady_clock::time_point last_sample_{};
  bool paused_ = false, warned_ = false;
};

}  // namespace

Status CopyChunks(const CopyJob& job, CopyProgress& progress, const std::atomic<bool>& stop) {
  // What the workers and the supervisor share; `changed` wakes the
  // supervisor when a worker exits (it may start another, or be done).
  struct Shared {
    Mutex mu;
    CondVar changed;
    size_t next GUARDED_BY(mu) = 0;
    std::vector<size_t> retry GUARDED_BY(mu);  // chunks handed back by a worker that stopped
    int running GUARDED_BY(mu) = 0;
    std::set<int> alive GUARDED_BY(mu);  // workers whose thread has not returned yet
    bool hold GUARDED_BY(mu) = false;    // the source replica lags: take no new chunk
    int committed GUARDED_BY(mu) = 0;
    std::map<TableId, int> left GUARDED_BY(mu);  // chunks not committed yet, per table
    Status first_error GUARDED_BY(mu);
  } sh;
  {
    MutexLock lock(&sh.mu);
    for (const auto& c : job.chunks) ++sh.left[c.table];
  }
  // Set when the job ends (stop, or an error): a worker's chunk in flight ends early.
  std::atomic<bool> halt{false};
  std::atomic<int> flushed{0};
  auto wanted = [&] {
    int64_t n = job.knobs ? job.knobs->Int(Knob::kParallelism) : job.workers;
    return static_cast<int>(std::clamp<int64_t>(n, 1, 64));
  };
  // The next chunk for worker `id`; none when the job is done or failed, or
  // this worker is beyond the parallelism knob (it retires), or the copy holds.
  auto take = [&](int id) -> std::optional<size_t> {
    MutexLock lock(&sh.mu);
    if (!sh.first_error.ok() || halt || id >= wanted() || sh.hold) return std::nullopt;
    if (!sh.retry.empty()) {
      size_t i = sh.retry.back();
      sh.retry.pop_back();
      return i;
    }
    if (sh.next >= job.chunks.size()) return std::nullopt;
    return sh.next++;
  };
  auto worker = [&](int id) {
    Worker w(job, progress, halt, flushed);
    Status st = w.Open();
    std::optional<size_t> chunk;
    while (st.ok() && (chunk = take(id))) {
      st = w.Copy(job.chunks[*chunk]);
      if (!st.ok()) {
        MutexLock lock(&sh.mu);
        sh.retry.push_back(*chunk);
        break;
      }
      int n;
      bool table_done;
      const TableId& table = job.chunks[*chunk].table;
      {
        MutexLock lock(&sh.mu);
        n = ++sh.committed;
        table_done = --sh.left[table] == 0;
      }
      if (job.on_chunk_committed) job.on_chunk_committed(n);
      if (table_done && job.on_table_copied) job.on_table_copied(table);
    }
    MutexLock lock(&sh.mu);
    if (st.ok() && id >= wanted() && (sh.next < job.chunks.size() || !sh.retry.empty()))
      LOG_INFO("copy: worker {} retires (knob parallelism is {})", id, wanted());
    if (!st.ok() && st.code() != StatusCode::kCancelled && sh.first_error.ok()) sh.first_error = st;
    if (!st.ok()) halt = true;
    --sh.running;
  };
  // The supervisor: keeps as many workers as the parallelism knob asks while
  // chunks remain (a worker beyond it retires after its current chunk), and
  // holds new chunks while the source replica lags. It wakes when a worker
  // exits, and every 50 ms for what has no notification: `stop` (an atomic
  // the caller sets), the knobs and the lag.
  LagGate gate(job);
  std::map<int, std::thread> threads;
  const int at_start = wanted();
  while (true) {
    if (stop) halt = true;
    bool work_left;
    {
      MutexLock lock(&sh.mu);
      work_left = sh.next < job.chunks.size() || !sh.retry.empty();
      if (!sh.first_error.ok() || halt || (!work_left && sh.running == 0)) break;
    }
    const bool hold = work_left && gate.Hold();  // may query the replica: outside the lock
    MutexLock lock(&sh.mu);
    sh.hold = hold;
    if (work_left && !hold) {
      for (int id = 0; id < wanted() && sh.running < wanted(); ++id) {
        if (sh.alive.count(id)) continue;
        auto it = threads.find(id);
        if (it != threads.end()) {
          it->second.join();  // its worker has returned (not in `alive`): this does not wait
          threads.erase(it);
        }
        if (id >= at_start) LOG_INFO("copy: worker {} starts (knob parallelism is {})", id, wanted());
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
  if (stop) halt = true;
  for (auto& [id, t] : threads) t.join();
  MutexLock lock(&sh.mu);
  if (!sh.first_error.ok()) return sh.first_error;
  if (halt || stop || sh.next < job.chunks.size() || !sh.retry.empty()) return Cancelled("copy stopped");
  return Status::Ok();
}

}  // namespace midflight::mysql
