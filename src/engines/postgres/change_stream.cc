#include "engines/postgres/change_stream.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <sys/select.h>

#include <chrono>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "engines/postgres/pg_conn.h"
#include "engines/postgres/pgoutput.h"

namespace midflight::pg {
namespace {


PGconn* Conn(void* p) { return static_cast<PGconn*>(p); }

// Moves the decoded values out of the tuple (no copy of the text).
std::vector<Datum> ToDatums(PgTuple& tuple) {
  std::vector<Datum> out;
  out.reserve(tuple.columns.size());
  for (auto& c : tuple.columns) {
    switch (c.kind) {
      case PgColumnValue::Kind::kNull: out.push_back(Datum::Null()); break;
      case PgColumnValue::Kind::kUnchangedToast: out.push_back(Datum::Unchanged()); break;
      case PgColumnValue::Kind::kText:
      case PgColumnValue::Kind::kBinary: out.push_back(Datum::Text(std::move(c.data))); break;
    }
  }
  return out;
}

}  // namespace

ChangeStream::ChangeStream(StreamConfig config) : config_(std::move(config)) {}

ChangeStream::~ChangeStream() = default;

namespace {
Result<std::unique_ptr<PgConn>> ReplicationConnect(const StreamConfig& config) {
  ConnOptions o;
  o.kind = ConnKind::kReplication;
  o.application_name = config.application_name;
  return PgConn::Connect(config.source_uri, o);
}
}  // namespace

void ChangeStream::Prepare() {
  auto pc = ReplicationConnect(config_);
  if (pc.ok()) prepared_ = std::move(*pc);
}

Status ChangeStream::Stream(Sequencer& seq, StopRef stop) {
  std::unique_ptr<PgConn> pc = std::move(prepared_);
  if (!pc || pc->IsBroken()) {
    ASSIGN_OR_RETURN(pc, ReplicationConnect(config_));
  }
  // pc owns the connection and closes it when this call returns.
  conn_ = pc->raw();
  struct ForgetConn {
    void*& conn;
    ~ForgetConn() { conn = nullptr; }
  } forget{conn_};
  std::string start = fmt::format(
      "START_REPLICATION SLOT {} LOGICAL 0/0 (proto_version '1', publication_names {})", QuoteIdent(config_.slot),
      QuoteLiteral(QuoteIdent(config_.publication)));
  PGresult* r = PQexec(Conn(conn_), start.c_str());
  if (PQresultStatus(r) != PGRES_COPY_BOTH) {
    Status st = StatusFromResult(Conn(conn_), r, "START_REPLICATION on slot " + config_.slot);
    PQclear(r);
    return st;
  }
  PQclear(r);
  seq.stats().connected = true;
  relations_.clear();
  skip_txn_ = false;
  LOG_INFO("change stream: streaming from slot {}", config_.slot);
  Status result;
  int burst = 0;  // messages read since the socket was last found empty
  while (!stop) {
    char* buf = nullptr;
    int n = PQgetCopyData(Conn(conn_), &buf, /*async=*/1);
    if (n == 0) {
      if (poke_.exchange(false)) RETURN_IF_ERROR(SendFeedback(seq, true));
      RETURN_IF_ERROR(SendFeedback(seq, false));
      RETURN_IF_ERROR(seq.Idle(0));
      // Reading a backlog: let the server fill the socket for a moment
      // rather than waking for every few messages.
      if (burst > 64) std::this_thread::sleep_for(std::chrono::microseconds(500));
      burst = 0;
      int sock = PQsocket(Conn(conn_));
      fd_set fds;
      FD_ZERO(&fds);
      FD_SET(sock, &fds);
      timeval tv{0, 10000};  // 10 ms: a poke (switch, verify) is answered quickly
      if (select(sock + 1, &fds, nullptr, nullptr, &tv) < 0 && errno != EINTR) {
        result = RetryCall("change stream: select failed");
        break;
      }
      if (!PQconsumeInput(Conn(conn_))) {
        result = StatusFromResult(Conn(conn_), nullptr, "change stream");
        if (result.code() != StatusCode::kRetryCall) result = RetryCall(result.message());
        break;
      }
      continue;
    }
    if (n == -1) {
      PGresult* end = PQgetResult(Conn(conn_));
      result = RetryCall(fmt::format("change stream ended by the server: {}", end ? PQresultErrorMessage(end) : ""));
      if (end) PQclear(end);
      break;
    }
    if (n == -2) {
      result = StatusFromResult(Conn(conn_), nullptr, "change stream");
      if (result.code() != StatusCode::kRetryCall) result = RetryCall(result.message());
      break;
    }
    ++burst;
    auto frame = DecodeReplicationFrame(std::span<const uint8_t>(reinterpret_cast<uint8_t*>(buf), n));
    if (!frame.ok()) {
      PQfreemem(buf);
      result = frame.status();
      break;
    }
    Status st;
    if (auto* x = std::get_if<XLogData>(&*frame)) {
      st = Handle(seq, x->payload);
    } else {
      const auto& k = std::get<PrimaryKeepalive>(*frame);
      st = seq.Idle(k.wal_end);
      if (st.ok() && k.reply_requested) st = SendFeedback(seq, true);
    }
    PQfreemem(buf);
    if (!st.ok()) {
      result = st;
      break;
    }
  }
  if (stop && result.ok()) (void)SendFeedback(seq, true);  // best effort: the next run resends
  return result;
}

Status ChangeStream::SendFeedback(Sequencer& seq, bool force) {
  int64_t now = NowMonotonicMs();
  if (!force && now - last_feedback_ms_ < 1000) return Status::Ok();
  last_feedback_ms_ = now;
  const uint64_t flush = config_.durable ? config_.durable(seq.Confirmable()) : seq.Confirmable();
  // Ask for a keepalive back: it carries how far the server has decoded, so an
  // idle stream still shows it is caught up.
  auto msg = EncodeStandbyStatus(flush, flush, flush, NowUnixMicros() - kPgEpochOffsetMicros, true);
  if (PQputCopyData(Conn(conn_), reinterpret_cast<const char*>(msg.data()), static_cast<int>(msg.size())) != 1 ||
      PQflush(Conn(conn_)) != 0)
    return RetryCall(fmt::format("change stream: sending feedback failed: {}", PQerrorMessage(Conn(conn_))));
  seq.Confirmed(flush);
  return Status::Ok();
}

Status ChangeStream::Handle(Sequencer& seq, std::span<const uint8_t> payload) {
  ASSIGN_OR_RETURN(PgOutputMessage msg, DecodePgOutput(payload));
  if (auto* b = std::get_if<PgBegin>(&msg)) {
    skip_txn_ = false;
    txn_lsn_ = PgLsn::FromU64(b->final_lsn);
    seq.Begin(Position::Pg(b->final_lsn), b->commit_time + kPgEpochOffsetMicros);
    return Status::Ok();
  }
  if (auto* c = std::get_if<PgCommit>(&msg)) {
    skip_txn_ = false;
    return seq.Commit(c->end_lsn);
  }
  if (auto* rel = std::get_if<PgRelation>(&msg)) {
    TableId id{rel->namespace_name, rel->relation_name};
    auto it = config_.tables.find(id);
    if (it == config_.tables.end()) {
      relations_[rel->relation_id] = Relation{nullptr};
      return Status::Ok();
    }
    ASSIGN_OR_RETURN(auto layout, LayoutFor(*rel, *it->second));
    relations_[rel->relation_id] = Relation{std::move(layout)};
    return Status::Ok();
  }
  if (auto* o = std::get_if<PgOrigin>(&msg)) {
    if (!config_.skip_origin_prefix.empty() && o->name.starts_with(config_.skip_origin_prefix)) skip_txn_ = true;
    return Status::Ok();
  }
  if (skip_txn_) {
    if (std::holds_alternative<PgInsert>(msg) || std::holds_alternative<PgUpdate>(msg) ||
        std::holds_alternative<PgDelete>(msg) || std::holds_alternative<PgTruncate>(msg)) {
      seq.stats().skipped.fetch_add(1, std::memory_order_relaxed);
      return Status::Ok();
    }
  }
  auto table_of = [&](uint32_t relid) -> Result<std::shared_ptr<const TableSchema>> {
    auto it = relations_.find(relid);
    if (it == relations_.end())
      return DataLoss(fmt::format("change stream: change for relation {} before its Relation message at {}", relid,
                                  txn_lsn_.ToString()));
    return it->second.table;
  };
  auto base = [&](ChangeKind kind, std::shared_ptr<const TableSchema> t) {
    Change c;
    c.kind = kind;
    c.table = std::move(t);
    return c;
  };
  if (auto* ins = std::get_if<PgInsert>(&msg)) {
    ASSIGN_OR_RETURN(auto t, table_of(ins->relation_id));
    if (!t) return Status::Ok();
    Change c = base(ChangeKind::kInsert, t);
    c.values = ToDatums(ins->new_tuple);
    return seq.Emit(std::move(c));
  }
  if (auto* up = std::get_if<PgUpdate>(&msg)) {
    ASSIGN_OR_RETURN(auto t, table_of(up->relation_id));
    if (!t) return Status::Ok();
    Change c = base(ChangeKind::kUpdate, t);
    c.values = ToDatums(up->new_tuple);
    if (up->old_tuple) c.old = ToDatums(*up->old_tuple);
    return seq.Emit(std::move(c));  // a key move is split (or made a barrier) there
  }
  if (auto* del = std::get_if<PgDelete>(&msg)) {
    ASSIGN_OR_RETURN(auto t, table_of(del->relation_id));
    if (!t) return Status::Ok();
    Change c = base(ChangeKind::kDelete, t);
    c.old = ToDatums(del->old_tuple);
    return seq.Emit(std::move(c));
  }
  if (auto* tr = std::get_if<PgTruncate>(&msg)) {
    Change c;
    c.kind = ChangeKind::kTruncate;
    c.truncate_restart_identity = (tr->options & 2) != 0;
    for (uint32_t relid : tr->relation_ids) {
      ASSIGN_OR_RETURN(auto t, table_of(relid));
      if (t) c.truncated.push_back(t);
    }
    if (c.truncated.empty()) return Status::Ok();
    c.table = c.truncated.front();
    return seq.Emit(std::move(c));
  }
  return Status::Ok();  // Type, Message: nothing to apply
}

Result<std::shared_ptr<const TableSchema>> ChangeStream::LayoutFor(const PgRelation& rel, const TableSchema& base) {
  auto& known = layouts_[base.id];
  for (const auto& v : known) {
    bool same = v->columns.size() == rel.columns.size();
    for (size_t i = 0; same && i < rel.columns.size(); ++i)
      same = v->columns[i].name == rel.columns[i].name && v->columns[i].type.native_oid == rel.columns[i].type_oid;
    if (same) return v;
  }
  // A layout not seen yet: the first one of this session, or a schema change
  // on the source. Every column it sends must exist on the target.
  std::string cols;
  for (const auto& c : rel.columns) cols += (cols.empty() ? "" : ", ") + c.name;
  ASSIGN_OR_RETURN(std::vector<ColumnSchema> target, config_.target_columns(base.id));
  auto layout = std::make_shared<TableSchema>(base);
  layout->columns.clear();
  layout->key.clear();
  layout->version = static_cast<int>(known.size()) + 1;
  for (const auto& rc : rel.columns) {
    const ColumnSchema* on_target = nullptr;
    for (const auto& tc : target)
      if (tc.name == rc.name) on_target = &tc;
    if (!on_target)
      return OperatorError(fmt::format(
          "schema change on the source: {} now has columns ({}) at {}, and the target has no column {}; apply the "
          "same change to the target, then run again",
          base.id.ToString(), cols, txn_lsn_.ToString(), rc.name));
    ColumnSchema c = *on_target;
    c.type.native_oid = rc.type_oid;
    layout->columns.push_back(std::move(c));
  }
  for (int k : base.key) {
    int idx = layout->ColumnIndex(base.columns[k].name);
    if (idx < 0)
      return OperatorError(fmt::format("schema change on the source: key column {} of {} is gone at {}",
                                       base.columns[k].name, base.id.ToString(), txn_lsn_.ToString()));
    layout->key.push_back(idx);
  }
  layout->Finalize();
  if (!known.empty())
    LOG_WARN("change stream: {} changed on the source at {}: columns now ({}); the target has them, continuing",
             base.id.ToString(), txn_lsn_.ToString(), cols);
  known.push_back(layout);
  return std::shared_ptr<const TableSchema>(layout);
}

}  // namespace midflight::pg
