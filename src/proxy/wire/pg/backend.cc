// Connection lifecycle, driven by BackendLogin (ConnectBackend runs it over a
// blocking socket, the proxy over its event loops):
//
//   connect socket ──> send StartupMessage ──> kAuthenticating
//
//   kAuthenticating  R Ok ───────────────────────────────────────────> kSettingUp
//                    R CleartextPassword / MD5Password: send PasswordMessage, stay
//                    R SASL (SCRAM-SHA-256 offered): send SASLInitialResponse ──> kSaslContinue
//   kSaslContinue    R SASLContinue: check server-first, send SASLResponse ──> kSaslFinal
//   kSaslFinal       R SASLFinal: verify the server's signature ──> kAuthenticating (now only R Ok)
//   kSettingUp       S ParameterStatus → parameters, K BackendKeyData → pid/secret,
//                    Z ReadyForQuery → done
//
// In every state: E ErrorResponse ends the handshake with the server's message
// and SQLSTATE; N NoticeResponse and v NegotiateProtocolVersion are ignored;
// anything else is a protocol violation. AuthenticationOk before a SCRAM
// exchange finished is refused: the server must prove it knows the password
// once SCRAM has started. The socket is closed on every failure.

#include "proxy/wire/pg/backend.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

#include "base/clock.h"
#include "base/log.h"
#include "proxy/wire/pg/scram.h"

namespace midflight::pgwire {

namespace {

constexpr size_t kReadChunk = 64 * 1024;

// Closes the descriptor unless released.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

std::string ErrnoText(int e) {
  return std::strerror(e);
}

// A deadline on the monotonic clock; -1 = none.
int64_t DeadlineAfter(int timeout_ms) {
  return timeout_ms > 0 ? NowMonotonicMs() + timeout_ms : -1;
}

// Waits until fd is ready for `events` or the deadline passes.
Status WaitFd(int fd, short events, int64_t deadline) {
  for (;;) {
    int wait_ms = -1;
    if (deadline >= 0) wait_ms = static_cast<int>(std::max<int64_t>(0, deadline - NowMonotonicMs()));
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, wait_ms);
    if (n > 0) return Status::Ok();  // ready, or an error/hang-up the next call will report
    if (n == 0) return RetryCall("timed out");
    if (errno != EINTR) return RetryCall(fmt::format("poll: {}", ErrnoText(errno)));
  }
}

// "host:port", "[v6]:port" or the unix socket path: how a server is named in messages.
std::string ServerLabel(const std::string& host, int port) {
  if (host.starts_with('/')) return fmt::format("{}/.s.PGSQL.{}", host, port);
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

// connect() on a non-blocking socket, waiting for completion until the deadline.
Status ConnectNonBlocking(int fd, const sockaddr* addr, socklen_t len, int64_t deadline) {
  int rc;
  do {
    rc = ::connect(fd, addr, len);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return Status::Ok();
  if (errno != EINPROGRESS && errno != EAGAIN) return RetryCall(ErrnoText(errno));
  RETURN_IF_ERROR(WaitFd(fd, POLLOUT, deadline));
  int err = 0;
  socklen_t err_len = sizeof(err);
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0) return RetryCall(ErrnoText(errno));
  if (err != 0) return RetryCall(ErrnoText(err));
  return Status::Ok();
}

Status MakeBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return Internal(fmt::format("fcntl: {}", ErrnoText(errno)));
  }
  return Status::Ok();
}

// A connected blocking socket to host:port (TCP with TCP_NODELAY) or to the
// unix socket in directory `host`. Errors carry no label; the caller adds it.
Result<UniqueFd> ConnectSocket(const std::string& host, int port, int64_t deadline) {
  if (port <= 0 || port > 65535) return OperatorError(fmt::format("invalid port {}", port));
  if (host.starts_with('/')) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = fmt::format("{}/.s.PGSQL.{}", host, port);
    if (path.size() >= sizeof(addr.sun_path)) return OperatorError("unix socket path too long");
    std::memcpy(addr.sun_path, path.data(), path.size());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0) return Internal(fmt::format("socket: {}", ErrnoText(errno)));
    RETURN_IF_ERROR(ConnectNonBlocking(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr), deadline));
    RETURN_IF_ERROR(MakeBlocking(fd.get()));
    return fd;
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  const int gai = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (gai != 0) {
    std::string msg = fmt::format("could not resolve host \"{}\": {}", host, ::gai_strerror(gai));
    // A DNS server that did not answer may answer next time; a name that does not exist is a setting to fix.
    return gai == EAI_AGAIN ? RetryCall(std::move(msg)) : OperatorError(std::move(msg));
  }
  Status last = RetryCall("no address");
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
    if (fd.get() < 0) {
      last = RetryCall(fmt::format("socket: {}", ErrnoText(errno)));
      continue;
    }
    last = ConnectNonBlocking(fd.get(), ai->ai_addr, ai->ai_addrlen, deadline);
    if (!last.ok()) continue;
    last = MakeBlocking(fd.get());
    if (!last.ok()) continue;
    const int one = 1;
    if (::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
      last = Internal(fmt::format("setsockopt(TCP_NODELAY): {}", ErrnoText(errno)));
      continue;
    }
    ::freeaddrinfo(list);
    return fd;
  }
  ::freeaddrinfo(list);
  return last;
}

// ErrorResponse from the server → Status: unreachable-for-now conditions are
// RetryCall (connection class 08, shutting down / starting up, too many
// connections and other resource shortages), everything else OperatorError.
Status ServerError(const std::string& label, std::string_view body) {
  auto fields = ParseErrorFields(body);
  if (!fields.ok()) return fields.status().WithContext(label);
  const auto it = fields->find('C');
  const std::string sqlstate = it == fields->end() ? std::string() : it->second;
  std::string msg = fmt::format("{}: {}", label, DescribeErrorFields(*fields));
  if (sqlstate.starts_with("08") || sqlstate.starts_with("53") || sqlstate == "57P01" || sqlstate == "57P02" ||
      sqlstate == "57P03") {
    return RetryCall(std::move(msg));
  }
  return OperatorError(std::move(msg));
}

const char* AuthMethodName(int32_t code) {
  switch (code) {
    case 2: return "Kerberos V5";
    case 6: return "SCM credentials";
    case 7:
    case 8: return "GSSAPI";
    case 9: return "SSPI";
    default: return "unknown";
  }
}

bool IsIpAddress(const std::string& host) {
  in6_addr a6{};
  in_addr a4{};
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "connection closed during the handshake";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

// SO_RCVTIMEO / SO_SNDTIMEO until `deadline` (-1: none): bounds the blocking
// reads and writes of a TLS handshake.
void SetIoDeadline(int fd, int64_t deadline) {
  timeval tv{};
  if (deadline >= 0) {
    const int64_t ms = std::max<int64_t>(1, deadline - NowMonotonicMs());
    tv.tv_sec = static_cast<time_t>(ms / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  }
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

}  // namespace

bool WantsTls(const BackendParams& params) {
  const SslMode mode = params.tls.mode;
  return mode != SslMode::kDisable && mode != SslMode::kAllow && !params.host.starts_with('/');
}

namespace {
std::string ModeText(const BackendTls& tls) { return fmt::format("sslmode={}", SslModeName(tls.mode)); }
bool Verifies(const BackendTls& tls) {
  return tls.mode == SslMode::kVerifyCa || tls.mode == SslMode::kVerifyFull ||
         (tls.mode == SslMode::kRequire && !tls.root_cert.empty());
}
std::string RootCertPath(const BackendTls& tls) {
  if (!tls.root_cert.empty()) return tls.root_cert;
  const char* home = std::getenv("HOME");
  return fmt::format("{}/.postgresql/root.crt", home ? home : "");
}
}  // namespace

Status TlsRefused(const BackendParams& params) {
  if (params.tls.mode == SslMode::kPrefer) return Status::Ok();
  return OperatorError(fmt::format("TLS: the server does not accept TLS connections ({})", ModeText(params.tls)));
}

Result<ssl_st*> NewClientTls(const BackendParams& params) {
  const BackendTls& tls = params.tls;
  const std::string mode = ModeText(tls);
  const bool verify = Verifies(tls);
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (!ctx) return Internal("TLS: " + OpenSslError());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // The proxy's connections hand OpenSSL the front of a buffer that may move between retries.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (verify) {
    if (tls.root_cert == "system") {
      if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1)
        return OperatorError(fmt::format("TLS: cannot load the system's CA certificates: {}", OpenSslError()));
    } else {
      const std::string root = RootCertPath(tls);
      if (SSL_CTX_load_verify_locations(ctx.get(), root.c_str(), nullptr) != 1)
        return OperatorError(fmt::format("TLS: cannot read the root certificate file \"{}\" ({}{}): {}", root, mode,
                                         tls.root_cert.empty() ? ", no sslrootcert given" : "", OpenSslError()));
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  if (!tls.cert.empty() || !tls.key.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key.c_str(), SSL_FILETYPE_PEM) != 1)
      return OperatorError(
          fmt::format("TLS: cannot load the client certificate \"{}\" and key \"{}\": {}", tls.cert, tls.key, OpenSslError()));
  }
  SSL* ssl = SSL_new(ctx.get());  // holds its own reference to ctx
  if (ssl == nullptr) return Internal("TLS: " + OpenSslError());
  const bool ip = IsIpAddress(params.host);
  if (!ip) SSL_set_tlsext_host_name(ssl, params.host.c_str());
  if (tls.mode == SslMode::kVerifyFull) {
    X509_VERIFY_PARAM* vp = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, params.host.c_str())
                       : X509_VERIFY_PARAM_set1_host(vp, params.host.c_str(), 0);
    if (set != 1) {
      SSL_free(ssl);
      return Internal(fmt::format("TLS: cannot check the host name \"{}\"", params.host));
    }
  }
  SSL_set_connect_state(ssl);
  return ssl;
}

Status TlsHandshakeError(const BackendParams& params, ssl_st* ssl, std::string_view reason) {
  const BackendTls& tls = params.tls;
  const std::string mode = ModeText(tls);
  const long verified = SSL_get_verify_result(ssl);
  if (Verifies(tls) && verified != X509_V_OK) {
    ERR_clear_error();
    if (verified == X509_V_ERR_HOSTNAME_MISMATCH || verified == X509_V_ERR_IP_ADDRESS_MISMATCH)
      return OperatorError(fmt::format("TLS: the server's certificate is not for host \"{}\" ({}): {}", params.host,
                                       mode, X509_verify_cert_error_string(verified)));
    return OperatorError(fmt::format("TLS: the server's certificate is not trusted ({}, sslrootcert={}): {}", mode,
                                     tls.root_cert == "system" ? tls.root_cert : RootCertPath(tls),
                                     X509_verify_cert_error_string(verified)));
  }
  const int err = errno;
  std::string why = OpenSslError();
  if (why == "connection closed during the handshake" && err == EAGAIN) why = "timed out";
  constexpr std::string_view kConnPrefix = "TLS handshake failed: ";
  if (why == "connection closed during the handshake" && reason.starts_with(kConnPrefix))
    why = reason.substr(kConnPrefix.size());
  return OperatorError(fmt::format("TLS: handshake failed ({}): {}", mode, why));
}

namespace {

// The SSLRequest exchange and the TLS handshake on a connected blocking
// socket, as params.tls says. Leaves out->ssl unset when the connection goes
// on in plain text (disable/allow, or prefer and the server said no).
Status StartTls(const BackendParams& params, int fd, int64_t deadline, Backend* out) {
  if (!WantsTls(params)) return Status::Ok();
  RETURN_IF_ERROR(WriteAll(fd, SslRequest()));
  char answer = 0;
  for (;;) {
    RETURN_IF_ERROR(WaitFd(fd, POLLIN, deadline));
    const ssize_t n = ::read(fd, &answer, 1);
    if (n == 1) break;
    if (n == 0) return RetryCall("the server closed the connection after the SSLRequest");
    if (errno != EINTR && errno != EAGAIN) return RetryCall(fmt::format("read: {}", ErrnoText(errno)));
  }
  if (answer == 'N') return TlsRefused(params);
  if (answer != 'S') return OperatorError(fmt::format("TLS: unexpected answer {} to the SSLRequest", DescribeType(answer)));
  ASSIGN_OR_RETURN(SSL* raw, NewClientTls(params));
  std::shared_ptr<SSL> ssl(raw, SSL_free);
  SSL_set_fd(ssl.get(), fd);
  SetIoDeadline(fd, deadline);
  const int rc = SSL_connect(ssl.get());
  SetIoDeadline(fd, -1);
  if (rc != 1) return TlsHandshakeError(params, ssl.get());
  out->ssl = std::move(ssl);
  return Status::Ok();
}

}  // namespace

Status LoginError(const std::string& label, std::string_view body) { return ServerError(label, body); }

BackendLogin::BackendLogin(BackendParams params)
    : params_(std::move(params)), label_(ServerLabel(params_.host, params_.port)) {}
BackendLogin::~BackendLogin() = default;

std::string BackendLogin::Start() const {
  std::vector<std::pair<std::string, std::string>> startup = {{"user", params_.user}};
  if (!params_.database.empty()) startup.emplace_back("database", params_.database);
  for (const auto& [name, value] : params_.startup_params) {
    if (name != "user" && name != "database") startup.emplace_back(name, value);
  }
  return StartupMessage(startup);
}

Status BackendLogin::NeedPassword() const {
  if (!params_.password.empty()) return Status::Ok();
  return OperatorError(
      fmt::format("{}: the server asked for a password for user \"{}\" but none is configured", label_, params_.user));
}

Result<std::string> BackendLogin::OnAuth(std::string_view body) {
  auto code = ParseAuthCode(body);
  if (!code.ok()) return code.status().WithContext(label_);
  if (*code == kAuthOk && scram_ && !scram_verified_) {
    return OperatorError(fmt::format("{}: the server accepted the login before completing SCRAM", label_));
  }
  switch (state_) {
    case State::kAuthenticating:
      switch (*code) {
        case kAuthOk: state_ = State::kSettingUp; return std::string();
        case kAuthCleartext:
          if (scram_) break;
          RETURN_IF_ERROR(NeedPassword());
          return PasswordMessage(params_.password);
        case kAuthMd5: {
          if (scram_) break;
          RETURN_IF_ERROR(NeedPassword());
          auto salt = ParseAuthMd5Salt(body);
          if (!salt.ok()) return salt.status().WithContext(label_);
          return PasswordMessage(Md5Response(params_.user, params_.password, salt->data()));
        }
        case kAuthSasl: {
          if (scram_) break;
          auto mechanisms = ParseAuthSaslMechanisms(body);
          if (!mechanisms.ok()) return mechanisms.status().WithContext(label_);
          if (std::find(mechanisms->begin(), mechanisms->end(), kScramSha256) == mechanisms->end()) {
            return OperatorError(fmt::format("{}: the server offers SASL mechanisms {} but not SCRAM-SHA-256", label_,
                                             fmt::join(*mechanisms, ", ")));
          }
          RETURN_IF_ERROR(NeedPassword());
          scram_ = std::make_unique<ScramClient>(params_.password);
          state_ = State::kSaslContinue;
          return SaslInitialResponse(kScramSha256, scram_->ClientFirst());
        }
        case kAuthSaslContinue:
        case kAuthSaslFinal: break;
        default:
          return OperatorError(fmt::format("{}: authentication method {} ({}) requested by the server is not supported",
                                           label_, *code, AuthMethodName(*code)));
      }
      break;
    case State::kSaslContinue: {
      if (*code != kAuthSaslContinue) break;
      auto data = ParseAuthSaslData(body);
      if (!data.ok()) return data.status().WithContext(label_);
      RETURN_IF_ERROR(scram_->ServerFirst(*data).WithContext(label_));
      state_ = State::kSaslFinal;
      return SaslResponse(scram_->ClientFinal());
    }
    case State::kSaslFinal: {
      if (*code != kAuthSaslFinal) break;
      auto data = ParseAuthSaslData(body);
      if (!data.ok()) return data.status().WithContext(label_);
      RETURN_IF_ERROR(scram_->ServerFinal(*data).WithContext(label_));
      scram_verified_ = true;
      state_ = State::kAuthenticating;
      return std::string();
    }
    case State::kSettingUp: break;
  }
  return OperatorError(
      fmt::format("{}: unexpected authentication request {} during connection startup", label_, *code));
}

Result<std::string> BackendLogin::OnMessage(char type, std::string_view body) {
  switch (type) {
    case 'E': return ServerError(label_, body);
    case 'N': return std::string();
    case 'v': LOG_DEBUG("{}: server sent NegotiateProtocolVersion; continuing with protocol 3.0", label_); return std::string();
    case 'R': return OnAuth(body);
    default: break;
  }
  auto violation = [&] {
    return OperatorError(
        fmt::format("{}: unexpected message {} during connection startup", label_, DescribeType(type)));
  };
  if (state_ != State::kSettingUp || done_) return violation();
  switch (type) {
    case 'S': {
      auto p = ParseParameterStatus(body);
      if (!p.ok()) return p.status().WithContext(label_);
      backend_.parameters.push_back(std::move(*p));
      return std::string();
    }
    case 'K': {
      auto key = ParseBackendKeyData(body);
      if (!key.ok()) return key.status().WithContext(label_);
      backend_.pid = key->first;
      backend_.secret = key->second;
      return std::string();
    }
    case 'Z': {
      auto status = ParseReadyForQuery(body);
      if (!status.ok()) return status.status().WithContext(label_);
      backend_.txn_status = *status;
      done_ = true;
      return std::string();
    }
    default: return violation();
  }
}

namespace {

// Drives a BackendLogin over a connected blocking socket (plain or TLS).
Status RunLogin(const BackendParams& params, Backend* conn, int64_t deadline) {
  BackendLogin login(params);
  const std::string& label = login.label();
  RETURN_IF_ERROR(BackendWrite(*conn, login.Start()).WithContext(label));
  FrameReader reader;
  while (!login.done()) {
    int timeout_ms = -1;
    if (deadline >= 0) timeout_ms = static_cast<int>(std::max<int64_t>(0, deadline - NowMonotonicMs()));
    auto m = ReadBackendMessage(*conn, reader, timeout_ms);
    if (!m.ok()) return m.status().WithContext(label);
    ASSIGN_OR_RETURN(std::string reply, login.OnMessage(m->type, m->body));
    if (!reply.empty()) RETURN_IF_ERROR(BackendWrite(*conn, reply).WithContext(label));
  }
  Backend& b = login.backend();
  conn->parameters = std::move(b.parameters);
  conn->pid = b.pid;
  conn->secret = b.secret;
  conn->txn_status = b.txn_status;
  conn->leftover.assign(reader.data(), reader.size());
  return Status::Ok();
}

}  // namespace

Result<Backend> ConnectBackend(const BackendParams& params) {
  const std::string label = ServerLabel(params.host, params.port);
  const int64_t deadline = DeadlineAfter(params.connect_timeout_ms);
  auto fd = ConnectSocket(params.host, params.port, deadline);
  if (!fd.ok()) return fd.status().WithContext(label);
  Backend backend;
  backend.fd = fd->get();
  RETURN_IF_ERROR(StartTls(params, fd->get(), deadline, &backend).WithContext(label));
  RETURN_IF_ERROR(RunLogin(params, &backend, deadline));  // fd is closed by its UniqueFd on failure
  backend.fd = fd->release();
  return backend;
}

Status SendCancel(const std::string& host, int port, int32_t pid, int32_t secret, int timeout_ms) {
  const std::string label = ServerLabel(host, port);
  const int64_t deadline = DeadlineAfter(timeout_ms);
  auto fd = ConnectSocket(host, port, deadline);
  if (!fd.ok()) return fd.status().WithContext(label);
  RETURN_IF_ERROR(WriteAll(fd->get(), CancelRequest(pid, secret)).WithContext(label));
  // The server closes the connection once it has read the request.
  char buf[64];
  for (;;) {
    RETURN_IF_ERROR(WaitFd(fd->get(), POLLIN, deadline).WithContext(label + ": waiting for the cancel to be read"));
    const ssize_t n = ::read(fd->get(), buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return Status::Ok();
    if (n < 0 && errno != EINTR && errno != EAGAIN)
      return RetryCall(fmt::format("{}: read: {}", label, ErrnoText(errno)));
  }
}

Result<BackendTls> TlsFromUriParams(const std::vector<std::pair<std::string, std::string>>& params) {
  auto get = [&](const char* name, const char* env) {
    std::string value;
    bool found = false;
    for (const auto& [k, v] : params)
      if (k == name) value = v, found = true;
    if (!found) {
      const char* e = std::getenv(env);
      if (e) value = e;
    }
    return value;
  };
  BackendTls tls;
  tls.mode = SslMode::kPrefer;
  if (const std::string mode = get("sslmode", "PGSSLMODE"); !mode.empty()) {
    ASSIGN_OR_RETURN(tls.mode, ParseSslMode(mode));
  }
  tls.root_cert = get("sslrootcert", "PGSSLROOTCERT");
  tls.cert = get("sslcert", "PGSSLCERT");
  tls.key = get("sslkey", "PGSSLKEY");
  if (tls.cert.empty() != tls.key.empty()) return OperatorError("sslcert and sslkey go together");
  return tls;
}

Result<SslMode> ParseSslMode(std::string_view text) {
  for (SslMode m : {SslMode::kDisable, SslMode::kAllow, SslMode::kPrefer, SslMode::kRequire, SslMode::kVerifyCa,
                    SslMode::kVerifyFull})
    if (text == SslModeName(m)) return m;
  return OperatorError(fmt::format(
      "sslmode \"{}\" is not one of disable, allow, prefer, require, verify-ca, verify-full", text));
}

const char* SslModeName(SslMode mode) {
  switch (mode) {
    case SslMode::kDisable: return "disable";
    case SslMode::kAllow: return "allow";
    case SslMode::kPrefer: return "prefer";
    case SslMode::kRequire: return "require";
    case SslMode::kVerifyCa: return "verify-ca";
    case SslMode::kVerifyFull: return "verify-full";
  }
  return "?";
}

Status BackendWrite(const Backend& b, std::string_view bytes) {
  if (!b.ssl) return WriteAll(b.fd, bytes);
  while (!bytes.empty()) {
    const int n = SSL_write(b.ssl.get(), bytes.data(), static_cast<int>(std::min<size_t>(bytes.size(), 1 << 30)));
    if (n <= 0) {
      const int err = SSL_get_error(b.ssl.get(), n);
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        RETURN_IF_ERROR(WaitFd(b.fd, err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, -1));
        continue;
      }
      ERR_clear_error();
      return RetryCall("write: TLS connection lost");
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

bool BackendPending(const Backend& b) { return b.ssl && SSL_pending(b.ssl.get()) > 0; }

ssize_t BackendRead(const Backend& b, char* buf, size_t n, bool dont_wait) {
  if (!b.ssl) return ::recv(b.fd, buf, n, dont_wait ? MSG_DONTWAIT : 0);
  if (dont_wait && SSL_pending(b.ssl.get()) == 0) {
    pollfd p{b.fd, POLLIN, 0};
    if (::poll(&p, 1, 0) == 0) {
      errno = EAGAIN;
      return -1;
    }
  }
  const int r = SSL_read(b.ssl.get(), buf, static_cast<int>(std::min<size_t>(n, 1 << 30)));
  if (r > 0) return r;
  const int err = SSL_get_error(b.ssl.get(), r);
  ERR_clear_error();
  if (err == SSL_ERROR_ZERO_RETURN) return 0;
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    errno = dont_wait ? EAGAIN : EINTR;
    return -1;
  }
  if (err == SSL_ERROR_SYSCALL && errno == 0) return 0;  // closed without close_notify
  if (errno == 0 || errno == EAGAIN || errno == EINTR) errno = ECONNRESET;
  return -1;
}

Result<Message> ReadBackendMessage(const Backend& b, FrameReader& reader, int timeout_ms) {
  if (!b.ssl) return ReadMessage(b.fd, reader, timeout_ms);
  const int64_t deadline = timeout_ms >= 0 ? NowMonotonicMs() + timeout_ms : -1;
  for (;;) {
    ASSIGN_OR_RETURN(std::optional<Message> m, reader.Next());
    if (m) return std::move(*m);
    if (deadline >= 0 && !BackendPending(b)) RETURN_IF_ERROR(WaitFd(b.fd, POLLIN, deadline));
    char* buf = reader.PrepareWrite(kReadChunk);
    const ssize_t n = BackendRead(b, buf, kReadChunk, false);
    if (n > 0) {
      reader.CommitWrite(static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return RetryCall("connection closed by the peer");
    if (errno == EINTR) continue;
    return RetryCall(fmt::format("read: {}", ErrnoText(errno)));
  }
}

void CloseBackend(Backend& b) {
  if (b.ssl) {
    SSL_shutdown(b.ssl.get());  // one close_notify; no wait for the server's
    ERR_clear_error();
    b.ssl.reset();
  }
  if (b.fd >= 0) ::close(b.fd);
  b.fd = -1;
}

Status WriteAll(int fd, std::string_view bytes) {
  bool is_socket = true;
  while (!bytes.empty()) {
    const ssize_t n =
        is_socket ? ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) : ::write(fd, bytes.data(), bytes.size());
    if (n >= 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == ENOTSOCK && is_socket) {
      is_socket = false;
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      RETURN_IF_ERROR(WaitFd(fd, POLLOUT, -1));
      continue;
    }
    return RetryCall(fmt::format("write: {}", ErrnoText(errno)));
  }
  return Status::Ok();
}

Result<Message> ReadMessage(int fd, FrameReader& reader, int timeout_ms) {
  const int64_t deadline = timeout_ms >= 0 ? NowMonotonicMs() + timeout_ms : -1;
  for (;;) {
    ASSIGN_OR_RETURN(std::optional<Message> m, reader.Next());
    if (m) return std::move(*m);
    if (deadline >= 0) RETURN_IF_ERROR(WaitFd(fd, POLLIN, deadline));
    char* buf = reader.PrepareWrite(kReadChunk);
    const ssize_t n = ::read(fd, buf, kReadChunk);
    if (n > 0) {
      reader.CommitWrite(static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return RetryCall("connection closed by the peer");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      RETURN_IF_ERROR(WaitFd(fd, POLLIN, deadline));
      continue;
    }
    return RetryCall(fmt::format("read: {}", ErrnoText(errno)));
  }
}

}  // namespace midflight::pgwire
