// A libpq connection with midflight's session settings, and the helpers every
// PostgreSQL-facing module shares: identifier/literal quoting and the mapping
// of server errors to what the caller should do (base/status.h).
//
// Shared by source/postgres and target/postgres; nothing outside the
// PostgreSQL engine folders includes this header. One PgConn is used by one
// thread at a time.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

struct pg_conn;
struct pg_result;

namespace midflight::pg {

enum class ConnKind {
  kRegular,      // an ordinary session
  kReplication,  // replication=database: walsender commands (CREATE_REPLICATION_SLOT, START_REPLICATION)
};

struct ConnOptions {
  ConnKind kind = ConnKind::kRegular;
  std::string application_name = "midflight";
  // Extra "-c name=value" settings (the fixed text-format settings are always sent).
  std::vector<std::string> settings;
  int connect_timeout_s = 10;
};

// Owns a PGresult.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(pg_result* r) : r_(r) {}
  PgResult(PgResult&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  PgResult& operator=(PgResult&& o) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ~PgResult();

  int rows() const;
  int cols() const;
  bool IsNull(int row, int col) const;
  std::string_view Get(int row, int col) const;
  std::string GetString(int row, int col) const { return std::string(Get(row, col)); }
  int64_t GetInt(int row, int col) const;
  bool GetBool(int row, int col) const { return Get(row, col) == "t"; }
  pg_result* raw() const { return r_; }

 private:
  pg_result* r_ = nullptr;
};

using Param = std::optional<std::string>;  // nullopt is SQL NULL

class PgConn {
 public:
  // Connects to `uri` (postgres://user:pass@host:port/db or a conninfo string).
  // Fails with kRetryCall when the server is unreachable and kOperator for bad
  // credentials or a missing database; the message names the redacted URI.
  static Result<std::unique_ptr<PgConn>> Connect(const std::string& uri, const ConnOptions& options);
  ~PgConn();
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  // Runs one or more statements that return no rows.
  Status Exec(std::string_view sql);
  // Runs one statement with text parameters ($1, $2, ...) and returns its rows.
  Result<PgResult> Query(std::string_view sql, const std::vector<Param>& params = {});
  // Runs a statement whose result is a single value.
  Result<std::string> QueryValue(std::string_view sql, const std::vector<Param>& params = {});

  bool IsBroken() const;
  // Server version as an integer, e.g. 150018.
  int ServerVersion() const;
  const std::string& redacted_uri() const { return redacted_uri_; }
  pg_conn* raw() { return conn_; }

 private:
  PgConn(pg_conn* conn, std::string redacted_uri) : conn_(conn), redacted_uri_(std::move(redacted_uri)) {}
  pg_conn* conn_;
  std::string redacted_uri_;
};

// "Table" -> "\"Table\"", doubling embedded quotes. Always quotes.
std::string QuoteIdent(std::string_view ident);
// schema.name, both quoted.
std::string QuoteQualified(std::string_view schema, std::string_view name);
// For messages: schema.name, quoting only the parts that need it.
std::string DisplayQualified(std::string_view schema, std::string_view name);
// 'it''s' with E'' when backslashes appear.
std::string QuoteLiteral(std::string_view value);
// A text[] value for a parameter: {"a","my \"b\""}, every element quoted,
// quotes and backslashes escaped (so NULL, commas and braces are plain text).
std::string TextArray(const std::vector<std::string>& values);

// Maps a failed result (or a broken connection when result is null) to a Status:
// serialization failure, deadlock, lock timeout -> kRetryTxn; connection or
// shutdown errors -> kRetryCall; everything else -> kOperator. The message is
// "<context>: <server message> (SQLSTATE xxxxx)".
Status StatusFromResult(pg_conn* conn, pg_result* result, std::string_view context);

// The SQLSTATE of a failed result, or "" when none.
std::string SqlState(pg_result* result);

// Splits the password out of a URI: returns the URI without it, and the password.
// Used to run pg_dump / pg_restore with PGPASSWORD instead of a password on the command line.
Result<std::pair<std::string, std::string>> SplitPassword(const std::string& uri);

}  // namespace midflight::pg
