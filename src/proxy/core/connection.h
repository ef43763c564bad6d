// One non-blocking socket of the proxy, served by an EventLoop, with bounded
// input and output buffers (PgBouncer's SBuf is the model: the loop owns the
// socket, the protocol module only sees bytes).
//
//   Connecting ──connected──► Open ──peer closed / error / Close()──► Closed
//                               └─ StartTls: handshaking ─► Open (TLS)
//
// Flow control, which keeps a session from ever blocking or growing without
// bound:
// - Input: the connection reads while its input holds less than the read
//   limit and the owner has not paused it (PauseReading). The owner consumes
//   whole packets (Consume); a packet larger than the limit is allowed by
//   raising the limit for it (NeedInput), up to the owner's maximum.
// - Output: Write never blocks: it buffers, and the loop sends everything
//   written during one dispatch (an event, the posted tasks, a timer) in one
//   send once the dispatch returns (EventLoop::QueueFlush); what the kernel
//   does not take waits for EPOLLOUT. So a response relayed packet by packet
//   still leaves in one segment and costs one syscall. out_full() says the owner should stop producing for this connection
//   (stop consuming the peer's input, which makes the peer's input fill, which
//   stops reading the peer); OnConnDrained says it may go on.
// Both directions of a session thus move independently: a server that writes
// while its client is still writing is read as long as the client's output
// has room, and vice versa.
//
// Buffers start empty and give back memory above kShrinkAbove once drained,
// so an idle connection costs a few hundred bytes.
//
// Thread-safety: loop thread only.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/core/event_loop.h"

namespace midflight::proxy::core {

class Conn;

// What a connection tells its owner (a protocol module's session). Each call
// may Close any connection of the session; the Conn object stays valid until
// its owner destroys it (through EventLoop::Defer when inside a callback).
class ConnOwner {
 public:
  virtual ~ConnOwner() = default;
  virtual void OnConnConnected(Conn&) {}
  virtual void OnConnTlsDone(Conn&) {}
  virtual void OnConnRead(Conn&) = 0;     // new input is buffered
  virtual void OnConnDrained(Conn&) = 0;  // output fell below the bound after being full
  virtual void OnConnClosed(Conn&, const std::string& why) = 0;
};

class Conn final : public EventLoop::Handler {
 public:
  static constexpr size_t kDefaultReadLimit = 64 * 1024;
  static constexpr size_t kDefaultOutLimit = 256 * 1024;
  static constexpr size_t kShrinkAbove = 64 * 1024;

  // Takes `fd` (non-blocking). `connecting`: a connect() in progress.
  Conn(EventLoop* loop, int fd, ConnOwner* owner, bool connecting, int tag = 0);
  ~Conn() override;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Starts a non-blocking connect to host:port (a host starting with '/' is
  // a directory holding PostgreSQL's unix socket .s.PGSQL.<port>); the
  // result comes as OnConnConnected or OnConnClosed. A host name is resolved
  // here, on the calling thread (numeric addresses cost nothing).
  static Result<std::unique_ptr<Conn>> Connect(EventLoop* loop, const std::string& host, int port, ConnOwner* owner,
                                               int tag = 0);

  Status Register();  // adds the socket to the loop (done once, by the creator)

  // Input: the bytes not yet consumed.
  std::string_view input() const { return std::string_view(in_).substr(in_begin_); }
  void Consume(size_t n);
  // Lets the input grow to `bytes` (a packet that large is on its way);
  // the limit falls back to the default once the input is consumed.
  void NeedInput(size_t bytes);
  // Sets the limit exactly (a login phase that must not read past a packet).
  void SetReadLimit(size_t bytes);
  void PauseReading(bool paused);

  // Output.
  void Write(std::string_view bytes);
  size_t pending_output() const { return out_.size() - out_begin_; }
  bool out_full() const { return pending_output() >= out_limit_; }

  // TLS as the server side of the handshake (the client asked for it): the
  // input must be empty. OnConnTlsDone follows, or OnConnClosed.
  Status StartServerTls(SSL_CTX* ctx);
  // TLS as the client side (the proxy towards a server, after the protocol's
  // own TLS request): `host` is sent as SNI (when a name) and, with
  // `verify_host`, must match the certificate (a name or an IP address); the
  // chain is checked as `ctx` says. The input must be empty. OnConnTlsDone
  // follows, or OnConnClosed with OpenSSL's reason (a failed verification
  // named as X509_verify_cert_error_string gives it).
  Status StartClientTls(SSL_CTX* ctx, const std::string& host, bool verify_host);
  // TLS as the client side (towards a server that accepted an SSLRequest):
  // takes `ssl` (configured, in the connect state); the input must be empty.
  // OnConnTlsDone follows, or OnConnClosed (ssl() still tells why).
  void StartClientTls(SSL* ssl);
  bool tls() const { return ssl_ != nullptr; }
  SSL* ssl() const { return ssl_; }

  // Closes the socket now (pending output is dropped unless `flush`, in
  // which case the socket closes once the output is sent, bounded by the
  // output limit). No further callbacks but none for this close either.
  void Close(bool flush = false);
  bool closed() const { return state_ == State::kClosed; }
  bool closing() const { return flush_then_close_; }
  int fd() const { return fd_; }
  int tag() const { return tag_; }
  void set_owner(ConnOwner* owner) { owner_ = owner; }
  std::string peer() const;

  void OnEvents(uint32_t events) override;
  void FlushBatch() override;

 private:
  enum class State { kConnecting, kTlsHandshake, kOpen, kClosed };
  void ReadSome();
  // Sends pending output; a hard error closes (and tells the owner) only
  // when `report`, else it waits for the next event.
  void Flush(bool report = true);
  void SendQueuedNow();  // the batch now (before a close or a TLS start)
  void UpdateInterest();
  void Fail(const std::string& why);
  void TlsHandshake();
  ssize_t RawRead(char* buf, size_t n, bool* again, std::string* err);
  ssize_t RawWrite(const char* buf, size_t n, bool* again, std::string* err);

  EventLoop* loop_;
  int fd_;
  ConnOwner* owner_;
  int tag_;
  State state_;
  SSL* ssl_ = nullptr;
  bool registered_ = false;
  bool read_paused_ = false;
  bool was_full_ = false;
  bool flush_then_close_ = false;
  bool eof_ = false;
  bool tls_read_posted_ = false;
  bool flush_queued_ = false;  // on the loop's flush list (output written this dispatch)  // a task reads what OpenSSL holds decrypted
  // Expires with the Conn: what a task posted for this connection checks.
  std::shared_ptr<void> alive_ = std::make_shared<char>(0);
  uint32_t interest_ = 0;
  size_t read_limit_ = kDefaultReadLimit;
  size_t out_limit_ = kDefaultOutLimit;
  std::string in_, out_;
  size_t in_begin_ = 0, out_begin_ = 0;
};

}  // namespace midflight::proxy::core
