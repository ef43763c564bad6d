#include "engines/mysql/my_applier.h"

#include <fmt/format.h>
#include <mysql.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <set>

#include "base/log.h"
#include "base/parse.h"
#include "engines/mysql/my_conn.h"
#include "pipeline/batch.h"
#include "engines/mysql/catalog.h"
#include "pipeline/chunk_reset.h"

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

// A probe: a SELECT sent just before an apply statement, in the same packet,
// answering the 1-based ordinals (in `rows`) of the changes that conflict
// (pipeline/conflicts.h): rows that exist for an insert check, rows that do
// not for an update or delete check. Normally it answers nothing; it costs one
// primary-key lookup per row (the apply statement reads the same rows next).
struct ProbeRows {
  bool existed;  // the ordinals answered are of rows that existed
  std::vector<const Change*> rows;
};

class Planner {
 public:
  explicit Planner(const std::string& db) : db_(db) {}

  // probes()[i] belongs to the statement it was planned with (probe_of).
  std::vector<ProbeRows>& probes() { return probes_; }
  // Per statement planned: the probe it answers, or -1.
  std::vector<int>& probe_of() { return probe_of_; }

  // Appends the statements that apply `changes` (one table's, in order) to `out`.
  Status Plan(std::span<const Change> changes, std::vector<std::string>* out, std::vector<std::string>* what) {
    for (const auto& [t, list] : GroupByTable(changes)) {
      if (t->routing() == RoutingMode::kByKey) {
        // Keys are distinct: one statement per kind and ConflictCheck.
        std::array<std::vector<const Change*>, 4> deletes, upserts;
        for (const Change* c : list)
          (c->kind == ChangeKind::kDelete ? deletes : upserts)[static_cast<size_t>(c->check)].push_back(c);
        for (const auto& d : deletes) RETURN_IF_ERROR(Deletes(*t, d, out, what));
        for (const auto& u : upserts) RETURN_IF_ERROR(Upserts(*t, u, out, what));
        continue;
      }
      // In stream order; consecutive upserts of distinct keys (and one
      // ConflictCheck) go together.
      std::vector<const Change*> run;
      std::set<std::string> keys;
      for (const Change* c : list) {
        if (!run.empty() && c->kind != ChangeKind::kDelete && c->check != run.front()->check) {
          RETURN_IF_ERROR(Upserts(*t, run, out, what));
          run.clear();
          keys.clear();
        }
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
    std::vector<const Change*> chunk;
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
      sql += sql.empty() ? head : ", ";
      sql += row;
      chunk.push_back(ch);
      if (sql.size() >= kStatementBytes) {
        RETURN_IF_ERROR(Emit(t, sql + tail, chunk, out, what));
        sql.clear();
        chunk.clear();
      }
    }
    if (!sql.empty()) RETURN_IF_ERROR(Emit(t, sql + tail, chunk, out, what));
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
    std::vector<const Change*> chunk;
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
      sql += sql.empty() ? head : ", ";
      sql += tuple;
      chunk.push_back(ch);
      if (sql.size() >= kStatementBytes) {
        RETURN_IF_ERROR(Emit(t, sql + ")", chunk, out, what));
        sql.clear();
        chunk.clear();
      }
    }
    if (!sql.empty()) RETURN_IF_ERROR(Emit(t, sql + ")", chunk, out, what));
    return Status::Ok();
  }

  // Appends `sql`, which applies `rows` (one ConflictCheck), preceded by its
  // probe when they are checked:
  //   WITH mf_v (mf_n, k0, ..) AS (VALUES (1, <key>), (2, <key>) ..)
  //   SELECT mf_n FROM mf_v WHERE [NOT] EXISTS (SELECT 1 FROM t WHERE (key) = (mf_v.k0, ..))
  Status Emit(const TableSchema& t, std::string sql, const std::vector<const Change*>& rows,
              std::vector<std::string>* out, std::vector<std::string>* what) {
    const Change* first = rows.front();
    std::string where = fmt::format("applying changes to {} (first key {} at {})", t.id.ToString(),
                                    KeyForMessage(*first), first->pos.ToString());
    if (first->check != ConflictCheck::kNone && !t.key_writable.empty()) {
      const bool existed = first->check == ConflictCheck::kInsert;
      std::string names, cols, refs, values;
      for (size_t k = 0; k < t.key_writable.size(); ++k) {
        names += fmt::format(", k{}", k);
        cols += (k ? ", " : "") + QuoteIdent(t.columns[t.writable[t.key_writable[k]]].name);
        refs += fmt::format("{}mf_v.k{}", k ? ", " : "", k);
      }
      for (size_t i = 0; i < rows.size(); ++i) {
        const Change* ch = rows[i];
        const auto& image = ch->kind == ChangeKind::kDelete && !ch->old.empty() ? ch->old : ch->values;
        values += fmt::format("{}({}", i ? ", " : "", i + 1);
        for (int k : t.key_writable) {
          const ColumnSchema& col = t.columns[t.writable[k]];
          auto lit = Literal(col, image.at(k));
          if (!lit.ok()) return lit.status().WithContext(fmt::format("table {}", t.id.ToString()));
          // A column of VALUES holding MariaDB's UUID/INET6/INET4 stored bytes
          // is a binary string, which they compare as text: it is cast.
          const std::string& base = col.type.native_base;
          const size_t size = image.at(k).text.size();
          if (((base == "uuid" || base == "inet6") && size == 16) || (base == "inet4" && size == 4))
            *lit = fmt::format("CAST({} AS {})", *lit, base);
          values += ", " + *lit;
        }
        values += ")";
      }
      out->push_back(fmt::format(
          "WITH mf_v (mf_n{}) AS (VALUES {}) SELECT mf_v.mf_n FROM mf_v WHERE {}EXISTS (SELECT 1 FROM {} AS mf_t "
          "WHERE ({}) = ({}))",
          names, values, existed ? "" : "NOT ", Table(t), cols, refs));
      what->push_back("checking for conflicts, " + where);
      probe_of_.push_back(static_cast<int>(probes_.size()));
      probes_.push_back({existed, rows});
    }
    out->push_back(std::move(sql));
    what->push_back(std::move(where));
    probe_of_.push_back(-1);
    return Status::Ok();
  }

  const std::string& db_;
  std::vector<ProbeRows> probes_;
  std::vector<int> probe_of_;
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
  // skip_replication: the binlog events of midflight's writes carry
  // LOG_EVENT_SKIP_REPLICATION_F, so the flow in the other direction (and
  // nothing else) recognises and skips them (engines/mysql/replication_ops.h).
  // @midflight_apply: the target's migrated triggers do not fire on applied changes (schema_objects.h).
  RETURN_IF_ERROR(
      conn_->Exec("SET foreign_key_checks = 0, innodb_lock_wait_timeout = 10, autocommit = 1, @midflight_apply = 1"));
  if (Status st = conn_->Exec("SET SESSION skip_replication = 1"); !st.ok())
    return OperatorError(fmt::format("apply partition {}: SET SESSION skip_replication = 1 failed ({}); midflight marks "
                                     "its own writes so that replication in the other direction skips them: grant "
                                     "the user the right to set it",
                                     partition_.value, st.message()));
  ASSIGN_OR_RETURN(std::string packet, conn_->QueryValue("SELECT @@max_allowed_packet"));
  uint64_t max_packet = 0;
  if (!ParseU64(packet, &max_packet))
    return Internal(fmt::format("target: @@max_allowed_packet is not a number: '{}'", packet));
  max_packet_ = std::min<size_t>(max_packet, 64u << 20);
  return Status::Ok();
}

Result<ChangePosition> MyChangeSink::LoadCheckpoint() {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  ASSIGN_OR_RETURN(MyResult r, conn_->Query(fmt::format(
      "SELECT commit_pos, seq FROM midflight.checkpoints WHERE migration = {} AND partition_id = {}",
      QuoteString(migration_), partition_.value)));
  if (r.rows() == 0) return ChangePosition{};
  uint64_t commit_pos = 0;
  if (!ParseU64(r.Get(0, 0), &commit_pos))
    return Internal(fmt::format("target: midflight.checkpoints.commit_pos of partition {} is not a number: '{}'",
                                partition_.value, r.Get(0, 0)));
  return ChangePosition{Position::Binlog(commit_pos), static_cast<uint32_t>(r.GetInt(0, 1))};
}

namespace {

// A partition's checkpoint, and (restart > 0) the batch's restart marker;
// the marker never moves back. With a worker (apply workers) also the
// batch's topic offset (when it has one) and the worker.
std::string CheckpointSql(const std::string& migration, uint32_t partition, ChangePosition cp, uint64_t restart,
                          int64_t log_offset = -1, const std::string& worker = "") {
  if (!worker.empty())
    return fmt::format(
        "INSERT INTO midflight.checkpoints (migration, partition_id, commit_pos, seq, restart_pos, kafka_offset, "
        "worker, updated_at) VALUES ({}, {}, {}, {}, {}, {}, {}, NOW(6)) ON DUPLICATE KEY UPDATE commit_pos = "
        "VALUES(commit_pos), seq = VALUES(seq), restart_pos = GREATEST(restart_pos, VALUES(restart_pos)), "
        "kafka_offset = COALESCE(VALUES(kafka_offset), kafka_offset), worker = VALUES(worker), updated_at = "
        "VALUES(updated_at)",
        QuoteString(migration), partition, cp.commit_lsn.value(), cp.seq, restart,
        log_offset >= 0 ? std::to_string(log_offset) : std::string("NULL"), QuoteString(worker));
  return fmt::format(
      "INSERT INTO midflight.checkpoints (migration, partition_id, commit_pos, seq, restart_pos, updated_at) VALUES "
      "({}, {}, {}, {}, {}, NOW(6)) ON DUPLICATE KEY UPDATE commit_pos = VALUES(commit_pos), seq = VALUES(seq), "
      "restart_pos = GREATEST(restart_pos, VALUES(restart_pos)), updated_at = VALUES(updated_at)",
      QuoteString(migration), partition, cp.commit_lsn.value(), cp.seq, restart);
}

// A fenced worker's takeover mark: the worker's name, never the position (a
// worker that holds the partition may have moved it since it was read).
std::string MarkWorkerSql(const std::string& migration, uint32_t partition, ChangePosition cp,
                          const std::string& worker) {
  return fmt::format(
      "INSERT INTO midflight.checkpoints (migration, partition_id, commit_pos, seq, worker, updated_at) VALUES ({}, "
      "{}, {}, {}, {}, NOW(6)) ON DUPLICATE KEY UPDATE worker = VALUES(worker), updated_at = VALUES(updated_at)",
      QuoteString(migration), partition, cp.commit_lsn.value(), cp.seq, QuoteString(worker));
}

}  // namespace

Result<bool> MyChangeSink::HoldsRows(const TableSchema& table) {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  ASSIGN_OR_RETURN(MyResult r,
                   conn_->Query(fmt::format("SELECT EXISTS (SELECT 1 FROM {})", QuoteQualified(db_, table.id.name))));
  return r.rows() > 0 && r.Get(0, 0) == "1";
}

Result<int64_t> MyChangeSink::LoadLogOffset() {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  ASSIGN_OR_RETURN(MyResult r, conn_->Query(fmt::format(
      "SELECT kafka_offset FROM midflight.checkpoints WHERE migration = {} AND partition_id = {} AND kafka_offset IS "
      "NOT NULL",
      QuoteString(migration_), partition_.value)));
  if (r.rows() == 0) return int64_t{-1};
  return static_cast<int64_t>(r.GetInt(0, 0));
}

Result<ChangeSink::CheckpointRow> MyChangeSink::LoadCheckpointRow() {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  ASSIGN_OR_RETURN(MyResult r, conn_->Query(fmt::format(
      "SELECT commit_pos, seq, COALESCE(kafka_offset, -1), COALESCE(worker, ''), TIMESTAMPDIFF(MICROSECOND, "
      "updated_at, NOW(6)) FROM midflight.checkpoints WHERE migration = {} AND partition_id = {}",
      QuoteString(migration_), partition_.value)));
  CheckpointRow row;
  if (r.rows() == 0) return row;
  uint64_t commit_pos = 0;
  if (!ParseU64(r.Get(0, 0), &commit_pos))
    return Internal(fmt::format("target: midflight.checkpoints.commit_pos of partition {} is not a number: '{}'",
                                partition_.value, r.Get(0, 0)));
  row.pos = ChangePosition{Position::Binlog(commit_pos), static_cast<uint32_t>(r.GetInt(0, 1))};
  row.log_offset = r.GetInt(0, 2);
  row.worker = r.Get(0, 3);
  row.age_seconds = static_cast<double>(r.GetInt(0, 4)) / 1e6;
  // The restart marker the workers' batches cannot carry (they do not know
  // the other partitions): every change below the run's oldest pending one
  // was seen committed in these rows before this statement commits.
  if (watch_only_ && restart_source_ && commit_pos > 0) {
    const uint64_t marker = restart_source_();
    if (marker > marker_written_) {
      Status st = conn_->Exec(fmt::format(
          "UPDATE midflight.checkpoints SET restart_pos = GREATEST(restart_pos, {}) WHERE migration = {} AND "
          "partition_id = {} AND commit_pos > 0",
          marker, QuoteString(migration_), partition_.value));
      if (st.ok())
        marker_written_ = marker;
      else
        LOG_DEBUG("partition {}: recording the restart marker: {}", partition_.value, st.message());
    }
  }
  return row;
}

Result<bool> MyChangeSink::Fence(int64_t top) {
  RETURN_IF_ERROR(conn_->Exec(fmt::format(
      "START TRANSACTION; INSERT INTO midflight.checkpoints (migration, partition_id, commit_pos, seq) VALUES ({}, {}, "
      "0, 0) ON DUPLICATE KEY UPDATE seq = seq",
      QuoteString(migration_), partition_.value)));
  auto rollback = [&] {
    if (!conn_->IsBroken()) (void)conn_->Exec("ROLLBACK");
  };
  Result<MyResult> r = conn_->Query(fmt::format(
      "SELECT COALESCE(kafka_offset, -1), COALESCE(worker, '') FROM midflight.checkpoints WHERE migration = {} AND "
      "partition_id = {} FOR UPDATE",
      QuoteString(migration_), partition_.value));
  if (!r.ok() || r->rows() == 0) {
    rollback();
    if (!r.ok())
      return r.status().WithContext(fmt::format("apply partition {}: locking its checkpoint row", partition_.value));
    return Internal(fmt::format("apply partition {}: its checkpoint row is missing after it was written",
                                partition_.value));
  }
  const int64_t recorded = r->GetInt(0, 0);
  if (recorded < top) return false;
  rollback();
  ++refused_;
  LOG_WARN("apply partition {}: batch up to offset {} dropped: the target records offset {} applied by worker {} (this "
           "worker lost the partition and does not know yet)",
           partition_.value, top, recorded, r->Get(0, 1));
  return true;
}

// Runs `statements` in one transaction, as few multi-statement packets as
// fit under the target's max_allowed_packet. On failure everything is rolled
// back and the status names the statement's table and first key.
Status MyChangeSink::Execute(const std::vector<std::string>& statements, const std::vector<std::string>& what,
                             const ProbeAnswers& probes, bool commit, bool begun) {
  const size_t budget = max_packet_ / 2;
  std::string packet = begun ? "" : "START TRANSACTION";
  std::vector<size_t> owners;
  if (!begun) owners.push_back(SIZE_MAX);
  MYSQL* m = conn_->raw();
  auto fail = [&](Status st) {
    if (!conn_->IsBroken()) (void)conn_->Exec("ROLLBACK");
    return st;
  };
  auto flush = [&](bool last) -> Status {
    if (last && commit) {
      packet += ";COMMIT";
      owners.push_back(SIZE_MAX);
    }
    size_t k = 0;
    int rc = mysql_real_query(m, packet.data(), packet.size());
    while (rc == 0) {
      if (MYSQL_RES* r = mysql_store_result(m)) {
        const size_t j = k < owners.size() ? owners[k] : SIZE_MAX;
        if (j != SIZE_MAX && probes.on_answer) {
          while (MYSQL_ROW row = mysql_fetch_row(r))
            if (row[0]) probes.on_answer(j, std::atoll(row[0]));
        }
        mysql_free_result(r);
      }
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

Status MyChangeSink::ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint,
                                BatchConflicts* conflicts) {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  int64_t log_offset = -1;
  for (const Change& ch : changes) log_offset = std::max(log_offset, ch.log_offset);
  if (fenced_ && log_offset < 0) {
    if (!changes.empty())
      return Internal(fmt::format("apply partition {}: a fenced batch without log offsets", partition_.value));
    return conn_->Exec(MarkWorkerSql(migration_, partition_.value, checkpoint, worker_));
  }
  std::vector<std::string> statements, what;
  Planner planner(db_);
  RETURN_IF_ERROR(planner.Plan(changes, &statements, &what));
  // Taken before the batch commits: every change below it committed already.
  const uint64_t restart = restart_source_ ? restart_source_() : 0;
  statements.push_back(CheckpointSql(migration_, partition_.value, checkpoint, restart, log_offset, worker_));
  what.push_back("saving the checkpoint");
  // Fenced (an apply worker): the row is locked and checked before anything
  // of the batch is sent; the transaction stays open for the batch.
  bool begun = false;
  if (fenced_) {
    ASSIGN_OR_RETURN(bool stale, Fence(log_offset));
    if (stale) return Status::Ok();
    begun = true;
  }
  ProbeAnswers answers;
  answers.on_answer = [&](size_t statement, long long n) {
    if (statement >= planner.probe_of().size() || planner.probe_of()[statement] < 0) return;
    const ProbeRows& p = planner.probes()[planner.probe_of()[statement]];
    if (n < 1 || static_cast<size_t>(n) > p.rows.size()) return;
    if (auto kind = ConflictOf(*p.rows[n - 1], p.existed)) conflicts->found.push_back({*kind, p.rows[n - 1]});
  };
  // on_conflict=stop: COMMIT only once the probes show no conflict (one
  // more round trip per batch, in that mode only).
  Status st = Execute(statements, what, answers, /*commit=*/!conflicts->stop, begun);
  if (!st.ok()) {
    conflicts->found.clear();
    return st;
  }
  if (!conflicts->stop) return st;
  if (!conflicts->found.empty()) {
    if (!conn_->IsBroken()) (void)conn_->Exec("ROLLBACK");
    return ConflictStopError(conflicts->found.front());
  }
  st = conn_->Exec("COMMIT");
  if (!st.ok()) conflicts->found.clear();
  return st;
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
  return Execute(statements, what, {}, /*commit=*/true);
}

Result<int64_t> MyChangeSink::DeleteRows(const std::shared_ptr<const TableSchema>& table, const std::string& column,
                                         std::optional<int64_t> lo, std::optional<int64_t> hi,
                                         const std::function<bool(const Change&)>& mine) {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  const TableSchema& t = *table;
  if (t.key_writable.empty()) return OperatorError(fmt::format("table {}: a chunk reset needs a key", t.id.ToString()));
  std::vector<std::string> keys, names;
  for (int k : t.key_writable) {
    keys.push_back(BinlogFormSelect(t.columns[t.writable[k]]));
    names.push_back(QuoteIdent(t.columns[t.writable[k]].name));
  }
  ASSIGN_OR_RETURN(std::string where,
                   ResetRangeWhere(t, column, lo, hi, [](std::string_view c) { return QuoteIdent(c); }));
  const std::string from = QuoteQualified(db_, t.id.name);
  RETURN_IF_ERROR(conn_->Exec("START TRANSACTION"));
  auto fail = [&](Status st) {
    (void)conn_->Exec("ROLLBACK");
    return st.WithContext(fmt::format("replaying a chunk reset of {}", t.id.ToString()));
  };
  auto rows = conn_->Query(fmt::format("SELECT {} FROM {}{} FOR UPDATE", fmt::join(keys, ", "), from, where));
  if (!rows.ok()) return fail(rows.status());
  // The rows of the partition, deleted by key in statements of about kStatementBytes.
  const std::string head = fmt::format("DELETE FROM {} WHERE ({}) IN (", from, fmt::join(names, ", "));
  std::string del = head;
  int64_t n = 0, in_statement = 0;
  Change probe;
  probe.kind = ChangeKind::kInsert;
  probe.table = table;
  for (int i = 0; i < rows->rows(); ++i) {
    probe.values.assign(t.writable.size(), Datum::Null());
    std::vector<std::string> literals;
    for (size_t k = 0; k < t.key_writable.size(); ++k) {
      const int c = static_cast<int>(k);
      if (!rows->IsNull(i, c)) probe.values[t.key_writable[k]] = Datum::Text(rows->Get(i, c));
      auto lit = Literal(t.columns[t.writable[t.key_writable[k]]], probe.values[t.key_writable[k]]);
      if (!lit.ok()) return fail(lit.status());
      literals.push_back(std::move(*lit));
    }
    if (!mine(probe)) continue;
    del += fmt::format("{}({})", in_statement ? ", " : "", fmt::join(literals, ", "));
    ++n;
    if (++in_statement == 1000 || del.size() > kStatementBytes) {
      if (Status st = conn_->Exec(del + ")"); !st.ok()) return fail(st);
      del = head;
      in_statement = 0;
    }
  }
  if (in_statement > 0) {
    if (Status st = conn_->Exec(del + ")"); !st.ok()) return fail(st);
  }
  if (Status st = conn_->Exec("COMMIT"); !st.ok()) return fail(st);
  return n;
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
