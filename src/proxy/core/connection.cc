#include "proxy/core/connection.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace midflight::proxy::core {

Conn::Conn(EventLoop* loop, int fd, ConnOwner* owner, bool connecting, int tag)
    : loop_(loop), fd_(fd), owner_(owner), tag_(tag), state_(connecting ? State::kConnecting : State::kOpen) {
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Conn::~Conn() {
  if (flush_queued_) loop_->CancelFlush(this);
  if (state_ != State::kClosed) {
    if (registered_) loop_->Remove(fd_);
    close(fd_);
  }
  if (ssl_ != nullptr) SSL_free(ssl_);
}

Result<std::unique_ptr<Conn>> Conn::Connect(EventLoop* loop, const std::string& host, int port, ConnOwner* owner,
                                            int tag) {
  int fd = -1;
  int rc = 0, err = 0;
  if (host.starts_with('/')) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = fmt::format("{}/.s.PGSQL.{}", host, port);
    if (path.size() >= sizeof addr.sun_path) return OperatorError(fmt::format("unix socket path too long: {}", path));
    std::memcpy(addr.sun_path, path.data(), path.size());
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return RetryCall(fmt::format("socket: {}", strerror(errno)));
    rc = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    err = errno;
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string service = std::to_string(port);
    if (int g = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); g != 0)
      return RetryCall(fmt::format("cannot resolve {}: {}", host, gai_strerror(g)));
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      freeaddrinfo(res);
      return RetryCall(fmt::format("socket: {}", strerror(errno)));
    }
    rc = connect(fd, res->ai_addr, res->ai_addrlen);
    err = errno;
    freeaddrinfo(res);
  }
  if (rc != 0 && err != EINPROGRESS && err != EAGAIN) {
    close(fd);
    return RetryCall(fmt::format("cannot connect to {}:{}: {}", host, port, strerror(err)));
  }
  auto c = std::make_unique<Conn>(loop, fd, owner, true, tag);
  RETURN_IF_ERROR(c->Register());
  return c;
}

Status Conn::Register() {
  interest_ = state_ == State::kConnecting ? EPOLLOUT : EPOLLIN;
  RETURN_IF_ERROR(loop_->Add(fd_, interest_, this));
  registered_ = true;
  return Status::Ok();
}

std::string Conn::peer() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return fmt::format("{}:{}", buf, ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    return fmt::format("[{}]:{}", buf, ntohs(in6->sin6_port));
  }
  return "unix";
}

void Conn::Consume(size_t n) {
  in_begin_ += n;
  if (in_begin_ >= in_.size()) {
    in_begin_ = 0;
    if (in_.capacity() > kShrinkAbove) std::string().swap(in_);
    else in_.clear();
    read_limit_ = kDefaultReadLimit;
  } else if (in_begin_ > in_.size() / 2 && in_begin_ > 4096) {
    in_.erase(0, in_begin_);
    in_begin_ = 0;
  }
  UpdateInterest();
}

void Conn::NeedInput(size_t bytes) {
  if (bytes > read_limit_) read_limit_ = bytes;
  UpdateInterest();
}

void Conn::SetReadLimit(size_t bytes) {
  read_limit_ = bytes;
  UpdateInterest();
}

void Conn::PauseReading(bool paused) {
  if (read_paused_ == paused) return;
  read_paused_ = paused;
  UpdateInterest();
}

void Conn::Write(std::string_view bytes) {
  if (state_ == State::kClosed || bytes.empty()) return;
  if (out_begin_ > 0 && out_begin_ == out_.size()) {
    out_.clear();
    out_begin_ = 0;
  }
  // Nothing waits for EPOLLOUT: the batch leaves when the dispatch returns.
  if (pending_output() == 0 && state_ == State::kOpen && !flush_queued_) {
    flush_queued_ = true;
    loop_->QueueFlush(this);
  }
  out_.append(bytes);
  if (out_full()) was_full_ = true;
  UpdateInterest();
}

void Conn::FlushBatch() {
  flush_queued_ = false;
  if (state_ != State::kOpen) return;
  Flush(/*report=*/false);
  if (flush_then_close_ && pending_output() == 0) {
    Close(false);
    return;
  }
  UpdateInterest();
}

void Conn::SendQueuedNow() {
  if (!flush_queued_) return;
  loop_->CancelFlush(this);
  flush_queued_ = false;
  if (state_ == State::kOpen) Flush(/*report=*/false);
}

void Conn::Close(bool flush) {
  if (state_ == State::kClosed) return;
  // What was written this dispatch goes now, as it would have without the
  // batching (a goodbye or an error packet before a close).
  SendQueuedNow();
  if (flush && pending_output() > 0) {
    flush_then_close_ = true;
    read_paused_ = true;
    UpdateInterest();
    return;
  }
  state_ = State::kClosed;
  if (registered_) loop_->Remove(fd_);
  close(fd_);
  std::string().swap(in_);
  std::string().swap(out_);
  in_begin_ = out_begin_ = 0;
}

void Conn::Fail(const std::string& why) {
  if (state_ == State::kClosed) return;
  Close(false);
  owner_->OnConnClosed(*this, why);
}

ssize_t Conn::RawRead(char* buf, size_t n, bool* again, std::string* err) {
  *again = false;
  if (ssl_ != nullptr) {
    ERR_clear_error();
    int r = SSL_read(ssl_, buf, static_cast<int>(n));
    if (r > 0) return r;
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      *again = true;
      return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    *err = "TLS read failed";
    return -1;
  }
  ssize_t r = recv(fd_, buf, n, 0);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) *again = true;
    else *err = strerror(errno);
  }
  return r;
}

ssize_t Conn::RawWrite(const char* buf, size_t n, bool* again, std::string* err) {
  *again = false;
  if (ssl_ != nullptr) {
    ERR_clear_error();
    int w = SSL_write(ssl_, buf, static_cast<int>(std::min<size_t>(n, 1 << 30)));
    if (w > 0) return w;
    int e = SSL_get_error(ssl_, w);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      *again = true;
      return -1;
    }
    *err = "TLS write failed";
    return -1;
  }
  ssize_t w = send(fd_, buf, n, MSG_NOSIGNAL);
  if (w < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) *again = true;
    else *err = strerror(errno);
  }
  return w;
}

void Conn::ReadSome() {
  static thread_local char buf[64 * 1024];
  while (state_ == State::kOpen && !read_paused_ && in_.size() - in_begin_ < read_limit_) {
    size_t room = std::min(sizeof buf, read_limit_ - (in_.size() - in_begin_));
    bool again = false;
    std::string err;
    ssize_t n = RawRead(buf, room, &again, &err);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < room && ssl_ == nullptr) break;
      continue;
    }
    if (n == 0) {
      eof_ = true;
      return;
    }
    if (again) return;
    eof_ = true;
    return;
  }
}

void Conn::Flush(bool report) {
  while (pending_output() > 0 && state_ == State::kOpen) {
    bool again = false;
    std::string err;
    ssize_t n = RawWrite(out_.data() + out_begin_, pending_output(), &again, &err);
    if (n > 0) {
      out_begin_ += static_cast<size_t>(n);
      continue;
    }
    if (again || !report) break;  // unreported: epoll tells EPOLLERR/EPOLLHUP next
    Fail(fmt::format("send failed: {}", err));
    return;
  }
  if (pending_output() == 0) {
    out_begin_ = 0;
    if (out_.capacity() > kShrinkAbove) std::string().swap(out_);
    else out_.clear();
  } else if (out_begin_ > out_.size() / 2 && out_begin_ > 4096) {
    out_.erase(0, out_begin_);
    out_begin_ = 0;
  }
}

void Conn::UpdateInterest() {
  if (state_ == State::kClosed || !registered_) return;
  uint32_t want = 0;
  if (state_ == State::kConnecting) {
    want = EPOLLOUT;
  } else if (state_ == State::kTlsHandshake) {
    want = EPOLLIN | (pending_output() > 0 ? EPOLLOUT : 0u);
  } else {
    // EPOLLRDHUP always: a client that goes away is noticed at once, even
    // while its input is not being read.
    want |= EPOLLRDHUP;
    if (!read_paused_ && in_.size() - in_begin_ < read_limit_) want |= EPOLLIN;
    // A queued batch is sent when the dispatch returns: EPOLLOUT only for
    // what the kernel did not take (no epoll_ctl per message), or, when a
    // batch filled the output and the kernel took it all, for the
    // OnConnDrained that FlushBatch may not call itself.
    if ((pending_output() > 0 || was_full_) && !flush_queued_) want |= EPOLLOUT;
    // TLS keeps decrypted bytes that epoll cannot see: read them on the next
    // turn of the loop. The task holds a weak handle, not the Conn: the owner
    // may close and destroy the connection before the task runs (a Conn dies
    // through EventLoop::Defer at the end of an iteration, but a task posted
    // while the loop drains its posted tasks runs in the next one). One task
    // at a time.
    if (ssl_ != nullptr && (want & EPOLLIN) && !tls_read_posted_ && SSL_pending(ssl_) > 0) {
      tls_read_posted_ = true;
      loop_->Post([this, alive = std::weak_ptr<void>(alive_)] {
        if (alive.expired()) return;  // destroyed meanwhile (same thread: no race)
        tls_read_posted_ = false;
        if (state_ == State::kOpen) OnEvents(EPOLLIN);
      });
    }
  }
  if (want != interest_) {
    interest_ = want;
    loop_->Modify(fd_, want, this);
  }
}

Status Conn::StartServerTls(SSL_CTX* ctx) {
  SendQueuedNow();  // the protocol's plaintext answer ('S') precedes the handshake
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr) return Internal("proxy: SSL_new failed");
  SSL_set_fd(ssl_, fd_);
  SSL_set_accept_state(ssl_);
  state_ = State::kTlsHandshake;
  TlsHandshake();
  return Status::Ok();
}

Status Conn::StartClientTls(SSL_CTX* ctx, const std::string& host, bool verify_host) {
  SendQueuedNow();  // the SSLRequest precedes the handshake
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr) return Internal("proxy: SSL_new failed");
  SSL_set_fd(ssl_, fd_);
  SSL_set_connect_state(ssl_);
  unsigned char ip[16];
  const bool is_ip = inet_pton(AF_INET, host.c_str(), ip) == 1 || inet_pton(AF_INET6, host.c_str(), ip) == 1;
  if (!is_ip) SSL_set_tlsext_host_name(ssl_, host.c_str());
  if (verify_host) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    const int set = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) : SSL_set1_host(ssl_, host.c_str());
    if (set != 1) return Internal(fmt::format("proxy: cannot ask TLS to check the host name {}", host));
  }
  state_ = State::kTlsHandshake;
  TlsHandshake();
  return Status::Ok();
}

void Conn::StartClientTls(SSL* ssl) {
  SendQueuedNow();
  ssl_ = ssl;
  SSL_set_fd(ssl_, fd_);
  state_ = State::kTlsHandshake;
  TlsHandshake();
}

void Conn::TlsHandshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    state_ = State::kOpen;
    UpdateInterest();
    owner_->OnConnTlsDone(*this);
    return;
  }
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    uint32_t want = e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN;
    if (want != interest_) {
      interest_ = want;
      loop_->Modify(fd_, want, this);
    }
    return;
  }
  std::string why = "TLS handshake failed";
  if (long v = SSL_get_verify_result(ssl_); v != X509_V_OK && SSL_is_server(ssl_) == 0) {
    why += fmt::format(": certificate verify failed: {}", X509_verify_cert_error_string(v));
  } else if (unsigned long err = ERR_peek_error(); err != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof buf);
    why += fmt::format(": {}", buf);
  }
  ERR_clear_error();
  Fail(why);
}

void Conn::OnEvents(uint32_t events) {
  if (state_ == State::kClosed) return;
  if (state_ == State::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
      Fail(fmt::format("connect failed: {}", strerror(err != 0 ? err : ECONNREFUSED)));
      return;
    }
    state_ = State::kOpen;
    UpdateInterest();
    owner_->OnConnConnected(*this);
    return;
  }
  if (state_ == State::kTlsHandshake) {
    TlsHandshake();
    return;
  }
  if (events & EPOLLOUT) {
    Flush();
    if (state_ == State::kClosed) return;
    if (flush_then_close_ && pending_output() == 0) {
      Close(false);
      return;
    }
    if (was_full_ && !out_full()) {
      was_full_ = false;
      UpdateInterest();
      owner_->OnConnDrained(*this);
      if (state_ == State::kClosed) return;
    }
  }
  if (out_full()) was_full_ = true;
  if ((events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) && (read_paused_ || in_.size() - in_begin_ >= read_limit_)) {
    // Not reading now, but the socket is gone: level-triggered epoll would
    // report it forever.
    Fail("connection closed by the peer");
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
    size_t before = in_.size() - in_begin_;
    ReadSome();
    if ((in_.size() - in_begin_) > before || (eof_ && before > 0)) {
      owner_->OnConnRead(*this);
      if (state_ == State::kClosed) return;
    }
    if (eof_) {
      Fail("connection closed by the peer");
      return;
    }
  }
  UpdateInterest();
}

}  // namespace midflight::proxy::core
