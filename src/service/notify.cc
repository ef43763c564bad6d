// The webhook notifier; see notify.h.
//
// One delivery attempt (Attempt) walks a connection through these states,
// every wait a poll() on the socket and on the wake pipe, bounded by the
// attempt's deadline:
//
//   kConnect    non-blocking connect() to each resolved address in turn
//   kHandshake  https only: TLS ≥ 1.2, SNI, chain and host name verified
//   kSend       "POST target HTTP/1.1", Connection: close, the JSON body
//   kReadHead   bytes until "\r\n\r\n" → http::ParseResponseHead (1xx skipped)
//   kReadBody   non-2xx only: up to kMaxErrorBody bytes, for the error text
//
// The outcome is a Status whose code says what the sender does next:
// kOk delivered; kRetryCall (lost connection, timeout, 5xx, 429, 408) back off
// and try again; kCancelled (Stop() ran out of drain time) and anything else
// (4xx, untrusted certificate, not HTTP) give up on the event.
#include "service/notify.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "base/clock.h"
#include "base/log.h"
#include "control/http.h"

namespace midflight {
namespace {

constexpr size_t kMaxHeadBytes = 64 * 1024;
constexpr size_t kMaxErrorBody = 200;

bool IsHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

// Control characters become spaces; at most `max` bytes.
std::string OneLine(std::string_view s, size_t max = std::string::npos) {
  std::string out(s.substr(0, std::min(max, s.size())));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return out;
}


std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown TLS error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Before a TLS call, so that SSL_ERROR_SYSCALL with errno 0 means end of stream.
void ClearErrors() {
  ERR_clear_error();
  errno = 0;
}

// One connection to the webhook's host, closed by the destructor.
class Connection {
 public:
  Connection(const WebhookUrl& url, int wake_fd, int64_t deadline)
      : url_(url), origin_(url.Origin()), wake_fd_(wake_fd), deadline_(deadline) {}
  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (fd_ >= 0) close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // kConnect, and kHandshake when `ctx` is not null.
  Status Open(SSL_CTX* ctx) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* list = nullptr;
    int rc = getaddrinfo(url_.host.c_str(), std::to_string(url_.port).c_str(), &hints, &list);
    if (rc != 0) return RetryCall(fmt::format("{}: cannot resolve the host: {}", origin_, gai_strerror(rc)));
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> owner(list, freeaddrinfo);
    std::string error = "no address";
    for (addrinfo* ai = list; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
      fd_ = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd_ < 0) return Internal(fmt::format("socket(): {}", std::strerror(errno)));
      int err = connect(fd_, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
      if (err == EINPROGRESS || err == EINTR) {
        RETURN_IF_ERROR(Wait(POLLOUT, "connecting"));
        socklen_t len = sizeof err;
        if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      }
      if (err != 0) {
        error = std::strerror(err);
        close(std::exchange(fd_, -1));
      }
    }
    if (fd_ < 0) return RetryCall(fmt::format("{}: cannot connect: {}", origin_, error));
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (ctx == nullptr) return Status::Ok();

    ssl_ = SSL_new(ctx);
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) return Internal(fmt::format("SSL_new: {}", OpenSslError()));
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, url_.host.c_str(), ip) == 1 || inet_pton(AF_INET6, url_.host.c_str(), ip) == 1;
    bool named =
        is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), url_.host.c_str()) == 1
              : SSL_set_tlsext_host_name(ssl_, url_.host.c_str()) == 1 && SSL_set1_host(ssl_, url_.host.c_str()) == 1;
    if (!named) return Internal(fmt::format("{}: cannot set the TLS host name: {}", origin_, OpenSslError()));
    while (true) {
      ClearErrors();
      rc = SSL_connect(ssl_);
      if (rc == 1) return Status::Ok();
      ASSIGN_OR_RETURN(short events, TlsWait(rc, "in the TLS handshake"));
      RETURN_IF_ERROR(Wait(events, "in the TLS handshake"));
    }
  }

  Status Write(std::string_view data) {
    while (!data.empty()) {
      size_t n = 0;
      short events = POLLOUT;
      if (ssl_ != nullptr) {
        ClearErrors();
        int rc = SSL_write_ex(ssl_, data.data(), data.size(), &n);
        if (rc <= 0) {
          ASSIGN_OR_RETURN(events, TlsWait(rc, "sending"));
        }
      } else {
        ssize_t rc = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (rc < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          return RetryCall(fmt::format("{}: connection lost while sending: {}", origin_, std::strerror(errno)));
        }
        n = rc > 0 ? static_cast<size_t>(rc) : 0;
      }
      data.remove_prefix(n);
      if (n == 0) RETURN_IF_ERROR(Wait(events, "sending"));
    }
    return Status::Ok();
  }

  // Appends what arrives to *buf: the byte count, 0 at the end of the stream.
  Result<size_t> Read(std::string* buf) {
    char chunk[16 * 1024];
    while (true) {
      size_t n = 0;
      short events = POLLIN;
      if (ssl_ != nullptr) {
        ClearErrors();
        int rc = SSL_read_ex(ssl_, chunk, sizeof chunk, &n);
        if (rc <= 0 && SSL_get_error(ssl_, rc) == SSL_ERROR_ZERO_RETURN) return size_t{0};
        if (rc <= 0) {
          ASSIGN_OR_RETURN(events, TlsWait(rc, "waiting for the answer"));
        }
      } else {
        ssize_t rc = recv(fd_, chunk, sizeof chunk, 0);
        if (rc == 0) return size_t{0};
        if (rc < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          return RetryCall(
              fmt::format("{}: connection lost waiting for the answer: {}", origin_, std::strerror(errno)));
        }
        n = rc > 0 ? static_cast<size_t>(rc) : 0;
      }
      if (n > 0) {
        buf->append(chunk, n);
        return n;
      }
      RETURN_IF_ERROR(Wait(events, "waiting for the answer"));
    }
  }

 private:
  // What to poll for after a TLS call returned `rc`, or the error.
  Result<short> TlsWait(int rc, std::string_view what) {
    switch (SSL_get_error(ssl_, rc)) {
      case SSL_ERROR_WANT_READ: return short{POLLIN};
      case SSL_ERROR_WANT_WRITE: return short{POLLOUT};
      case SSL_ERROR_SYSCALL:
        if (errno == EINTR) return short{POLLIN | POLLOUT};
        return RetryCall(fmt::format("{}: connection lost {}: {}", origin_, what,
                                     errno != 0 ? std::strerror(errno) : "unexpected end of stream"));
      default: {
        long verify = SSL_get_verify_result(ssl_);
        if (verify != X509_V_OK) {
          return OperatorError(
              fmt::format("{}: certificate not trusted: {}", origin_, X509_verify_cert_error_string(verify)));
        }
        return RetryCall(fmt::format("{}: TLS error {}: {}", origin_, what, OpenSslError()));
      }
    }
  }

  Status Wait(short events, std::string_view what) {
    pollfd fds[2] = {{fd_, events, 0}, {wake_fd_, POLLIN, 0}};
    while (true) {
      int64_t left = deadline_ - NowMonotonicMs();
      if (left <= 0) return RetryCall(fmt::format("{}: timed out {}", origin_, what));
      int n = poll(fds, 2, static_cast<int>(std::min<int64_t>(left, INT_MAX)));
      if (n < 0 && errno != EINTR) return Internal(fmt::format("poll(): {}", std::strerror(errno)));
      if (n > 0 && fds[1].revents != 0) return Cancelled(fmt::format("{}: stopped {}", origin_, what));
      if (n > 0) return Status::Ok();
    }
  }

  const WebhookUrl& url_;
  const std::string origin_;
  const int wake_fd_;
  const int64_t deadline_;  // monotonic ms
  int fd_ = -1;
  SSL* ssl_ = nullptr;
};

using SslCtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

Result<SslCtxPtr> MakeClientContext(const std::string& ca_file) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (ctx == nullptr) return Internal(fmt::format("SSL_CTX_new: {}", OpenSslError()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE);
  if (!ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) {
      return InvalidArgument(fmt::format("notify.ca_file: cannot load \"{}\": {}", ca_file, OpenSslError()));
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    return Internal(fmt::format("cannot load the system's certificate store: {}", OpenSslError()));
  }
  return ctx;
}

class NotifierImpl final : public Notifier {
 public:
  NotifierImpl(WebhookUrl url, NotifierOptions options, SslCtxPtr ctx, int wake_read, int wake_write)
      : url_(std::move(url)),
        options_(std::move(options)),
        ctx_(std::move(ctx)),
        wake_read_(wake_read),
        wake_write_(wake_write),
        thread_([this] { Run(); }) {}

  ~NotifierImpl() override {
    Stop(options_.drain);
    close(wake_read_);
    close(wake_write_);
  }

  void Notify(const Notification& n) override {
    std::string body = FormatNotification(n, NowUnixMicros());
    uint64_t dropped = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        ++dropped_;
        return;
      }
      if (queue_.size() >= std::max<size_t>(options_.queue_capacity, 1)) {
        queue_.pop_front();
        dropped = ++dropped_;
      }
      queue_.push_back({n.event, std::move(body)});
    }
    cv_.notify_all();
    if (dropped == 1 || (dropped != 0 && dropped % 1000 == 0)) {
      LOG_WARN("notify: queue for {} is full, dropped the oldest event ({} dropped so far)", url_.Origin(), dropped);
    }
  }

  void Stop(std::chrono::milliseconds drain) override {
    std::lock_guard stop_lock(stop_mu_);
    if (!thread_.joinable()) return;
    {
      std::unique_lock lock(mu_);
      stopping_ = true;
      cv_.notify_all();
      if (!cv_.wait_for(lock, drain, [&] { return done_; })) {
        abort_ = true;
        cv_.notify_all();
        char byte = 1;
        if (write(wake_write_, &byte, 1) < 0) LOG_WARN("notify: cannot wake the sender: {}", std::strerror(errno));
      }
    }
    thread_.join();
  }

  NotifierStats stats() const override {
    NotifierStats s;
    s.sent = sent_;
    s.failed = failed_;
    s.dropped = dropped_;
    s.retries = retries_;
    std::lock_guard lock(mu_);
    s.last_error = last_error_;
    return s;
  }

 private:
  struct Item {
    std::string event;
    std::string body;
  };

  void Run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (abort_ || queue_.empty()) break;
      Item item = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      Deliver(item);
      lock.lock();
    }
    dropped_ += queue_.size();
    queue_.clear();
    done_ = true;
    cv_.notify_all();
  }

  void Deliver(const Item& item) {
    std::chrono::milliseconds backoff = options_.first_backoff;
    for (int attempt = 1;; ++attempt) {
      Status status = Attempt(item.body);
      if (status.ok()) {
        ++sent_;
        return;
      }
      {
        std::unique_lock lock(mu_);
        last_error_ = status.message();
        bool retry = status.code() == StatusCode::kRetryCall && attempt < options_.max_attempts;
        if (retry && !cv_.wait_for(lock, backoff, [&] { return abort_; })) {
          ++retries_;
          LOG_DEBUG("notify: {} event, attempt {} failed, retrying: {}", item.event, attempt, status.message());
          backoff = std::min(backoff * 2, options_.max_backoff);
          continue;
        }
      }
      ++failed_;
      LOG_WARN("notify: {} event not delivered after {} attempt(s): {}", item.event, attempt, status.message());
      return;
    }
  }

  Status Attempt(const std::string& body) {
    Connection conn(url_, wake_read_, NowMonotonicMs() + options_.attempt_timeout.count());
    RETURN_IF_ERROR(conn.Open(ctx_.get()));
    RETURN_IF_ERROR(conn.Write(
        fmt::format("POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: midflight\r\nContent-Type: application/json\r\n"
                    "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                    url_.target, url_.HostHeader(), body.size(), body)));

    const std::string origin = url_.Origin();
    std::string buf;
    http::ResponseHead head;
    while (head.status < 200) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        if (buf.size() > kMaxHeadBytes) return OperatorError(fmt::format("{}: answer head too large", origin));
        ASSIGN_OR_RETURN(size_t n, conn.Read(&buf));
        if (n == 0) return RetryCall(fmt::format("{}: connection closed before the answer", origin));
      }
      Result<http::ResponseHead> parsed = http::ParseResponseHead(std::string_view(buf).substr(0, end + 4));
      if (!parsed.ok()) {
        return OperatorError(
            fmt::format("{}: answered something that is not HTTP/1.1: {}", origin, parsed.status().message()));
      }
      head = std::move(parsed).value();
      buf.erase(0, end + 4);
    }
    if (head.status < 300) return Status::Ok();

    size_t want = std::min(head.content_length.value_or(kMaxErrorBody), kMaxErrorBody);
    while (buf.size() < want) {
      Result<size_t> n = conn.Read(&buf);
      if (!n.ok() || *n == 0) break;
    }
    std::string error = fmt::format("{}: answered {} {}", origin, head.status, http::ReasonPhrase(head.status));
    if (!buf.empty()) error += ": " + OneLine(buf, kMaxErrorBody);
    if (head.status >= 500 || head.status == 429 || head.status == 408) return RetryCall(error);
    return OperatorError(error);
  }

  const WebhookUrl url_;
  const NotifierOptions options_;
  const SslCtxPtr ctx_;  // null for http://
  const int wake_read_;  // becomes readable when Stop() runs out of drain time
  const int wake_write_;
  std::mutex stop_mu_;     // one Stop() at a time
  mutable std::mutex mu_;  // guards what follows, up to the atomics
  std::condition_variable cv_;
  std::deque<Item> queue_;  // GUARDED_BY(mu_)
  bool stopping_ = false;   // GUARDED_BY(mu_)
  bool abort_ = false;      // GUARDED_BY(mu_)
  bool done_ = false;       // GUARDED_BY(mu_): the sender has left Run()
  std::string last_error_;  // GUARDED_BY(mu_)
  std::atomic<uint64_t> sent_{0}, failed_{0}, dropped_{0}, retries_{0};
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace

std::string WebhookUrl::Origin() const {
  bool v6 = host.find(':') != std::string::npos;
  return fmt::format("{}://{}{}{}:{}", tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

std::string WebhookUrl::HostHeader() const {
  bool v6 = host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + host + "]" : host;
  if (port != (tls ? 443 : 80)) h += ":" + std::to_string(port);
  return h;
}

Result<WebhookUrl> ParseWebhookUrl(std::string_view url) {
  auto bad = [](std::string_view why) {
    return InvalidArgument(fmt::format("notify.webhook: {} (expected http[s]://HOST[:PORT]/PATH)", why));
  };
  WebhookUrl u;
  size_t sep = url.find("://");
  if (sep == std::string_view::npos) return bad("not a URL");
  std::string scheme = OneLine(url.substr(0, sep), 16);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](char c) { return std::tolower(c); });
  if (scheme != "http" && scheme != "https") return bad(fmt::format("scheme \"{}\" is not http or https", scheme));
  u.tls = scheme == "https";

  std::string_view rest = url.substr(sep + 3);
  size_t path_at = std::min(rest.find_first_of("/?#"), rest.size());
  std::string_view authority = rest.substr(0, path_at);
  std::string_view target = rest.substr(path_at);
  target = target.substr(0, target.find('#'));
  if (authority.find('@') != std::string_view::npos) return bad("user:password@ is not supported");

  std::string_view port;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unbalanced brackets around the host");
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) return bad("unexpected text after the host");
    if (!after.empty()) port = after.substr(1);
    unsigned char ip[16];
    if (inet_pton(AF_INET6, u.host.c_str(), ip) != 1) return bad("invalid IPv6 address");
  } else {
    size_t colon = authority.find(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    if (!std::all_of(u.host.begin(), u.host.end(), IsHostChar)) return bad("invalid character in the host");
  }
  if (u.host.empty()) return bad("no host");
  u.port = u.tls ? 443 : 80;
  if (port.data() != nullptr) {
    bool digits = !port.empty() && port.size() <= 5 &&
                  std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    u.port = digits ? std::stoi(std::string(port)) : 0;
    if (u.port < 1 || u.port > 65535) return bad("the port must be a number from 1 to 65535");
  }
  if (!std::all_of(target.begin(), target.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return bad("the path holds spaces, control or non-ASCII characters");
  }
  u.target = target.empty() ? "/" : target.starts_with('?') ? "/" + std::string(target) : std::string(target);
  return u;
}

std::string FormatNotification(const Notification& n, int64_t unix_micros) {
  std::string text = "[midflight] ";
  if (!n.migration.empty()) text += "migration " + n.migration + ": ";
  text += n.text;
  nlohmann::ordered_json body = {
      {"text", OneLine(text)},           {"event", n.event}, {"migration", n.migration}, {"phase", n.phase},
      {"time", IsoUtc(unix_micros)},
  };
  if (n.fields.is_object()) {
    for (const auto& [key, value] : n.fields.items()) {
      if (!body.contains(key)) body[key] = value;
    }
  }
  return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Result<std::unique_ptr<Notifier>> Notifier::Create(const std::string& url, NotifierOptions options) {
  ASSIGN_OR_RETURN(WebhookUrl parsed, ParseWebhookUrl(url));
  SslCtxPtr ctx(nullptr, SSL_CTX_free);
  if (parsed.tls) {
    ASSIGN_OR_RETURN(ctx, MakeClientContext(options.ca_file));
  }
  int wake[2];
  if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) return Internal(fmt::format("pipe2(): {}", std::strerror(errno)));
  LOG_INFO("notify: events go to {}", parsed.Origin());
  return std::unique_ptr<Notifier>(
      std::make_unique<NotifierImpl>(std::move(parsed), std::move(options), std::move(ctx), wake[0], wake[1]));
}

}  // namespace midflight
