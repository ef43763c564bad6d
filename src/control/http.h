// HTTP/1.1 for midflight's control API: a small threaded server (later also
// the dashboard and Prometheus /metrics) and a blocking one-shot client for
// the CLI.
//
// Addresses, for both sides:
//   "HOST:PORT"          TCP; HOST is an IPv4 address, "[IPv6]" or a name
//                        such as "localhost"; PORT 0 (server only) picks a
//                        free port.
//   "unix:/path/to/sock" a unix-domain socket.
//
// One picture of the server:
//
//   accept thread ──accept()──> one thread per connection:
//                                 [TLS handshake, when configured]
//                                 read head (≤ 64 KiB) → ParseRequestHead
//                                 read body (Content-Length, ≤ 16 MiB)
//                                 handler(request) → SerializeResponse → send
//                                 keep-alive? loop : close
//   Stop(): a byte on the wake pipe wakes every poll(); threads are joined.
//
// Connection lifecycle (ServeConnection in http.cc): read head → read body →
// handle → write → (keep-alive: read head | close). A connection is closed on
// a malformed request (after answering 400/411/413/431/505), on
// `Connection: close`, after `idle_timeout_ms` without a byte from the peer,
// when the peer closes, and on Stop().
//
// The wire codec (ParseRequestHead, SerializeResponse, ParseResponseHead) is
// pure functions over bytes, declared at the bottom, apart from the sockets.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace midflight::http {

struct Request {
  std::string method;                          // as sent: "GET", "POST", ...
  std::string path;                            // request target without the query, not decoded: "/v1/status"
  std::string query;                           // raw text after '?', "" when none
  std::map<std::string, std::string> headers;  // names lowercased; repeated headers joined with ", "
  std::string body;
  std::string peer;  // "127.0.0.1:53122", "[::1]:53122" or "unix:uid=1000,pid=4242"

  // The url-decoded value of the first `name=value` in the query; "" when
  // absent. `name` is compared after decoding the query's names.
  std::string QueryParam(std::string_view name) const;
  std::optional<std::string> Header(std::string_view lower_name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";  // "" sends no Content-Type
  std::string body;
  // Extra headers. The server sets Content-Length and Connection itself and
  // drops those (and Transfer-Encoding, and any header with CR, LF or an
  // invalid name) from here. In a response returned by Call(), every received
  // header with its name lowercased.
  std::vector<std::pair<std::string, std::string>> headers;
};

Response Json(int status, std::string body);
Response Text(int status, std::string body);  // text/plain; charset=utf-8

// Called on a connection's thread, possibly on several connections at once:
// it must be thread-safe. It should not throw; if it does, the client gets a
// 500 with a generic message and the server carries on.
using Handler = std::function<Response(const Request&)>;

struct ServerOptions {
  size_t max_header_bytes = 64 * 1024;       // request line + headers; beyond → 431
  size_t max_body_bytes = 16 * 1024 * 1024;  // Content-Length beyond → 413
  int idle_timeout_ms = 60'000;              // no byte from the peer for this long → close
  int max_connections = 256;                 // beyond → 503 and close (over TLS: close)
  // TLS (≥ 1.2) on a TCP listener: PEM files; the certificate file may hold
  // the chain after the server's certificate. Both or neither; refused for a
  // "unix:" address. Listen() fails (kInvalidArgument, naming the file) when
  // a file is unreadable, not PEM, or the key does not match the
  // certificate. The handshake runs on the connection's thread within
  // idle_timeout_ms; a plain-HTTP request to a TLS listener is answered
  // with a plain 400 that says to use https.
  std::string tls_cert_file, tls_key_file;
};

// What Call() trusts for an "https://" address.
struct ClientTls {
  std::string ca_file;  // PEM bundle; "" → the system's store (/etc/ssl/certs)
};

class Server {
 public:
  // Binds `address` and starts serving on background threads. A "unix:" path
  // left behind by a dead server is removed first; a path where a server
  // still answers, or that is not a socket, is an error (kOperator) and is
  // left alone. The socket file gets mode 0600 and is removed by Stop().
  static Result<std::unique_ptr<Server>> Listen(const std::string& address, Handler handler,
                                                const ServerOptions& options = {});
  ~Server();  // Stop()

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound address, with the real port: "127.0.0.1:43121", "[::1]:43121",
  // "unix:/run/mf.sock". Usable as Call()'s address.
  std::string address() const { return address_; }

  // Closes the listener, wakes every connection thread (idle ones at once;
  // one inside the handler when the handler returns), closes the
  // connections and joins all threads. Idempotent. Must not be called from
  // a handler (it would wait for itself).
  void Stop();

 private:
  class Impl;
  Server(std::unique_ptr<Impl> impl, std::string address);
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

// Sends one request (Connection: close) and waits for the whole response.
// `address` is as above, or "https://HOST:PORT" for TLS (the server's
// certificate verified against `tls` for HOST, a name or an IP address);
// "http://HOST:PORT" is the same as "HOST:PORT". An untrusted certificate
// or a failed handshake → kOperator.
// `path_and_query` starts with '/' and is sent as is (UrlEncode the values).
// A non-empty body is sent with Content-Type: application/json unless
// `headers` has a Content-Type. `timeout_ms` bounds the whole call (<= 0:
// no limit).
// Errors: the server could not be reached (refused, no socket file, reset,
// closed before answering, timed out) → kRetryCall, naming the address; note
// that after a timeout or a lost connection the server may have executed the
// request. A bad address or request → kInvalidArgument; a name that does not
// resolve, a socket we may not open, or an answer that is not HTTP →
// kOperator. Any HTTP status, 4xx and 5xx included, is a successful call.
Result<Response> Call(const std::string& address, const std::string& method, const std::string& path_and_query,
                      const std::string& body = "",
                      const std::vector<std::pair<std::string, std::string>>& headers = {}, int timeout_ms = 600000,
                      const ClientTls& tls = {});

// Decodes %XX escapes and '+' (as in query strings and form bodies); a '%'
// not followed by two hex digits is kept as is.
std::string UrlDecode(std::string_view s);
// Percent-encodes everything but ALPHA / DIGIT / "-._~", for query values.
std::string UrlEncode(std::string_view s);
// The text to put between double quotes in JSON: escapes '"', '\\' and
// control characters; invalid UTF-8 becomes U+FFFD. No quotes are added.
std::string JsonEscape(std::string_view s);
// "OK", "Not Found", ...; "Unknown" for codes it does not know.
const char* ReasonPhrase(int status);

// ---- Wire codec: pure functions over bytes, no sockets. ----

struct RequestHead {
  std::string method, path, query;
  std::map<std::string, std::string> headers;  // names lowercased
  size_t content_length = 0;
  bool keep_alive = true;        // HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with "keep-alive"
  bool expect_continue = false;  // "Expect: 100-continue"
};

struct HeadParse {
  RequestHead head;      // valid when error_status == 0
  int error_status = 0;  // else the status to answer with, then close: 400, 411, 413, 431, 505
  std::string error;     // why, for the response body
};

// Parses a request head: the bytes from the request line up to and including
// the empty line ("\r\n\r\n"). Lines end in CRLF; obsolete line folding,
// control characters, a missing Host (HTTP/1.1), conflicting Content-Length
// → 400; any Transfer-Encoding → 411 (bodies only by Content-Length);
// Content-Length > max_body_bytes → 413; a head longer than
// max_header_bytes → 431; a version other than HTTP/1.x → 505.
HeadParse ParseRequestHead(std::string_view head, const ServerOptions& limits);

// The bytes of a response: status line, Content-Type, Content-Length (not
// for 1xx, 204, 304), `Connection: keep-alive|close`, the extra headers, the
// body (omitted when `head_only`, for HEAD requests).
std::string SerializeResponse(const Response& response, bool keep_alive, bool head_only);

struct ResponseHead {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::optional<size_t> content_length;                      // none: the body runs to EOF
};

// Parses a response head (status line through "\r\n\r\n"). Errors are
// kInvalidArgument with the reason.
Result<ResponseHead> ParseResponseHead(std::string_view head);

}  // namespace midflight::http
