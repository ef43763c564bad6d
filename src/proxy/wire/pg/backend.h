// Opening a connection to a real PostgreSQL server, speaking the wire
// protocol directly (no libpq): the proxy needs the raw socket afterwards to
// relay client traffic, and the server's ParameterStatus values and cancel key
// to present to its client. Blocking calls; each connection belongs to one
// thread at a time.
//
// Status codes: a server that cannot be reached (refused, unreachable, timed
// out, closed the connection, "the database system is starting up",
// too many connections) is RetryCall; anything an operator must fix (wrong
// password, unknown database or user, an authentication method this module
// does not speak) is OperatorError. Messages start with "host:port: " and
// carry the server's own message and SQLSTATE; they never contain a password.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "proxy/wire/pg/pg_wire.h"

namespace midflight::pgwire {

struct BackendParams {
  std::string host;  // name, IPv4/IPv6 address, or a directory (starts with '/') holding the unix socket
  int port = 5432;
  std::string user;
  std::string password;  // used for cleartext, MD5 and SCRAM-SHA-256, whichever the server asks for
  std::string database;  // empty: the server's default (the user name)
  // Passed through in the StartupMessage after user and database, in order
  // (application_name, client_encoding, DateStyle, options, ...). Entries named
  // "user" or "database" are ignored: the fields above win.
  std::vector<std::pair<std::string, std::string>> startup_params;
  // Bounds the whole of ConnectBackend: TCP connect, authentication and
  // waiting for ReadyForQuery. 0 or less: no limit.
  int connect_timeout_ms = 10000;
};

// A server connection ready for queries. The caller owns `fd` (a blocking
// socket with TCP_NODELAY) and closes it.
struct Backend {
  int fd = -1;
  std::vector<std::pair<std::string, std::string>> parameters;  // ParameterStatus, in the order received
  int32_t pid = 0;                                              // BackendKeyData: for SendCancel
  int32_t secret = 0;
  char txn_status = 'I';  // from ReadyForQuery
  std::string leftover;   // bytes the server sent after ReadyForQuery (normally none): process them first
};

// Connects and authenticates; on failure nothing is left open.
Result<Backend> ConnectBackend(const BackendParams& params);

// Sends a CancelRequest on a new connection and waits (up to timeout_ms) for
// the server to close it, as libpq does. Success means the server got the
// request, not that anything was cancelled.
Status SendCancel(const std::string& host, int port, int32_t pid, int32_t secret, int timeout_ms = 10000);

// Blocking I/O on a socket, shared with the proxy.

// Writes all of `bytes`, retrying on EINTR and partial writes (and waiting on
// EAGAIN if the fd is non-blocking); never raises SIGPIPE. RetryCall on error.
Status WriteAll(int fd, std::string_view bytes);

// Reads until `reader` holds one whole typed message and returns it; bytes
// after it stay in `reader`. RetryCall when the peer closes the connection
// or timeout_ms (if >= 0) passes without a message; the reader's
// OperatorError on a malformed frame.
Result<Message> ReadMessage(int fd, FrameReader& reader, int timeout_ms = -1);

}  // namespace midflight::pgwire
