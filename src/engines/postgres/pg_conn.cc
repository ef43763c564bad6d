#include "engines/postgres/pg_conn.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "base/uri.h"

namespace midflight::pg {

PgResult& PgResult::operator=(PgResult&& o) noexcept {
  if (this != &o) {
    if (r_) PQclear(r_);
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}

PgResult::~PgResult() {
  if (r_) PQclear(r_);
}

int PgResult::rows() const { return r_ ? PQntuples(r_) : 0; }
int PgResult::cols() const { return r_ ? PQnfields(r_) : 0; }
bool PgResult::IsNull(int row, int col) const { return PQgetisnull(r_, row, col); }
std::string_view PgResult::Get(int row, int col) const {
  return std::string_view(PQgetvalue(r_, row, col), PQgetlength(r_, row, col));
}
int64_t PgResult::GetInt(int row, int col) const {
  return IsNull(row, col) ? 0 : std::strtoll(PQgetvalue(r_, row, col), nullptr, 10);
}

std::string SqlState(pg_result* result) {
  if (!result) return {};
  const char* s = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  return s ? s : "";
}

namespace {

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  // libpq messages may span lines ("DETAIL: ..."): keep one line.
  for (auto& c : s)
    if (c == '\n') c = ' ';
  return s;
}

bool IsConnectionState(std::string_view state) {
  return state.starts_with("08") || state == "57P01" || state == "57P02" || state == "57P03";
}

}  // namespace

Status StatusFromResult(pg_conn* conn, pg_result* result, std::string_view context) {
  std::string msg;
  std::string state = SqlState(result);
  if (result) {
    const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    msg = primary ? primary : PQresultErrorMessage(result);
    if (const char* detail = PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL)) {
      msg += " (";
      msg += detail;
      msg += ")";
    }
  }
  if (msg.empty() && conn) msg = PQerrorMessage(conn);
  msg = Trim(msg);
  // A dead connection can leave no message at all: say what happened rather
  // than show the statement alone.
  if (msg.empty()) msg = "no answer from the server (the connection was lost)";
  std::string full = state.empty() ? fmt::format("{}: {}", context, msg)
                                   : fmt::format("{}: {} (SQLSTATE {})", context, msg, state);
  if (conn && PQstatus(conn) == CONNECTION_BAD) return RetryCall(full);
  if (IsConnectionState(state)) return RetryCall(full);
  if (state == "40001" || state == "40P01" || state == "55P03" || state == "53300" ||
      state == "57014")
    return RetryTxn(full);
  return OperatorError(full);
}

namespace {

// libpq keywords for a URI parsed by our own code (base/uri.h): libpq never
// sees the URI text, so none of its messages can quote it.
Result<std::vector<std::pair<std::string, std::string>>> UriKeywords(const std::string& uri) {
  auto parts = ParseUri(uri);
  if (!parts.ok()) return InvalidArgument(fmt::format("connection URI {}: {}", RedactUri(uri), parts.status().message()));
  if (parts->scheme != "postgres" && parts->scheme != "postgresql")
    return InvalidArgument(fmt::format("connection URI {}: not a postgres:// URI", RedactUri(uri)));
  std::vector<std::pair<std::string, std::string>> kv;
  std::string hosts, ports;
  bool any_port = false;
  for (size_t i = 0; i < parts->hosts.size(); ++i) {
    if (i) {
      hosts += ',';
      ports += ',';
    }
    hosts += parts->hosts[i].host;
    if (parts->hosts[i].port) {
      ports += std::to_string(parts->hosts[i].port);
      any_port = true;
    }
  }
  if (!hosts.empty() && hosts.find_first_not_of(',') != std::string::npos) kv.emplace_back("host", hosts);
  if (any_port) kv.emplace_back("port", ports);
  if (!parts->user.empty()) kv.emplace_back("user", parts->user);
  if (!parts->password.empty()) kv.emplace_back("password", parts->password);
  if (!parts->database.empty()) kv.emplace_back("dbname", parts->database);
  for (auto& [k, v] : parts->params) kv.emplace_back(k, v);
  return kv;
}

}  // namespace

Result<std::unique_ptr<PgConn>> PgConn::Connect(const std::string& uri, const ConnOptions& options) {
  std::string redacted = RedactUri(uri);
  std::string settings =
      "-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3 -c TimeZone=UTC "
      "-c bytea_output=hex -c client_min_messages=warning";
  for (const auto& s : options.settings) settings += " -c " + s;
  std::string timeout = std::to_string(options.connect_timeout_s);
  std::vector<std::pair<std::string, std::string>> kv;
  const bool is_uri = uri.find("://") != std::string::npos;
  if (is_uri) {
    ASSIGN_OR_RETURN(kv, UriKeywords(uri));
  } else {
    kv.emplace_back("dbname", uri);  // a key=value conninfo string, expanded by libpq
  }
  // A silent network (a cut link, a dropped NAT entry) is noticed in about
  // 30 s instead of the kernel's 15 minutes of retransmissions: TCP
  // keepalives on idle sessions, tcp_user_timeout on data never acknowledged.
  // First, so values the URI sets win (the last of a repeated keyword counts).
  kv.insert(kv.begin(), {{"keepalives_idle", "10"}, {"keepalives_interval", "5"}, {"keepalives_count", "3"},
                         {"tcp_user_timeout", "30000"}});
  // The URI's own options=... go first; midflight's settings win.
  if (auto it = std::find_if(kv.begin(), kv.end(), [](const auto& p) { return p.first == "options"; }); it != kv.end()) {
    settings = it->second + " " + settings;
    kv.erase(it);
  }
  kv.emplace_back("options", settings);
  kv.emplace_back("application_name", options.application_name);
  kv.emplace_back("connect_timeout", timeout);
  kv.emplace_back("client_encoding", "UTF8");
  if (options.kind == ConnKind::kReplication) kv.emplace_back("replication", "database");
  std::vector<const char*> keys, vals;
  for (const auto& [k, v] : kv) {
    keys.push_back(k.c_str());
    vals.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  vals.push_back(nullptr);
  PGconn* conn = PQconnectdbParams(keys.data(), vals.data(), /*expand_dbname=*/is_uri ? 0 : 1);
  if (!conn) return RetryCall(fmt::format("connecting to {}: out of memory", redacted));
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string err = ScrubSecrets(Trim(PQerrorMessage(conn)), uri);
    PQfinish(conn);
    std::string msg = fmt::format("cannot connect to {}: {}", redacted, err);
    if (err.find("password authentication failed") != std::string::npos ||
        err.find("no password supplied") != std::string::npos ||
        err.find("does not exist") != std::string::npos ||
        err.find("no pg_hba.conf entry") != std::string::npos ||
        err.find("invalid") != std::string::npos)
      return OperatorError(msg);
    return RetryCall(msg);
  }
  // A SQL_ASCII database holds bytes in no particular encoding: talk to it
  // in SQL_ASCII too, so they pass through unconverted and unchecked.
  if (const char* enc = PQparameterStatus(conn, "server_encoding"); enc && std::string_view(enc) == "SQL_ASCII")
    PQsetClientEncoding(conn, "SQL_ASCII");
  return std::unique_ptr<PgConn>(new PgConn(conn, redacted));
}

PgConn::~PgConn() {
  if (conn_) PQfinish(conn_);
}

Status PgConn::Exec(std::string_view sql) {
  PgResult r(PQexec(conn_, std::string(sql).c_str()));
  auto st = PQresultStatus(r.raw());
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) return Status::Ok();
  std::string ctx(sql.substr(0, 60));
  for (auto& c : ctx)
    if (c == '\n') c = ' ';
  return StatusFromResult(conn_, r.raw(), ctx);
}

Result<PgResult> PgConn::Query(std::string_view sql, const std::vector<Param>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  PgResult r(PQexecParams(conn_, std::string(sql).c_str(), static_cast<int>(params.size()), nullptr,
                          values.data(), nullptr, nullptr, 0));
  auto st = PQresultStatus(r.raw());
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  std::string ctx(sql.substr(0, 60));
  for (auto& c : ctx)
    if (c == '\n') c = ' ';
  return StatusFromResult(conn_, r.raw(), ctx);
}

Result<std::string> PgConn::QueryValue(std::string_view sql, const std::vector<Param>& params) {
  ASSIGN_OR_RETURN(PgResult r, Query(sql, params));
  if (r.rows() < 1 || r.cols() < 1) return NotFound(fmt::format("no value from: {}", sql.substr(0, 60)));
  return r.GetString(0, 0);
}

bool PgConn::IsBroken() const { return PQstatus(conn_) != CONNECTION_OK; }
int PgConn::ServerVersion() const { return PQserverVersion(conn_); }

std::string QuoteIdent(std::string_view ident) {
  std::string out = "\"";
  for (char c : ident) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string QuoteQualified(std::string_view schema, std::string_view name) {
  return QuoteIdent(schema) + "." + QuoteIdent(name);
}

std::string DisplayQualified(std::string_view schema, std::string_view name) {
  auto plain = [](std::string_view id) {
    if (id.empty() || !((id[0] >= 'a' && id[0] <= 'z') || id[0] == '_')) return false;
    for (char c : id)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    return true;
  };
  return (plain(schema) ? std::string(schema) : QuoteIdent(schema)) + "." +
         (plain(name) ? std::string(name) : QuoteIdent(name));
}

std::string QuoteLiteral(std::string_view value) {
  bool backslash = value.find('\\') != std::string_view::npos;
  std::string out = backslash ? "E'" : "'";
  for (char c : value) {
    if (c == '\'') out.push_back('\'');
    if (c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (const auto& v : values) {
    if (out.size() > 1) out.push_back(',');
    out.push_back('"');
    for (char c : v) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

Result<std::pair<std::string, std::string>> SplitPassword(const std::string& uri) {
  std::vector<std::pair<std::string, std::string>> kv;
  if (uri.find("://") != std::string::npos) {
    ASSIGN_OR_RETURN(kv, UriKeywords(uri));
  } else {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(uri.c_str(), &err);
    if (!opts) {
      std::string m = err ? ScrubSecrets(Trim(err), uri) : "unparseable";
      if (err) PQfreemem(err);
      return InvalidArgument(fmt::format("bad connection string {}: {}", RedactUri(uri), m));
    }
    for (PQconninfoOption* o = opts; o->keyword; ++o)
      if (o->val && *o->val) kv.emplace_back(o->keyword, o->val);
    PQconninfoFree(opts);
  }
  std::string conninfo, password;
  for (const auto& [key, val] : kv) {
    if (key == "password") {
      password = val;
      continue;
    }
    if (!conninfo.empty()) conninfo += ' ';
    conninfo += key;
    conninfo += "='";
    for (char c : val) {
      if (c == '\'' || c == '\\') conninfo += '\\';
      conninfo += c;
    }
    conninfo += '\'';
  }
  return std::make_pair(conninfo, password);
}

}  // namespace midflight::pg
