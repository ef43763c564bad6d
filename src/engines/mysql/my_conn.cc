#include "engines/mysql/my_conn.h"

#include <errmsg.h>
#include <fmt/format.h>
#include <mysql.h>
#include <mysqld_error.h>

#include <cctype>
#include <cstdlib>

#include "base/uri.h"

namespace midflight::mysql {

Result<MyUri> ParseMyUri(const std::string& uri) {
  auto bad = [&uri](std::string_view problem) {
    return InvalidArgument(fmt::format("connection URI {}: {}", RedactUri(uri), problem));
  };
  const std::string scheme = UriScheme(uri);
  if (scheme != "mysql" && scheme != "mariadb") return bad("not a mysql:// URI");
  auto parts = ParseUri(uri);
  if (!parts.ok()) return bad(parts.status().message());
  if (parts->hosts.size() > 1) return bad("names several hosts; MySQL/MariaDB takes one");
  MyUri out;
  out.user = parts->user;
  out.password = parts->password;
  out.database = parts->database;
  if (!parts->host.empty()) out.host = parts->host;
  if (parts->port) out.port = static_cast<unsigned>(parts->port);
  if (out.database.empty()) return bad("names no database");
  return out;
}

const std::string& MyResult::Get(int row, int col) const {
  static const std::string kEmpty;
  const auto& v = rows_[row][col];
  return v ? *v : kEmpty;
}

int64_t MyResult::GetInt(int row, int col) const {
  return IsNull(row, col) ? 0 : std::strtoll(Get(row, col).c_str(), nullptr, 10);
}

Status StatusFromError(unsigned error_number, std::string_view error, std::string_view context) {
  std::string full = fmt::format("{}: {} (error {})", context, error, error_number);
  switch (error_number) {
    case ER_LOCK_DEADLOCK:
    case ER_LOCK_WAIT_TIMEOUT:
      return RetryTxn(full);
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_SERVER_LOST_EXTENDED:
    case CR_COMMANDS_OUT_OF_SYNC:
    case ER_CON_COUNT_ERROR:
    case ER_SERVER_SHUTDOWN:
    case ER_CONNECTION_KILLED:
    case ER_NET_READ_ERROR:
    case ER_NET_READ_INTERRUPTED:
    case ER_NET_ERROR_ON_WRITE:
    case ER_NET_WRITE_INTERRUPTED:
      return RetryCall(full);
    default:
      return OperatorError(full);
  }
}

Result<std::unique_ptr<MyConn>> MyConn::Connect(const std::string& uri, const ConnOptions& options) {
  ASSIGN_OR_RETURN(MyUri u, ParseMyUri(uri));
  MYSQL* m = mysql_init(nullptr);
  if (!m) return Internal("mysql_init failed");
  unsigned timeout = static_cast<unsigned>(options.connect_timeout_s);
  mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  if (options.read_timeout_s > 0) {
    unsigned rt = static_cast<unsigned>(options.read_timeout_s);
    mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &rt);
  }
  unsigned long max_packet = 1ul << 30;
  mysql_optionsv(m, MYSQL_OPT_MAX_ALLOWED_PACKET, &max_packet);
  unsigned local = options.local_infile ? 1 : 0;
  mysql_optionsv(m, MYSQL_OPT_LOCAL_INFILE, &local);
  mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  mysql_optionsv(m, MYSQL_OPT_CONNECT_ATTR_ADD, "program_name", options.program_name.c_str());
  const std::string redacted = RedactUri(uri);
  // TLS, as the URI asks with the names MySQL's clients use (the proxy reads
  // the same ones): ssl-mode=required|verify-ca|verify-identity, ssl-ca=FILE.
  // Connector/C checks the host name whenever it checks the certificate, so
  // verify-ca is verify-identity here; preferred is plain TCP here (the
  // proxy's connections take TLS when offered).
  std::string ssl_mode, ssl_ca;
  if (auto parts = ParseUri(uri); parts.ok()) {
    for (const auto& [k, v] : parts->params) {
      if (k == "ssl-mode" || k == "ssl_mode" || k == "sslmode") ssl_mode = v;
      if (k == "ssl-ca" || k == "ssl_ca") ssl_ca = v;
    }
  }
  for (auto& c : ssl_mode) c = c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ssl_mode == "required" || ssl_mode == "verify-ca" || ssl_mode == "verify-identity") {
    my_bool on = 1;
    mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &on);
    if (ssl_mode != "required") {
      if (ssl_ca.empty()) {
        mysql_close(m);
        return OperatorError(fmt::format("connecting to {}: ssl-mode={} needs ssl-ca (the CA file that signed the "
                                         "server's certificate)",
                                         redacted, ssl_mode));
      }
      mysql_optionsv(m, MYSQL_OPT_SSL_CA, ssl_ca.c_str());
      mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
    }
  } else if (!ssl_mode.empty() && ssl_mode != "disabled" && ssl_mode != "preferred") {
    mysql_close(m);
    return OperatorError(fmt::format("connecting to {}: ssl-mode '{}' is not disabled, preferred, required, verify-ca "
                                     "or verify-identity",
                                     redacted, ssl_mode.substr(0, 40)));
  }
  if (!mysql_real_connect(m, u.host.c_str(), u.user.c_str(), u.password.c_str(), u.database.c_str(), u.port,
                          nullptr, CLIENT_MULTI_STATEMENTS | CLIENT_FOUND_ROWS)) {
    Status st = StatusFromError(mysql_errno(m), ScrubSecrets(mysql_error(m), uri), fmt::format("connecting to {}", redacted));
    mysql_close(m);
    return st;
  }
  if (!ssl_mode.empty() && ssl_mode != "disabled" && ssl_mode != "preferred" && mysql_get_ssl_cipher(m) == nullptr) {
    // Connector/C refuses a server without TLS itself only when it verifies
    // the certificate; `required` is checked here.
    mysql_close(m);
    return OperatorError(fmt::format("connecting to {}: ssl-mode={}, but the server did not start TLS (turn it on "
                                     "in the server: ssl_cert/ssl_key)",
                                     redacted, ssl_mode));
  }
  auto conn = std::unique_ptr<MyConn>(new MyConn(m, redacted));
  if (options.session_setup)
    RETURN_IF_ERROR(conn->Exec(
        "SET time_zone = '+00:00', sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION', "
        "character_set_results = binary, group_concat_max_len = 1073741824"));
  return conn;
}

MyConn::~MyConn() { mysql_close(mysql_); }

Status MyConn::LastError(std::string_view context) const {
  unsigned no = mysql_errno(mysql_);
  Status st = StatusFromError(no, mysql_error(mysql_), context);
  if (st.code() == StatusCode::kRetryCall) broken_ = true;
  return st;
}

Status MyConn::Exec(std::string_view sql) {
  if (mysql_real_query(mysql_, sql.data(), sql.size()) != 0) return LastError(sql.substr(0, 120));
  // Drain every result of a multi-statement string.
  for (;;) {
    MYSQL_RES* r = mysql_store_result(mysql_);
    if (r) mysql_free_result(r);
    else if (mysql_field_count(mysql_) != 0) return LastError(sql.substr(0, 120));
    int more = mysql_next_result(mysql_);
    if (more > 0) return LastError(sql.substr(0, 120));
    if (more < 0) break;
  }
  return Status::Ok();
}

Result<MyResult> MyConn::Query(std::string_view sql) {
  if (mysql_real_query(mysql_, sql.data(), sql.size()) != 0) return LastError(sql.substr(0, 120));
  MYSQL_RES* r = mysql_store_result(mysql_);
  if (!r) {
    if (mysql_field_count(mysql_) != 0) return LastError(sql.substr(0, 120));
    return MyResult{};
  }
  MyResult out;
  unsigned n = mysql_num_fields(r);
  MYSQL_FIELD* fields = mysql_fetch_fields(r);
  for (unsigned i = 0; i < n; ++i) out.names_.emplace_back(fields[i].name, fields[i].name_length);
  while (MYSQL_ROW row = mysql_fetch_row(r)) {
    unsigned long* len = mysql_fetch_lengths(r);
    std::vector<std::optional<std::string>> values(n);
    for (unsigned i = 0; i < n; ++i)
      if (row[i]) values[i] = std::string(row[i], len[i]);
    out.rows_.push_back(std::move(values));
  }
  mysql_free_result(r);
  return out;
}

Result<std::string> MyConn::QueryValue(std::string_view sql) {
  ASSIGN_OR_RETURN(MyResult r, Query(sql));
  if (r.rows() != 1 || r.cols() < 1)
    return Internal(fmt::format("{}: expected one value, got {} rows", sql.substr(0, 120), r.rows()));
  return r.Get(0, 0);
}

Result<std::unique_ptr<MyConn::Stream>> MyConn::QueryStream(std::string_view sql) {
  if (mysql_real_query(mysql_, sql.data(), sql.size()) != 0) return LastError(sql.substr(0, 120));
  MYSQL_RES* r = mysql_use_result(mysql_);
  if (!r) return LastError(sql.substr(0, 120));
  auto s = std::unique_ptr<Stream>(new Stream());
  s->conn_ = this;
  s->res_ = r;
  s->cols_ = static_cast<int>(mysql_num_fields(r));
  return s;
}

MyConn::Stream::~Stream() {
  if (res_) mysql_free_result(res_);  // reads and discards the rest, as the protocol requires
}

Result<bool> MyConn::Stream::Next() {
  row_ = mysql_fetch_row(res_);
  if (!row_) {
    if (mysql_errno(conn_->mysql_) != 0) return conn_->LastError("reading rows");
    return false;
  }
  lengths_ = mysql_fetch_lengths(res_);
  return true;
}

int MyConn::Stream::type(int col) const { return mysql_fetch_field_direct(res_, col)->type; }
unsigned MyConn::Stream::flags(int col) const { return mysql_fetch_field_direct(res_, col)->flags; }

unsigned long MyConn::ServerVersion() const { return mysql_get_server_version(mysql_); }
uint64_t MyConn::AffectedRows() const { return mysql_affected_rows(mysql_); }

std::string QuoteIdent(std::string_view ident) {
  std::string out = "`";
  for (char c : ident) {
    if (c == '`') out.push_back('`');
    out.push_back(c);
  }
  out.push_back('`');
  return out;
}

std::string QuoteQualified(std::string_view schema, std::string_view name) {
  return QuoteIdent(schema) + "." + QuoteIdent(name);
}

std::string QuoteString(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    switch (c) {
      case '\0': out += "\\0"; break;
      case '\'': out += "\\'"; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\x1a': out += "\\Z"; break;
      default: out.push_back(c);
    }
  }
  out.push_back('\'');
  return out;
}

std::string HexLiteral(std::string_view bytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2 + 3);
  out += "X'";
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  out.push_back('\'');
  return out;
}

}  // namespace midflight::mysql
