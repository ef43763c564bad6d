#include "target/mysql/my_applier.h"

#include <fmt/format.h>
#include <mysql.h>

#include <algorithm>
#include <map>
#include <set>

#include "base/parse.h"
#include "mysql/my_conn.h"
#include "source/mysql/catalog.h"

namespace midflight::mysql {

namespace {

// Statements are closed at about this size, whatever the batch size.
constexpr size_t kStatementBytes = 1 << 20;

Result<std::string> Literal(const ColumnSchema& col, const Datum& d) {
  if (d.is_null()) return std::string("NULL");
  if (d.is_unchanged())
    return DataLoss(fmt::format("column {} has no value in the row image (is binlog_row_image FULL?)", col.name));
  switch (LiteralKindOf(col)) {
    case LiteralKind::kNumber: {
      bool ok = !d.text.empty();
      for (char c : d.text) ok = ok && ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E');
      if (!ok) return DataLoss(fmt::format("column {}: '{}' is not a number", col.name, d.text.substr(0, 40)));
      return d.text;
    }
    case LiteralKind::kQuoted:
      return QuoteString(d.text);
    case LiteralKind::kText:
      return "_" + col.type.charset + " " + HexLiteral(d.text);
    case LiteralKind::kBinary:
      return HexLiteral(d.text);
  }
  return HexLiteral(d.text);
}

std::string KeyForMessage(const Change& c) {
  std::string key = c.KeyText();
  for (auto& k : key)
    if (k == '\x1f') k = ',';
  return fmt::format("{}=({})", c.table->KeyDescription(), key.substr(0, 200));
}

class Planner {
 public:
  explicit Planner(const std::string& db) : db_(db) {}

  // Appends the statements that apply `changes` (one table's, in order) to `out`.
  Status Plan(std::span<const Change> changes, std::vector<std::string>* out, std::vector<std::string>* what) {
    std::vector<const TableSchema*> order;
    std::map<const TableSchema*, std::vector<const Change*>> by_table;
    for (const Change& c : changes) {
      auto& v = by_table[c.table.get()];
      if (v.empty()) order.push_back(c.table.get());
      v.push_back(&c);
    }
    for (const TableSchema* t : order) {
      const auto& list = by_table[t];
      if (t->routing() == RoutingMode::kByKey) {
        std::vector<const Change*> deletes, upserts;
        for (const Change* c : list) (c->kind == ChangeKind::kDelete ? deletes : upserts).push_back(c);
        RETURN_IF_ERROR(Deletes(*t, deletes, out, what));
        RETURN_IF_ERROR(Upserts(*t, upserts, out, what));
        continue;
      }
      // In stream order; consecutive upserts of distinct keys go together.
      std::vector<const Change*> run;
      std::set<std::string> keys;
      for (const Change* c : list) {
        if (c->kind != ChangeKind::kDelete && keys.insert(c->KeyText()).second) {
          run.push_back(c);
          continue;
        }
        RETURN_IF_ERROR(Upserts(*t, run, out, what));
        run.clear();
        keys.clear();
        if (c->kind == ChangeKind::kDelete) {
          RETURN_IF_ERROR(Deletes(*t, {c}, out, what));
        } else {
          run.push_back(c);
          keys.insert(c->KeyText());
        }
      }
      RETURN_IF_ERROR(Upserts(*t, run, out, what));
    }
    return Status::Ok();
  }

 private:
  std::string Table(const TableSchema& t) const { return QuoteQualified(db_, t.id.name); }

  Status Upserts(const TableSchema& t, const std::vector<const Change*>& list, std::vector<std::string>* out,
                 std::vector<std::string>* what) {
    if (list.empty()) return Status::Ok();
    std::vector<int> cols;  // positions in the image of the columns written
    std::string head = fmt::format("INSERT INTO {} (", Table(t));
    std::string tail = " ON DUPLICATE KEY UPDATE ";
    bool first = true;
    for (size_t i = 0; i < t.writable.size(); ++i) {
      const ColumnSchema& c = t.columns[t.writable[i]];
      if (c.generated) continue;
      cols.push_back(static_cast<int>(i));
      const std::string q = QuoteIdent(c.name);
      head += (first ? "" : ", ") + q;
      tail += fmt::format("{}{} = VALUES({})", first ? "" : ", ", q, q);
      first = false;
    }
    head += ") VALUES ";
    std::string sql;
    const Change* first_change = nullptr;
    for (const Change* ch : list) {
      if (ch->values.size() != t.writable.size())
        return DataLoss(fmt::format("{} at {}: row image has {} columns, table {} has {}", t.id.ToString(),
                                    ch->pos.ToString(), ch->values.size(), t.id.ToString(), t.writable.size()));
      std::string row = "(";
      for (size_t k = 0; k < cols.size(); ++k) {
        auto lit = Literal(t.columns[t.writable[cols[k]]], ch->values[cols[k]]);
        if (!lit.ok()) return lit.status().WithContext(fmt::format("table {} key {}", t.id.ToString(), KeyForMessage(*ch)));
        if (k) row += ", ";
        row += *lit;
      }
      row += ")";
      if (sql.empty()) {
        sql = head;
        first_change = ch;
      } else {
        sql += ", ";
      }
      sql += row;
      if (sql.size() >= kStatementBytes) {
        Emit(t, sql + tail, first_change, out, what);
        sql.clear();
      }
    }
    if (!sql.empty()) Emit(t, sql + tail, first_change, out, what);
    return Status::Ok();
  }

  Status Deletes(const TableSchema& t, const std::vector<const Change*>& list, std::vector<std::string>* out,
                 std::vector<std::string>* what) {
    if (list.empty()) return Status::Ok();
    std::vector<int> key = t.key_writable;
    if (key.empty())  // whole-row match (not reached: preflight refuses keyless tables)
      for (size_t i = 0; i < t.writable.size(); ++i) key.push_back(static_cast<int>(i));
    std::string cols;
    for (size_t k = 0; k < key.size(); ++k) cols += (k ? ", " : "") + QuoteIdent(t.columns[t.writable[key[k]]].name);
    const std::string head = fmt::format("DELETE FROM {} WHERE ({}) IN (", Table(t), cols);
    std::string sql;
    const Change* first_change = nullptr;
    for (const Change* ch : list) {
      const auto& image = ch->old.empty() ? ch->values : ch->old;
      std::string tuple = "(";
      for (size_t k = 0; k < key.size(); ++k) {
        auto lit = Literal(t.columns[t.writable[key[k]]], image.at(key[k]));
        if (!lit.ok()) return lit.status().WithContext(fmt::format("table {}", t.id.ToString()));
        if (k) tuple += ", ";
        tuple += *lit;
      }
      tuple += ")";
      if (sql.empty()) {
        sql = head;
        first_change = ch;
      } else {
        sql += ", ";
      }
      sql += tuple;
      if (sql.size() >= kStatementBytes) {
        Emit(t, sql + ")", first_change, out, what);
        sql.clear();
      }
    }
    if (!sql.empty()) Emit(t, sql + ")", first_change, out, what);
    return Status::Ok();
  }

  static void Emit(const TableSchema& t, std::string sql, const Change* first, std::vector<std::string>* out,
                   std::vector<std::string>* what) {
    out->push_back(std::move(sql));
    what->push_back(fmt::format("applying changes to {} (first key {} at {})", t.id.ToString(), KeyForMessage(*first),
                                first->pos.ToString()));
  }

  const std::string& db_;
};

}  // namespace

MyChangeSink::MyChangeSink(std::string uri, std::string db, std::string migration, PartitionId p)
    : uri_(std::move(uri)), db_(std::move(db)), migration_(std::move(migration)), partition_(p) {}

MyChangeSink::~MyChangeSink() = default;

Result<std::unique_ptr<MyChangeSink>> MyChangeSink::Open(const std::string& target_uri, const std::string& target_db,
                                                         const std::string& migration, PartitionId partition) {
  std::unique_ptr<MyChangeSink> sink(new MyChangeSink(target_uri, target_db, migration, partition));
  RETURN_IF_ERROR(sink->Connect());
  return sink;
}

Status MyChangeSink::Reconnect() {
  if (target_lost_) {
    conn_.reset();
    target_lost_->store(true);
    return RetryCall(fmt::format("apply partition {}: target connection lost; the flow restarts from the target's "
                                 "checkpoints",
                                 partition_.value));
  }
  return Connect();
}

Status MyChangeSink::Connect() {
  conn_.reset();
  ConnOptions o;
  o.program_name = fmt::format("midflight-apply-{}", partition_.value);
  ASSIGN_OR_RETURN(conn_, MyConn::Connect(uri_, o));
  RETURN_IF_ERROR(conn_->Exec("SET foreign_key_checks = 0, innodb_lock_wait_timeout = 10, autocommit = 1"));
  ASSIGN_OR_RETURN(std::string packet, conn_->QueryValue("SELECT @@max_allowed_packet"));
  max_packet_ = std::min<size_t>(std::stoull(packet), 64u << 20);
  return Status::Ok();
}

Result<ChangePosition> MyChangeSink::LoadCheckpoint() {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  ASSIGN_OR_RETURN(MyResult r, conn_->Query(fmt::format(
      "SELECT commit_pos, seq FROM midflight.checkpoints WHERE migration = {} AND partition_id = {}",
      QuoteString(migration_), partition_.value)));
  if (r.rows() == 0) return ChangePosition{};
  return ChangePosition{PgLsn::FromU64(std::stoull(r.Get(0, 0))), static_cast<uint32_t>(r.GetInt(0, 1))};
}

namespace {

// A partition's checkpoint, and (restart > 0) the batch's restart marker;
// the marker never moves back.
std::string CheckpointSql(const std::string& migration, uint32_t partition, ChangePosition cp, uint64_t restart) {
  return fmt::format(
      "INSERT INTO midflight.checkpoints (migration, partition_id, commit_pos, seq, restart_pos, updated_at) VALUES "
      "({}, {}, {}, {}, {}, NOW(6)) ON DUPLICATE KEY UPDATE commit_pos = VALUES(commit_pos), seq = VALUES(seq), "
      "restart_pos = GREATEST(restart_pos, VALUES(restart_pos)), updated_at = VALUES(updated_at)",
      QuoteString(migration), partition, cp.commit_lsn.value(), cp.seq, restart);
}

}  // namespace

// Runs `statements` in one transaction, as few multi-statement packets as
// fit under the target's max_allowed_packet. On failure everything is rolled
// back and the status names the statement's table and first key.
Status MyChangeSink::Execute(const std::vector<std::string>& statements, const std::vector<std::string>& what) {
  const size_t budget = max_packet_ / 2;
  std::string packet = "START TRANSACTION";
  std::vector<size_t> owners = {SIZE_MAX};
  MYSQL* m = conn_->raw();
  auto fail = [&](Status st) {
    if (!conn_->IsBroken()) (void)conn_->Exec("ROLLBACK");
    return st;
  };
  auto flush = [&](bool commit) -> Status {
    if (commit) {
      packet += ";COMMIT";
      owners.push_back(SIZE_MAX);
    }
    size_t k = 0;
    int rc = mysql_real_query(m, packet.data(), packet.size());
    while (rc == 0) {
      if (MYSQL_RES* r = mysql_store_result(m)) mysql_free_result(r);
      int more = mysql_next_result(m);
      if (more < 0) break;
      ++k;
      rc = more;
    }
    if (rc != 0) {
      std::string where = k < owners.size() && owners[k] != SIZE_MAX ? what[owners[k]] : "applying a batch";
      return fail(conn_->LastError(where));
    }
    packet.clear();
    owners.clear();
    return Status::Ok();
  };
  for (size_t j = 0; j < statements.size(); ++j) {
    const std::string& s = statements[j];
    if (s.size() + 64 > max_packet_)
      return fail(OperatorError(fmt::format("{}: one row needs a {} byte statement, over the target's "
                                            "max_allowed_packet ({}); raise it on the target",
                                            what[j], s.size(), max_packet_)));
    if (!packet.empty() && packet.size() + s.size() + 16 > budget) RETURN_IF_ERROR(flush(false));
    if (!packet.empty()) packet += ";";
    packet += s;
    owners.push_back(j);
  }
  return flush(true);
}

Status MyChangeSink::ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint) {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  std::vector<std::string> statements, what;
  Planner planner(db_);
  RETURN_IF_ERROR(planner.Plan(changes, &statements, &what));
  // Taken before the batch commits: every change below it committed already.
  const uint64_t restart = restart_source_ ? restart_source_() : 0;
  statements.push_back(CheckpointSql(migration_, partition_.value, checkpoint, restart));
  what.push_back("saving the checkpoint");
  return Execute(statements, what);
}

Status MyChangeSink::ApplyBarrier(const Change& change, uint32_t partitions) {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  std::vector<std::string> statements, what;
  if (change.kind == ChangeKind::kTruncate) {
    // DELETE, not TRUNCATE: TRUNCATE commits implicitly, and the checkpoints must commit with it.
    for (const auto& t : change.truncated) {
      statements.push_back(fmt::format("DELETE FROM {}", QuoteQualified(db_, t->id.name)));
      what.push_back(fmt::format("emptying {} (a truncate at {})", t->id.ToString(), change.pos.ToString()));
    }
  } else {
    Planner planner(db_);
    RETURN_IF_ERROR(planner.Plan(std::span<const Change>(&change, 1), &statements, &what));
  }
  for (uint32_t p = 0; p < partitions; ++p) {
    statements.push_back(CheckpointSql(migration_, p, change.pos, 0));
    what.push_back("saving the checkpoints");
  }
  return Execute(statements, what);
}

Result<RestartMarker> LoadRestartMarker(MyConn& target, const std::string& migration) {
  ASSIGN_OR_RETURN(MyResult r, target.Query(fmt::format(
      "SELECT COALESCE(MAX(restart_pos), 0), COUNT(*) FROM midflight.checkpoints WHERE migration = {} AND "
      "commit_pos > 0",
      QuoteString(migration))));
  RestartMarker out;
  if (r.rows() == 0) return out;
  if (!ParseU64(r.Get(0, 0), &out.position))
    return Internal(fmt::format("midflight.checkpoints on the target: restart_pos '{}' is not a position", r.Get(0, 0)));
  out.any_applied = r.GetInt(0, 1) > 0;
  return out;
}

}  // namespace midflight::mysql
