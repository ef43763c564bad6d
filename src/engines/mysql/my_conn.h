// A MariaDB Connector/C connection with midflight's session settings, and the
// helpers every MySQL-facing module shares: identifier and value quoting and
// the mapping of server errors to what the caller should do (base/status.h).
//
// Shared by source/mysql and target/mysql; nothing outside the MySQL engine
// folders includes this header. One MyConn is used by one thread at a time.
//
// Every session is set up the same way, so values read on one server mean the
// same on the other: time_zone '+00:00' (TIMESTAMP values travel as UTC),
// character_set_results binary (strings arrive as the column's own bytes),
// sql_mode without strictness or NO_AUTO_VALUE_ON_ZERO surprises (a row that
// the source holds is written back as it is, zero dates and id 0 included).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

struct st_mysql;
struct st_mysql_res;

namespace midflight::mysql {

// The parts of a mysql://user:pass@host:port/db URI.
struct MyUri {
  std::string user, password, host = "127.0.0.1", database;
  unsigned port = 3306;
};
Result<MyUri> ParseMyUri(const std::string& uri);

struct ConnOptions {
  std::string program_name = "midflight";  // program_name connect attribute, visible in processlist tools
  int connect_timeout_s = 10;
  int read_timeout_s = 0;    // 0: none
  bool local_infile = false; // allow LOAD DATA LOCAL INFILE from a handler
  bool session_setup = true; // time_zone, sql_mode, charset as above
};

// A buffered result: every row in memory (use for catalog queries, not data).
class MyResult {
 public:
  int rows() const { return static_cast<int>(rows_.size()); }
  int cols() const { return static_cast<int>(names_.size()); }
  bool IsNull(int row, int col) const { return !rows_[row][col].has_value(); }
  const std::string& Get(int row, int col) const;  // "" for NULL
  int64_t GetInt(int row, int col) const;
  const std::vector<std::string>& names() const { return names_; }

 private:
  friend class MyConn;
  std::vector<std::string> names_;
  std::vector<std::vector<std::optional<std::string>>> rows_;
};

class MyConn {
 public:
  // Connects to a mysql:// URI. Fails with kRetryCall when the server is
  // unreachable and kOperator for bad credentials or a missing database; the
  // message names the redacted URI.
  static Result<std::unique_ptr<MyConn>> Connect(const std::string& uri, const ConnOptions& options);
  ~MyConn();
  MyConn(const MyConn&) = delete;
  MyConn& operator=(const MyConn&) = delete;

  // Runs one statement that returns no rows (or discards them).
  Status Exec(std::string_view sql);
  // Runs one statement and returns its rows, buffered.
  Result<MyResult> Query(std::string_view sql);
  // A single value (NULL is "").
  Result<std::string> QueryValue(std::string_view sql);

  // A statement whose rows are read one at a time (mysql_use_result): memory
  // stays bounded whatever the result size. Next() returns false at the end.
  class Stream {
   public:
    ~Stream();
    Result<bool> Next();
    // Valid until the next call to Next(): nullptr data for NULL.
    const char* data(int col) const { return row_[col]; }
    unsigned long length(int col) const { return lengths_[col]; }
    int cols() const { return cols_; }
    // The column's MySQL type code (enum_field_types) and flags.
    int type(int col) const;
    unsigned flags(int col) const;

   private:
    friend class MyConn;
    MyConn* conn_ = nullptr;
    st_mysql_res* res_ = nullptr;
    char** row_ = nullptr;
    unsigned long* lengths_ = nullptr;
    int cols_ = 0;
  };
  Result<std::unique_ptr<Stream>> QueryStream(std::string_view sql);

  // The server's error for the last call as a Status (see StatusFromError).
  Status LastError(std::string_view context) const;
  bool IsBroken() const { return broken_; }
  unsigned long ServerVersion() const;  // 101119 for 10.11.19
  uint64_t AffectedRows() const;
  const std::string& redacted_uri() const { return redacted_uri_; }
  st_mysql* raw() { return mysql_; }

 private:
  MyConn(st_mysql* m, std::string redacted_uri) : mysql_(m), redacted_uri_(std::move(redacted_uri)) {}
  st_mysql* mysql_;
  std::string redacted_uri_;
  mutable bool broken_ = false;
};

// Maps a server or client error number to what the caller should do:
// deadlock (1213), lock wait timeout (1205) -> kRetryTxn; lost connection,
// server gone or shutting down, too many connections -> kRetryCall;
// everything else -> kOperator. `message` is "<context>: <error> (error N)".
Status StatusFromError(unsigned error_number, std::string_view error, std::string_view context);

// `Order Items` with embedded backticks doubled. Always quotes.
std::string QuoteIdent(std::string_view ident);
// `db`.`table`.
std::string QuoteQualified(std::string_view schema, std::string_view name);
// 'it\'s' with every special byte escaped (NUL, quote, backslash, newline, ^Z).
std::string QuoteString(std::string_view value);
// X'68656c6c6f': a binary string, safe for any bytes (X'' for empty).
std::string HexLiteral(std::string_view bytes);

}  // namespace midflight::mysql
