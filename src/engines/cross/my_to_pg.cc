#include "engines/cross/my_to_pg.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "base/log.h"
#include "base/parse.h"
#include "base/uri.h"
#include "control/compare.h"
#include "control/phase_driver.h"
#include "control/run_util.h"
#include "control/runtime.h"
#include "control/spec.h"
#include "control/state_store.h"
#include "engines/cross/canon_sides.h"
#include "engines/cross/cross_verify.h"
#include "engines/cross/my_to_pg_types.h"
#include "engines/cross/pg_to_my.h"
#include "engines/mysql/binlog_pos.h"
#include "engines/mysql/catalog.h"
#include "engines/mysql/change_stream.h"
#include "engines/mysql/engine.h"
#include "engines/mysql/my_applier.h"
#include "engines/mysql/my_conn.h"
#include "engines/mysql/replication_ops.h"
#include "engines/mysql/schema_loader.h"
#include "engines/mysql/snapshot_copier.h"
#include "engines/postgres/catalog.h"
#include "engines/postgres/change_stream.h"
#include "engines/postgres/pg_applier.h"
#include "engines/postgres/pg_conn.h"
#include "engines/postgres/schema_loader.h"
#include "pipeline/flow.h"
#include "pipeline/transform_sink.h"
#include "proxy/traffic_switch.h"

namespace midflight {
namespace {

using mysql::MyConn;
using mysql::MyResult;
using pg::PgConn;
using pg::PgResult;

cross::CastOptions OptionsOf(const MigrationSpec& spec) {
  cross::CastOptions o;
  o.tinyint1_boolean = spec.casting.tinyint1_boolean;
  o.zero_dates_null = spec.casting.zero_dates_null;
  o.target_schema = spec.casting.target_schema;
  o.column_types = spec.casting.columns;
  return o;
}

std::string ReaderUri(const MigrationSpec& spec) {
  return spec.source_replica.empty() ? spec.source : spec.source_replica;
}

// AUTO_INCREMENT columns, next values and MariaDB JSON columns of `db`.
Result<std::map<std::string, cross::MyTableFacts>> LoadFacts(MyConn& src, const std::string& db) {
  std::map<std::string, cross::MyTableFacts> out;
  const std::string q = mysql::QuoteString(db);
  ASSIGN_OR_RETURN(MyResult ai, src.Query(fmt::format(
      "SELECT c.TABLE_NAME, c.COLUMN_NAME, COALESCE(t.AUTO_INCREMENT, 0) FROM information_schema.COLUMNS c JOIN "
      "information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME WHERE "
      "c.TABLE_SCHEMA = {} AND c.EXTRA LIKE '%auto_increment%'",
      q)));
  for (int i = 0; i < ai.rows(); ++i) {
    out[ai.Get(i, 0)].auto_increment = ai.Get(i, 1);
    out[ai.Get(i, 0)].next_auto_increment = ai.GetInt(i, 2);
  }
  // MariaDB's JSON is LONGTEXT with CHECK (json_valid(`col`)) named after the column.
  ASSIGN_OR_RETURN(MyResult js, src.Query(fmt::format(
      "SELECT TABLE_NAME, CONSTRAINT_NAME FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = {} AND "
      "CHECK_CLAUSE LIKE 'json\\_valid(%'",
      q)));
  for (int i = 0; i < js.rows(); ++i) out[js.Get(i, 0)].json_columns.insert(js.Get(i, 1));
  return out;
}

// The casts of every table of the spec, or the first table that has none.
Result<std::vector<cross::TableCast>> CastAll(MyConn& src, const std::string& db,
                                              const std::vector<TablePtr>& tables, const MigrationSpec& spec,
                                              std::vector<std::string>* problems) {
  ASSIGN_OR_RETURN(auto facts, LoadFacts(src, db));
  std::vector<cross::TableCast> out;
  const cross::CastOptions options = OptionsOf(spec);
  for (const auto& t : tables) {
    auto cast = cross::CastTable(*t, facts[t->id.name], options);
    if (!cast.ok()) {
      problems->push_back(cast.status().message());
      continue;
    }
    out.push_back(std::move(*cast));
  }
  return out;
}

// The spec's transforms (core/transform.h), bound to the PostgreSQL twins of
// `tables`: across engines they apply after the casting table, to
// PostgreSQL's types and text forms, and a table is named as its twin
// (target_schema.table, or the bare table name). Keyed by twin table.
Result<std::shared_ptr<const TransformMap>> TwinTransforms(const MigrationSpec& spec,
                                                           const std::vector<TablePtr>& tables,
                                                           const std::map<std::string, cross::MyTableFacts>& facts) {
  auto out = std::make_shared<TransformMap>();
  if (spec.transforms.empty()) return std::shared_ptr<const TransformMap>(out);
  std::vector<TablePtr> twins;
  for (const auto& t : tables) {
    auto f = facts.find(t->id.name);
    ASSIGN_OR_RETURN(cross::TableCast cast,
                     cross::CastTable(*t, f == facts.end() ? cross::MyTableFacts{} : f->second, OptionsOf(spec)));
    twins.push_back(cast.target);
  }
  ASSIGN_OR_RETURN(auto bound, BindTransforms(spec.transforms, twins));
  *out = TransformsBySource(bound);
  return std::shared_ptr<const TransformMap>(out);
}

// "(id=42)" / "(a=1, b=x)" for a row error, from the MySQL text forms.
std::string KeyOf(const TableSchema& t, const std::vector<std::optional<std::string_view>>& row) {
  std::string out = "(";
  for (size_t i = 0; i < t.key.size(); ++i) {
    const auto& v = row[t.key[i]];
    out += fmt::format("{}{}={}", i ? ", " : "", t.columns[t.key[i]].name, v ? std::string(*v) : "NULL");
  }
  return out + ")";
}

// The CanonTables of `casts` with MySQL as the reference. A transformed
// table (its twin's transform in `transforms`) is verified through its
// transform (cross/canon_sides.h ReshapedToPg): its MySQL rows are cast as
// the snapshot copy casts them, then transformed, and PostgreSQL hashes the
// result as it hashes the target table.
std::vector<cross::CanonTable> VerifiedTables(const std::vector<cross::TableCast>& casts,
                                              const TransformMap& transforms, const MigrationSpec& spec) {
  std::vector<cross::CanonTable> tables = cross::CanonTablesOf(casts, spec.casting.zero_dates_null);
  for (size_t i = 0; i < casts.size() && i < tables.size(); ++i) {
    auto tr = transforms.find(casts[i].target->id);
    if (tr == transforms.end()) continue;
    auto cast = std::make_shared<const cross::TableCast>(casts[i]);
    std::shared_ptr<const TableTransform> transform = tr->second;
    const bool zero_null = spec.casting.zero_dates_null;
    auto row = [cast, transform, zero_null](const cross::CanonSide::Row& raw)
        -> Result<std::optional<std::vector<Datum>>> {
      const TableSchema& t = *cast->source;
      if (raw.size() != cast->columns.size())
        return Internal(fmt::format("verify of {}: {} columns read, {} expected", t.id.ToString(), raw.size(),
                                    cast->columns.size()));
      std::vector<std::optional<std::string_view>> view;
      for (const auto& v : raw) view.push_back(v ? std::optional<std::string_view>(*v) : std::nullopt);
      std::vector<Datum> datums;
      for (size_t c = 0; c < raw.size(); ++c) {
        if (!raw[c]) {
          datums.push_back(Datum::Null());
          continue;
        }
        auto v = cross::ToPgText(cast->columns[c], *raw[c], zero_null);
        if (!v.ok())
          return DataLoss(fmt::format("table {} key {} {}", t.id.ToString(), KeyOf(t, view), v.status().message()));
        datums.push_back(*v ? Datum::Text(std::move(**v)) : Datum::Null());
      }
      return transform->Row(datums);
    };
    cross::CanonTable shaped = cross::ReshapedToPg(tables[i], *transform, std::move(row));
    if (!shaped.reshape && tables[i].skipped.empty())
      if (const TableTransformSpec* where = TransformFor(spec.transforms, casts[i].target->id))
        shaped.skipped += fmt::format(" ({})", where->where());
    tables[i] = std::move(shaped);
  }
  return tables;
}

// PostgreSQL's LSN text for a 64-bit position (pg_lsn columns hold any 64 bits).
std::string LsnText(uint64_t v) { return fmt::format("{:X}/{:X}", v >> 32, v & 0xffffffffu); }

void AppendCopyField(std::string_view v, std::string* out) {
  for (char c : v) {
    switch (c) {
      case '\\': *out += "\\\\"; break;
      case '\t': *out += "\\t"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      default: *out += c;
    }
  }
}

// ---- the copy's target side ---------------------------------------------------

// One copy worker's PostgreSQL connection: a chunk's rows, cast, by COPY, and
// its midflight.chunks row, in one transaction.
class PgChunkTarget final : public mysql::ChunkTarget {
 public:
  PgChunkTarget(std::unique_ptr<PgConn> conn, std::string migration,
                std::shared_ptr<const std::map<TableId, cross::TableCast>> casts, bool zero_dates_null,
                int64_t max_row_bytes, std::shared_ptr<const TransformMap> transforms)
      : conn_(std::move(conn)),
        migration_(std::move(migration)),
        casts_(std::move(casts)),
        zero_null_(zero_dates_null),
        max_row_bytes_(max_row_bytes),
        transforms_(std::move(transforms)) {}

  std::string SelectList(const TableSchema& t) const override { return cross::SnapshotSelectList(t); }

  Status Load(const TableSchema& t, const Chunk& c, uint64_t snapshot, MyConn::Stream& rows, TableProgress& progress,
              RateLimiter* rate, const std::atomic<bool>& stop) override {
    int64_t shown_rows = 0, shown_bytes = 0;
    Status st = Copy(t, c, snapshot, rows, progress, rate, stop, &shown_rows, &shown_bytes);
    if (!st.ok()) {
      progress.rows -= shown_rows;
      progress.bytes -= shown_bytes;
      (void)conn_->Exec("ROLLBACK");
    }
    return st;
  }

 private:
  Status Copy(const TableSchema& t, const Chunk& c, uint64_t snapshot, MyConn::Stream& rows, TableProgress& progress,
              RateLimiter* rate, const std::atomic<bool>& stop, int64_t* shown_rows, int64_t* shown_bytes) {
    const cross::TableCast& cast = casts_->at(t.id);
    // A transformed table's rows go through its transform once cast, into
    // the target's table (core/transform.h).
    const TableTransform* transform = nullptr;
    if (transforms_)
      if (auto it = transforms_->find(cast.target->id); it != transforms_->end()) transform = it->second.get();
    const TableSchema& pt = transform ? *transform->target() : *cast.target;
    std::vector<Datum> datums;
    std::vector<std::string> cols;
    for (const auto& col : pt.columns) cols.push_back(pg::QuoteIdent(col.name));
    RETURN_IF_ERROR(conn_->Exec("BEGIN"));
    const std::string copy = fmt::format("COPY {} ({}) FROM STDIN", pg::QuoteQualified(pt.id.schema, pt.id.name),
                                         fmt::join(cols, ", "));
    PgResult in(PQexec(conn_->raw(), copy.c_str()));
    if (PQresultStatus(in.raw()) != PGRES_COPY_IN)
      return pg::StatusFromResult(conn_->raw(), in.raw(), "COPY into " + pt.id.ToString());
    std::string buf;
    int64_t n = 0, bytes = 0, pending_rows = 0, pending_bytes = 0;
    std::vector<std::optional<std::string_view>> row(cast.columns.size());
    Status failure;
    auto flush = [&]() -> Status {
      if (buf.empty()) return Status::Ok();
      if (PQputCopyData(conn_->raw(), buf.data(), static_cast<int>(buf.size())) != 1)
        return pg::StatusFromResult(conn_->raw(), nullptr, "writing COPY of " + pt.id.ToString());
      buf.clear();
      return Status::Ok();
    };
    while (failure.ok()) {
      auto more = rows.Next();
      if (!more.ok()) {
        failure = more.status();
        break;
      }
      if (!*more) break;
      if (rows.cols() != static_cast<int>(cast.columns.size())) {
        failure = Internal(fmt::format("copy of {}: {} columns read, {} expected", t.id.ToString(), rows.cols(),
                                       cast.columns.size()));
        break;
      }
      int64_t row_bytes = 0;
      for (int i = 0; i < rows.cols(); ++i) {
        row[i] = rows.data(i) ? std::optional<std::string_view>(std::string_view(rows.data(i), rows.length(i)))
                              : std::nullopt;
        row_bytes += static_cast<int64_t>(rows.length(i));
      }
      if (max_row_bytes_ > 0 && row_bytes > max_row_bytes_) {
        failure = OperatorError(fmt::format("table {} key {}: the row has {} bytes, above max_row_bytes {}",
                                            t.id.ToString(), KeyOf(t, row), row_bytes, max_row_bytes_));
        break;
      }
      datums.clear();
      for (size_t i = 0; i < row.size(); ++i) {
        if (!transform && i) buf += '\t';
        if (!row[i]) {
          if (transform) datums.push_back(Datum::Null());
          else buf += "\\N";
          continue;
        }
        auto v = cross::ToPgText(cast.columns[i], *row[i], zero_null_);
        if (!v.ok()) {
          failure = DataLoss(fmt::format("table {} key {} {}", t.id.ToString(), KeyOf(t, row), v.status().message()));
          break;
        }
        if (transform) datums.push_back(*v ? Datum::Text(std::move(**v)) : Datum::Null());
        else if (!*v) buf += "\\N";
        else AppendCopyField(**v, &buf);
      }
      if (!failure.ok()) break;
      if (transform) {
        auto out = transform->Row(datums);
        if (!out.ok()) {
          failure = out.status();
          break;
        }
        if (out->has_value()) {
          for (size_t i = 0; i < (*out)->size(); ++i) {
            if (i) buf += '\t';
            const Datum& d = (**out)[i];
            if (d.is_null()) buf += "\\N";
            else AppendCopyField(d.text, &buf);
          }
          buf += '\n';
        }
      } else {
        buf += '\n';
      }
      ++n;
      bytes += row_bytes;
      ++pending_rows;
      pending_bytes += row_bytes;
      if (buf.size() >= (256u << 10)) failure = flush();
      if (pending_rows == 1024) {
        progress.rows += pending_rows;
        progress.bytes += pending_bytes;
        *shown_rows += pending_rows;
        *shown_bytes += pending_bytes;
        if (rate) rate->Acquire(pending_rows, stop);
        pending_rows = pending_bytes = 0;
        if (stop) failure = Cancelled("stopping");
      }
    }
    if (failure.ok()) failure = flush();
    if (!failure.ok()) {
      PQputCopyEnd(conn_->raw(), "midflight: source side failed");
      while (PGresult* r = PQgetResult(conn_->raw())) PQclear(r);
      return failure;
    }
    if (PQputCopyEnd(conn_->raw(), nullptr) != 1)
      return pg::StatusFromResult(conn_->raw(), nullptr, "ending COPY into " + pt.id.ToString());
    PgResult done(PQgetResult(conn_->raw()));
    Status st;
    if (PQresultStatus(done.raw()) != PGRES_COMMAND_OK)
      st = pg::StatusFromResult(conn_->raw(), done.raw(), "COPY into " + pt.id.ToString());
    while (PGresult* extra = PQgetResult(conn_->raw())) PQclear(extra);
    RETURN_IF_ERROR(st);
    progress.rows += pending_rows;
    progress.bytes += pending_bytes;
    *shown_rows += pending_rows;
    *shown_bytes += pending_bytes;
    RETURN_IF_ERROR(conn_->Query(
                            "INSERT INTO midflight.chunks (migration, table_name, chunk, snapshot_lsn, rows_copied, "
                            "bytes_copied) VALUES ($1, $2, $3, $4::pg_lsn, $5, $6)",
                            {migration_, t.id.ToString(), std::to_string(c.number), LsnText(snapshot),
                             std::to_string(n), std::to_string(bytes)})
                        .status());
    RETURN_IF_ERROR(conn_->Exec("COMMIT"));
    LOG_DEBUG("copied {} chunk {}: {} rows", t.id.ToString(), c.number, n);
    return Status::Ok();
  }

  std::unique_ptr<PgConn> conn_;
  std::string migration_;
  std::shared_ptr<const std::map<TableId, cross::TableCast>> casts_;
  bool zero_null_;
  int64_t max_row_bytes_;
  std::shared_ptr<const TransformMap> transforms_;
};

// ---- the stream's target side ---------------------------------------------------

// A partition's PgChangeSink behind the casting table: every change's MySQL
// values become PostgreSQL text forms of its PostgreSQL twin table. A value
// that cannot cross (a NUL byte in text, a zero date, a TIME past 24 h) stops
// the flow, naming table, key and column. Cast tables are cached per source
// table version (the stream makes a new one after a DDL it accepted), or,
// given `fixed` (the reverse flow of PostgreSQL -> MySQL), looked up there by
// table: the casts the caller made, whose targets are its own tables.
class CastingSink final : public ChangeSink {
 public:
  CastingSink(std::unique_ptr<ChangeSink> inner, cross::CastOptions options,
              std::map<std::string, cross::MyTableFacts> facts,
              std::shared_ptr<const std::map<TableId, cross::TableCast>> fixed = nullptr)
      : inner_(std::move(inner)), options_(std::move(options)), facts_(std::move(facts)), fixed_(std::move(fixed)) {}

  Result<ChangePosition> LoadCheckpoint() override { return inner_->LoadCheckpoint(); }
  Status Reconnect() override { return inner_->Reconnect(); }

  Status ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint, BatchConflicts* conflicts) override {
    std::vector<Change> out;
    out.reserve(changes.size());
    for (const Change& c : changes) {
      ASSIGN_OR_RETURN(Change cast, Cast(c));
      out.push_back(std::move(cast));
    }
    Status st = inner_->ApplyBatch(out, checkpoint, conflicts);
    // Conflicts point into `out`, which goes: point them at the applier's changes (one for one).
    for (Conflict& c : conflicts->found)
      if (c.change >= out.data() && c.change < out.data() + out.size()) c.change = &changes[c.change - out.data()];
    return st;
  }
  Status ApplyBarrier(const Change& change, uint32_t partitions) override {
    ASSIGN_OR_RETURN(Change cast, Cast(change));
    return inner_->ApplyBarrier(cast, partitions);
  }

 private:
  Result<const cross::TableCast*> CastOf(const TablePtr& t) {
    if (fixed_) {
      auto f = fixed_->find(t->id);
      if (f == fixed_->end()) return Internal(fmt::format("table {} has no cast", t->id.ToString()));
      return &f->second;
    }
    auto it = cache_.find(t.get());
    if (it != cache_.end()) return &it->second.second;
    ASSIGN_OR_RETURN(cross::TableCast cast, cross::CastTable(*t, facts_[t->id.name], options_));
    // The pointer stays valid while the cache holds the table.
    auto [pos, _] = cache_.emplace(t.get(), std::make_pair(t, std::move(cast)));
    return &pos->second.second;
  }

  Result<std::vector<Datum>> Values(const Change& c, const cross::TableCast& cast, const std::vector<Datum>& in) {
    std::vector<Datum> out;
    out.reserve(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      if (in[i].kind != Datum::Kind::kText || i >= cast.columns.size()) {
        out.push_back(in[i]);
        continue;
      }
      auto v = cross::ToPgText(cast.columns[i], in[i].text, options_.zero_dates_null);
      if (!v.ok())
        return DataLoss(fmt::format("table {} key ({}) {}", c.table->id.ToString(), c.KeyText(), v.status().message()));
      out.push_back(*v ? Datum::Text(std::move(**v)) : Datum::Null());
    }
    return out;
  }

  Result<Change> Cast(const Change& c) {
    Change out = c;
    if (c.table) {
      ASSIGN_OR_RETURN(const cross::TableCast* cast, CastOf(c.table));
      out.table = cast->target;
      ASSIGN_OR_RETURN(out.values, Values(c, *cast, c.values));
      ASSIGN_OR_RETURN(out.old, Values(c, *cast, c.old));
    }
    out.truncated.clear();
    for (const auto& t : c.truncated) {
      ASSIGN_OR_RETURN(const cross::TableCast* cast, CastOf(t));
      out.truncated.push_back(cast->target);
    }
    return out;
  }

  std::unique_ptr<ChangeSink> inner_;  // the PgChangeSink, behind the spec's transforms when there are any
  cross::CastOptions options_;
  std::map<std::string, cross::MyTableFacts> facts_;
  const std::shared_ptr<const std::map<TableId, cross::TableCast>> fixed_;
  // Source table (held, so its address is not reused) -> its cast. Applier thread only.
  std::map<const TableSchema*, std::pair<TablePtr, cross::TableCast>> cache_;
};

// ---- replication ---------------------------------------------------------------

using mysql::MasterPosition;

// Forward replication only. Connections: the monitor's (CurrentPosition,
// TablesInScope) on the monitor thread; the operation's (CommittedPosition,
// StartFlow, SyncSequences) under mu_.
class CrossReplication final : public ReplicationOps {
 public:
  CrossReplication(const MigrationSpec& spec, MigrationRuntime& runtime, std::string source_db,
                   std::map<TableId, TablePtr> tables, std::map<std::string, cross::MyTableFacts> facts)
      : spec_(spec),
        runtime_(runtime),
        reader_uri_(ReaderUri(spec)),
        source_db_(std::move(source_db)),
        tables_(std::move(tables)),
        facts_(std::move(facts)) {}

  std::string FormatPosition(uint64_t pos) const {
    std::lock_guard<std::mutex> lock(base_mu_);
    return mysql::FormatBinlogPos(base_.empty() ? "binlog" : base_, pos);
  }

  Result<StartedFlow> StartFlow(proxy::Side from, const std::vector<TablePtr>&, const ReplicateStart& rs) override {
    if (from != proxy::Side::kSource) return StartReverse(rs);
    std::string base;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ASSIGN_OR_RETURN(MyConn * c, Control());
      if (MasterPosition(*c, &base) == 0)
        return OperatorError(SourceName() + ": SHOW MASTER STATUS is empty; is log_bin on?");
    }
    {
      std::lock_guard<std::mutex> lock(base_mu_);
      base_ = base;
    }
    mysql::StreamConfig config;
    config.source_uri = reader_uri_;
    config.binlog_base = base;
    config.server_id = 0x40000000u | static_cast<uint32_t>(XXH64(spec_.name.data(), spec_.name.size(), 7) & 0x3fffffff);
    config.tables = tables_;
    // Schema changes are not translated across engines yet: a DDL statement
    // on a migrated table stops the stream once everything before it is applied.
    config.target_differs = [](const TableId& id) -> Result<std::string> {
      return fmt::format("schema changes are not carried from MySQL to PostgreSQL yet; apply the change to {} on "
                         "the target by hand and start a new migration of it",
                         id.ToString());
    };
    config.reload_table = [](const TableId& id) -> Result<TablePtr> {
      return OperatorError(fmt::format("table {}: schema changes are not carried across engines yet", id.ToString()));
    };
    FlowOptions fo;
    fo.label = "forward";
    fo.partitions = rs.partitions;
    fo.filter = rs.filter;
    fo.log_factory = rs.log_factory;
    // Every partition's checkpoint is on the target; the sequencer skips what
    // each one holds. The stream reads from the oldest chunk snapshot.
    fo.start = rs.oldest_snapshot;
    fo.partition_log_bytes = static_cast<size_t>(spec_.partition_log_mb) << 20;
    MigrationRuntime* rt = &runtime_;
    fo.applier.settings = [rt] { return rt->ApplyNow(); };
    fo.applier.throttle = &rt->throttle;
    fo.applier.rate = &rt->apply_rate;
    fo.applier.conflicts = &rt->conflicts;
    std::vector<TablePtr> source_tables;
    for (const auto& [id, t] : tables_) source_tables.push_back(t);
    ASSIGN_OR_RETURN(auto transforms, TwinTransforms(spec_, source_tables, facts_));
    SinkFactory open_sink = [target = spec_.target, name = spec_.name, options = OptionsOf(spec_), facts = facts_,
                             rt, transforms](PartitionId p, const ApplyTracker&) -> Result<std::unique_ptr<ChangeSink>> {
      // Applied as replication origin midflight_<name>_f<p>: the reverse
      // flow (after a write switch) skips these transactions, so nothing the
      // forward flow wrote goes back to MySQL.
      ASSIGN_OR_RETURN(auto sink, pg::PgChangeSink::Open(target, name, p, fmt::format("{}{}", ForwardOrigin(name), p.value)));
      sink->SetLockTimeoutSource([rt] { return rt->knobs.Int(Knob::kLockTimeoutMs); });
      std::unique_ptr<ChangeSink> inner = std::move(sink);
      if (!transforms->empty()) inner = std::make_unique<TransformSink>(std::move(inner), transforms);
      return std::unique_ptr<ChangeSink>(std::make_unique<CastingSink>(std::move(inner), options, facts));
    };
    const uint64_t start = fo.start;
    StartedFlow out;
    ASSIGN_OR_RETURN(out.flow, Flow::Start(std::move(fo), std::make_unique<mysql::ChangeStream>(std::move(config)),
                                           open_sink));
    out.tables = tables_;
    Say(fmt::format("replicating: binlog of {} from {} into PostgreSQL", RedactUri(reader_uri_),
                    mysql::FormatBinlogPos(base, start)));
    return out;
  }

  // Forward: the source's binlog, across files with their sizes (read by the
  // monitor with the position); reverse: PostgreSQL LSNs, which count bytes.
  uint64_t LagBytes(proxy::Side side, uint64_t current, uint64_t applied) const override {
    if (side != proxy::Side::kSource) return current > applied ? current - applied : 0;
    return sizes_.BytesBetween(applied, current);
  }
  bool lag_from_positions() const override { return true; }
  // The reverse flow's positions are PostgreSQL LSNs.
  std::string FormatPositionOf(proxy::Side side, uint64_t pos) const override {
    return side == proxy::Side::kTarget ? LsnText(pos) : "";
  }

  Result<uint64_t> CommittedPosition(proxy::Side side) override {
    if (side != proxy::Side::kSource) {
      std::lock_guard<std::mutex> lock(mu_);
      ASSIGN_OR_RETURN(PgConn * c, PgControl());
      return PgFlushedPosition(*c);
    }
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(MyConn * c, Control());
    uint64_t pos = MasterPosition(*c);
    if (pos == 0) return RetryCall(SourceName() + ": SHOW MASTER STATUS gave no position");
    return pos;
  }

  uint64_t CurrentPosition(proxy::Side side) override {
    if (side != proxy::Side::kSource) {
      if (!pg_monitor_ || pg_monitor_->IsBroken()) {
        pg::ConnOptions o;
        o.application_name = "midflight-monitor";
        auto c = PgConn::Connect(spec_.target, o);
        pg_monitor_ = c.ok() ? std::move(*c) : nullptr;
      }
      if (!pg_monitor_) return 0;
      auto v = pg_monitor_->QueryValue("SELECT pg_current_wal_insert_lsn()::text");
      if (!v.ok()) return 0;
      auto lsn = PgLsn::Parse(*v);
      return lsn.ok() ? lsn->value() : 0;
    }
    if (!monitor_ || monitor_->IsBroken()) {
      mysql::ConnOptions o;
      o.program_name = "midflight-monitor";
      auto c = MyConn::Connect(reader_uri_, o);
      monitor_ = c.ok() ? std::move(*c) : nullptr;
    }
    if (!monitor_) return last_pos_;
    if (uint64_t pos = MasterPosition(*monitor_)) last_pos_ = pos;
    mysql::RefreshBinlogSizes(*monitor_, last_pos_, sizes_);
    return last_pos_;
  }

  Result<std::vector<TableId>> TablesInScope() override {
    if (!monitor_ || monitor_->IsBroken()) return RetryCall("source: no monitor connection");
    ASSIGN_OR_RETURN(auto listed, mysql::ListTables(*monitor_, source_db_));
    std::vector<TableId> out;
    for (const auto& id : listed)
      if (TableSelected(spec_.tables, spec_.exclude, id)) out.push_back(id);
    return out;
  }

  std::optional<std::pair<double, std::string>> TargetReplicaLag() override { return std::nullopt; }

  // AUTO_INCREMENT -> the identity's next value on the target.
  Status SyncSequences(proxy::Side from) override {
    // Back to MySQL (a rollback) nothing is carried: the reverse flow writes
    // every row with its key, and InnoDB raises a table's AUTO_INCREMENT
    // counter past any value inserted explicitly.
    if (from != proxy::Side::kSource) return Status::Ok();
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(MyConn * src, Control());
    return SyncIdentities(*src, source_db_, spec_, tables_);
  }

  std::vector<GateCheck> SwitchChecks(proxy::Side to, bool reverse_needed) override {
    std::vector<GateCheck> out;
    if (to != proxy::Side::kTarget || !reverse_needed) return out;
    // Reverse replication PostgreSQL -> MySQL: what it can carry back, and what it needs.
    if (std::string why = ReverseRefusal(); !why.empty())
      out.push_back(GateFail("reverse replication", why));
    else
      out.push_back(GatePass("reverse replication", "every migrated column can be carried back to MySQL"));
    std::lock_guard<std::mutex> lock(mu_);
    auto c = PgControl();
    if (!c.ok()) {
      out.push_back(GateFail("target", "cannot connect: " + c.status().message()));
      return out;
    }
    auto wal = (*c)->QueryValue("SHOW wal_level");
    if (wal.ok() && *wal == "logical")
      out.push_back(GatePass("target wal_level", "logical"));
    else
      out.push_back(GateFail("target wal_level",
                             fmt::format("target: wal_level is '{}'; reverse replication (which keeps a rollback "
                                         "possible after the write switch) reads the target's changes through a "
                                         "replication slot and needs wal_level = logical: set it in the target's "
                                         "postgresql.conf and restart the target",
                                         wal.ok() ? *wal : wal.status().message())));
    auto slots = (*c)->QueryValue(
        "SELECT (current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots))::text");
    if (slots.ok() && std::atoi(slots->c_str()) > 0)
      out.push_back(GatePass("target slots", *slots + " free replication slot(s)"));
    else
      out.push_back(GateFail("target slots", slots.ok() ? "target: no free replication slot (max_replication_slots is "
                                                           "used up); raise it or drop an unused slot"
                                                         : "target: " + slots.status().message()));
    return out;
  }

  // `complete`: the reverse slot, publication and the replication origins on
  // PostgreSQL, and the reverse checkpoints in MySQL's `midflight` database.
  std::vector<std::string> CleanUpOnComplete() override {
    std::vector<std::string> done;
    pg::ConnOptions o;
    o.application_name = "midflight-control";
    if (auto dst = PgConn::Connect(spec_.target, o); dst.ok()) {
      // A stream session may hold the slot, or an apply session its origin, for a moment after it stops.
      auto retry = [&](const std::string& sql, const std::string& what) {
        for (int i = 0; i < 50; ++i) {
          if ((*dst)->Exec(sql).ok()) {
            done.push_back(what);
            return;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        LOG_WARN("complete: could not drop {}", what);
      };
      retry(fmt::format("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {}",
                        pg::QuoteLiteral(ReverseSlot())),
            "target: replication slot " + ReverseSlot());
      retry("DROP PUBLICATION IF EXISTS " + pg::QuoteIdent(ReverseSlot()), "target: publication " + ReverseSlot());
      retry(fmt::format("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE {}",
                        pg::QuoteLiteral("midflight\\_" + spec_.name + "\\_%")),
            "target: replication origins midflight_" + spec_.name + "_*");
    } else {
      LOG_WARN("complete: cannot connect to the target to clean up: {}", dst.status().message());
    }
    mysql::ConnOptions mo;
    mo.program_name = "midflight-control";
    auto src = MyConn::Connect(spec_.source, mo);
    auto cleaned = [&]() -> Result<std::string> {
      if (!src.ok()) return src.status();
      MyConn& c = **src;
      ASSIGN_OR_RETURN(std::string exists, c.QueryValue("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE "
                                                        "SCHEMA_NAME = 'midflight'"));
      if (exists == "0") return std::string();
      RETURN_IF_ERROR(c.Exec(fmt::format("DELETE FROM midflight.checkpoints WHERE migration = {}",
                                         mysql::QuoteString(ReverseKey()))));
      ASSIGN_OR_RETURN(std::string left, c.QueryValue("SELECT (SELECT COUNT(*) FROM midflight.checkpoints) + "
                                                      "(SELECT COUNT(*) FROM midflight.chunks)"));
      if (left != "0") return fmt::format("source: midflight.checkpoints rows of {}", ReverseKey());
      RETURN_IF_ERROR(c.Exec("DROP DATABASE midflight"));
      return fmt::format("source: the midflight database (checkpoints of {})", ReverseKey());
    }();
    if (!cleaned.ok())
      LOG_WARN("complete: removing the reverse checkpoints on the source: {}", cleaned.status().message());
    else if (!cleaned->empty())
      done.push_back(*cleaned);
    return done;
  }

  // Live verification across engines (cross/cross_verify.h): MySQL, read
  // where the flow reads it (the replica when the spec names one: the
  // positions are its binlog's), is the reference; PostgreSQL the other side.
  Result<VerifyOutcome> Verify(proxy::Side reference, Flow& flow, const std::map<TableId, TablePtr>& tables,
                               bool repair, std::function<int64_t()> rows_per_s, const std::atomic<bool>* stop,
                               const VerifyRun& run) override {
    if (reference != proxy::Side::kSource && repair)
      return OperatorError("verify --repair after switch writes (mysql -> postgres): repairs back into MySQL are not "
                           "built; verify without --repair, then fix the rows named");
    auto casts = std::make_shared<std::map<TableId, cross::TableCast>>();
    std::vector<cross::TableCast> list;
    // The reverse flow's tables are PostgreSQL's: the casts start from MySQL's.
    for (const auto& [id, t] : reference == proxy::Side::kSource ? tables : tables_) {
      auto it = facts_.find(id.name);
      ASSIGN_OR_RETURN(cross::TableCast cast,
                       cross::CastTable(*t, it == facts_.end() ? cross::MyTableFacts{} : it->second, OptionsOf(spec_)));
      (*casts)[id] = cast;
      list.push_back(std::move(cast));
    }
    std::unique_ptr<cross::CanonSide> ref, other;
    if (reference == proxy::Side::kSource) {
      ref = cross::MySqlCanonSide(reader_uri_, SourceName() + " (MySQL)", casts);
      other = cross::PostgresCanonSide(spec_.target, "target (PostgreSQL)");
    } else {
      // After the write switch PostgreSQL is the reference (its snapshot and
      // WAL position); the reverse flow writes to the MySQL primary, which is
      // read once the flow has applied through that position.
      ref = cross::PostgresCanonSide(spec_.target, "target (PostgreSQL)");
      other = cross::MySqlCanonSide(spec_.source, "source (MySQL)");
    }
    std::vector<cross::CanonTable> canon;
    if (reference == proxy::Side::kSource) {
      std::vector<TablePtr> sources;
      for (const auto& [id, t] : tables) sources.push_back(t);
      ASSIGN_OR_RETURN(auto transforms, TwinTransforms(spec_, sources, facts_));
      canon = VerifiedTables(list, *transforms, spec_);
    } else {
      // PostgreSQL is the reference: a transformed table's MySQL rows are
      // cast and transformed forward as the migration did, and PostgreSQL
      // hashes them against its own rows (cross::Reversed).
      std::vector<TablePtr> sources;
      for (const auto& [id, t] : tables_) sources.push_back(t);
      ASSIGN_OR_RETURN(auto transforms, TwinTransforms(spec_, sources, facts_));
      for (auto& c : VerifiedTables(list, *transforms, spec_))
        canon.push_back(c.transformed ? cross::Reversed(std::move(c), nullptr) : std::move(c));
    }
    return cross::CrossVerifyAlong(flow, *ref, *other, std::move(canon), repair, std::move(rows_per_s), stop,
                                   spec_.verify.chunk_rows, run);
  }

  // Sets each identity column's next value from the source's AUTO_INCREMENT.
  static Status SyncIdentities(MyConn& src, const std::string& db, const MigrationSpec& spec,
                               const std::map<TableId, TablePtr>& tables) {
    ASSIGN_OR_RETURN(auto facts, LoadFacts(src, db));
    pg::ConnOptions o;
    o.application_name = "midflight-control";
    ASSIGN_OR_RETURN(auto dst, PgConn::Connect(spec.target, o));
    for (const auto& [id, t] : tables) {
      const cross::MyTableFacts& f = facts[id.name];
      if (f.auto_increment.empty() || f.next_auto_increment <= 0) continue;
      auto cast = cross::CastTable(*t, f, OptionsOf(spec));
      if (!cast.ok()) return cast.status();
      if (TransformFor(spec.transforms, cast->target->id)) continue;  // created without an identity
      for (const auto& c : cast->columns)
        if (c.identity)
          RETURN_IF_ERROR(dst->Exec(fmt::format("ALTER TABLE {} ALTER COLUMN {} RESTART WITH {}",
                                                pg::QuoteQualified(cast->target->id.schema, cast->target->id.name),
                                                pg::QuoteIdent(c.name), f.next_auto_increment))
                              .WithContext(fmt::format("table {} identity {}", cast->target->id.ToString(), c.name)));
    }
    return Status::Ok();
  }

 private:
  std::string SourceName() const { return spec_.source_replica.empty() ? "source" : "source replica"; }
  Result<MyConn*> Control() {
    if (!control_ || control_->IsBroken()) {
      mysql::ConnOptions o;
      o.program_name = "midflight-control";
      ASSIGN_OR_RETURN(control_, MyConn::Connect(reader_uri_, o));
    }
    return control_.get();
  }

  static std::string ForwardOrigin(const std::string& name) { return fmt::format("midflight_{}_f", name); }
  std::string ReverseSlot() const { return spec_.slot_name() + "_rev"; }
  std::string ReverseKey() const { return spec_.name + "/reverse"; }

  Result<PgConn*> PgControl() {
    if (!pg_control_ || pg_control_->IsBroken()) {
      pg::ConnOptions o;
      o.application_name = "midflight-control";
      ASSIGN_OR_RETURN(pg_control_, PgConn::Connect(spec_.target, o));
    }
    return pg_control_.get();
  }

  // A position every transaction committed on PostgreSQL so far is before,
  // already flushed (engines/postgres/replication_ops.cc FlushedPosition).
  static Result<uint64_t> PgFlushedPosition(PgConn& conn) {
    Status st = conn.Exec("BEGIN; SET LOCAL synchronous_commit = on; "
                          "SELECT pg_logical_emit_message(true, 'midflight', 'position'); COMMIT");
    if (!st.ok()) (void)conn.Exec("ROLLBACK");
    ASSIGN_OR_RETURN(std::string v, conn.QueryValue(st.ok() ? "SELECT pg_current_wal_flush_lsn()::text"
                                                            : "SELECT pg_current_wal_insert_lsn()::text"));
    ASSIGN_OR_RETURN(PgLsn lsn, PgLsn::Parse(v));
    return lsn.value();
  }

  // Why PostgreSQL's changes cannot be carried back into the MySQL tables
  // ("" when they can): a transform with no inverse (core/transform.h
  // Inverse: a filter, a lossy cast), geometry lost its SRID
  // on the way, and an override's type has no way back.
  std::string ReverseRefusal() const {
    if (!spec_.transforms.empty()) {
      auto forward = Transforms();
      Status reversible = forward.ok() ? InverseTransforms(**forward).status() : forward.status();
      if (!reversible.ok()) return reversible.message();
    }
    for (const auto& [id, t] : tables_) {
      auto f = facts_.find(id.name);
      auto cast = cross::CastTable(*t, f == facts_.end() ? cross::MyTableFacts{} : f->second, OptionsOf(spec_));
      if (!cast.ok()) return cast.status().message();
      for (const auto& c : cast->columns) {
        if (c.conv == cross::Conv::kGeometry)
          return fmt::format("table {} column {}: geometry travels to PostgreSQL as WKB without its SRID and cannot "
                             "be written back; exclude the table or keep writes on MySQL",
                             id.ToString(), c.name);
        if (c.overridden || c.conv == cross::Conv::kInterval)
          return fmt::format("table {} column {}: casting.columns stores it as {}, which has no way back to its "
                             "MySQL type; keep writes on MySQL",
                             id.ToString(), c.name, c.pg_type);
      }
    }
    return "";
  }

  // The spec's transforms bound to the PostgreSQL twins, by twin table.
  Result<std::shared_ptr<const TransformMap>> Transforms() const {
    std::vector<TablePtr> list;
    for (const auto& [id, t] : tables_) list.push_back(t);
    return TwinTransforms(spec_, list, facts_);
  }

  // The facts of a twin's carried columns (`inverse`'s target) from those of
  // the transformed PostgreSQL table it is read from, by the column that
  // holds each; a column a cast retypes keeps none.
  static cross::PgTableFacts FactsBack(const TableTransform& inverse, const cross::PgTableFacts& f) {
    cross::PgTableFacts out;
    const TableSchema& twin = *inverse.target();
    for (size_t i = 0; i < twin.columns.size(); ++i) {
      const ColumnSchema& held = inverse.source().columns[inverse.SourceColumn(i)];
      const std::string& name = twin.columns[i].name;
      if (f.unique_columns.count(held.name)) out.unique_columns.insert(name);
      if (twin.columns[i].type.native != held.type.native) continue;
      if (auto e = f.enum_labels.find(held.name); e != f.enum_labels.end()) out.enum_labels[name] = e->second;
      if (auto d = f.domains.find(held.name); d != f.domains.end()) out.domains[name] = d->second;
      if (f.identity == held.name) out.identity = name;
    }
    return out;
  }

  // Reverse: PostgreSQL (the migration's target) -> the MySQL primary, once
  // the first write switch asks for it. A slot created now on PostgreSQL
  // holds every change committed there from here on; the stream skips what
  // the forward flow applied (origins midflight_<name>_f*), and its
  // appliers write with skip_replication, which the binlog reader skips.
  // Each change crosses pg_to_my's casting table into the original MySQL
  // table (enum and set members as labels, text as UTF-8 the server converts).
  Result<StartedFlow> StartReverse(const ReplicateStart& rs) {
    if (std::string why = ReverseRefusal(); !why.empty())
      return OperatorError("reverse replication PostgreSQL -> MySQL cannot start: " + why);
    ASSIGN_OR_RETURN(auto su, mysql::ParseMyUri(spec_.source));
    const std::string my_db = su.database;
    std::chrono::milliseconds delay{0};
    bool mariadb = true;
    {
      mysql::ConnOptions mo;
      mo.program_name = "midflight-control";
      ASSIGN_OR_RETURN(auto my, MyConn::Connect(spec_.source, mo));
      // The reverse checkpoints live next to the data they cover: on MySQL.
      RETURN_IF_ERROR(mysql::EnsureBookkeeping(*my).WithContext("source: reverse checkpoints"));
      ASSIGN_OR_RETURN(MyResult vars, my->Query("SELECT @@innodb_flush_log_at_trx_commit, "
                                                "@@innodb_flush_log_at_timeout, @@version"));
      if (vars.Get(0, 0) != "1") {
        int64_t timeout = 1;
        (void)ParseI64(vars.Get(0, 1), &timeout);
        delay = std::chrono::milliseconds(timeout * 1000 + 2000);
      }
      mariadb = vars.Get(0, 2).find("MariaDB") != std::string::npos;
    }
    ASSIGN_OR_RETURN(auto forward, Transforms());
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(PgConn * dst, PgControl());
    // The PostgreSQL tables, as PostgreSQL's catalog has them (the stream's
    // layouts): the twins, or what their transforms made of them.
    std::map<TableId, TablePtr> my_of_pg;  // PostgreSQL table id -> the MySQL table
    std::map<TableId, cross::TableCast> fwd_casts;
    std::map<TableId, std::shared_ptr<const TableTransform>> transform_of;  // PostgreSQL table id -> its transform
    std::vector<std::string> names;
    for (const auto& [id, t] : tables_) {
      auto f = facts_.find(id.name);
      ASSIGN_OR_RETURN(cross::TableCast cast,
                       cross::CastTable(*t, f == facts_.end() ? cross::MyTableFacts{} : f->second, OptionsOf(spec_)));
      TableId pg_id = cast.target->id;
      if (auto tr = forward->find(pg_id); tr != forward->end()) {
        pg_id = tr->second->target()->id;
        transform_of[pg_id] = tr->second;
      }
      my_of_pg[pg_id] = t;
      names.push_back(pg_id.ToString());
      fwd_casts[pg_id] = std::move(cast);
    }
    ASSIGN_OR_RETURN(auto pg_tables, pg::LoadTables(*dst, names, {}));
    if (pg_tables.size() != my_of_pg.size())
      return OperatorError(fmt::format("reverse replication: the target has {} of the {} migrated tables ({}); were "
                                       "some dropped or renamed?",
                                       pg_tables.size(), my_of_pg.size(), fmt::join(names, ", ")));
    ASSIGN_OR_RETURN(auto pg_facts, cross::LoadPgFacts(*dst, pg_tables));
    cross::PgCastOptions po;
    po.numeric_decimal = true;
    po.mariadb = mariadb;
    po.target_db = my_db;
    auto casts = std::make_shared<std::map<TableId, cross::PgTableCast>>();  // by twin
    auto inverse = std::make_shared<TransformMap>();  // by transformed table
    std::map<TableId, TablePtr> from;
    for (const auto& p : pg_tables) {
      auto f = pg_facts.find(p->id);
      cross::PgTableFacts facts = f == pg_facts.end() ? cross::PgTableFacts{} : f->second;
      // A transformed table's changes go back through the transform's
      // inverse to the twin's carried columns first.
      TablePtr twin_shape = p;
      if (auto tr = transform_of.find(p->id); tr != transform_of.end()) {
        const TableSchema& my_table = *my_of_pg.at(p->id);
        ASSIGN_OR_RETURN(MyConn * my, Control());
        ASSIGN_OR_RETURN(auto filled, mysql::ColumnsWithDefault(*my, my_table.id.schema, my_table.id.name));
        auto reversed = tr->second->Inverse(p, &filled);
        if (!reversed.ok())
          return OperatorError("reverse replication PostgreSQL -> MySQL cannot start: " + reversed.status().message());
        auto inv = *reversed;
        twin_shape = inv->target();
        facts = FactsBack(*inv, facts);
        (*inverse)[p->id] = std::move(inv);
      }
      ASSIGN_OR_RETURN(cross::PgTableCast twin, cross::CastPgTable(*twin_shape, facts, po));
      ASSIGN_OR_RETURN(cross::PgTableCast back, BackCast(*twin_shape, twin, *my_of_pg.at(p->id), fwd_casts.at(p->id),
                                                         my_db, /*carried_only=*/twin_shape != p));
      (*casts)[twin_shape->id] = std::move(back);
      from[p->id] = p;
    }
    // The publication and the slot: from the slot's creation on, whatever is
    // committed on PostgreSQL reaches MySQL.
    const std::string slot = ReverseSlot();
    ASSIGN_OR_RETURN(PgResult have_pub, dst->Query("SELECT 1 FROM pg_publication WHERE pubname = $1", {slot}));
    if (have_pub.rows() == 0) {
      std::vector<std::string> list;
      for (const auto& p : pg_tables) list.push_back(pg::QuoteQualified(p->id.schema, p->id.name));
      RETURN_IF_ERROR(dst->Exec(fmt::format("CREATE PUBLICATION {} FOR TABLE {}", pg::QuoteIdent(slot),
                                            fmt::join(list, ", ")))
                          .WithContext("target: creating publication " + slot));
    }
    ASSIGN_OR_RETURN(PgResult have_slot, dst->Query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", {slot}));
    if (have_slot.rows() == 0) {
      pg::ConnOptions ro;
      ro.kind = pg::ConnKind::kReplication;
      ro.application_name = "midflight-cutover";
      ASSIGN_OR_RETURN(auto repl, PgConn::Connect(spec_.target, ro));
      std::string cmd = fmt::format("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput NOEXPORT_SNAPSHOT", pg::QuoteIdent(slot));
      PgResult created(PQexec(repl->raw(), cmd.c_str()));
      if (PQresultStatus(created.raw()) != PGRES_TUPLES_OK)
        return pg::StatusFromResult(repl->raw(), created.raw(), "creating replication slot " + slot + " on the target");
    }
    pg::StreamConfig sc;
    sc.source_uri = spec_.target;
    sc.slot = slot;
    sc.publication = slot;
    sc.tables = from;
    sc.application_name = "midflight-stream-reverse";
    sc.skip_origin_prefix = fmt::format("midflight_{}_", spec_.name);
    sc.target_columns = [from](const TableId& id) -> Result<std::vector<ColumnSchema>> {
      std::vector<ColumnSchema> out;
      for (int i : from.at(id)->writable) out.push_back(from.at(id)->columns[i]);
      return out;
    };
    sc.durable = cross::MySqlDurableHorizon(delay);
    FlowOptions fo;
    fo.label = "reverse";
    fo.partitions = rs.partitions;
    fo.partition_log_bytes = static_cast<size_t>(spec_.partition_log_mb) << 20;
    MigrationRuntime* rt = &runtime_;
    fo.applier.settings = [rt] { return rt->ApplyNow(); };
    fo.applier.throttle = &rt->throttle;
    fo.applier.rate = &rt->apply_rate;
    fo.applier.conflicts = &rt->conflicts;
    // Test-only: a kill -9 after a batch and its checkpoint committed on
    // MySQL, before the slot hears of it (tests/integration/cross_reverse_crash.sh).
    fo.applier.on_committed = [](uint64_t n) { CrashPoint("reverse-batch-committed", static_cast<int64_t>(n)); };
    // A MySQL connection lost: the flow starts again from MySQL's checkpoints.
    auto lost = std::make_shared<std::atomic<bool>>(false);
    SinkFactory open_sink = [uri = spec_.source, db = my_db, key = ReverseKey(),
                             casts = std::shared_ptr<const std::map<TableId, cross::PgTableCast>>(casts),
                             inverse = std::shared_ptr<const TransformMap>(inverse), lost](PartitionId p, const ApplyTracker&) -> Result<std::unique_ptr<ChangeSink>> {
      ASSIGN_OR_RETURN(auto sink, mysql::MyChangeSink::Open(uri, db, key, p));
      sink->SetTargetLostFlag(lost.get());
      auto cast = cross::NewCastingSink(std::move(sink), casts, /*out_of_range_null=*/false, uri);
      if (inverse->empty()) return cast;
      return std::unique_ptr<ChangeSink>(std::make_unique<TransformSink>(std::move(cast), inverse));
    };
    StartedFlow out;
    ASSIGN_OR_RETURN(out.flow, Flow::Start(std::move(fo), std::make_unique<pg::ChangeStream>(std::move(sc)), open_sink));
    out.tables = from;
    out.restart = lost;
    Say(fmt::format("reverse replication: slot {} of {} into MySQL database {} of {}", slot, RedactUri(spec_.target),
                    my_db, RedactUri(spec_.source)));
    return out;
  }

  // The cast of PostgreSQL twin `p` back into MySQL table `my`: pg_to_my's
  // per-column conversion (`twin`, by column name), written as `my`'s
  // columns, in its order. ENUM and SET columns take their labels (written
  // as text, which MySQL matches to members) rather than the binlog's
  // numbers; text columns receive UTF-8 (the server converts to the
  // column's character set). `carried_only`: `p` holds the columns a
  // transform carries, and `my`'s others are left out of what is written
  // (an insert leaves them to their default, an update keeps them).
  static Result<cross::PgTableCast> BackCast(const TableSchema& p, const cross::PgTableCast& twin,
                                            const TableSchema& my, const cross::TableCast& fwd,
                                            const std::string& my_db, bool carried_only) {
    auto target = std::make_shared<TableSchema>(my);
    target->id.schema = my_db;
    std::vector<int> was;  // target column -> its index in `my` (and fwd.columns)
    for (size_t i = 0; i < my.columns.size(); ++i) was.push_back(static_cast<int>(i));
    if (carried_only) {
      auto carried = [&p](const std::string& name) { return p.ColumnIndex(name) >= 0; };
      target->columns.clear();
      target->key.clear();
      was.clear();
      std::map<int, int> at;
      for (size_t i = 0; i < my.columns.size(); ++i)
        if (carried(my.columns[i].name)) {
          at[static_cast<int>(i)] = static_cast<int>(target->columns.size());
          was.push_back(static_cast<int>(i));
          target->columns.push_back(my.columns[i]);
        }
      for (int k : my.key) target->key.push_back(at.at(k));  // key columns are always carried
      target->Finalize();
    }
    cross::PgTableCast out;
    out.source = twin.source;
    for (int i : target->writable) {
      ColumnSchema& col = target->columns[i];
      auto it = std::find_if(twin.columns.begin(), twin.columns.end(),
                             [&](const cross::PgColumnCast& c) { return c.name == col.name; });
      if (it == twin.columns.end())
        return OperatorError(fmt::format("reverse replication: table {} has no column {} on the target; add it back "
                                         "there, or keep writes on MySQL",
                                         p.id.ToString(), col.name));
      const cross::ColumnCast& fc = fwd.columns[was[i]];
      if (fc.conv == cross::Conv::kEnum || fc.conv == cross::Conv::kSet) {
        col.type.kind = TypeKind::kText;
        col.type.native_base = "varchar";
      }
      if ((col.type.kind == TypeKind::kText || col.type.kind == TypeKind::kJson) && !col.type.charset.empty())
        col.type.charset = "utf8mb4";
      out.columns.push_back(*it);
      out.source_index.push_back(static_cast<int>(it - twin.columns.begin()));
    }
    out.target = target;
    return out;
  }

  const MigrationSpec& spec_;
  MigrationRuntime& runtime_;
  const std::string reader_uri_;
  const std::string source_db_;
  const std::map<TableId, TablePtr> tables_;
  const std::map<std::string, cross::MyTableFacts> facts_;
  std::mutex mu_;
  std::unique_ptr<MyConn> control_;  // guarded by mu_
  std::unique_ptr<PgConn> pg_control_;  // guarded by mu_
  std::unique_ptr<PgConn> pg_monitor_;  // monitor thread only
  mutable std::mutex base_mu_;
  std::string base_;  // guarded by base_mu_
  std::unique_ptr<MyConn> monitor_;  // monitor thread only
  uint64_t last_pos_ = 0;           // monitor thread only
  mysql::BinlogSizes sizes_;        // the source's binlog files (the lag across files); self-synchronised
};

// ---- the engine ------------------------------------------------------------------

class MyToPgEngine final : public Engine {
 public:
  MyToPgEngine(const MigrationSpec& spec, MigrationRuntime& runtime, StateStore& store)
      : spec_(spec), store_(store), runtime_(runtime), reader_uri_(ReaderUri(spec)) {
    runtime_.conflicts.LoadOnce(store_.Get("conflicts").value_or("{}"));
  }

  std::string_view name() const override { return "mysql-to-postgres"; }
  Status Preflight(bool fresh, std::vector<std::string>* problems) override;
  const std::vector<TablePtr>& tables() const override { return tables_; }
  std::string Sides() const override {
    return fmt::format("reading MySQL {}{}, writing PostgreSQL {}", RedactUri(reader_uri_),
                       spec_.source_replica.empty() ? "" : " (a replica: the primary is not read)",
                       RedactUri(spec_.target));
  }
  std::vector<std::pair<std::string, std::string>> InitialState() const override {
    return {{"source", RedactUri(spec_.source)},
            {"source_replica", RedactUri(spec_.source_replica)},
            {"target", RedactUri(spec_.target)}};
  }
  std::string TableProblem(const TableSchema& t) const override {
    if (t.key_kind != KeyKind::kNone) return "";
    return fmt::format("table {} has no primary key and no unique index on NOT NULL columns, so its updates and "
                       "deletes cannot be matched on the target: add a primary key, or add it to exclude",
                       t.id.ToString());
  }
  Status CreateSchema() override;
  Result<std::vector<Chunk>> PlanChunks(int64_t chunk_rows) override {
    RETURN_IF_ERROR(ReconnectControl());
    return mysql::PlanChunks(*src_, tables_, chunk_rows);
  }
  Result<DoneChunks> LoadDoneChunks() override;
  Status PrepareCopy(const std::vector<Chunk>&, DoneChunks*, bool) override { return Status::Ok(); }
  Status CopyChunks(std::vector<Chunk> chunks, CopyProgress& progress, const std::atomic<bool>& stop,
                    std::function<void(int)> on_chunk_committed) override;
  Status FinishSchema() override;
  ReplicationOps& Replication() override {
    if (!repl_) repl_ = std::make_unique<CrossReplication>(spec_, runtime_, source_db_, by_id_, facts_);
    return *repl_;
  }
  std::string FormatPosition(uint64_t pos) const override {
    return repl_ ? repl_->FormatPosition(pos) : mysql::FormatBinlogPos("binlog", pos);
  }

 private:
  Status ReconnectControl() {
    if (!src_ || src_->IsBroken() || !src_->Exec("SELECT 1").ok()) {
      mysql::ConnOptions o;
      o.program_name = "midflight-control";
      ASSIGN_OR_RETURN(src_, MyConn::Connect(reader_uri_, o));
    }
    if (!dst_ || dst_->IsBroken()) {
      pg::ConnOptions o;
      o.application_name = "midflight-control";
      ASSIGN_OR_RETURN(dst_, PgConn::Connect(spec_.target, o));
    }
    return Status::Ok();
  }

  const MigrationSpec& spec_;
  StateStore& store_;
  MigrationRuntime& runtime_;
  const std::string reader_uri_;
  std::string source_db_, target_schema_;
  std::unique_ptr<MyConn> src_;
  std::unique_ptr<PgConn> dst_;
  std::vector<TablePtr> tables_;
  std::map<TableId, TablePtr> by_id_;
  std::map<std::string, cross::MyTableFacts> facts_;
  std::shared_ptr<std::map<TableId, cross::TableCast>> casts_;
  std::shared_ptr<const TransformMap> transforms_ = std::make_shared<TransformMap>();  // by twin table
  int64_t max_row_bytes_ = 0;
  std::unique_ptr<CrossReplication> repl_;
};

Status MyToPgEngine::Preflight(bool fresh, std::vector<std::string>* problems) {
  const std::string reader = spec_.source_replica.empty() ? "source" : "source replica";
  mysql::ConnOptions mo;
  mo.program_name = "midflight-control";
  auto src = MyConn::Connect(reader_uri_, mo);
  if (!src.ok()) problems->push_back(reader + ": " + src.status().message());
  pg::ConnOptions po;
  po.application_name = "midflight-control";
  auto dst = PgConn::Connect(spec_.target, po);
  if (!dst.ok()) problems->push_back("target: " + dst.status().message());
  if (!problems->empty()) return Status::Ok();
  src_ = std::move(*src);
  dst_ = std::move(*dst);
  ASSIGN_OR_RETURN(auto su, mysql::ParseMyUri(reader_uri_));
  source_db_ = su.database;
  target_schema_ = spec_.casting.target_schema.empty() ? source_db_ : spec_.casting.target_schema;
  ASSIGN_OR_RETURN(MyResult vars, mysql::CheckSource(*src_, spec_, problems));
  max_row_bytes_ = spec_.max_row_bytes > 0 ? spec_.max_row_bytes : 0;
  (void)vars;
  ASSIGN_OR_RETURN(std::string encoding, dst_->QueryValue("SELECT pg_encoding_to_char(encoding) FROM pg_database "
                                                          "WHERE datname = current_database()"));
  if (encoding != "UTF8")
    problems->push_back(fmt::format("target: the database's encoding is {}; MySQL text arrives as UTF-8, create the "
                                    "target database WITH ENCODING 'UTF8'",
                                    encoding));
  ASSIGN_OR_RETURN(std::string super,
                   dst_->QueryValue("SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user"));
  if (super != "true")
    problems->push_back("target: the connecting role must be a superuser (apply sessions set "
                        "session_replication_role = replica so foreign keys and triggers do not fire twice)");

  auto tables = mysql::LoadTables(*src_, source_db_, spec_.tables, spec_.exclude);
  if (!tables.ok()) return tables.status().WithContext("source catalog");
  tables_ = *tables;
  by_id_.clear();
  for (const auto& t : tables_) by_id_[t->id] = t;
  ASSIGN_OR_RETURN(facts_, LoadFacts(*src_, source_db_));
  ASSIGN_OR_RETURN(auto casts, CastAll(*src_, source_db_, tables_, spec_, problems));
  casts_ = std::make_shared<std::map<TableId, cross::TableCast>>();
  for (auto& c : casts) (*casts_)[c.source->id] = std::move(c);
  if (problems->empty()) {
    auto transforms = TwinTransforms(spec_, tables_, facts_);
    if (!transforms.ok()) problems->push_back(transforms.status().message());
    else transforms_ = *transforms;
  }
  if (fresh) {
    ASSIGN_OR_RETURN(PgResult existing, dst_->Query("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                                                    "c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') "
                                                    "ORDER BY 1",
                                                    {target_schema_}));
    if (existing.rows() > 0 && !spec_.allow_nonempty_target)
      problems->push_back(fmt::format("target is not empty: schema {} already has table {}{}; use an empty schema, or "
                                      "set allow_nonempty_target: true",
                                      target_schema_, existing.GetString(0, 0),
                                      existing.rows() > 1 ? fmt::format(" and {} more", existing.rows() - 1) : ""));
  }
  ASSIGN_OR_RETURN(std::string locked,
                   dst_->QueryValue("SELECT pg_try_advisory_lock(hashtext('midflight:' || $1 || '->' || "
                                    "current_database()))::text",
                                    {fmt::format("{}:{}", spec_.name, target_schema_)}));
  if (locked != "true")
    problems->push_back(fmt::format("another midflight process is already running migration {} into this target",
                                    spec_.name));
  repl_.reset();
  (void)Replication();
  return Status::Ok();
}

Status MyToPgEngine::CreateSchema() {
  RETURN_IF_ERROR(ReconnectControl());
  RETURN_IF_ERROR(pg::EnsureBookkeeping(*dst_));
  RETURN_IF_ERROR(dst_->Exec(fmt::format("CREATE SCHEMA IF NOT EXISTS {}", pg::QuoteIdent(target_schema_))));
  int lossy = 0;
  for (const auto& [id, cast] : *casts_) {
    if (auto tr = transforms_->find(cast.target->id); tr != transforms_->end()) {
      RETURN_IF_ERROR(dst_->Exec(pg::TransformedTableDdl(*tr->second))
                          .WithContext("creating table " + tr->second->target()->id.ToString()));
      continue;
    }
    RETURN_IF_ERROR(dst_->Exec(cross::CreateTableSql(cast)).WithContext("creating table " + cast.target->id.ToString()));
    for (const auto& c : cast.columns) lossy += c.notes.empty() ? 0 : 1;
  }
  Say(fmt::format("schema: {} tables created in PostgreSQL schema {} through the casting table ({} columns flagged; "
                  "`midflight schema SPEC --dry-run` lists them; secondary indexes follow the copy)",
                  casts_->size(), target_schema_, lossy));
  return Status::Ok();
}

Result<DoneChunks> MyToPgEngine::LoadDoneChunks() {
  RETURN_IF_ERROR(ReconnectControl());
  RETURN_IF_ERROR(pg::EnsureBookkeeping(*dst_));
  DoneChunks done;
  ASSIGN_OR_RETURN(PgResult r, dst_->Query("SELECT table_name, chunk, snapshot_lsn::text, rows_copied, bytes_copied "
                                           "FROM midflight.chunks WHERE migration = $1",
                                           {spec_.name}));
  for (int i = 0; i < r.rows(); ++i) {
    ASSIGN_OR_RETURN(PgLsn lsn, PgLsn::Parse(r.Get(i, 2)));
    done[{r.GetString(i, 0), static_cast<int>(r.GetInt(i, 1))}] = {Position::Binlog(lsn.value()), r.GetInt(i, 3),
                                                                   r.GetInt(i, 4)};
  }
  return done;
}

Status MyToPgEngine::CopyChunks(std::vector<Chunk> chunks, CopyProgress& progress, const std::atomic<bool>& stop,
                                std::function<void(int)> on_chunk_committed) {
  mysql::CopyJob job;
  job.source_uri = reader_uri_;
  job.migration = spec_.name;
  job.workers = spec_.copy_workers;
  job.knobs = &runtime_.knobs;
  job.rate = &runtime_.copy_rate;
  job.throttle = &runtime_.throttle;
  job.tables = by_id_;
  job.max_row_bytes = max_row_bytes_;
  job.chunks = std::move(chunks);
  job.on_chunk_committed = std::move(on_chunk_committed);
  job.open_target = [uri = spec_.target, name = spec_.name, casts = std::shared_ptr<const std::map<TableId, cross::TableCast>>(casts_),
                     zero = spec_.casting.zero_dates_null, max = max_row_bytes_,
                     transforms = transforms_]() -> Result<std::unique_ptr<mysql::ChunkTarget>> {
    pg::ConnOptions o;
    o.application_name = "midflight-copy";
    o.settings = {"session_replication_role=replica"};
    ASSIGN_OR_RETURN(auto conn, PgConn::Connect(uri, o));
    return std::unique_ptr<mysql::ChunkTarget>(std::make_unique<PgChunkTarget>(std::move(conn), name, casts, zero, max,
                                                                                          transforms));
  };
  Say(fmt::format("copying: {} chunks with {} workers, each from its own consistent snapshot, cast into PostgreSQL",
                  job.chunks.size(), runtime_.knobs.Int(Knob::kParallelism)));
  return mysql::CopyChunks(job, progress, stop);
}

Status MyToPgEngine::FinishSchema() {
  Say("schema: building secondary indexes and carrying AUTO_INCREMENT values");
  CrashPoint("before-post-data");
  RETURN_IF_ERROR(ReconnectControl());
  ASSIGN_OR_RETURN(MyResult idx, src_->Query(fmt::format(
      "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART IS NOT NULL, INDEX_TYPE FROM "
      "information_schema.STATISTICS WHERE TABLE_SCHEMA = {} AND INDEX_NAME <> 'PRIMARY' ORDER BY TABLE_NAME, "
      "INDEX_NAME, SEQ_IN_INDEX",
      mysql::QuoteString(source_db_))));
  struct Index {
    std::string table, name;
    bool unique = false, usable = true;
    std::vector<std::string> columns;
  };
  std::vector<Index> indexes;
  for (int i = 0; i < idx.rows(); ++i) {
    TableId id{source_db_, idx.Get(i, 0)};
    if (!casts_->count(id)) continue;
    if (indexes.empty() || indexes.back().table != idx.Get(i, 0) || indexes.back().name != idx.Get(i, 1))
      indexes.push_back({idx.Get(i, 0), idx.Get(i, 1), idx.GetInt(i, 2) == 0, true, {}});
    Index& ix = indexes.back();
    ix.columns.push_back(pg::QuoteIdent(idx.Get(i, 3)));
    if (idx.GetInt(i, 4) != 0 || (idx.Get(i, 5) != "BTREE" && idx.Get(i, 5) != "HASH")) ix.usable = false;
  }
  int built = 0;
  for (const auto& ix : indexes) {
    const cross::TableCast& cast = casts_->at({source_db_, ix.table});
    if (transforms_->count(cast.target->id)) continue;  // a transformed table gets its primary key only
    if (!ix.usable) {
      LOG_WARN("table {}: index {} not built on the target (a prefix, FULLTEXT or SPATIAL index)", ix.table, ix.name);
      continue;
    }
    std::string name = fmt::format("{}_{}", ix.table, ix.name).substr(0, 63);
    RETURN_IF_ERROR(dst_->Exec(fmt::format("CREATE {}INDEX IF NOT EXISTS {} ON {} ({})", ix.unique ? "UNIQUE " : "",
                                           pg::QuoteIdent(name),
                                           pg::QuoteQualified(cast.target->id.schema, cast.target->id.name),
                                           fmt::join(ix.columns, ", ")))
                        .WithContext(fmt::format("index {} of table {}", ix.name, cast.target->id.ToString())));
    ++built;
  }
  RETURN_IF_ERROR(CrossReplication::SyncIdentities(*src_, source_db_, spec_, by_id_));
  Say(fmt::format("schema: {} secondary indexes built", built));
  return Status::Ok();
}

class MyToPgKind final : public EngineKind {
 public:
  std::string_view name() const override { return "mysql-to-postgres"; }
  std::unique_ptr<Engine> New(const MigrationSpec& spec, MigrationRuntime& runtime, StateStore& store) const override {
    return std::make_unique<MyToPgEngine>(spec, runtime, store);
  }
  Result<std::string> CleanUpAbort(const MigrationSpec&) const override {
    return std::string("nothing to drop on the source (binlog reader)");
  }
  // Both servers hash every row's canonical form (cross/cross_verify.h
  // CrossCompare), MySQL read where the migration reads it (the replica when
  // the spec names one).
  Result<std::vector<TableComparison>> Compare(const MigrationSpec& spec) const override {
    mysql::ConnOptions o;
    o.program_name = "midflight-compare";
    const std::string reader = ReaderUri(spec);
    ASSIGN_OR_RETURN(auto src, MyConn::Connect(reader, o));
    ASSIGN_OR_RETURN(auto su, mysql::ParseMyUri(reader));
    ASSIGN_OR_RETURN(auto tables, mysql::LoadTables(*src, su.database, spec.tables, spec.exclude));
    std::vector<std::string> problems;
    ASSIGN_OR_RETURN(auto casts, CastAll(*src, su.database, tables, spec, &problems));
    if (!problems.empty()) return InvalidArgument(problems.front());
    ASSIGN_OR_RETURN(auto facts, LoadFacts(*src, su.database));
    ASSIGN_OR_RETURN(auto transforms, TwinTransforms(spec, tables, facts));
    auto source = cross::MySqlCanonSide(reader, "source (MySQL)");
    auto target = cross::PostgresCanonSide(spec.target, "target (PostgreSQL)");
    return cross::CrossCompare(*source, *target, VerifiedTables(casts, *transforms, spec), spec.verify.chunk_rows);
  }
  Result<std::unique_ptr<proxy::TrafficSwitch>> StartTrafficSwitch(const MigrationSpec&, StateStore&) const override {
    return OperatorError("a proxy across engines (mysql -> postgres) is not built: applications move by their own "
                         "configuration");
  }
  // No proxy (it cannot translate between the two wire protocols): the
  // operator moves the applications and records it (`--external`).
  bool has_traffic_plane() const override { return true; }
  Result<std::string> SchemaDdl(const MigrationSpec& spec) const override {
    mysql::ConnOptions o;
    o.program_name = "midflight-schema";
    const std::string reader = ReaderUri(spec);
    ASSIGN_OR_RETURN(auto src, MyConn::Connect(reader, o));
    ASSIGN_OR_RETURN(auto su, mysql::ParseMyUri(reader));
    ASSIGN_OR_RETURN(auto tables, mysql::LoadTables(*src, su.database, spec.tables, spec.exclude));
    std::vector<std::string> problems;
    ASSIGN_OR_RETURN(auto casts, CastAll(*src, su.database, tables, spec, &problems));
    if (!problems.empty()) return InvalidArgument(problems.front());
    const std::string schema = spec.casting.target_schema.empty() ? su.database : spec.casting.target_schema;
    std::string out = fmt::format("-- midflight: MySQL {} -> PostgreSQL schema {}: {} tables; lines marked "
                                  "LOSSY/SEMANTIC change a value or its meaning\n",
                                  su.database, schema, casts.size());
    out += fmt::format("CREATE SCHEMA IF NOT EXISTS {};\n", pg::QuoteIdent(schema));
    ASSIGN_OR_RETURN(auto facts, LoadFacts(*src, su.database));
    ASSIGN_OR_RETURN(auto transforms, TwinTransforms(spec, tables, facts));
    for (const auto& c : casts) {
      auto tr = transforms->find(c.target->id);
      if (tr == transforms->end()) {
        out += cross::CreateTableSql(c);
        continue;
      }
      out += fmt::format("-- {} -> {} (transformed after the casting table; columns and primary key only)\n",
                         c.source->id.ToString(), tr->second->target()->id.ToString());
      for (const auto& line : tr->second->Describe()) out += "--   " + line + "\n";
      out += pg::TransformedTableDdl(*tr->second);
    }
    return out;
  }
};

}  // namespace

namespace cross {

std::unique_ptr<ChangeSink> NewPgCastingSink(std::unique_ptr<ChangeSink> inner,
                                             std::shared_ptr<const std::map<TableId, TableCast>> casts) {
  return std::make_unique<CastingSink>(std::move(inner), CastOptions{}, std::map<std::string, MyTableFacts>{},
                                       std::move(casts));
}

}  // namespace cross

const EngineKind& MySqlToPostgresEngine() {
  static const MyToPgKind kind;
  return kind;
}

}  // namespace midflight
