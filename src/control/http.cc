// HTTP/1.1 server and client over TCP or a unix socket; see http.h.
//
// A connection's life (ServeConnection): on a TLS listener first
//
//   kHandshake a client whose first byte is an ASCII letter speaks plain HTTP:
//              it gets a plain 400 naming https; else the TLS handshake
//
// then a loop over four states:
//
//   kReadHead  bytes until "\r\n\r\n" (≤ max_header_bytes, else 431); parse it
//              (a malformed head is answered 400/411/413/505, then closed)
//   kReadBody  Content-Length bytes (after "100 Continue" when asked)
//   kHandle    the handler; an exception becomes a 500
//   kWrite     the response; then back to kReadHead on keep-alive, else a
//              lingering close (shut down our side, drain the peer's for ≤ 1 s)
//
// Bytes go through a Stream: the socket, or OpenSSL over it (through a BIO
// that sends with MSG_NOSIGNAL). Every wait is a poll() on the socket and on
// the server's wake pipe, bounded by the idle timeout, so Stop() reaches each
// thread at its next wait. The
// loop is written as straight-line code rather than an explicit enum: each
// state runs once per request, in order.
#include "control/http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <exception>
#include <list>
#include <mutex>
#include <system_error>
#include <thread>

#include "base/clock.h"
#include "base/log.h"

namespace midflight::http {
namespace {

constexpr std::string_view kHeadEnd = "\r\n\r\n";
constexpr int64_t kNoDeadline = INT64_MAX;
constexpr int kLingerMs = 1000;
constexpr size_t kMaxResponseHeadBytes = 64 * 1024;
constexpr size_t kMaxResponseBodyBytes = 256 * 1024 * 1024;
constexpr char kInternalErrorBody[] = R"({"error":"internal server error"})";

std::string ErrnoText(int err) {
  return std::error_code(err, std::generic_category()).message();
}

char LowerChar(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = LowerChar(c);
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerChar(a[i]) != LowerChar(b[i])) return false;
  }
  return true;
}

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c)) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

// A field value may hold visible characters, spaces, tabs and obs-text, but
// no other control character.
bool IsFieldValue(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && u != '\t') || u == 0x7f;
  });
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True when the comma-separated `list` holds `token` (case-insensitive).
bool HasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    if (EqualsIgnoreCase(TrimOws(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

std::optional<size_t> ParseLength(std::string_view s) {
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), IsDigit)) return std::nullopt;
  size_t n = 0;
  for (char c : s) n = n * 10 + static_cast<size_t>(c - '0');
  return n;
}

int HexValue(char c) {
  if (IsDigit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits the head into CRLF-terminated lines. `head` ends with "\r\n\r\n".
// Returns false on a bare CR or LF inside a line.
bool NextLine(std::string_view head, size_t* pos, std::string_view* line) {
  size_t end = head.find("\r\n", *pos);
  if (end == std::string_view::npos) return false;
  *line = head.substr(*pos, end - *pos);
  *pos = end + 2;
  return line->find_first_of("\r\n") == std::string_view::npos;
}

// Reads "Name: value" lines until the empty line, calling add(lowercased
// name, value). Returns an error text, or "" when the lines are well formed.
template <typename Add>
std::string ParseHeaderLines(std::string_view head, size_t pos, Add add) {
  std::string_view line;
  while (true) {
    if (!NextLine(head, &pos, &line)) return "bare CR or LF in a header line";
    if (line.empty()) return pos == head.size() ? "" : "data after the end of the head";
    if (line.front() == ' ' || line.front() == '\t') return "obsolete header line folding is not supported";
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return "header line without a colon";
    std::string_view name = line.substr(0, colon);
    if (!IsToken(name)) return "invalid header name";
    std::string_view value = TrimOws(line.substr(colon + 1));
    if (!IsFieldValue(value)) return "control character in a header value";
    std::string error = add(ToLower(name), value);
    if (!error.empty()) return error;
  }
}

// ---- Addresses ----

struct Endpoint {
  bool is_unix = false;
  std::string path;        // unix
  std::string host, port;  // TCP; host without brackets
};

Result<Endpoint> ParseAddress(const std::string& address, bool allow_port_zero) {
  Endpoint ep;
  if (address.starts_with("unix:")) {
    ep.is_unix = true;
    ep.path = address.substr(5);
    if (ep.path.empty()) return InvalidArgument(fmt::format("address \"{}\" has no socket path", address));
    if (ep.path.size() >= sizeof(sockaddr_un::sun_path)) {
      return InvalidArgument(
          fmt::format("socket path of \"{}\" is longer than {} bytes", address, sizeof(sockaddr_un::sun_path) - 1));
    }
    if (ep.path.find('\0') != std::string::npos) {
      return InvalidArgument(fmt::format("socket path of \"{}\" holds a NUL byte", address));
    }
    return ep;
  }
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return InvalidArgument(fmt::format("address \"{}\": expected HOST:PORT or unix:/path", address));
  }
  std::string_view host = std::string_view(address).substr(0, colon);
  std::string_view port = std::string_view(address).substr(colon + 1);
  if (host.starts_with('[')) {
    if (host.size() < 3 || !host.ends_with(']')) {
      return InvalidArgument(fmt::format("address \"{}\": unbalanced brackets around the host", address));
    }
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return InvalidArgument(fmt::format("address \"{}\": write an IPv6 host in brackets, as [::1]:PORT", address));
  }
  if (host.empty()) return InvalidArgument(fmt::format("address \"{}\" has no host", address));
  std::optional<size_t> port_number = ParseLength(port);
  if (!port_number || port.size() > 5 || *port_number > 65535 || (*port_number == 0 && !allow_port_zero)) {
    return InvalidArgument(
        fmt::format("address \"{}\": port must be a number from {} to 65535", address, allow_port_zero ? 0 : 1));
  }
  ep.host = std::string(host);
  ep.port = std::to_string(*port_number);
  return ep;
}

std::string FormatSockaddr(const sockaddr_storage& ss) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    return fmt::format("{}:{}", ip, ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    return fmt::format("[{}]:{}", ip, ntohs(in6->sin6_port));
  }
  return "unknown";
}

std::string UnixPeer(int fd) {
#ifdef SO_PEERCRED
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    return fmt::format("unix:uid={},pid={}", cred.uid, cred.pid);
  }
#else
  (void)fd;
#endif
  return "unix";
}

sockaddr_un UnixSockaddr(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());  // length checked by ParseAddress
  return addr;
}

// ---- File descriptors and waiting ----

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) Reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }

  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

int RemainingMs(int64_t deadline) {
  if (deadline == kNoDeadline) return -1;
  int64_t left = deadline - NowMonotonicMs();
  return static_cast<int>(std::clamp<int64_t>(left, 0, INT_MAX));
}

int64_t DeadlineIn(int timeout_ms) {
  return timeout_ms > 0 ? NowMonotonicMs() + timeout_ms : kNoDeadline;
}

enum class Io { kOk, kEof, kTimeout, kStopped, kError };

// Waits until `fd` is ready for `events`, the wake pipe (-1: none) is
// readable, or the deadline passes.
Io WaitFor(int fd, short events, int wake_fd, int64_t deadline, int* err) {
  pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
  nfds_t count = wake_fd >= 0 ? 2 : 1;
  while (true) {
    int n = poll(fds, count, RemainingMs(deadline));
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return Io::kError;
    }
    if (n == 0) return Io::kTimeout;
    if (count == 2 && fds[1].revents != 0) return Io::kStopped;
    return Io::kOk;  // readiness, or an error the next recv/send reports
  }
}

// ---- TLS ----

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown TLS error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// OpenSSL's socket BIO writes with write(2), which raises SIGPIPE on a
// closed peer; this one uses send(MSG_NOSIGNAL) so that a library never
// depends on its process ignoring SIGPIPE. The BIO's data is the fd.
int BioWrite(BIO* bio, const char* data, size_t size, size_t* written) {
  BIO_clear_retry_flags(bio);
  ssize_t n = send(static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(bio))), data, size, MSG_NOSIGNAL);
  if (n >= 0) {
    *written = static_cast<size_t>(n);
    return 1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_write(bio);
  return 0;
}

int BioRead(BIO* bio, char* data, size_t size, size_t* read) {
  BIO_clear_retry_flags(bio);
  ssize_t n = recv(static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(bio))), data, size, 0);
  if (n > 0) {
    *read = static_cast<size_t>(n);
    return 1;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(bio);
  if (n == 0) errno = 0;  // end of stream
  return 0;
}

long BioCtrl(BIO* /*bio*/, int cmd, long /*num*/, void* /*ptr*/) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

const BIO_METHOD* SocketBioMethod() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "midflight socket");
    if (m != nullptr) {
      BIO_meth_set_write_ex(m, BioWrite);
      BIO_meth_set_read_ex(m, BioRead);
      BIO_meth_set_ctrl(m, BioCtrl);
    }
    return m;
  }();
  return method;
}

using SslCtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

// Errors name the file at fault; kInvalidArgument.
Result<SslCtxPtr> MakeServerContext(const std::string& cert_file, const std::string& key_file) {
  for (const auto& [what, file] : {std::pair{"certificate", &cert_file}, std::pair{"key", &key_file}}) {
    if (access(file->c_str(), R_OK) != 0) {
      return InvalidArgument(fmt::format("cannot read the TLS {} {}: {}", what, *file, ErrnoText(errno)));
    }
  }
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (ctx == nullptr) return Internal(fmt::format("SSL_CTX_new: {}", OpenSslError()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1) {
    return InvalidArgument(fmt::format("cannot load the TLS certificate {}: {}", cert_file, OpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
      return InvalidArgument(fmt::format("cannot load the TLS key {}: {}", key_file, OpenSslError()));
    }
    ERR_clear_error();
    return InvalidArgument(fmt::format("the TLS key {} does not match the certificate {}", key_file, cert_file));
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    ERR_clear_error();
    return InvalidArgument(fmt::format("the TLS key {} does not match the certificate {}", key_file, cert_file));
  }
  return ctx;
}

Result<SslCtxPtr> MakeClientContext(const std::string& ca_file) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (ctx == nullptr) return Internal(fmt::format("SSL_CTX_new: {}", OpenSslError()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (!ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) {
      return InvalidArgument(fmt::format("cannot load the CA file {}: {}", ca_file, OpenSslError()));
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    return Internal(fmt::format("cannot load the system's certificate store: {}", OpenSslError()));
  }
  return ctx;
}

// A connection's bytes: the socket itself, or TLS over it. The socket is
// non-blocking and not owned; every wait is a WaitFor() on it and the wake
// pipe (-1: none), bounded by the deadline.
class Stream {
 public:
  explicit Stream(int fd) : fd_(fd) {}
  ~Stream() {
    if (ssl_ != nullptr) SSL_free(ssl_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  int fd() const { return fd_; }
  // Why the last kError came from TLS; "" when it was the socket's.
  const std::string& tls_error() const { return tls_error_; }
  // The peer's certificate did not verify (client side).
  bool untrusted() const { return untrusted_; }

  // Runs the TLS handshake over the socket: as the server, or as a client
  // verifying the server's certificate for `host` (a name or an IP address).
  Io Handshake(SSL_CTX* ctx, bool server, const std::string& host, int wake_fd, int64_t deadline, int* err) {
    ssl_ = SSL_new(ctx);
    BIO* bio = ssl_ != nullptr ? BIO_new(SocketBioMethod()) : nullptr;
    if (bio == nullptr) return TlsFailed(err, "SSL_new: " + OpenSslError());
    BIO_set_data(bio, reinterpret_cast<void*>(static_cast<intptr_t>(fd_)));
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl_, bio, bio);
    if (server) {
      SSL_set_accept_state(ssl_);
    } else {
      unsigned char ip[16];
      bool is_ip = inet_pton(AF_INET, host.c_str(), ip) == 1 || inet_pton(AF_INET6, host.c_str(), ip) == 1;
      bool named = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str()) == 1
                         : SSL_set_tlsext_host_name(ssl_, host.c_str()) == 1 && SSL_set1_host(ssl_, host.c_str()) == 1;
      if (!named) return TlsFailed(err, "cannot set the TLS host name: " + OpenSslError());
      SSL_set_connect_state(ssl_);
    }
    while (true) {
      ClearErrors();
      int rc = SSL_do_handshake(ssl_);
      if (rc == 1) return Io::kOk;
      short events = 0;
      if (Io io = TlsWait(rc, &events, err); io != Io::kOk) return io;
      if (Io io = WaitFor(fd_, events, wake_fd, deadline, err); io != Io::kOk) return io;
    }
  }

  // Appends at least one byte to *buf, or says why not.
  Io Read(std::string* buf, int wake_fd, int64_t deadline, int* err) {
    constexpr size_t kChunk = 64 * 1024;
    while (true) {
      size_t old = buf->size();
      buf->resize(old + kChunk);
      size_t n = 0;
      short events = POLLIN;
      if (ssl_ != nullptr) {
        ClearErrors();
        int rc = SSL_read_ex(ssl_, buf->data() + old, kChunk, &n);
        buf->resize(old + n);
        if (rc == 1) return Io::kOk;
        if (Io io = TlsWait(rc, &events, err); io != Io::kOk) return io;
      } else {
        ssize_t rc = recv(fd_, buf->data() + old, kChunk, 0);
        buf->resize(old + static_cast<size_t>(std::max<ssize_t>(rc, 0)));
        if (rc > 0) return Io::kOk;
        if (rc == 0) return Io::kEof;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          *err = errno;
          return Io::kError;
        }
      }
      if (Io io = WaitFor(fd_, events, wake_fd, deadline, err); io != Io::kOk) return io;
    }
  }

  Io Write(std::string_view data, int wake_fd, int64_t deadline, int* err) {
    while (!data.empty()) {
      size_t n = 0;
      short events = POLLOUT;
      if (ssl_ != nullptr) {
        ClearErrors();
        int rc = SSL_write_ex(ssl_, data.data(), data.size(), &n);
        if (rc != 1) {
          if (Io io = TlsWait(rc, &events, err); io != Io::kOk) return io == Io::kEof ? Io::kError : io;
        }
      } else {
        ssize_t rc = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (rc < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
          *err = errno;
          return Io::kError;
        }
        n = rc > 0 ? static_cast<size_t>(rc) : 0;
      }
      data.remove_prefix(n);
      if (n == 0) {
        if (Io io = WaitFor(fd_, events, wake_fd, deadline, err); io != Io::kOk) return io;
      }
    }
    return Io::kOk;
  }

  // Ends our side of the stream: a TLS close_notify (best effort), then EOF.
  void ShutdownWrite() {
    if (ssl_ != nullptr) {
      ClearErrors();
      (void)SSL_shutdown(ssl_);
      ERR_clear_error();
    }
    shutdown(fd_, SHUT_WR);
  }

 private:
  // Before a TLS call, so that SSL_ERROR_SYSCALL with errno 0 means end of stream.
  static void ClearErrors() {
    ERR_clear_error();
    errno = 0;
  }

  Io TlsFailed(int* err, std::string why) {
    tls_error_ = std::move(why);
    *err = EPROTO;
    return Io::kError;
  }

  // After a TLS call returned `rc`: kOk with what to wait for, or the outcome.
  Io TlsWait(int rc, short* events, int* err) {
    switch (SSL_get_error(ssl_, rc)) {
      case SSL_ERROR_WANT_READ: *events = POLLIN; return Io::kOk;
      case SSL_ERROR_WANT_WRITE: *events = POLLOUT; return Io::kOk;
      case SSL_ERROR_ZERO_RETURN: return Io::kEof;
      case SSL_ERROR_SYSCALL:
        if (errno == 0) return Io::kEof;
        if (errno == EINTR) {
          *events = POLLIN | POLLOUT;
          return Io::kOk;
        }
        *err = errno;
        return Io::kError;
      default: {
        long verify = SSL_get_verify_result(ssl_);
        if (!SSL_is_server(ssl_) && verify != X509_V_OK) {
          untrusted_ = true;
          ERR_clear_error();
          return TlsFailed(err, fmt::format("certificate not trusted: {}", X509_verify_cert_error_string(verify)));
        }
        return TlsFailed(err, OpenSslError());
      }
    }
  }

  const int fd_;
  SSL* ssl_ = nullptr;
  std::string tls_error_;
  bool untrusted_ = false;
};

// After our last response: shut down our side so the peer sees EOF, then
// read and drop what it still sends until it closes, so that closing does not
// reset the connection before the peer has read the response.
void LingeringClose(Stream& stream, int wake_fd) {
  stream.ShutdownWrite();
  int64_t deadline = NowMonotonicMs() + kLingerMs;
  std::string sink;
  int err = 0;
  while (stream.Read(&sink, wake_fd, deadline, &err) == Io::kOk) sink.clear();
}

// A TLS listener's first bytes from a client that speaks plain HTTP: an
// ASCII method rather than a TLS record (0x16, handshake).
bool LooksLikePlainHttp(int fd, int wake_fd, int64_t deadline) {
  int err = 0;
  if (WaitFor(fd, POLLIN, wake_fd, deadline, &err) != Io::kOk) return false;
  unsigned char first = 0;
  return recv(fd, &first, 1, MSG_PEEK) == 1 && first >= 'A' && first <= 'Z';
}

std::string ErrorJson(std::string_view message) {
  return fmt::format(R"({{"error":"{}"}})", JsonEscape(message));
}

// ---- Listening ----

Result<Fd> ListenUnix(const std::string& path, struct stat* bound) {
  sockaddr_un addr = UnixSockaddr(path);
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return OperatorError(fmt::format("cannot listen on unix:{}: the path exists and is not a socket", path));
    }
    Fd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.get() < 0) return Internal(fmt::format("socket(AF_UNIX): {}", ErrnoText(errno)));
    if (connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 || errno == EAGAIN) {
      return OperatorError(fmt::format("cannot listen on unix:{}: a server is already listening there", path));
    }
    if (errno != ECONNREFUSED) {
      return OperatorError(
          fmt::format("cannot listen on unix:{}: checking the existing socket: {}", path, ErrnoText(errno)));
    }
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return OperatorError(fmt::format("cannot remove the stale socket unix:{}: {}", path, ErrnoText(errno)));
    }
    LOG_INFO("http: removed stale socket unix:{}", path);
  } else if (errno != ENOENT) {
    return OperatorError(fmt::format("cannot listen on unix:{}: {}", path, ErrnoText(errno)));
  }

  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return Internal(fmt::format("socket(AF_UNIX): {}", ErrnoText(errno)));
  // Linux gives the file that bind() creates the socket inode's mode (less
  // the umask), so the socket is never reachable with wider permissions. The
  // chmod below covers systems that ignore it.
  (void)fchmod(fd.get(), 0600);
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return OperatorError(fmt::format("cannot listen on unix:{}: {}", path, ErrnoText(errno)));
  }
  if (chmod(path.c_str(), 0600) != 0 || listen(fd.get(), SOMAXCONN) != 0 || stat(path.c_str(), bound) != 0) {
    int err = errno;
    unlink(path.c_str());
    return OperatorError(fmt::format("cannot listen on unix:{}: {}", path, ErrnoText(err)));
  }
  return fd;
}

Result<Fd> ListenTcp(const std::string& address, const Endpoint& ep, std::string* actual) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* list = nullptr;
  int rc = getaddrinfo(ep.host.c_str(), ep.port.c_str(), &hints, &list);
  if (rc != 0) return OperatorError(fmt::format("cannot listen on {}: {}", address, gai_strerror(rc)));
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> owner(list, freeaddrinfo);

  int last_err = EADDRNOTAVAIL;
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    Fd fd(socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0) {
      last_err = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd.get(), SOMAXCONN) != 0) {
      last_err = errno;
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
      last_err = errno;
      continue;
    }
    *actual = FormatSockaddr(ss);
    return fd;
  }
  return OperatorError(fmt::format("cannot listen on {}: {}", address, ErrnoText(last_err)));
}

// ---- Connecting ----

Status ConnectError(const std::string& address, int err) {
  switch (err) {
    case ECONNREFUSED: return RetryCall(fmt::format("cannot connect to {}: connection refused", address));
    case ENOENT: return RetryCall(fmt::format("cannot connect to {}: no such socket", address));
    case EACCES:
    case EPERM: return OperatorError(fmt::format("cannot connect to {}: permission denied", address));
    default: return RetryCall(fmt::format("cannot connect to {}: {}", address, ErrnoText(err)));
  }
}

Status TimedOut(const std::string& address, int timeout_ms, std::string_view what) {
  return RetryCall(fmt::format("timed out after {} ms {} {}", timeout_ms, what, address));
}

Result<Fd> ConnectUnix(const std::string& address, const Endpoint& ep, int64_t deadline, int timeout_ms) {
  sockaddr_un addr = UnixSockaddr(ep.path);
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return Internal(fmt::format("socket(AF_UNIX): {}", ErrnoText(errno)));
  while (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return ConnectError(address, errno);
    // The server's backlog is full: try again shortly.
    if (RemainingMs(deadline) == 0) return TimedOut(address, timeout_ms, "connecting to");
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(10, std::max(RemainingMs(deadline), 1))));
  }
  return fd;
}

Result<Fd> ConnectTcp(const std::string& address, const Endpoint& ep, int64_t deadline, int timeout_ms) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  int rc = getaddrinfo(ep.host.c_str(), ep.port.c_str(), &hints, &list);
  if (rc == EAI_AGAIN) return RetryCall(fmt::format("cannot resolve {}: {}", address, gai_strerror(rc)));
  if (rc != 0) return OperatorError(fmt::format("cannot resolve {}: {}", address, gai_strerror(rc)));
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> owner(list, freeaddrinfo);

  int last_err = ECONNREFUSED;
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    Fd fd(socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0) {
      last_err = errno;
      continue;
    }
    int err = 0;
    if (connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS || err == EINTR) {
        Io io = WaitFor(fd.get(), POLLOUT, -1, deadline, &err);
        if (io == Io::kTimeout) return TimedOut(address, timeout_ms, "connecting to");
        if (io == Io::kOk) {
          socklen_t len = sizeof err;
          if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        }
      }
    }
    if (err != 0) {
      last_err = err;
      continue;
    }
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
  }
  return ConnectError(address, last_err);
}

}  // namespace

// ---- Helpers ----

std::string UrlDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out += c;
    } else {
      auto u = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

std::string JsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20) {
            out += fmt::format("\\u{:04x}", c);
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // A multi-byte UTF-8 sequence: copied when valid (shortest form, no
    // surrogates, ≤ U+10FFFF), else its first byte becomes U+FFFD.
    size_t len = 0;
    uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    }
    bool valid = len != 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      valid = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3F);
    }
    valid = valid && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (valid) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  return out;
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string Request::QueryParam(std::string_view name) const {
  std::string_view rest = query;
  while (true) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    size_t eq = pair.find('=');
    if (UrlDecode(pair.substr(0, eq)) == name) {
      return eq == std::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) return "";
    rest.remove_prefix(amp + 1);
  }
}

std::optional<std::string> Request::Header(std::string_view lower_name) const {
  auto it = headers.find(std::string(lower_name));
  if (it == headers.end()) return std::nullopt;
  return it->second;
}

Response Json(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response Text(int status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(body);
  return r;
}

// ---- Codec ----

HeadParse ParseRequestHead(std::string_view head, const ServerOptions& limits) {
  HeadParse out;
  auto fail = [&out](int status, std::string why) {
    out.error_status = status;
    out.error = std::move(why);
    return out;
  };
  if (head.size() > limits.max_header_bytes) {
    return fail(431, fmt::format("request head is larger than {} bytes", limits.max_header_bytes));
  }
  if (!head.ends_with(kHeadEnd)) return fail(400, "request head does not end with an empty line");

  size_t pos = 0;
  std::string_view line;
  if (!NextLine(head, &pos, &line)) return fail(400, "bare CR or LF in the request line");
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return fail(400, "malformed request line");
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method)) return fail(400, "malformed request method");
  if (target.empty() || !std::all_of(target.begin(), target.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return fail(400, "malformed request target");
  }
  bool http10 = version == "HTTP/1.0";
  if (!http10 && version != "HTTP/1.1") {
    if (version.size() == 8 && version.starts_with("HTTP/") && IsDigit(version[5]) && version[6] == '.' &&
        IsDigit(version[7])) {
      return fail(505, fmt::format("HTTP version {} is not supported; use HTTP/1.1", version));
    }
    return fail(400, "malformed HTTP version");
  }
  // origin-form "/p?q", absolute-form "http://host/p?q", asterisk-form "*".
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() >= scheme.size() && EqualsIgnoreCase(target.substr(0, scheme.size()), scheme)) {
      target.remove_prefix(scheme.size());
      size_t path_start = target.find_first_of("/?");
      target = path_start == std::string_view::npos ? "" : target.substr(path_start);
      out.head.path = "/";  // unless the target names one
      break;
    }
  }
  if (!out.head.path.empty()) {
    if (!target.empty() && target.front() == '/') out.head.path.clear();
  } else if (target.front() != '/' && !(target == "*" && method == "OPTIONS")) {
    return fail(400, "malformed request target");
  }
  size_t q = target.find('?');
  if (out.head.path.empty()) out.head.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) out.head.query = std::string(target.substr(q + 1));
  out.head.method = std::string(method);

  auto& headers = out.head.headers;
  std::string error = ParseHeaderLines(head, pos, [&headers](std::string name, std::string_view value) {
    auto [it, inserted] = headers.try_emplace(std::move(name), value);
    if (inserted) return std::string();
    if (it->first == "host") return std::string("more than one Host header");
    if (it->first == "content-length") {
      return it->second == value ? std::string() : std::string("conflicting Content-Length headers");
    }
    it->second.append(", ").append(value);
    return std::string();
  });
  if (!error.empty()) return fail(400, error);

  if (!http10 && !headers.contains("host")) return fail(400, "missing Host header");
  if (headers.contains("transfer-encoding")) {
    return fail(411, "request bodies must be sent with Content-Length; Transfer-Encoding is not supported");
  }
  if (auto it = headers.find("content-length"); it != headers.end()) {
    std::optional<size_t> length = ParseLength(it->second);
    if (!length) return fail(400, "invalid Content-Length");
    if (*length > limits.max_body_bytes) {
      return fail(413, fmt::format("request body of {} bytes is larger than the limit of {} bytes", *length,
                                   limits.max_body_bytes));
    }
    out.head.content_length = *length;
  }
  std::string_view connection;
  if (auto it = headers.find("connection"); it != headers.end()) connection = it->second;
  out.head.keep_alive = !HasToken(connection, "close") && (!http10 || HasToken(connection, "keep-alive"));
  if (auto it = headers.find("expect"); it != headers.end()) {
    out.head.expect_continue = EqualsIgnoreCase(it->second, "100-continue");
  }
  return out;
}

std::string SerializeResponse(const Response& response, bool keep_alive, bool head_only) {
  int status = response.status;
  bool has_body = status >= 200 && status != 204 && status != 304;
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", status, ReasonPhrase(status));
  if (has_body && !response.content_type.empty() && IsFieldValue(response.content_type)) {
    out += fmt::format("Content-Type: {}\r\n", response.content_type);
  }
  if (has_body) out += fmt::format("Content-Length: {}\r\n", response.body.size());
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const auto& [name, value] : response.headers) {
    if (!IsToken(name) || !IsFieldValue(value) || EqualsIgnoreCase(name, "content-length") ||
        EqualsIgnoreCase(name, "connection") || EqualsIgnoreCase(name, "transfer-encoding")) {
      continue;
    }
    out += fmt::format("{}: {}\r\n", name, value);
  }
  out += "\r\n";
  if (has_body && !head_only) out += response.body;
  return out;
}

Result<ResponseHead> ParseResponseHead(std::string_view head) {
  if (!head.ends_with(kHeadEnd)) return InvalidArgument("response head does not end with an empty line");
  size_t pos = 0;
  std::string_view line;
  if (!NextLine(head, &pos, &line)) return InvalidArgument("bare CR or LF in the status line");
  // "HTTP/1.1 200 OK"; the reason phrase may be empty.
  if (line.size() < 12 || !line.starts_with("HTTP/1.") || !IsDigit(line[7]) || line[8] != ' ' ||
      !std::all_of(line.begin() + 9, line.begin() + 12, IsDigit) || (line.size() > 12 && line[12] != ' ')) {
    return InvalidArgument(fmt::format("malformed status line \"{}\"", line.substr(0, 80)));
  }
  ResponseHead out;
  out.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  std::string error = ParseHeaderLines(head, pos, [&out](std::string name, std::string_view value) {
    if (name == "content-length") {
      std::optional<size_t> length = ParseLength(value);
      if (!length || (out.content_length && *out.content_length != *length)) {
        return std::string("invalid Content-Length");
      }
      out.content_length = length;
    }
    if (name == "transfer-encoding") return std::string("Transfer-Encoding is not supported");
    out.headers.emplace_back(std::move(name), std::string(value));
    return std::string();
  });
  if (!error.empty()) return InvalidArgument(error);
  return out;
}

// ---- Server ----

class Server::Impl {
 public:
  Impl(Fd listener, Fd wake_read, Fd wake_write, Handler handler, ServerOptions options, std::string address,
       std::optional<struct stat> unix_file, SslCtxPtr tls)
      : listener_(std::move(listener)),
        wake_read_(std::move(wake_read)),
        wake_write_(std::move(wake_write)),
        handler_(std::move(handler)),
        options_(options),
        address_(std::move(address)),
        unix_file_(unix_file),
        tls_(std::move(tls)) {}

  ~Impl() { Stop(); }

  Status Start() {
    try {
      accept_thread_ = std::thread([this] { AcceptLoop(); });
    } catch (const std::system_error& e) {
      return Internal(fmt::format("http {}: cannot start the accept thread: {}", address_, e.what()));
    }
    return Status::Ok();
  }

  void Stop() {
    std::call_once(stop_once_, [this] {
      stopping_ = true;
      char byte = 1;
      while (write(wake_write_.get(), &byte, 1) < 0 && errno == EINTR) {
      }
      if (accept_thread_.joinable()) accept_thread_.join();
      listener_.Reset();
      std::list<std::unique_ptr<Conn>> conns;
      {
        std::lock_guard<std::mutex> lock(mu_);
        conns.swap(conns_);
      }
      for (auto& conn : conns) conn->thread.join();
      if (unix_file_) {
        // Remove the socket file only if it is still ours.
        std::string path = address_.substr(5);
        struct stat st {};
        if (stat(path.c_str(), &st) == 0 && st.st_dev == unix_file_->st_dev && st.st_ino == unix_file_->st_ino) {
          unlink(path.c_str());
        }
      }
      LOG_DEBUG("http: stopped serving {}", address_);
    });
  }

 private:
  struct Conn {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  void AcceptLoop();
  void ServeConnection(int fd, const std::string& peer);
  void Reject(Stream& stream, const std::string& peer, int status, const std::string& why);
  Response CallHandler(const Request& request);
  void ReapFinished();
  void Backoff() {
    int err = 0;
    WaitFor(wake_read_.get(), POLLIN, -1, NowMonotonicMs() + 100, &err);
  }

  Fd listener_;
  Fd wake_read_, wake_write_;  // a byte in the pipe, never read, wakes every poll()
  const Handler handler_;
  const ServerOptions options_;
  const std::string address_;
  const std::optional<struct stat> unix_file_;  // the socket file we created
  const SslCtxPtr tls_;                         // null: plain HTTP
  std::atomic<bool> stopping_{false};
  std::once_flag stop_once_;
  std::thread accept_thread_;
  std::mutex mu_;
  std::list<std::unique_ptr<Conn>> conns_;  // GUARDED_BY(mu_)
};

void Server::Impl::ReapFinished() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = conns_.begin(); it != conns_.end();) {
    if ((*it)->done) {
      (*it)->thread.join();
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void Server::Impl::AcceptLoop() {
  while (true) {
    int err = 0;
    Io io = WaitFor(listener_.get(), POLLIN, wake_read_.get(), kNoDeadline, &err);
    if (stopping_ || io == Io::kStopped) return;
    if (io == Io::kError) {
      LOG_ERROR("http {}: poll: {}", address_, ErrnoText(err));
      Backoff();
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    Fd fd(accept4(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (fd.get() < 0) {
      err = errno;
      if (err == EINTR || err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED || err == EPROTO) continue;
      LOG_WARN("http {}: accept: {}", address_, ErrnoText(err));
      Backoff();
      continue;
    }
    std::string peer = ss.ss_family == AF_UNIX ? UnixPeer(fd.get()) : FormatSockaddr(ss);
    if (ss.ss_family != AF_UNIX) {
      int one = 1;
      setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ReapFinished();
    std::lock_guard<std::mutex> lock(mu_);
    if (conns_.size() >= static_cast<size_t>(std::max(options_.max_connections, 1))) {
      LOG_WARN("http {}: refusing {}: {} connections open", address_, peer, conns_.size());
      if (tls_ == nullptr) {  // over TLS the answer would need a handshake: just close
        std::string out = SerializeResponse(Json(503, ErrorJson("too many connections")), false, false);
        (void)send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL);
      }
      continue;
    }
    conns_.push_back(std::make_unique<Conn>());
    Conn* conn = conns_.back().get();
    int raw_fd = fd.Release();
    try {
      conn->thread = std::thread([this, conn, raw_fd, peer = std::move(peer)] {
        try {
          ServeConnection(raw_fd, peer);
        } catch (const std::exception& e) {
          LOG_ERROR("http {}: connection from {} failed: {}", address_, peer, e.what());
        } catch (...) {
          LOG_ERROR("http {}: connection from {} failed", address_, peer);
        }
        close(raw_fd);
        conn->done = true;
      });
    } catch (const std::system_error& e) {
      LOG_ERROR("http {}: cannot start a connection thread: {}", address_, e.what());
      close(raw_fd);
      conns_.pop_back();
    }
  }
}

void Server::Impl::Reject(Stream& stream, const std::string& peer, int status, const std::string& why) {
  LOG_DEBUG("http {}: rejected request: {} {}", peer, status, why);
  std::string out = SerializeResponse(Json(status, ErrorJson(why)), false, false);
  int err = 0;
  if (stream.Write(out, wake_read_.get(), DeadlineIn(options_.idle_timeout_ms), &err) == Io::kOk) {
    LingeringClose(stream, wake_read_.get());
  }
}

Response Server::Impl::CallHandler(const Request& request) {
  try {
    Response response = handler_(request);
    if (response.status >= 200 && response.status <= 599) return response;
    LOG_ERROR("http: handler answered {} {} with invalid status {}", request.method, request.path, response.status);
  } catch (const std::exception& e) {
    LOG_ERROR("http: handler threw on {} {}: {}", request.method, request.path, e.what());
  } catch (...) {
    LOG_ERROR("http: handler threw on {} {}", request.method, request.path);
  }
  return Json(500, kInternalErrorBody);
}

void Server::Impl::ServeConnection(int fd, const std::string& peer) {
  const int wake = wake_read_.get();
  Stream stream(fd);
  int err = 0;
  if (tls_ != nullptr) {
    // kHandshake, within the idle timeout. A client speaking plain HTTP to
    // this port gets a plain answer that says so, not a TLS alert.
    const int64_t deadline = DeadlineIn(options_.idle_timeout_ms);
    if (LooksLikePlainHttp(fd, wake, deadline)) {
      return Reject(stream, peer, 400, fmt::format("this port speaks HTTPS: use https://{}/", address_));
    }
    Io io = stream.Handshake(tls_.get(), /*server=*/true, "", wake, deadline, &err);
    if (io != Io::kOk) {
      LOG_DEBUG("http {}: TLS handshake failed: {}", peer,
                !stream.tls_error().empty() ? stream.tls_error()
                : io == Io::kError          ? ErrnoText(err)
                                            : "closed or timed out");
      return;
    }
  }
  std::string buf;  // received bytes not yet consumed; may hold a pipelined request
  auto read_more = [&](std::string_view waiting_for) {
    Io io = stream.Read(&buf, wake, DeadlineIn(options_.idle_timeout_ms), &err);
    if (io == Io::kTimeout) {
      LOG_DEBUG("http {}: closing after {} ms idle {}", peer, options_.idle_timeout_ms, waiting_for);
    } else if (io == Io::kError) {
      LOG_DEBUG("http {}: read failed {}: {}", peer, waiting_for, ErrnoText(err));
    }
    return io == Io::kOk;
  };

  while (!stopping_) {
    // kReadHead. Empty lines before a request line are ignored (RFC 9112 §2.2).
    size_t head_end, scan_from = 0;
    while (true) {
      size_t blank = 0;
      while (buf.compare(blank, 2, "\r\n") == 0) blank += 2;
      if (blank > 0) {
        buf.erase(0, blank);
        scan_from = 0;
      }
      head_end = buf.find(kHeadEnd, scan_from);
      if (head_end != std::string::npos) break;
      if (tls_ == nullptr && !buf.empty() && buf[0] == '\x16') {
        LOG_DEBUG("http {}: closing: a TLS handshake on a plain-HTTP listener", peer);
        return;  // a TLS client: a plain answer would only confuse it
      }
      if (buf.size() > options_.max_header_bytes) {
        return Reject(stream, peer, 431,
                      fmt::format("request head is larger than {} bytes", options_.max_header_bytes));
      }
      scan_from = buf.size() < 3 ? 0 : buf.size() - 3;
      if (!read_more(buf.empty() ? "between requests" : "in a request head")) return;
    }
    size_t body_start = head_end + kHeadEnd.size();
    HeadParse parsed = ParseRequestHead(std::string_view(buf).substr(0, body_start), options_);
    if (parsed.error_status != 0) return Reject(stream, peer, parsed.error_status, parsed.error);
    RequestHead& head = parsed.head;

    // kReadBody.
    size_t request_end = body_start + head.content_length;
    if (head.expect_continue && buf.size() < request_end) {
      if (stream.Write("HTTP/1.1 100 Continue\r\n\r\n", wake, DeadlineIn(options_.idle_timeout_ms), &err) != Io::kOk) {
        return;
      }
    }
    while (buf.size() < request_end) {
      if (!read_more("in a request body")) return;
    }
    Request request;
    request.method = std::move(head.method);
    request.path = std::move(head.path);
    request.query = std::move(head.query);
    request.headers = std::move(head.headers);
    request.body = buf.substr(body_start, head.content_length);
    request.peer = peer;
    buf.erase(0, request_end);

    // kHandle.
    Response response = CallHandler(request);
    bool keep_alive = head.keep_alive && !stopping_;
    LOG_DEBUG("http {} {} {} -> {}", peer, request.method, request.path, response.status);

    // kWrite.
    std::string out = SerializeResponse(response, keep_alive, request.method == "HEAD");
    Io io = stream.Write(out, wake, DeadlineIn(options_.idle_timeout_ms), &err);
    if (io != Io::kOk) {
      if (io == Io::kError) LOG_DEBUG("http {}: write failed: {}", peer, ErrnoText(err));
      return;
    }
    if (!keep_alive) return LingeringClose(stream, wake);
  }
}

Server::Server(std::unique_ptr<Impl> impl, std::string address)
    : impl_(std::move(impl)), address_(std::move(address)) {}

Server::~Server() {
  Stop();
}

void Server::Stop() {
  if (impl_) impl_->Stop();
}

Result<std::unique_ptr<Server>> Server::Listen(const std::string& address, Handler handler,
                                               const ServerOptions& options) {
  if (!handler) return InvalidArgument(fmt::format("http {}: no handler", address));
  ASSIGN_OR_RETURN(Endpoint ep, ParseAddress(address, /*allow_port_zero=*/true));
  SslCtxPtr tls(nullptr, SSL_CTX_free);
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    if (ep.is_unix) {
      return InvalidArgument(fmt::format(
          "TLS is for a TCP listener; {} is a unix socket (its file mode already keeps others out)", address));
    }
    if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
      return InvalidArgument("TLS needs both a certificate and a key file");
    }
    ASSIGN_OR_RETURN(tls, MakeServerContext(options.tls_cert_file, options.tls_key_file));
  }
  Fd listener;
  std::string actual;
  std::optional<struct stat> unix_file;
  if (ep.is_unix) {
    struct stat bound {};
    ASSIGN_OR_RETURN(listener, ListenUnix(ep.path, &bound));
    unix_file = bound;
    actual = "unix:" + ep.path;
  } else {
    ASSIGN_OR_RETURN(listener, ListenTcp(address, ep, &actual));
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    int err = errno;
    if (ep.is_unix) unlink(ep.path.c_str());
    return Internal(fmt::format("http {}: pipe: {}", address, ErrnoText(err)));
  }
  const bool https = tls != nullptr;
  auto impl = std::make_unique<Impl>(std::move(listener), Fd(pipe_fds[0]), Fd(pipe_fds[1]), std::move(handler), options,
                                     actual, unix_file, std::move(tls));
  RETURN_IF_ERROR(impl->Start());
  LOG_INFO("http: listening on {}{}", actual, https ? " (TLS)" : "");
  return std::unique_ptr<Server>(new Server(std::move(impl), actual));
}

// ---- Client ----

Result<Response> Call(const std::string& address, const std::string& method, const std::string& path_and_query,
                      const std::string& body, const std::vector<std::pair<std::string, std::string>>& headers,
                      int timeout_ms, const ClientTls& tls) {
  const int64_t deadline = DeadlineIn(timeout_ms);
  std::string_view bare = address;
  const bool https = bare.starts_with("https://");
  if (https) bare.remove_prefix(8);
  if (bare.starts_with("http://")) bare.remove_prefix(7);
  ASSIGN_OR_RETURN(Endpoint ep, ParseAddress(std::string(bare), /*allow_port_zero=*/false));
  if (https && ep.is_unix) return InvalidArgument(fmt::format("address \"{}\": https is for HOST:PORT", address));
  SslCtxPtr ctx(nullptr, SSL_CTX_free);
  if (https) {
    ASSIGN_OR_RETURN(ctx, MakeClientContext(tls.ca_file));
  }
  if (!IsToken(method)) return InvalidArgument(fmt::format("invalid HTTP method \"{}\"", method));
  if (!path_and_query.starts_with('/') ||
      !std::all_of(path_and_query.begin(), path_and_query.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return InvalidArgument(
        fmt::format("invalid request path \"{}\": it must start with '/' and hold no spaces "
                    "or control characters",
                    path_and_query));
  }

  std::string host = ep.is_unix                               ? "localhost"
                     : ep.host.find(':') != std::string::npos ? fmt::format("[{}]:{}", ep.host, ep.port)
                                                              : fmt::format("{}:{}", ep.host, ep.port);
  std::string request =
      fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", method, path_and_query, host);
  bool has_content_type = false;
  for (const auto& [name, value] : headers) {
    if (!IsToken(name) || !IsFieldValue(value)) {
      return InvalidArgument(fmt::format("invalid request header \"{}\"", name));
    }
    if (EqualsIgnoreCase(name, "host") || EqualsIgnoreCase(name, "connection") ||
        EqualsIgnoreCase(name, "content-length") || EqualsIgnoreCase(name, "transfer-encoding")) {
      continue;
    }
    has_content_type = has_content_type || EqualsIgnoreCase(name, "content-type");
    request += fmt::format("{}: {}\r\n", name, value);
  }
  if (!body.empty() && !has_content_type) request += "Content-Type: application/json\r\n";
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    request += fmt::format("Content-Length: {}\r\n", body.size());
  }
  request += "\r\n";
  request += body;

  Fd fd;
  if (ep.is_unix) {
    ASSIGN_OR_RETURN(fd, ConnectUnix(address, ep, deadline, timeout_ms));
  } else {
    ASSIGN_OR_RETURN(fd, ConnectTcp(address, ep, deadline, timeout_ms));
  }
  Stream stream(fd.get());
  int err = 0;
  Io io = Io::kOk;
  if (https) {
    io = stream.Handshake(ctx.get(), /*server=*/false, ep.host, -1, deadline, &err);
    if (io == Io::kTimeout) return TimedOut(address, timeout_ms, "in the TLS handshake with");
    if (io == Io::kEof) {
      return OperatorError(
          fmt::format("{} closed the connection in the TLS handshake (does it speak https?)", address));
    }
    if (io != Io::kOk && stream.untrusted()) return OperatorError(fmt::format("{}: {}", address, stream.tls_error()));
    if (io != Io::kOk && !stream.tls_error().empty()) {
      return OperatorError(
          fmt::format("TLS handshake with {} failed (does it speak https?): {}", address, stream.tls_error()));
    }
    if (io != Io::kOk) {
      return RetryCall(fmt::format("connection to {} lost in the TLS handshake: {}", address, ErrnoText(err)));
    }
  }

  io = stream.Write(request, -1, deadline, &err);
  if (io == Io::kTimeout) return TimedOut(address, timeout_ms, "sending a request to");
  // On a write error the server may have answered early (413) and closed:
  // read its answer if there is one.
  bool send_failed = io != Io::kOk;

  auto lost = [&](std::string_view when) {
    if (send_failed) return RetryCall(fmt::format("connection to {} lost while sending: {}", address, ErrnoText(err)));
    return RetryCall(fmt::format("{} closed the connection {}", address, when));
  };
  std::string buf;
  ResponseHead head;
  size_t body_start = 0;
  while (true) {  // skips interim 1xx responses
    size_t head_end;
    while ((head_end = buf.find(kHeadEnd)) == std::string::npos) {
      if (buf.size() > kMaxResponseHeadBytes) {
        return OperatorError(
            fmt::format("{} answered with a head larger than {} bytes", address, kMaxResponseHeadBytes));
      }
      io = stream.Read(&buf, -1, deadline, &err);
      if (io == Io::kTimeout) return TimedOut(address, timeout_ms, "waiting for an answer from");
      if (io == Io::kEof) return lost("before answering");
      if (io != Io::kOk) {
        if (send_failed) return lost("");
        return RetryCall(fmt::format("connection to {} lost while waiting for an answer: {}", address, ErrnoText(err)));
      }
    }
    body_start = head_end + kHeadEnd.size();
    Result<ResponseHead> parsed = ParseResponseHead(std::string_view(buf).substr(0, body_start));
    if (!parsed.ok()) {
      return OperatorError(
          fmt::format("{} answered something that is not HTTP/1.1: {}", address, parsed.status().message()));
    }
    head = std::move(parsed).value();
    if (head.status >= 200 || head.status == 101) break;
    buf.erase(0, body_start);
  }

  bool has_body = method != "HEAD" && head.status >= 200 && head.status != 204 && head.status != 304;
  size_t body_length = 0;
  if (has_body) {
    if (head.content_length && *head.content_length > kMaxResponseBodyBytes) {
      return OperatorError(fmt::format("{} answered with a body of {} bytes, more than the limit of {}", address,
                                       *head.content_length, kMaxResponseBodyBytes));
    }
    while (!head.content_length || buf.size() - body_start < *head.content_length) {
      if (buf.size() - body_start > kMaxResponseBodyBytes) {
        return OperatorError(
            fmt::format("{} answered with a body larger than {} bytes", address, kMaxResponseBodyBytes));
      }
      io = stream.Read(&buf, -1, deadline, &err);
      if (io == Io::kEof && !head.content_length) break;
      if (io == Io::kTimeout) return TimedOut(address, timeout_ms, "reading the answer from");
      if (io == Io::kEof) return lost("in the middle of its answer");
      if (io != Io::kOk) {
        return RetryCall(fmt::format("connection to {} lost while reading the answer: {}", address, ErrnoText(err)));
      }
    }
    body_length = head.content_length.value_or(buf.size() - body_start);
  }

  Response response;
  response.status = head.status;
  response.content_type.clear();
  for (const auto& [name, value] : head.headers) {
    if (name == "content-type") response.content_type = value;
  }
  response.headers = std::move(head.headers);
  response.body = buf.substr(body_start, body_length);
  return response;
}

}  // namespace midflight::http
