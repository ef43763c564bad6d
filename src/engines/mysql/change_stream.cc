#include "engines/mysql/change_stream.h"

#include <fmt/format.h>
#include <mysql.h>
// after mysql.h, which it needs
#include <mariadb_rpl.h>

#include <algorithm>
#include <cctype>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "engines/mysql/catalog.h"
#include "engines/mysql/my_conn.h"
#include "engines/mysql/binlog_event.h"
#include "engines/mysql/binlog_pos.h"

namespace midflight::mysql {

namespace {

using TablePtr = std::shared_ptr<const TableSchema>;

// The words of a statement, for recognising DDL: identifiers unquoted,
// comments dropped, keywords upper-cased. `db`.`t` stays one word "db.t".
std::vector<std::string> Words(std::string_view q, size_t max_words) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < q.size() && out.size() < max_words) {
    char c = q[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '/' && i + 1 < q.size() && q[i + 1] == '*') {
      size_t end = q.find("*/", i + 2);
      i = end == std::string_view::npos ? q.size() : end + 2;
    } else if (c == '#' || (c == '-' && i + 1 < q.size() && q[i + 1] == '-')) {
      size_t end = q.find('\n', i);
      i = end == std::string_view::npos ? q.size() : end + 1;
    } else {
      std::string w;
      bool quoted_any = false;
      while (i < q.size()) {
        char d = q[i];
        if (d == '`') {
          quoted_any = true;
          ++i;
          while (i < q.size()) {
            if (q[i] == '`' && i + 1 < q.size() && q[i + 1] == '`') {
              w.push_back('`');
              i += 2;
            } else if (q[i] == '`') {
              ++i;
              break;
            } else {
              w.push_back(q[i++]);
            }
          }
        } else if (std::isalnum(static_cast<unsigned char>(d)) || d == '_' || d == '$' || d == '.' ||
                   static_cast<unsigned char>(d) >= 0x80) {
          w.push_back(d);
          ++i;
        } else {
          if (w.empty() && !quoted_any) {
            w.push_back(d);
            ++i;
          }
          break;
        }
      }
      if (!quoted_any)
        for (auto& ch : w) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      out.push_back(std::move(w));
    }
  }
  return out;
}

}  // namespace

struct ChangeStream::State {
  FormatDescription format;
  uint32_t file_number = 0;
  struct Mapped {
    TableMapEvent map;
    TablePtr table;  // null: not migrated
    ColumnHints hints;  // from the catalog, per column of the map
  };
  std::map<uint64_t, Mapped> maps;
  bool in_txn = false;
  uint64_t txn_pos = 0;
  bool skip_txn = false;  // the whole transaction was applied before a restart
};

ChangeStream::ChangeStream(StreamConfig config) : config_(std::move(config)), state_(std::make_unique<State>()) {}

ChangeStream::~ChangeStream() = default;

Status ChangeStream::Stream(Sequencer& seq, StopRef stop) {
  ConnOptions o;
  o.program_name = "midflight-binlog";
  o.read_timeout_s = 30;  // heartbeats come every second
  o.session_setup = false;
  ASSIGN_OR_RETURN(auto conn, MyConn::Connect(config_.source_uri, o));
  ASSIGN_OR_RETURN(std::string checksum, conn->QueryValue("SELECT @@global.binlog_checksum"));
  RETURN_IF_ERROR(conn->Exec(
      "SET @master_binlog_checksum = @@global.binlog_checksum, @mariadb_slave_capability = 4, "
      "@master_heartbeat_period = 1000000000"));
  const uint64_t start = seq.Confirmable();
  const std::string file = BinlogFileName(config_.binlog_base, start);
  state_ = std::make_unique<State>();
  state_->format.checksum_crc32 = checksum == "CRC32";
  state_->file_number = BinlogFileNumber(start);

  MYSQL* m = conn->raw();
  MARIADB_RPL* rpl = mariadb_rpl_init(m);
  if (!rpl) return conn->LastError("starting the binlog stream");
  struct Closer {
    MARIADB_RPL* r;
    ~Closer() { mariadb_rpl_close(r); }
  } closer{rpl};
  unsigned long offset = BinlogOffset(start);
  mariadb_rpl_optionsv(rpl, MARIADB_RPL_FILENAME, file.c_str(), file.size());
  mariadb_rpl_optionsv(rpl, MARIADB_RPL_START, offset);
  mariadb_rpl_optionsv(rpl, MARIADB_RPL_SERVER_ID, config_.server_id);
  if (mariadb_rpl_open(rpl) != 0)
    return conn->LastError(fmt::format("requesting the binlog from {}", FormatBinlogPos(config_.binlog_base, start)));
  LOG_INFO("change stream: reading {} from {}", conn->redacted_uri(), FormatBinlogPos(config_.binlog_base, start));
  seq.stats().connected = true;
  MARIADB_RPL_EVENT* ev = nullptr;
  struct EventFree {
    MARIADB_RPL_EVENT** e;
    ~EventFree() {
      if (*e) mariadb_free_rpl_event(*e);
    }
  } event_free{&ev};
  while (!stop) {
    ev = mariadb_rpl_fetch(rpl, ev);
    if (!ev) {
      unsigned no = mysql_errno(m);
      if (no == 0) return RetryCall("binlog stream ended");
      Status st = conn->LastError(fmt::format("reading the binlog near {}", FormatBinlogPos(config_.binlog_base,
                                                                                             seq.stats().received)));
      // A purged or missing binlog file cannot be retried into existence.
      if (no == 1236) return DataLoss(st.message() + "; the binlog the migration needs is gone from the source");
      return st;
    }
    if (ev->raw_data_size < 2 || ev->raw_data_ofs != 1) continue;
    std::string_view bytes(reinterpret_cast<const char*>(ev->raw_data) + 1, ev->raw_data_size - 1);
    RETURN_IF_ERROR(HandleEvent(seq, bytes));
  }
  return Status::Ok();
}

Status ChangeStream::HandleEvent(Sequencer& seq, std::string_view bytes) {
  State& s = *state_;
  ASSIGN_OR_RETURN(Event e, ParseEvent(bytes, &s.format));
  const EventHeader& h = e.header;
  const uint64_t event_start = h.log_pos >= h.event_size ? h.log_pos - h.event_size : 0;
  if (e.format) {
    s.format = *e.format;
    return Status::Ok();
  }
  if (e.rotate) {
    auto n = ParseBinlogFileNumber(e.rotate->next_file);
    if (!n) return DataLoss(fmt::format("binlog rotates to '{}', a name without a sequence number", e.rotate->next_file));
    s.file_number = *n;
    s.maps.clear();
    return Status::Ok();
  }
  if (h.type == static_cast<uint8_t>(EventType::kHeartbeat)) {
    if (!s.in_txn && h.log_pos > 0) return seq.Idle(EncodeBinlogPos(s.file_number, h.log_pos));
    return Status::Ok();
  }
  // midflight's own writes (apply sessions run with skip_replication = 1)
  // carry LOG_EVENT_SKIP_REPLICATION_F on every event, the GTID event
  // included, also in a replica's binlog (log_slave_updates): the whole
  // transaction is skipped, so nothing loops between the two directions.
  const bool own = (h.flags & kSkipReplicationFlag) != 0;
  if (e.gtid) {
    s.in_txn = true;
    s.txn_pos = EncodeBinlogPos(s.file_number, static_cast<uint32_t>(event_start));
    // A transaction every partition applied before a restart: skip its rows undecoded.
    s.skip_txn = seq.Begin(Position::Binlog(s.txn_pos), static_cast<int64_t>(h.timestamp) * 1000000) || own;
    return Status::Ok();
  }
  auto end_txn = [&] {
    s.in_txn = false;
    return seq.Commit(h.log_pos > 0 ? EncodeBinlogPos(s.file_number, h.log_pos) : 0);
  };
  if (e.xid) return end_txn();
  if (e.query) {
    const std::string& q = e.query->query;
    if (q == "BEGIN") return Status::Ok();
    if (q == "COMMIT" || q == "ROLLBACK") return end_txn();
    if (!s.in_txn) {
      s.txn_pos = EncodeBinlogPos(s.file_number, static_cast<uint32_t>(event_start));
      s.skip_txn = seq.Begin(Position::Binlog(s.txn_pos), static_cast<int64_t>(h.timestamp) * 1000000) || own;
    }
    if (!s.skip_txn && !own) RETURN_IF_ERROR(HandleQuery(seq, e.query->schema, q));
    return end_txn();  // DDL commits implicitly
  }
  if (e.table_map) {
    State::Mapped mapped;
    auto it = config_.tables.find(TableId{e.table_map->schema, e.table_map->table});
    if (it != config_.tables.end()) {
      mapped.table = it->second;
      for (int c : mapped.table->writable) {
        const ColumnType& ct = mapped.table->columns[c].type;
        mapped.hints.is_unsigned.push_back(ct.kind == TypeKind::kInt && !ct.is_signed);
        const bool temporal = ct.kind == TypeKind::kTime || ct.kind == TypeKind::kTimestamp;
        mapped.hints.temporal_precision.push_back(temporal && ct.precision > 0 ? static_cast<uint8_t>(ct.precision) : 0);
        mapped.hints.pad_to.push_back(FixedBinarySize(mapped.table->columns[c]));
      }
    }
    mapped.map = std::move(*e.table_map);
    s.maps[mapped.map.table_id] = std::move(mapped);
    return Status::Ok();
  }
  if (!e.rows || s.skip_txn) return Status::Ok();
  const RowsEvent& rows = *e.rows;
  auto it = s.maps.find(rows.table_id);
  if (it == s.maps.end())
    return DataLoss(fmt::format("rows event for table id {} without its TABLE_MAP at {}", rows.table_id,
                                FormatBinlogPos(config_.binlog_base, EncodeBinlogPos(s.file_number, event_start))));
  if (!it->second.table) return Status::Ok();
  const TablePtr& t = it->second.table;
  const TableMapEvent& map = it->second.map;
  if (map.types.size() != t->writable.size())
    return OperatorError(fmt::format(
        "schema change on the source: the binlog has {} columns for {} at {}, midflight expects {} ({}); apply the "
        "change to the target, then run again",
        map.types.size(), t->id.ToString(), FormatBinlogPos(config_.binlog_base, s.txn_pos), t->writable.size(),
        t->KeyDescription()));
  ASSIGN_OR_RETURN(std::vector<RowImage> images, DecodeRows(rows, map, it->second.hints));
  for (auto& img : images) {
    Change c;
    c.table = t;
    switch (rows.kind) {
      case RowsKind::kWrite:
        c.kind = ChangeKind::kInsert;
        c.values = std::move(img.after);
        RETURN_IF_ERROR(seq.Emit(std::move(c)));
        break;
      case RowsKind::kDelete:
        c.kind = ChangeKind::kDelete;
        c.old = std::move(img.before);
        RETURN_IF_ERROR(seq.Emit(std::move(c)));
        break;
      case RowsKind::kUpdate:
        c.kind = ChangeKind::kUpdate;
        c.values = std::move(img.after);
        c.old = std::move(img.before);
        RETURN_IF_ERROR(seq.Emit(std::move(c)));  // a key move is split there
        break;
    }
  }
  return Status::Ok();
}

Status ChangeStream::HandleQuery(Sequencer& seq, const std::string& schema, const std::string& query) {
  std::vector<std::string> w = Words(query, 64);
  if (w.empty()) return Status::Ok();
  const State& s = *state_;
  auto migrated = [&](const std::string& word) -> TablePtr {
    std::string db = schema, name = word;
    auto dot = word.find('.');
    if (dot != std::string::npos) {
      db = word.substr(0, dot);
      name = word.substr(dot + 1);
    }
    for (const auto& [id, t] : config_.tables)
      if (id.schema == db && (id.name == name || (name.size() == id.name.size() &&
                                                  std::equal(name.begin(), name.end(), id.name.begin(), [](char a, char b) {
                                                    return std::toupper(static_cast<unsigned char>(a)) ==
                                                           std::toupper(static_cast<unsigned char>(b));
                                                  }))))
        return t;
    return nullptr;
  };
  const std::string& verb = w[0];
  const std::string pos = FormatBinlogPos(config_.binlog_base, s.txn_pos);
  const std::string stmt = query.size() > 300 ? query.substr(0, 300) + "..." : query;
  if (verb == "TRUNCATE") {
    size_t i = w.size() > 1 && w[1] == "TABLE" ? 2 : 1;
    TablePtr t = i < w.size() ? migrated(w[i]) : nullptr;
    if (!t) return Status::Ok();
    Change c;
    c.kind = ChangeKind::kTruncate;
    c.table = t;
    c.truncated = {t};
    return seq.Emit(std::move(c));
  }
  // Which migrated tables does a DDL statement touch?
  std::vector<TablePtr> touched;
  auto add = [&](const std::string& word) {
    if (TablePtr t = migrated(word); t && std::find(touched.begin(), touched.end(), t) == touched.end())
      touched.push_back(t);
  };
  bool ddl = false;
  if (verb == "ALTER" || verb == "RENAME" || verb == "DROP" || verb == "CREATE") {
    for (size_t i = 1; i < w.size(); ++i) {
      if (w[i] == "TABLE" || w[i] == "ON" || w[i] == "," || w[i] == "TO" || w[i] == "EXISTS") {
        ddl = true;
        if (i + 1 < w.size()) add(w[i + 1]);
      }
    }
    if (verb == "RENAME" || verb == "DROP")
      for (const auto& word : w) add(word);
  }
  if (!ddl || touched.empty()) return Status::Ok();
  // Everything before the statement is applied first; then either the target
  // already has the change (the operator applied it) or the migration stops here.
  RETURN_IF_ERROR(seq.WaitApplied());
  for (const auto& t : touched) {
    if (verb == "DROP" && w.size() > 1 && w[1] == "TABLE")
      return OperatorError(fmt::format("schema change on the source at {}: `{}` drops migrated table {}; exclude it "
                                       "from the migration (exclude:) and start a new migration",
                                       pos, stmt, t->id.ToString()));
    ASSIGN_OR_RETURN(std::string differs, config_.target_differs(t->id));
    if (!differs.empty())
      return OperatorError(fmt::format("schema change on the source at {}: `{}` changes {} ({}); apply the same "
                                       "change to the target, then run again",
                                       pos, stmt, t->id.ToString(), differs));
    ASSIGN_OR_RETURN(TablePtr fresh, config_.reload_table(t->id));
    config_.tables[t->id] = fresh;
    LOG_WARN("change stream: `{}` at {} changed {}; the target has the same columns, continuing", stmt, pos,
             t->id.ToString());
  }
  state_->maps.clear();
  return Status::Ok();
}

}  // namespace midflight::mysql
