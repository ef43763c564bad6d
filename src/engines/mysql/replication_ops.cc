#include "engines/mysql/replication_ops.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <optional>
#include <set>

#include "base/log.h"
#include "base/parse.h"
#include "base/thread_annotations.h"
#include "base/uri.h"
#include "control/phase_driver.h"
#include "control/run_util.h"
#include "control/runtime.h"
#include "control/spec.h"
#include "control/state_store.h"
#include "engines/mysql/binlog_pos.h"
#include "engines/mysql/catalog.h"
#include "engines/mysql/change_stream.h"
#include "engines/mysql/my_applier.h"
#include "engines/mysql/my_conn.h"
#include "engines/mysql/schema_loader.h"
#include "engines/mysql/schema_objects.h"
#include "engines/mysql/snapshot_copier.h"
#include "engines/mysql/verify.h"
#include "control/gates.h"
#include "pipeline/flow.h"
#include "pipeline/transform_sink.h"
#include "proxy/traffic_switch.h"

namespace midflight::mysql {
namespace {

using proxy::Side;

// The control connections: the primary (the source itself when no replica
// is configured), the server the forward flow reads, the target.
enum Ctl { kPrimary = 0, kReader = 1, kTarget = 2 };

class MyReplication final : public MyReplicationOps {
 public:
  explicit MyReplication(ReplicationSetup s) : s_(std::move(s)), spec_(*s_.spec) {
    uris_[kPrimary] = spec_.source_replica.empty() ? s_.reader_uri : spec_.source;
    uris_[kReader] = s_.reader_uri;
    uris_[kTarget] = spec_.target;
    if (auto pu = ParseMyUri(spec_.source); pu.ok()) primary_db_ = pu->database;
    if (primary_db_.empty()) primary_db_ = s_.source_db;
  }

  std::string FormatPosition(uint64_t pos) const override {
    MutexLock lock(&base_mu_);
    return FormatBinlogPos(binlog_base_, pos);
  }

  Result<StartedFlow> StartFlow(Side from, const std::vector<TablePtr>&, const ReplicateStart& start) override {
    return from == Side::kSource ? StartForward(start) : StartReverse(start);
  }
  // Exact across binlog files of either side, with their sizes from SHOW
  // BINARY LOGS (read by the monitor with the position).
  uint64_t LagBytes(Side side, uint64_t current, uint64_t applied) const override {
    return sizes_[side == Side::kSource ? 0 : 1].BytesBetween(applied, current);
  }
  // Binlog timestamps have one-second resolution, and a stream that falls
  // behind leaves changes unread: lag is the age of the oldest binlog
  // position seen on the source and not applied yet.
  bool lag_from_positions() const override { return true; }
  Status PrepareSwitch() override;
  Result<uint64_t> CommittedPosition(Side side) override;
  uint64_t CurrentPosition(Side side) override;
  Result<std::vector<TableId>> TablesInScope() override;
  std::optional<std::pair<double, std::string>> TargetReplicaLag() override;
  Status SyncSequences(Side from) override;
  Status WritesGoTo(Side to) override;
  std::vector<GateCheck> SwitchChecks(Side to, bool reverse_needed) override;
  std::vector<std::string> CleanUpOnComplete() override;
  // Live verification (engines/mysql/verify.h): the reference is read where
  // the flow from it reads (the replica, or the target after a write switch),
  // the other side where that flow applies (the target, or the source primary).
  Result<VerifyOutcome> Verify(Side reference, Flow& flow, const std::map<TableId, TablePtr>& tables, bool repair,
                               std::function<int64_t()> rows_per_s, const std::atomic<bool>* stop,
                               const VerifyRun& run) override {
    const bool forward = reference == Side::kSource;
    mysql::VerifyJob job;
    job.reference_uri = forward ? s_.reader_uri : spec_.target;
    job.other_uri = forward ? spec_.target : uris_[kPrimary];
    for (const auto& [id, t] : tables) job.tables.push_back(t);
    // A transformed table holds other rows on each side by design: not
    // verified here (`compare` names it likewise), its transform named.
    for (const auto& [id, tr] : *s_.transforms)
      job.not_verified[forward ? id : TableId{s_.target_db, tr->target()->id.name}] =
          fmt::format("its rows are transformed on the way ({})", tr->where());
    // They are verified through their transforms: forward, the source's
    // rows transformed against the target's; after the write switch (the
    // target the reference) the same, the source primary's rows transformed
    // forward (cross::Reversed).
    if (s_.verify_reshaped && !s_.transforms->empty()) {
      if (!forward && repair)
        return OperatorError("verify --repair after switch writes: the transformed tables' repairs into the source "
                             "are not built; verify without --repair, then fix the rows named");
      ReshapedVerifyArgs args;
      args.reference_uri = job.reference_uri;
      args.other_uri = job.other_uri;
      args.target_db = s_.target_db;
      args.reversed = !forward;
      for (const auto& [id, tr] : *s_.transforms) args.transforms.push_back(tr);
      args.repair = repair;
      args.rows_per_s = rows_per_s;  // before job takes it, below
      args.stop = stop;
      args.chunk_rows = spec_.verify.chunk_rows;
      args.run = run;
      job.reshaped = [this, &flow, args = std::move(args)] { return s_.verify_reshaped(flow, args); };
    }
    job.applied_through = [&flow] { return flow.AppliedThrough(); };
    job.received = [&flow] { return flow.metrics().received; };
    job.rows_per_s = std::move(rows_per_s);
    job.stop = stop;
    job.repair = repair;
    job.chunk_rows = spec_.verify.chunk_rows;
    job.start_table = run.start_after.table;
    if (run.on_progress)
      job.on_table_done = [&run](const verify::TableResult& r, int64_t estimated_rows) {
        VerifyProgress p;
        p.table = r.table.ToString();
        p.table_done = true;
        p.done_through.table = p.table;
        p.table_rows = r.rows;
        p.table_rows_estimate = std::max(estimated_rows, r.rows);
        for (const auto& d : r.differences) p.lines.push_back(fmt::format("{} {}: {}", p.table, d.key_display, d.kind));
        for (const auto& u : r.unsettled) p.lines.push_back(fmt::format("{} {}", p.table, u));
        if (!r.skipped.empty()) p.lines.push_back(fmt::format("{}: not verified: {}", p.table, r.skipped));
        run.on_progress(p);
      };
    return mysql::Verify(job);
  }

 private:
  Result<StartedFlow> StartForward(const ReplicateStart& start);
  Result<StartedFlow> StartReverse(const ReplicateStart& start);
  // The control connection `which`, (re)connected when it broke. Its
  // sessions run with skip_replication = 1: what they write (AUTO_INCREMENT
  // changes, bookkeeping) is not read back by either flow.
  Result<MyConn*> Control(Ctl which) REQUIRES(control_mu_);
  // Runs `fn` on control connection `which`; once more on a fresh
  // connection when the first one was found broken.
  template <typename Fn>
  // Callers hold control_mu_ (not annotated: clang cannot name a member
  // declared further down in an attribute after a trailing return type).
  auto OnControl(Ctl which, Fn fn) -> decltype(fn(std::declval<MyConn&>())) {
    control_mu_.AssertHeld();
    ASSIGN_OR_RETURN(MyConn * c, Control(which));
    auto r = fn(*c);
    if (r.ok() || !c->IsBroken()) return r;
    ASSIGN_OR_RETURN(c, Control(which));
    return fn(*c);
  }
  std::string SideName(Ctl which) const {
    if (which == kTarget) return "target";
    if (which == kReader && !spec_.source_replica.empty()) return "source replica";
    return spec_.source_replica.empty() ? "source" : "source primary";
  }
  std::string reverse_key() const { return spec_.name + "/reverse"; }
  // A migrated table's name on `which` (a transform may rename it on the target).
  std::string NameOn(Ctl which, const TableId& source) const {
    auto tr = s_.transforms->find(source);
    return which != kTarget || tr == s_.transforms->end() ? source.name : tr->second->target()->id.name;
  }
  // The migrated tables' names on `which`, quoted, comma-separated.
  std::string TableList(Ctl which) const;
  // The inverse of every transform (reverse replication); an error names the
  // first transform that has none. `as_read`: the target's tables as its
  // binlog reader has them (empty: the transforms' own target tables).
  Result<TransformMap> Inverses(const std::map<TableId, TablePtr>& as_read) REQUIRES(control_mu_);
  // Source table name -> its AUTO_INCREMENT column on `which` (cached).
  Result<const std::map<std::string, std::string>*> AutoIncrementColumns(Ctl which) REQUIRES(control_mu_);
  uint32_t ServerId(uint64_t seed) const {
    return 0x40000000u | static_cast<uint32_t>(XXH64(spec_.name.data(), spec_.name.size(), seed) & 0x3fffffff);
  }
  // The Flow for one direction: binlog of `from_uri` (tables as it has them)
  // into `to_uri`/`to_db`, checkpoints under `key`.
  // Each sink applies `transforms` (by the stream's tables) first.
  Result<StartedFlow> Start(std::string label, StreamConfig config, const std::string& to_uri, const std::string& to_db,
                            const std::string& key, FlowOptions fo, std::map<TableId, TablePtr> tables,
                            std::shared_ptr<const TransformMap> transforms);

  ReplicationSetup s_;
  const MigrationSpec& spec_;
  std::string uris_[3];
  std::string primary_db_;
  // The monitor thread's.
  std::unique_ptr<MyConn> monitor_[2];  // 0: the reader, 1: the target
  struct TargetReplica {
    std::string name;  // host:port (server_id N)
    std::unique_ptr<MyConn> conn;
    ReplicaLagTracker tracker;
    std::chrono::steady_clock::time_point retry_at{};
    bool warned = false;
  };
  std::map<int64_t, TargetReplica> target_replicas_;  // by server_id (SHOW SLAVE HOSTS on the target)
  uint64_t last_pos_[2] = {0, 0};
  BinlogSizes sizes_[2];  // 0: the reader's binlog files, 1: the target's
  mutable Mutex base_mu_;
  std::string binlog_base_ GUARDED_BY(base_mu_) = "binlog";
  Mutex control_mu_;
  std::unique_ptr<MyConn> control_[3] GUARDED_BY(control_mu_);
  std::optional<std::map<std::string, std::string>> ai_columns_[2] GUARDED_BY(control_mu_);  // 0: source, 1: target
};

Result<MyConn*> MyReplication::Control(Ctl which) {
  auto& c = control_[which];
  if (c && !c->IsBroken()) return c.get();
  ConnOptions co;
  co.program_name = "midflight-control";
  auto conn = MyConn::Connect(uris_[which], co);
  if (!conn.ok()) return conn.status().WithContext(SideName(which));
  if (Status st = (*conn)->Exec("SET SESSION skip_replication = 1"); !st.ok())
    return st.WithContext(SideName(which) + ": setting skip_replication (midflight's own writes must be recognisable)");
  c = std::move(*conn);
  return c.get();
}

Status MyReplication::PrepareSwitch() {
  MutexLock lock(&control_mu_);
  // A session the server dropped looks fine until it is used: ping them
  // here, outside the write pause.
  for (Ctl which : {kPrimary, kReader, kTarget}) {
    if (which == kPrimary && spec_.source_replica.empty()) continue;
    auto& c = control_[which];
    if (c && !c->IsBroken() && c->Exec("SELECT 1").ok()) continue;
    c.reset();
    RETURN_IF_ERROR(Control(which).status());
  }
  RETURN_IF_ERROR(AutoIncrementColumns(kTarget).status());
  return AutoIncrementColumns(kPrimary).status();
}

Result<uint64_t> MyReplication::CommittedPosition(Side side) {
  MutexLock lock(&control_mu_);
  if (side == Side::kTarget || spec_.source_replica.empty()) {
    const Ctl which = side == Side::kTarget ? kTarget : kReader;
    ASSIGN_OR_RETURN(MyResult ms, OnControl(which, [](MyConn& c) { return c.Query("SHOW MASTER STATUS"); }));
    auto n = ms.rows() ? ParseBinlogFileNumber(ms.Get(0, 0)) : std::nullopt;
    if (!n) return OperatorError(fmt::format("{}: SHOW MASTER STATUS is empty; is log_bin on?", SideName(which)));
    return EncodeBinlogPos(*n, static_cast<uint32_t>(ms.GetInt(0, 1)));
  }
  // Reading a replica: every transaction the primary committed so far must
  // be in the replica's binlog before its position means anything.
  ASSIGN_OR_RETURN(std::string gtid,
                   OnControl(kPrimary, [](MyConn& c) { return c.QueryValue("SELECT @@gtid_binlog_pos"); }));
  const double timeout = std::max(1.0, spec_.cutover.catchup_timeout_seconds);
  ASSIGN_OR_RETURN(std::string waited, OnControl(kReader, [&](MyConn& c) {
                     return c.QueryValue(
                         fmt::format("SELECT MASTER_GTID_WAIT({}, {:.3f})", QuoteString(gtid), timeout));
                   }));
  if (waited != "0")
    return OperatorError(fmt::format("source replica {} did not apply the primary's GTID position {} within {:.0f} s "
                                     "(cutover.catchup_timeout_seconds); check its replication (SHOW SLAVE STATUS)",
                                     RedactUri(spec_.source_replica), gtid, timeout));
  ASSIGN_OR_RETURN(MyResult ms, OnControl(kReader, [](MyConn& c) { return c.Query("SHOW MASTER STATUS"); }));
  auto n = ms.rows() ? ParseBinlogFileNumber(ms.Get(0, 0)) : std::nullopt;
  if (!n) return OperatorError("source replica: SHOW MASTER STATUS is empty; is log_bin on?");
  return EncodeBinlogPos(*n, static_cast<uint32_t>(ms.GetInt(0, 1)));
}

uint64_t MyReplication::CurrentPosition(Side side) {
  const int i = side == Side::kSource ? 0 : 1;
  auto& m = monitor_[i];
  if (!m || m->IsBroken()) {
    ConnOptions mo;
    mo.program_name = "midflight-monitor";
    auto c = MyConn::Connect(i == 0 ? s_.reader_uri : spec_.target, mo);
    m = c.ok() ? std::move(*c) : nullptr;
  }
  if (!m) return last_pos_[i];  // a failed read keeps the last position (the lag stays as it was)
  if (uint64_t pos = MasterPosition(*m)) last_pos_[i] = pos;
  RefreshBinlogSizes(*m, last_pos_[i], sizes_[i]);
  return last_pos_[i];
}

namespace {

// `uri` with its host and port replaced (user, password, database and
// parameters kept): the target's credentials for one of its replicas.
std::string WithHostPort(const std::string& uri, const std::string& host, int64_t port) {
  const size_t auth = uri.find("://");
  if (auth == std::string::npos) return uri;
  const size_t begin = auth + 3;
  size_t end = uri.find_first_of("/?", begin);
  if (end == std::string::npos) end = uri.size();
  const size_t at = uri.rfind('@', end);
  const size_t host_at = at == std::string::npos || at < begin ? begin : at + 1;
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return fmt::format("{}{}:{}{}", uri.substr(0, host_at), h, port, uri.substr(end));
}

}  // namespace

std::optional<std::pair<double, std::string>> MyReplication::TargetReplicaLag() {
  // MariaDB's primary does not know how far its replicas are: each replica
  // the target lists (SHOW SLAVE HOSTS: every replica connected to it, its
  // report_host or else the address it connects from) is asked itself, with
  // the target's credentials, for its connection from the target (SHOW ALL
  // SLAVES STATUS). Seconds_Behind_Master while its SQL thread runs; while
  // it is stopped with events waiting, the time since it last executed one
  // (ReplicaLagTracker). A replica that cannot be reached is named in the
  // log once and asked again every 10 s; it does not hold the appliers.
  auto& m = monitor_[1];
  if (!m || m->IsBroken()) {
    ConnOptions mo;
    mo.program_name = "midflight-monitor";
    auto c = MyConn::Connect(spec_.target, mo);
    m = c.ok() ? std::move(*c) : nullptr;
  }
  if (!m) return std::nullopt;
  auto hosts = m->Query("SHOW SLAVE HOSTS");
  auto target = ParseMyUri(spec_.target);
  if (!hosts.ok() || !target.ok()) return std::nullopt;
  const auto now = std::chrono::steady_clock::now();
  std::set<int64_t> listed;
  std::optional<std::pair<double, std::string>> worst;
  for (int i = 0; i < hosts->rows(); ++i) {
    const int64_t id = hosts->GetInt(i, 0);
    std::string host = hosts->Get(i, 1);
    const int64_t port = hosts->GetInt(i, 2);
    if (id == ServerId(11)) continue;  // reverse replication's own reader, should it be listed
    if (host.empty()) host = target->host;
    listed.insert(id);
    TargetReplica& r = target_replicas_[id];
    r.name = fmt::format("{}:{} (server_id {})", host, port, id);
    if (!r.conn || r.conn->IsBroken()) {
      if (now < r.retry_at) continue;
      ConnOptions o;
      o.program_name = "midflight-monitor";
      o.connect_timeout_s = 2;
      auto c = MyConn::Connect(WithHostPort(spec_.target, host, port), o);
      if (!c.ok()) {
        r.retry_at = now + std::chrono::seconds(10);
        if (!r.warned) LOG_WARN("target replica {}: its lag cannot be read: {}", r.name, c.status().message());
        r.warned = true;
        continue;
      }
      r.conn = std::move(*c);
    }
    auto sample = ReadReplicaLag(*r.conn, target->port);
    if (!sample.ok() || !*sample) {
      if (!r.warned)
        LOG_WARN("target replica {}: its lag cannot be read: {}", r.name,
                 sample.ok() ? "it shows no replication from the target" : sample.status().message());
      r.warned = true;
      continue;
    }
    const double lag = r.tracker.Observe(**sample, now);
    if (!worst || lag > worst->first) worst = std::make_pair(lag, r.name);
  }
  std::erase_if(target_replicas_, [&](const auto& e) { return !listed.count(e.first); });
  return worst;
}

Result<std::vector<TableId>> MyReplication::TablesInScope() {
  if (!monitor_[0] || monitor_[0]->IsBroken()) return RetryCall("source: no monitor connection");
  ASSIGN_OR_RETURN(auto listed, ListTables(*monitor_[0], s_.source_db));
  std::vector<TableId> out;
  for (const auto& id : listed)
    if (TableSelected(spec_.tables, spec_.exclude, id)) out.push_back(id);
  return out;
}

Result<ReplicationOps::StartedFlow> MyReplication::Start(std::string label, StreamConfig config,
                                                         const std::string& to_uri, const std::string& to_db,
                                                         const std::string& key, FlowOptions fo,
                                                         std::map<TableId, TablePtr> tables,
                                                         std::shared_ptr<const TransformMap> transforms) {
  const uint32_t partitions = fo.partitions;
  // Set by a sink that lost its to-side connection: the flow must start
  // again from what that side holds.
  auto lost = std::make_shared<std::atomic<bool>>(false);
  // Apply workers apply (transport apply: workers): a partition's sink here
  // watches its checkpoint row and keeps the restart marker.
  const bool watch_only = fo.external_apply;
  SinkFactory open_sink = [to_uri, to_db, key, partitions, lost, watch_only, transforms](
                              PartitionId p, const ApplyTracker& tracker) -> Result<std::unique_ptr<ChangeSink>> {
    ASSIGN_OR_RETURN(auto sink, MyChangeSink::Open(to_uri, to_db, key, p));
    sink->SetTargetLostFlag(lost.get());
    if (watch_only && p.value < partitions) sink->SetWatchOnly();
    if (p.value < partitions)
      sink->SetRestartSource([&tracker] {
        auto pending = tracker.OldestPending();
        return pending ? pending->commit_lsn.value() : uint64_t{0};
      });
    if (transforms && !transforms->empty())
      return std::unique_ptr<ChangeSink>(std::make_unique<TransformSink>(std::move(sink), transforms));
    return std::unique_ptr<ChangeSink>(std::move(sink));
  };
  fo.label = std::move(label);
  fo.partition_log_bytes = static_cast<size_t>(spec_.partition_log_mb) << 20;
  fo.applier.settings = [rt = s_.runtime] { return rt->ApplyNow(); };
  fo.applier.throttle = &s_.runtime->throttle;
  fo.applier.rate = &s_.runtime->apply_rate;
  fo.applier.conflicts = &s_.runtime->conflicts;
  StartedFlow out;
  ASSIGN_OR_RETURN(out.flow, Flow::Start(std::move(fo), std::make_unique<ChangeStream>(std::move(config)), open_sink));
  out.tables = std::move(tables);
  out.restart = lost;
  return out;
}

namespace {

// Catalog connections for a flow's DDL handling, used by its stream thread
// only (shared_ptr: the callbacks outlive StartFlow's frame).
struct Catalogs {
  std::unique_ptr<MyConn> from, to;
};

// A table's columns, one line ({0}: database, {1}: table, quoted).
constexpr const char* kColumnsSql =
    "SELECT GROUP_CONCAT(CONCAT(COLUMN_NAME, ' ', COLUMN_TYPE, IF(IS_GENERATED = 'ALWAYS', ' generated', '')) "
    "ORDER BY ORDINAL_POSITION SEPARATOR ', ') FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} AND "
    "TABLE_NAME = {}";

Result<std::string> ColumnsOf(std::unique_ptr<MyConn>& conn, const std::string& uri, const std::string& db,
                              const std::string& table) {
  if (!conn || conn->IsBroken()) {
    ConnOptions co;
    co.program_name = "midflight-catalog";
    ASSIGN_OR_RETURN(conn, MyConn::Connect(uri, co));
  }
  ASSIGN_OR_RETURN(MyResult r, conn->Query(fmt::format(kColumnsSql, QuoteString(db), QuoteString(table))));
  return r.Get(0, 0);
}

// DDL callbacks of a stream reading `from` and applying to `to`. A table
// in `reshaped` (a transformed table: its two sides differ by design) is
// compared with its own columns on `from` when the flow started, given there.
void SetDdlCallbacks(StreamConfig* config, std::string from_uri, std::string from_db, std::string to_uri,
                     std::string to_db, std::string from_name, std::string to_name,
                     std::map<std::string, std::string> reshaped = {}) {
  auto cat = std::make_shared<Catalogs>();
  config->target_differs = [=](const TableId& id) -> Result<std::string> {
    ASSIGN_OR_RETURN(std::string f, ColumnsOf(cat->from, from_uri, from_db, id.name));
    if (auto was = reshaped.find(id.name); was != reshaped.end()) {
      if (f == was->second) return std::string();
      return fmt::format("{} columns now ({}), when replication started ({}); the table is transformed on the way, "
                         "so a change of its columns is not followed: restart the migration with a spec that fits",
                         from_name, f, was->second);
    }
    ASSIGN_OR_RETURN(std::string t, ColumnsOf(cat->to, to_uri, to_db, id.name));
    if (f == t) return std::string();
    return fmt::format("{} columns now ({}), {} columns ({})", from_name, f, to_name, t);
  };
  config->reload_table = [=](const TableId& id) -> Result<TablePtr> {
    if (!cat->from || cat->from->IsBroken()) {
      ConnOptions co;
      co.program_name = "midflight-catalog";
      ASSIGN_OR_RETURN(cat->from, MyConn::Connect(from_uri, co));
    }
    ASSIGN_OR_RETURN(auto list, LoadTables(*cat->from, from_db, {id.name}, {}));
    for (auto& t : list)
      if (t->id == id) return t;
    return NotFound(fmt::format("table {} is gone from the {}", id.ToString(), from_name));
  };
}

}  // namespace

Result<ReplicationOps::StartedFlow> MyReplication::StartForward(const ReplicateStart& rs) {
  uint64_t start = rs.oldest_snapshot;
  std::string base;
  {
    MutexLock lock(&control_mu_);
    // The binlog's base name, from the server read.
    ASSIGN_OR_RETURN(MyResult ms, OnControl(kReader, [](MyConn& c) { return c.Query("SHOW MASTER STATUS"); }));
    if (ms.rows() == 0) return OperatorError(SideName(kReader) + ": SHOW MASTER STATUS is empty; is log_bin on?");
    base = BinlogBaseName(ms.Get(0, 0));
    // Where the stream starts: the target's restart marker (what it holds
    // durably); the local state's position only for a target that has no
    // marker yet (a migration started by an older midflight).
    ASSIGN_OR_RETURN(MyConn * dst, Control(kTarget));
    RETURN_IF_ERROR(EnsureBookkeeping(*dst));
    ASSIGN_OR_RETURN(RestartMarker marker, LoadRestartMarker(*dst, spec_.name));
    if (marker.position > 0) {
      start = std::max(start, marker.position);
    } else if (auto saved = s_.store->Get("restart_pos"); marker.any_applied && saved && !saved->empty()) {
      uint64_t local = 0;
      if (!ParseU64(*saved, &local))
        return Internal(fmt::format("state store: restart_pos '{}' is not a position", *saved));
      start = local;
    }
  }
  {
    MutexLock lock(&base_mu_);
    binlog_base_ = base;
  }
  // A transformed table's columns on the source now: a statement that
  // changes them stops the flow (the transform was bound to these).
  std::map<std::string, std::string> reshaped;
  {
    MutexLock lock(&control_mu_);
    for (const auto& [id, tr] : *s_.transforms) {
      ASSIGN_OR_RETURN(MyConn * reader, Control(kReader));
      ASSIGN_OR_RETURN(MyResult r, reader->Query(fmt::format(kColumnsSql, QuoteString(s_.source_db), QuoteString(id.name))));
      reshaped[id.name] = r.Get(0, 0);
    }
  }
  StreamConfig config;
  config.source_uri = s_.reader_uri;
  config.binlog_base = base;
  config.server_id = ServerId(7);
  config.tables = s_.tables;
  SetDdlCallbacks(&config, s_.reader_uri, s_.source_db, spec_.target, s_.target_db, "source", "target",
                  std::move(reshaped));
  FlowOptions fo;
  fo.partitions = rs.partitions;
  fo.filter = rs.filter;
  fo.log_factory = rs.log_factory;
  fo.external_apply = rs.external_apply;
  fo.start = start;
  ASSIGN_OR_RETURN(StartedFlow out,
                   Start("forward", std::move(config), spec_.target, s_.target_db, spec_.name, std::move(fo), s_.tables,
                         s_.transforms));
  Say(fmt::format("replicating: binlog of {} from {}", RedactUri(s_.reader_uri), FormatBinlogPos(base, start)));
  return out;
}

Result<ReplicationOps::StartedFlow> MyReplication::StartReverse(const ReplicateStart& rs) {
  MutexLock lock(&control_mu_);
  std::vector<std::string> problems;
  // The target's binlog is what reverse reads.
  ASSIGN_OR_RETURN(MyResult tv, OnControl(kTarget, [](MyConn& c) {
                     return c.Query("SELECT @@log_bin, @@binlog_format, @@binlog_row_image");
                   }));
  if (tv.Get(0, 0) != "1")
    problems.push_back("target: the binary log is off; start it with log_bin (binlog_format=ROW, binlog_row_image=FULL)");
  if (tv.Get(0, 1) != "ROW")
    problems.push_back(fmt::format("target: binlog_format is {}; SET GLOBAL binlog_format=ROW (and in its configuration)",
                                   tv.Get(0, 1)));
  if (tv.Get(0, 2) != "FULL")
    problems.push_back(fmt::format("target: binlog_row_image is {}; set binlog_row_image=FULL", tv.Get(0, 2)));
  // Reverse writes to the primary, as midflight's apply sessions (skip_replication set by Control).
  const std::string primary = SideName(kPrimary);
  ASSIGN_OR_RETURN(MyResult pv, OnControl(kPrimary, [&](MyConn& c) {
                     return c.Query(fmt::format(
                         "SELECT @@read_only, (SELECT GROUP_CONCAT(DISTINCT PRIVILEGE_TYPE) FROM (SELECT GRANTEE, "
                         "PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES UNION ALL SELECT GRANTEE, "
                         "PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE {} LIKE TABLE_SCHEMA) p "
                         "WHERE GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', "
                         "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')), @@skip_replication",
                         QuoteString(primary_db_)));
                   }));
  if (pv.Get(0, 0) != "0")
    problems.push_back(fmt::format("{} {}: read_only is on; reverse replication writes the target's changes there",
                                   primary, RedactUri(uris_[kPrimary])));
  const std::string granted = "," + pv.Get(0, 1) + ",";
  for (const char* priv : {"INSERT", "UPDATE", "DELETE", "CREATE"})
    if (granted.find(fmt::format(",{},", priv)) == std::string::npos)
      problems.push_back(fmt::format("{}: the user lacks {} on {} (reverse replication applies the target's changes "
                                     "there{})",
                                     primary, priv, primary_db_,
                                     std::string_view(priv) == "CREATE" ? " and keeps its checkpoints in a midflight "
                                                                          "database"
                                                                        : ""));
  if (pv.Get(0, 2) != "1") problems.push_back(primary + ": SET SESSION skip_replication = 1 did not take");
  if (!spec_.source_replica.empty()) {
    ASSIGN_OR_RETURN(std::string mode, OnControl(kReader, [](MyConn& c) {
                       return c.QueryValue("SELECT @@replicate_events_marked_for_skip");
                     }));
    if (mode != "REPLICATE")
      problems.push_back(fmt::format("source replica: replicate_events_marked_for_skip is {}; it must be REPLICATE (the "
                                     "default) or the changes reverse replication applies on the primary never reach it",
                                     mode));
  }
  if (!problems.empty())
    return OperatorError(fmt::format("reverse replication cannot start: {}", fmt::join(problems, "; ")));

  ASSIGN_OR_RETURN(MyConn * src, Control(kPrimary));
  RETURN_IF_ERROR(EnsureBookkeeping(*src).WithContext(primary));
  {
    // The source's triggers would fire again on what reverse applies (their
    // twins on the target already made those effects, which arrive as rows):
    // guard them as the target's are, before the first reverse change.
    std::set<std::string> names;
    for (const auto& [id, t] : s_.tables) names.insert(id.name);
    auto guarded = GuardTriggersInPlace(*src, primary_db_, names);
    if (!guarded.ok()) return guarded.status().WithContext(primary);
    if (!guarded->empty())
      Say(fmt::format("reverse replication: {} trigger(s) on the {} now skip midflight's apply sessions ({})",
                      guarded->size(), primary, fmt::join(*guarded, ", ")));
  }
  ASSIGN_OR_RETURN(RestartMarker marker, LoadRestartMarker(*src, reverse_key()));
  ASSIGN_OR_RETURN(MyConn * dst, Control(kTarget));
  std::string base;
  const uint64_t now = MasterPosition(*dst, &base);
  if (now == 0) return OperatorError("target: SHOW MASTER STATUS is empty; is log_bin on?");
  // The first start reads the target's binlog from here: nothing the
  // applications wrote there can be older (they write there only after the
  // switch that starts this). Kept, so a restart before the first reverse
  // checkpoint begins at the same place.
  uint64_t start = 0;
  if (auto saved = s_.store->Get("reverse_start_pos"); saved && !saved->empty()) {
    if (!ParseU64(*saved, &start))
      return Internal(fmt::format("state store: reverse_start_pos '{}' is not a position", *saved));
  } else {
    start = now;
    RETURN_IF_ERROR(s_.store->Put("reverse_start_pos", std::to_string(start)));
  }
  start = std::max(start, marker.position);
  // The migrated tables as the target has them, under their names there.
  std::map<std::string, TableId> migrated;  // name on the target -> source table
  for (const auto& [id, t] : s_.tables) migrated[NameOn(kTarget, id)] = id;
  ASSIGN_OR_RETURN(auto tables, LoadTables(*dst, s_.target_db, {}, {}));
  std::map<TableId, TablePtr> by_id;
  for (const auto& t : tables)
    if (migrated.count(t->id.name)) by_id[t->id] = t;
  // A transformed table's changes go back through the transform's inverse;
  // its columns on the target, as they are now, are what a statement that
  // changes them is compared with.
  ASSIGN_OR_RETURN(TransformMap inverse, Inverses(by_id));
  std::map<std::string, std::string> reshaped;
  for (const auto& [id, tr] : *s_.transforms) {
    const std::string name = NameOn(kTarget, id);
    ASSIGN_OR_RETURN(MyResult r, dst->Query(fmt::format(kColumnsSql, QuoteString(s_.target_db), QuoteString(name))));
    reshaped[name] = r.Get(0, 0);
  }

  StreamConfig config;
  config.source_uri = spec_.target;
  config.binlog_base = base;
  config.server_id = ServerId(11);
  config.tables = by_id;
  SetDdlCallbacks(&config, spec_.target, s_.target_db, uris_[kPrimary], primary_db_, "target", "source",
                  std::move(reshaped));
  FlowOptions fo;
  fo.partitions = rs.partitions;
  fo.start = start;
  ASSIGN_OR_RETURN(StartedFlow out, Start("reverse", std::move(config), uris_[kPrimary], primary_db_, reverse_key(),
                                          std::move(fo), std::move(by_id),
                                          std::make_shared<const TransformMap>(std::move(inverse))));
  Say(fmt::format("reverse replication: binlog of {} from {} into {} (skipping midflight's own, flagged "
                  "skip_replication)",
                  RedactUri(spec_.target), FormatBinlogPos(base, start), RedactUri(uris_[kPrimary])));
  return out;
}

std::string MyReplication::TableList(Ctl which) const {
  std::vector<std::string> names;
  for (const auto& [id, t] : s_.tables) names.push_back(QuoteString(NameOn(which, id)));
  return fmt::format("{}", fmt::join(names, ", "));
}

Result<TransformMap> MyReplication::Inverses(const std::map<TableId, TablePtr>& as_read) {
  if (s_.transforms->empty()) return TransformMap();
  // The source's columns an insert may leave out (a column the transform
  // dropped needs a default there), read on the primary reverse writes to.
  const DefaultedColumns defaulted = [this](const TableSchema& t) REQUIRES(control_mu_) {
    return OnControl(kPrimary, [&](MyConn& c) { return ColumnsWithDefault(c, primary_db_, t.id.name); });
  };
  TableOf read;
  if (!as_read.empty())
    read = [&as_read, this](const TableId& target) -> TablePtr {
      auto it = as_read.find(TableId{s_.target_db, target.name});
      return it == as_read.end() ? nullptr : it->second;
    };
  auto inverse = InverseTransforms(*s_.transforms, read, defaulted);
  if (!inverse.ok())
    return OperatorError("reverse replication cannot start: " + inverse.status().message());
  return std::move(*inverse);
}

std::vector<GateCheck> MyReplication::SwitchChecks(Side to, bool reverse_needed) {
  (void)to;
  std::vector<GateCheck> out;
  if (!reverse_needed || s_.transforms->empty()) return out;
  MutexLock lock(&control_mu_);
  auto inverse = Inverses({});
  out.push_back(inverse.ok() ? GatePass("reverse transforms", fmt::format("{} transformed table(s) can be carried back",
                                                                          s_.transforms->size()))
                             : GateFail("reverse transforms", inverse.status().message()));
  return out;
}

Result<const std::map<std::string, std::string>*> MyReplication::AutoIncrementColumns(Ctl which) {
  // Which columns are AUTO_INCREMENT does not change while replicating (a DDL
  // statement stops the flow): read once per side, outside the write pause
  // (PrepareSwitch). information_schema.COLUMNS is slow to read (a third of a
  // second on a quiet server), TABLES with the names listed is not.
  const int i = which == kTarget ? 1 : 0;
  if (ai_columns_[i]) return &*ai_columns_[i];
  const std::string& db = which == kTarget ? s_.target_db : (which == kPrimary ? primary_db_ : s_.source_db);
  ASSIGN_OR_RETURN(MyResult r, OnControl(which, [&](MyConn& c) {
                     return c.Query(fmt::format(
                         "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} AND "
                         "TABLE_NAME IN ({}) AND EXTRA LIKE '%auto_increment%'",
                         QuoteString(db), TableList(which)));
                   }));
  std::map<std::string, std::string> source_name;  // name on `which` -> on the source
  for (const auto& [id, t] : s_.tables) source_name[NameOn(which, id)] = id.name;
  std::map<std::string, std::string> cols;
  for (int k = 0; k < r.rows(); ++k) cols[source_name[r.Get(k, 0)]] = r.Get(k, 1);
  ai_columns_[i] = std::move(cols);
  return &*ai_columns_[i];
}

Status MyReplication::SyncSequences(Side from) {
  MutexLock lock(&control_mu_);
  if (s_.tables.empty()) return Status::Ok();
  // The side being moved to, and the side moved from (the reader for the
  // source: its counters follow the primary's through replication, and a
  // migration that never switches never connects to the primary).
  const Ctl to = from == Side::kSource ? kTarget : kPrimary;
  const Ctl of = from == Side::kSource ? kReader : kTarget;
  const std::string& to_db = from == Side::kSource ? s_.target_db : primary_db_;
  const std::string& of_db = from == Side::kSource ? s_.source_db : s_.target_db;
  ASSIGN_OR_RETURN(const auto* columns, AutoIncrementColumns(to));
  if (columns->empty()) return Status::Ok();
  // Tables by their source name; each side may call one otherwise (a transform's rename).
  auto name_on = [this](Ctl which, const std::string& table) { return NameOn(which, TableId{s_.source_db, table}); };
  auto counters_of = [&](Ctl which, const std::string& db) -> Result<std::map<std::string, uint64_t>> {
    ASSIGN_OR_RETURN(MyResult r, OnControl(which, [&](MyConn& c) {
                       return c.Query(fmt::format("SELECT TABLE_NAME, COALESCE(AUTO_INCREMENT, 0) FROM "
                                                  "information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_NAME IN ({})",
                                                  QuoteString(db), TableList(which)));
                     }));
    std::map<std::string, std::string> source_name;
    for (const auto& [id, t] : s_.tables) source_name[NameOn(which, id)] = id.name;
    std::map<std::string, uint64_t> out;
    for (int k = 0; k < r.rows(); ++k) {
      uint64_t v = 0;
      if (ParseU64(r.Get(k, 1), &v)) out[source_name[r.Get(k, 0)]] = v;
    }
    return out;
  };
  ASSIGN_OR_RETURN(auto now, counters_of(to, to_db));
  // The largest key in use per table (an index lookup each), in one statement.
  std::vector<std::string> maxes;
  for (const auto& [table, column] : *columns)
    maxes.push_back(fmt::format("SELECT {}, COALESCE(MAX({}), 0) FROM {}", QuoteString(table), QuoteIdent(column),
                                QuoteQualified(to_db, name_on(to, table))));
  ASSIGN_OR_RETURN(MyResult used, OnControl(to, [&](MyConn& c) {
                     return c.Query(fmt::format("{}", fmt::join(maxes, " UNION ALL ")));
                   }));
  std::map<std::string, uint64_t> want;
  for (int k = 0; k < used.rows(); ++k) {
    uint64_t max = 0;
    if (ParseU64(used.Get(k, 1), &max)) want[used.Get(k, 0)] = max + 1;
  }
  // The side moved from may be further on (rows deleted at the top, a
  // counter raised by hand): its counter too, so no key is handed out twice.
  ASSIGN_OR_RETURN(auto theirs, counters_of(of, of_db));
  int raised = 0;
  for (const auto& [table, column] : *columns) {
    const uint64_t w = std::max({uint64_t{1}, want[table], theirs.count(table) ? theirs[table] : 0});
    const uint64_t have = now.count(table) ? now[table] : 0;
    if (have >= w) continue;
    const std::string name = name_on(to, table);
    const std::string alter = fmt::format("ALTER TABLE {} AUTO_INCREMENT = {}", QuoteQualified(to_db, name), w);
    RETURN_IF_ERROR(OnControl(to, [&alter](MyConn& c) -> Result<bool> {
                      RETURN_IF_ERROR(c.Exec(alter));
                      return true;
                    }).status().WithContext(fmt::format("{}: raising AUTO_INCREMENT of {}.{} from {} to {}",
                                                        SideName(to), to_db, name, have, w)));
    ++raised;
  }
  if (raised) LOG_INFO("AUTO_INCREMENT raised on {} table(s) of the {}", raised, SideName(to));
  return Status::Ok();
}

Status MyReplication::WritesGoTo(Side to) {
  // The events run where the applications write: those ENABLED on the side
  // left are disabled there and enabled on `to` (the target got them all
  // DISABLED). Which ones move is kept in the state store (mysql_events):
  // once disabled on the side left, its catalog no longer tells, and a
  // resumed run or a rollback must move the same ones back. Disabling comes
  // first, so no event ever runs on both sides.
  MutexLock lock(&control_mu_);
  const Ctl on = to == Side::kTarget ? kTarget : kPrimary;
  const Ctl off = to == Side::kTarget ? kPrimary : kTarget;
  const std::string& on_db = to == Side::kTarget ? s_.target_db : primary_db_;
  const std::string& off_db = to == Side::kTarget ? primary_db_ : s_.target_db;
  ASSIGN_OR_RETURN(auto off_events, OnControl(off, [&](MyConn& c) { return ListEvents(c, off_db); }));
  std::set<std::string> moving;
  {
    const std::string kept = s_.store->Get("mysql_events").value_or("");
    for (size_t at = 0; at < kept.size();) {
      size_t end = kept.find('\n', at);
      if (end == std::string::npos) end = kept.size();
      if (end > at) moving.insert(kept.substr(at, end - at));
      at = end + 1;
    }
  }
  const size_t known = moving.size();
  for (const auto& e : off_events)
    if (e.status == "ENABLED") moving.insert(e.name);
  if (moving.empty()) return Status::Ok();
  if (moving.size() != known)
    RETURN_IF_ERROR(s_.store->Put("mysql_events", fmt::format("{}", fmt::join(moving, "\n"))));
  ASSIGN_OR_RETURN(auto on_events, OnControl(on, [&](MyConn& c) { return ListEvents(c, on_db); }));
  std::vector<std::string> disabled, enabled;
  for (const auto& e : off_events) {
    if (!moving.count(e.name) || e.status != "ENABLED") continue;
    RETURN_IF_ERROR(OnControl(off, [&](MyConn& c) -> Result<bool> {
                      RETURN_IF_ERROR(SetEventEnabled(c, off_db, e, false));
                      return true;
                    }).status().WithContext(SideName(off)));
    disabled.push_back(e.name);
  }
  for (const auto& name : moving) {
    auto it = std::find_if(on_events.begin(), on_events.end(), [&](const SchemaObject& e) { return e.name == name; });
    if (it == on_events.end())
      return OperatorError(fmt::format("event {}.{} runs on the {} but does not exist on the {} (created after the "
                                       "schema was copied?): create it there DISABLED, or drop it, then switch again",
                                       off_db, name, SideName(off), SideName(on)));
    if (it->status == "ENABLED") continue;
    RETURN_IF_ERROR(OnControl(on, [&](MyConn& c) -> Result<bool> {
                      RETURN_IF_ERROR(SetEventEnabled(c, on_db, *it, true));
                      return true;
                    }).status().WithContext(SideName(on)));
    enabled.push_back(name);
  }
  if (!enabled.empty()) {
    auto scheduler = OnControl(on, [](MyConn& c) { return c.QueryValue("SELECT @@event_scheduler"); });
    if (scheduler.ok() && *scheduler != "ON")
      LOG_WARN("events {} are enabled on the {}, but its event_scheduler is {}: they do not run until SET GLOBAL "
               "event_scheduler = ON there",
               fmt::join(enabled, ", "), SideName(on), *scheduler);
  }
  if (!disabled.empty() || !enabled.empty())
    LOG_INFO("events: enabled on the {}: {}; disabled on the {}: {}", SideName(on),
             enabled.empty() ? "none" : fmt::format("{}", fmt::join(enabled, ", ")), SideName(off),
             disabled.empty() ? "none" : fmt::format("{}", fmt::join(disabled, ", ")));
  return Status::Ok();
}

std::vector<std::string> MyReplication::CleanUpOnComplete() {
  MutexLock lock(&control_mu_);
  std::vector<std::string> done;
  // midflight's bookkeeping rows of this migration; the database itself when
  // nothing else (another migration) is left in it.
  auto clean = [&](Ctl which, const std::string& key, const std::string& side) {
    auto r = OnControl(which, [&](MyConn& c) -> Result<std::string> {
      ASSIGN_OR_RETURN(std::string exists, c.QueryValue("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE "
                                                        "SCHEMA_NAME = 'midflight'"));
      if (exists == "0") return std::string();
      RETURN_IF_ERROR(c.Exec(fmt::format("DELETE FROM midflight.checkpoints WHERE migration = {}", QuoteString(key))));
      RETURN_IF_ERROR(c.Exec(fmt::format("DELETE FROM midflight.chunks WHERE migration = {}", QuoteString(key))));
      ASSIGN_OR_RETURN(std::string left, c.QueryValue("SELECT (SELECT COUNT(*) FROM midflight.checkpoints) + "
                                                      "(SELECT COUNT(*) FROM midflight.chunks)"));
      if (left != "0")
        return fmt::format("{}: midflight.checkpoints and midflight.chunks rows of {} (other migrations' rows stay)",
                           side, key);
      RETURN_IF_ERROR(c.Exec("DROP DATABASE midflight"));
      return fmt::format("{}: the midflight database (checkpoints of {})", side, key);
    });
    if (!r.ok()) {
      LOG_WARN("complete: removing midflight's bookkeeping on the {}: {}", side, r.status().message());
      done.push_back(fmt::format("{}: nothing (failed: {}; drop midflight.checkpoints rows of {} by hand)", side,
                                 r.status().message(), key));
    } else if (!r->empty()) {
      done.push_back(*r);
    }
  };
  clean(kTarget, spec_.name, "target");
  if (s_.store->Get("reverse_started").value_or("") == "true") clean(kPrimary, reverse_key(), SideName(kPrimary));
  return done;
}

}  // namespace

std::unique_ptr<MyReplicationOps> MyReplicationOps::New(ReplicationSetup setup) {
  return std::make_unique<MyReplication>(std::move(setup));
}

void RefreshBinlogSizes(MyConn& conn, uint64_t current, BinlogSizes& sizes) {
  if (current == 0 || !sizes.NeedsRead(current)) return;
  auto r = conn.Query("SHOW BINARY LOGS");
  if (!r.ok()) return;  // read again next time
  std::map<uint32_t, uint64_t> listed;
  for (int k = 0; k < r->rows(); ++k) {
    uint64_t bytes = 0;
    if (auto n = ParseBinlogFileNumber(r->Get(k, 0)); n && ParseU64(r->Get(k, 1), &bytes)) listed[*n] = bytes;
  }
  sizes.Set(current, std::move(listed));
}

uint64_t MasterPosition(MyConn& conn, std::string* base) {
  auto r = conn.Query("SHOW MASTER STATUS");
  if (!r.ok() || r->rows() == 0) return 0;
  auto n = ParseBinlogFileNumber(r->Get(0, 0));
  if (base) *base = BinlogBaseName(r->Get(0, 0));
  return n ? EncodeBinlogPos(*n, static_cast<uint32_t>(r->GetInt(0, 1))) : 0;
}

}  // namespace midflight::mysql
