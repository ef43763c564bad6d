// Opening a connection to a real PostgreSQL server, speaking the wire
// protocol directly (no libpq): the proxy needs the raw socket afterwards to
// relay client traffic, and the server's ParameterStatus values and cancel key
// to present to its client. ConnectBackend and the I/O helpers block (for
// tools and tests); BackendLogin and the TLS helpers below do no I/O, so the
// proxy's event loops drive the same login without blocking.
//
// Status codes: a server that cannot be reached (refused, unreachable, timed
// out, closed the connection, "the database system is starting up",
// too many connections) is RetryCall; anything an operator must fix (wrong
// password, unknown database or user, an authentication method this module
// does not speak) is OperatorError. Messages start with "host:port: " and
// carry the server's own message and SQLSTATE; they never contain a password.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "proxy/wire/pg/pg_wire.h"

struct ssl_st;  // OpenSSL's SSL, kept out of this header

namespace midflight::pgwire {

class ScramClient;

// TLS to the server, as libpq's sslmode: disable and allow connect without
// it; prefer (libpq's default) asks and goes on without it when the server
// says no; require insists on it; verify-ca also checks the server's
// certificate chain against sslrootcert, verify-full also that the
// certificate names the host connected to. require with an sslrootcert
// behaves as verify-ca (as in libpq). A unix socket never uses TLS.
enum class SslMode { kDisable, kAllow, kPrefer, kRequire, kVerifyCa, kVerifyFull };

// "disable", ..., "verify-full" (libpq's spellings); OperatorError naming the
// accepted values otherwise.
Result<SslMode> ParseSslMode(std::string_view text);
const char* SslModeName(SslMode mode);

struct BackendTls {
  SslMode mode = SslMode::kDisable;  // TlsFromUriParams gives libpq's default, prefer
  // PEM file of the CAs to trust (verify-ca, verify-full); empty:
  // ~/.postgresql/root.crt as libpq; "system": the system's default CAs.
  // Read at each connection.
  std::string root_cert;
  std::string cert, key;  // a client certificate and its key (PEM), both or neither
};

// The TLS settings of a connection URI's query parameters (sslmode,
// sslrootcert, sslcert, sslkey), falling back to PGSSLMODE, PGSSLROOTCERT,
// PGSSLCERT and PGSSLKEY as libpq does. OperatorError for an unknown sslmode,
// or an sslcert without an sslkey.
Result<BackendTls> TlsFromUriParams(const std::vector<std::pair<std::string, std::string>>& params);

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
  BackendTls tls;
};

// A server connection ready for queries. The caller owns `fd` (a blocking
// socket with TCP_NODELAY) and closes it with CloseBackend. With TLS, `ssl`
// is set and every byte goes through BackendRead/BackendWrite (which work
// with or without it); poll `fd`, but BackendPending first: bytes already
// decrypted are not seen by poll.
struct Backend {
  int fd = -1;
  std::shared_ptr<ssl_st> ssl;
  std::vector<std::pair<std::string, std::string>> parameters;  // ParameterStatus, in the order received
  int32_t pid = 0;                                              // BackendKeyData: for SendCancel
  int32_t secret = 0;
  char txn_status = 'I';  // from ReadyForQuery
  std::string leftover;   // bytes the server sent after ReadyForQuery (normally none): process them first
};

// The login to a server (StartupMessage, authentication, ParameterStatus,
// BackendKeyData up to the first ReadyForQuery) as a state machine over
// messages, for callers that do their own I/O: the proxy's event loops feed
// it what the server sends and write what it returns. ConnectBackend drives
// the same machine over a blocking socket. Errors are as ConnectBackend's.
class BackendLogin {
 public:
  explicit BackendLogin(BackendParams params);
  ~BackendLogin();
  BackendLogin(const BackendLogin&) = delete;
  BackendLogin& operator=(const BackendLogin&) = delete;

  // The StartupMessage, to send first (after TLS, if any).
  std::string Start() const;
  // One message from the server: the bytes to answer with (often none). An
  // error ends the login (the caller closes the connection).
  Result<std::string> OnMessage(char type, std::string_view body);
  // The first ReadyForQuery came: parameters, pid, secret and txn_status of
  // backend() are set (fd, ssl and leftover are the caller's business).
  bool done() const { return done_; }
  Backend& backend() { return backend_; }
  const BackendParams& params() const { return params_; }
  // "host:port": how the server is named in messages.
  const std::string& label() const { return label_; }

 private:
  enum class State { kAuthenticating, kSaslContinue, kSaslFinal, kSettingUp };
  Result<std::string> OnAuth(std::string_view body);
  Status NeedPassword() const;

  BackendParams params_;
  std::string label_;
  State state_ = State::kAuthenticating;
  std::unique_ptr<ScramClient> scram_;
  bool scram_verified_ = false;
  bool done_ = false;
  Backend backend_;
};

// TLS towards a server for callers that do their own I/O. WantsTls: the
// SSLRequest is to be sent (sslmode prefer and up, not a unix socket).
// NewClientTls: an SSL object in the client state for params.tls (trusted
// CAs, client certificate, SNI, the host name check of verify-full), owned
// by the caller; OperatorError naming the file that cannot be read.
// TlsHandshakeError: why a handshake on `ssl` failed, in ConnectBackend's words;
// `reason` (the event loop's Conn, which takes OpenSSL's error queue when it
// closes) is used when the queue holds nothing any more.
bool WantsTls(const BackendParams& params);
Result<ssl_st*> NewClientTls(const BackendParams& params);
Status TlsHandshakeError(const BackendParams& params, ssl_st* ssl, std::string_view reason = {});
// An 'N' answer to the SSLRequest: OK to go on in plain text (prefer), or
// the OperatorError ConnectBackend gives.
Status TlsRefused(const BackendParams& params);
// The server's ErrorResponse during the login as ConnectBackend reports it
// (RetryCall for connection, shutdown and resource errors).
Status LoginError(const std::string& label, std::string_view body);

// Connects (with TLS as params.tls says) and authenticates; on failure
// nothing is left open. A TLS failure is an OperatorError saying why, e.g.
// "host:port: TLS: the server's certificate is not trusted (sslmode=verify-full,
// sslrootcert=ca.crt): unable to get local issuer certificate".
Result<Backend> ConnectBackend(const BackendParams& params);

// I/O on a Backend (plain or TLS), for the connection's one thread.
// BackendWrite: all of `bytes` (RetryCall when the connection is lost).
// BackendRead: up to n bytes; >0 read, 0 when the server closed the
// connection, -1 on error with errno set (EAGAIN when dont_wait and nothing
// is there, EINTR to retry).
Status BackendWrite(const Backend& b, std::string_view bytes);
ssize_t BackendRead(const Backend& b, char* buf, size_t n, bool dont_wait);
bool BackendPending(const Backend& b);
// ReadMessage over a Backend.
Result<Message> ReadBackendMessage(const Backend& b, FrameReader& reader, int timeout_ms = -1);
// Closes the connection (without a Terminate message); `b.fd` becomes -1.
void CloseBackend(Backend& b);

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
