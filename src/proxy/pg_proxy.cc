// The PostgreSQL protocol module on the proxy core. The picture is in
// pg_proxy.h; this file holds the session's state machines:
//
//   client phase (Phase):
//     kStartup ──SSLRequest──► kTls ──handshake──► kStartup
//     kStartup ──StartupMessage──► kAuth ──password / SCRAM proof──► kConnecting
//     kConnecting ──first link ready──► kReady (greeting sent, relaying) ──► kClosed
//     (a CancelRequest as the first packet: forwarded, then closed)
//
//   server link (Link::State):
//     kConnecting ──► [kSslAnswer ──'S'──► kTls] ──► kLogin ──ReadyForQuery──► kReady
//
//   a move (Move), when a transaction starts on the other side or the link
//   lacks some of the session state; the client's input waits meanwhile:
//     kOpening (link logging in) ─► kSyncing (SET/PREPARE/Parse replay, answers
//     swallowed) ─► kCarryQuery (read-write: the old server's own settings and
//     LISTEN channels) ─► kCarryReplay (set_config / LISTEN on the new one) ─► done
//
// Flow control: a message from one side is consumed only while the other
// side's output is below its bound (Conn::out_full); OnConnDrained resumes.
// So each direction moves on its own and neither can stall the other.
#include "proxy/pg_proxy.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include <fmt/format.h>

#include "base/log.h"
#include "base/thread_annotations.h"
#include "proxy/core/connection.h"
#include "proxy/core/proxy_core.h"
#include "proxy/pg_session_state.h"
#include "proxy/pg_statement.h"
#include "proxy/wire/pg/backend.h"
#include "proxy/wire/pg/pg_wire.h"
#include "proxy/wire/pg/scram.h"

namespace midflight::proxy {

const char* SideName(Side side) { return side == Side::kSource ? "source" : "target"; }

using core::Conn;
using core::ConnOwner;
using core::Endpoint;
using core::EventLoop;
using core::LoopClock;
using core::ProxyCore;

namespace {

namespace wire = midflight::pgwire;

// A connection that has waited this long without authenticating may be
// evicted to make room for a new one when max_unauthenticated are taken.
constexpr auto kEvictUnauthenticatedAfter = std::chrono::seconds(1);
// A server that does not finish its login (connect, TLS, authentication)
// within this is treated as unreachable.
constexpr auto kServerLoginTimeout = std::chrono::seconds(10);
// Authentication messages from a client are small; a longer one is garbage.
constexpr size_t kMaxAuthMessage = 64 * 1024;

// What the read-only endpoint sends the server in place of a statement that
// would let its session write (ReadWriteAttempt): the server raises the
// proxy's refusal, so an open transaction fails and a pipeline is skipped up to
// its Sync exactly as if the statement itself had failed, and the client's
// messages and the server's answers stay in step. `what` is one of
// ReadWriteAttempt's constants (no quote in any).
std::string ReadOnlyRefusalSql(std::string_view what) {
  return fmt::format(R"(DO $midflight$BEGIN RAISE EXCEPTION USING ERRCODE = '25006', )"
                     R"(MESSAGE = 'midflight proxy: the read-only endpoint takes no writes ({} refused)', )"
                     R"(HINT = 'Send writes to the proxy''s read-write endpoint.'; END$midflight$)",
                     what);
}

// On the read-only endpoint: the Query or Parse message to send instead of
// `type`/`body` when its SQL would let the session write; nullopt when the
// message may go as it is. A replaced Parse keeps its statement name and
// declares as many parameters as the original used (as text), so the
// client's Bind still fits and the error is the refusal.
std::optional<std::string> ReadOnlyReplacement(char type, std::string_view body) {
  if (type == 'Q') {
    std::string_view sql = body.substr(0, body.find('\0'));
    if (!MayAskForWrites(sql)) return std::nullopt;
    std::string_view what = ReadWriteAttempt(sql);
    if (what.empty()) return std::nullopt;
    return wire::Query(ReadOnlyRefusalSql(what));
  }
  if (type == 'P') {
    if (!MayAskForWrites(body)) return std::nullopt;
    auto parse = wire::ParseParse(body);
    if (!parse.ok()) return std::nullopt;  // the server refuses it
    std::string_view what = ReadWriteAttempt(parse->query);
    if (what.empty()) return std::nullopt;
    constexpr uint32_t kTextOid = 25;
    std::vector<uint32_t> types = parse->param_types;
    types.resize(std::max<size_t>(types.size(), static_cast<size_t>(HighestParameter(parse->query))), kTextOid);
    for (uint32_t& t : types)
      if (t == 0) t = kTextOid;  // a DO block cannot infer a type
    return wire::Parse(parse->statement, ReadOnlyRefusalSql(what), types);
  }
  return std::nullopt;
}

// The message sent in place of a Query or Parse refused by PlanLargeMessage:
// a Parse keeps its statement name (its Bind then fails too, up to the Sync).
// `message` and `detail` hold no quote.
std::string LimitRefusal(char type, std::string_view buffered, std::string_view message, std::string_view detail) {
  const std::string sql = fmt::format(
      R"(DO $midflight$BEGIN RAISE EXCEPTION USING ERRCODE = '54000', MESSAGE = 'midflight proxy: {}', )"
      R"(DETAIL = '{}', )"
      R"(HINT = 'Send large values as parameters (Bind) or with COPY, which the proxy streams.'; END$midflight$)",
      message, detail);
  if (type == 'Q') return wire::Query(sql);
  std::string_view body = buffered.substr(5);
  const size_t nul = body.find('\0');
  return wire::Parse(std::string(nul == std::string_view::npos ? std::string_view() : body.substr(0, nul)), sql, {});
}

std::string LargeMessageRefusal(char type, size_t total, std::string_view buffered) {
  return LimitRefusal(type, buffered,
                      fmt::format("a {} message of {} bytes is above the {} MiB the proxy holds whole",
                                  type == 'Q' ? "Query" : "Parse", total, kMaxHeldMessage >> 20),
                      "The read-only endpoint checks whole statements; named prepared statements and statements "
                      "changing session state are kept to be replayed when the session moves.");
}

// The session state kept for replay (SETs, PREPAREs, named Parse messages)
// is capped in total too: a client cannot pile up small statements either.
constexpr size_t kMaxSessionState = size_t{64} << 20;

// How many bytes a whole Query or Parse adds to the session state kept for
// replay: a SET or PREPARE statement, a named Parse message; 0 for others.
size_t AddedSessionState(char type, std::string_view body, size_t total) {
  std::string name;
  if (type == 'Q') {
    std::string_view sql = body.substr(0, body.find('\0'));
    if (!MayChangeState(sql)) return 0;
    const StateEffect e = Classify(sql, &name);
    return e == StateEffect::kSet || e == StateEffect::kPrepare ? sql.size() : 0;
  }
  if (type != 'P') return 0;
  auto parse = wire::ParseParse(body);
  if (!parse.ok()) return 0;
  if (!parse->statement.empty()) return total;
  return MayChangeState(parse->query) && Classify(parse->query, &name) == StateEffect::kSet ? parse->query.size() : 0;
}

// The tls-server-end-point channel binding data of the certificate `ssl`
// presents (scram.h); "" when it cannot be computed (then SCRAM-SHA-256-PLUS
// is not offered).
std::string TlsServerEndPoint(SSL* ssl) {
  if (ssl == nullptr) return "";
  X509* cert = SSL_get_certificate(ssl);  // owned by the SSL object
  if (cert == nullptr) return "";
  unsigned char* der = nullptr;
  const int len = i2d_X509(cert, &der);
  if (len <= 0) return "";
  auto hash = wire::TlsServerEndPoint(std::string_view(reinterpret_cast<const char*>(der), static_cast<size_t>(len)));
  OPENSSL_free(der);
  return hash.ok() ? *hash : "";
}

// Sends one CancelRequest to a server on a connection of its own and waits
// (bounded) for the server to close it, as libpq does. Owns itself.
class Canceller final : public ConnOwner {
 public:
  static void Start(EventLoop* loop, const ServerAddress& server, int32_t pid, int32_t secret, std::string who) {
    auto* c = new Canceller(loop, wire::CancelRequest(pid, secret), std::move(who));
    auto conn = Conn::Connect(loop, server.host, server.port, c);
    if (!conn.ok()) {
      LOG_WARN("proxy: cancelling the query of {}: {}", c->who_, conn.status().message());
      delete c;
      return;
    }
    c->conn_ = std::move(*conn);
    c->timer_ = loop->AddTimer(LoopClock::now() + std::chrono::seconds(10), [c] {
      c->timer_ = 0;
      LOG_WARN("proxy: cancelling the query of {}: the server did not take the request within 10 s", c->who_);
      c->Done();
    });
  }
  void OnConnConnected(Conn& c) override { c.Write(request_); }
  void OnConnRead(Conn& c) override { c.Consume(c.input().size()); }
  void OnConnDrained(Conn&) override {}
  void OnConnClosed(Conn&, const std::string&) override { Done(); }  // the server read it and closed

 private:
  Canceller(EventLoop* loop, std::string request, std::string who)
      : loop_(loop), request_(std::move(request)), who_(std::move(who)) {}
  void Done() {
    if (done_) return;
    done_ = true;
    if (timer_ != 0) loop_->CancelTimer(timer_);
    if (conn_) conn_->Close();
    loop_->Defer([this] { delete this; });
  }
  EventLoop* loop_;
  std::string request_, who_;
  std::unique_ptr<Conn> conn_;
  EventLoop::TimerId timer_ = 0;
  bool done_ = false;
};

class PgSession;

}  // namespace

// The protocol module. Constant after Start: config, ssl_ctx, core.
// keys_mu guards the cancel keys, unauth_mu the connections still logging in.
struct PgProxy::Impl final : core::ProtocolModule {
  ProxyConfig config;
  SSL_CTX* ssl_ctx = nullptr;
  ProxyCore* core = nullptr;
  // SCRAM verifiers of the users (one salt each, as PostgreSQL stores them),
  // so that a login costs no key derivation on a loop; and the secret that
  // makes an unknown user's mock salt stable, as PostgreSQL's mock salt.
  std::map<std::string, std::string> verifiers;
  std::string mock_secret;

  // The cancel key a client holds -> the server connection its session uses now.
  struct CancelTarget {
    Side side;
    int32_t pid, secret;
    std::string who;
  };
  Mutex keys_mu;
  std::map<std::pair<int32_t, int32_t>, CancelTarget> keys GUARDED_BY(keys_mu);

  // Connections not authenticated yet, by arrival (the first is the oldest).
  struct Unauthenticated {
    LoopClock::time_point since;
    EventLoop* loop;
    std::weak_ptr<PgSession> session;
  };
  Mutex unauth_mu;
  std::map<uint64_t, Unauthenticated> unauthenticated GUARDED_BY(unauth_mu);
  LoopClock::time_point last_unauth_warning GUARDED_BY(unauth_mu);

  // Read-write sessions that went through the gate, for the report of a
  // drain that timed out: "peer (user u, in a transaction for t s)". An
  // entry is made at a session's first transaction and dropped when it
  // closes; `since` (steady-clock nanoseconds, 0 between transactions) is
  // all a transaction changes, without the lock.
  struct Busy {
    std::string peer, user;
    std::shared_ptr<std::atomic<int64_t>> since;
    EventLoop* loop = nullptr;
    std::weak_ptr<PgSession> session;  // asked, on its loop, what it waits for (LogBusy)
  };
  Mutex busy_mu;
  std::map<uint64_t, Busy> busy GUARDED_BY(busy_mu);

  ~Impl() override {
    if (ssl_ctx != nullptr) SSL_CTX_free(ssl_ctx);
  }
  std::shared_ptr<core::Session> NewSession(ProxyCore& core, EventLoop* loop, int fd, Endpoint endpoint,
                                            uint64_t id) override;

  // False: max_unauthenticated are taken by connections younger than
  // kEvictUnauthenticatedAfter (the newcomer is refused). Otherwise the
  // oldest may have been evicted (closed on its loop) to make room.
  bool Admit(uint64_t id, EventLoop* loop, std::weak_ptr<PgSession> session);
  void Leave(uint64_t id) {
    MutexLock lock(&unauth_mu);
    unauthenticated.erase(id);
  }
  // A CancelRequest from a client: forwarded to the server the session with
  // that key uses now (nothing happens for an unknown key, as in PostgreSQL).
  void Cancel(EventLoop* loop, int32_t pid, int32_t secret) {
    CancelTarget t;
    {
      MutexLock lock(&keys_mu);
      auto it = keys.find({pid, secret});
      if (it == keys.end() || pid == 0) return;
      t = it->second;
    }
    Canceller::Start(loop, config.servers[static_cast<int>(t.side)], t.pid, t.secret, t.who);
  }
};

namespace {

// One server connection of a session.
struct Link {
  enum class State { kConnecting, kSslAnswer, kTls, kLogin, kReady };
  Side side = Side::kSource;
  State state = State::kConnecting;
  std::unique_ptr<Conn> conn;
  std::unique_ptr<wire::BackendLogin> login;
  EventLoop::TimerId timer = 0;  // the login deadline
  int32_t pid = 0, secret = 0;
  std::vector<std::pair<std::string, std::string>> parameters;
  size_t stream_left = 0;      // bytes of a long server message still to relay as they come
  uint64_t state_version = 0;  // session state this connection has
  // Internal requests whose answers the proxy swallows: ReadyForQuery
  // messages still to come; with `collect`, DataRows are kept in `rows`.
  int swallow = 0;
  bool collect = false;
  std::vector<std::vector<std::string>> rows;
};

class PgSession final : public core::Session, public ConnOwner, public std::enable_shared_from_this<PgSession> {
 public:
  PgSession(PgProxy::Impl& m, ProxyCore& core, EventLoop* loop, int fd, Endpoint ep, uint64_t id)
      : m_(m), core_(core), loop_(loop), ep_(ep), readonly_(ep == Endpoint::kReadOnly), id_(id) {
    client_ = std::make_unique<Conn>(loop, fd, this, false, kClientTag);
  }
  ~PgSession() override = default;

  void Start() override {
    peer_ = client_->peer();
    core::SessionRecord rec;
    rec.peer = peer_;
    rec.endpoint = ep_;
    core_.Register(id_, shared_from_this(), loop_, rec);
    if (!client_->Register().ok()) return Close("cannot register the client socket");
    if (!m_.Admit(id_, loop_, weak_from_this())) {
      // Refused at once: a short error the kernel's buffer takes, then close.
      client_->Write(wire::ErrorResponse(
          "FATAL", "53300",
          fmt::format("sorry, too many connections waiting to authenticate (midflight proxy, "
                      "proxy.max_unauthenticated = {})",
                      m_.config.max_unauthenticated)));
      return Close("too many connections waiting to authenticate");
    }
    in_unauth_ = true;
    (void)core_.BeginAuth();  // accounting only: Admit decided (with eviction)
    std::weak_ptr<PgSession> w = weak_from_this();
    auth_timer_ = loop_->AddTimer(LoopClock::now() + m_.config.auth_timeout, [w] {
      if (auto s = w.lock()) {
        s->auth_timer_ = 0;
        // Debug only: sockets that never log in must not flood the log.
        if (s->phase_ < Phase::kConnecting) s->Close("did not finish the startup and authentication in time");
      }
    });
    client_->SetReadLimit(4);
    ProcessStartup();
  }

  void OnGateOpen() override {
    if (!waiting_gate_) return;
    waiting_gate_ = false;
    ProcessClient();
  }
  void Kill(bool connection) override {
    CancelQuery();
    if (connection) Close("killed");
  }
  void Shutdown() override { Close("the proxy is stopping"); }
  // Evicted for a newcomer while still logging in.
  void Evict() {
    if (phase_ >= Phase::kConnecting) return;  // it logged in meanwhile
    evicted_ = true;
    Close("evicted: max_unauthenticated reached");
  }

  // A drain timed out with this session inside a transaction: what it waits
  // for, in the log (the operator sees only the peer and the duration).
  void LogBusy() {
    if (phase_ == Phase::kClosed || !busy_) return;
    const Link* l = Current();
    LOG_WARN("proxy: session {} (user {}) still inside a transaction on the {}: {} request(s) unanswered, "
             "transaction status {}, {}extended-protocol messages since the last Sync, move step {}, "
             "{} byte(s) from the client unread, {} to the client unsent, {} from the server unread, {} to the "
             "server unsent{}",
             peer_, user_, SideName(current_), awaiting_rfq_, txn_status_, unsynced_ ? "" : "no ",
             static_cast<int>(move_), client_->input().size(), client_->pending_output(),
             l != nullptr ? l->conn->input().size() : 0, l != nullptr ? l->conn->pending_output() : 0,
             copy_in_ ? ", in COPY FROM STDIN" : "");
  }

  // ---- ConnOwner
  void OnConnConnected(Conn& c) override {
    if (Link* l = LinkOf(c)) LinkConnected(*l);
  }
  void OnConnTlsDone(Conn& c) override {
    if (phase_ == Phase::kClosed) return;
    if (c.tag() == kClientTag) {
      phase_ = Phase::kStartup;
      client_->SetReadLimit(4);
      return ProcessStartup();
    }
    if (Link* l = LinkOf(c)) {
      l->state = Link::State::kLogin;
      l->conn->Write(l->login->Start());
    }
  }
  void OnConnRead(Conn& c) override {
    if (phase_ == Phase::kClosed) return;
    if (c.tag() == kClientTag) return OnClientInput();
    if (Link* l = LinkOf(c)) ProcessServer(*l);
  }
  void OnConnDrained(Conn& c) override {
    if (phase_ != Phase::kReady) return;
    if (c.tag() == kClientTag) {
      if (Link* l = Current()) ProcessServer(*l);
    } else {
      ProcessClient();
    }
  }
  void OnConnClosed(Conn& c, const std::string& why) override {
    if (phase_ == Phase::kClosed) return;
    if (c.tag() == kClientTag) {
      // A client gone while its server still works on its request: the
      // server is asked to cancel it, so the server session is free at once.
      if (phase_ == Phase::kReady && (awaiting_rfq_ > 0 || copy_in_)) CancelQuery();
      return Close(fmt::format("client: {}", why));
    }
    if (Link* l = LinkOf(c)) LinkClosed(*l, why);
  }

 private:
  static constexpr int kClientTag = 100;
  enum class Phase { kStartup, kTls, kAuth, kConnecting, kReady, kClosed };
  enum class AuthStep { kMd5, kSaslInitial, kSaslFinal };
  enum class Move { kNone, kOpening, kSyncing, kCarryQuery, kCarryReplay };

  Link* LinkOf(Conn& c) {
    for (auto& l : links_)
      if (l && l->conn.get() == &c) return l.get();
    return nullptr;
  }
  Link* Current() { return links_[static_cast<int>(current_)].get(); }

  // Ends the session: every connection closed, every count given back.
  void Close(const std::string& why) {
    if (phase_ == Phase::kClosed) return;
    const Phase was = phase_;
    phase_ = Phase::kClosed;
    if (was == Phase::kReady) LOG_DEBUG("proxy: session {} (user {}) ended: {}", peer_, user_, why);
    else LOG_DEBUG("proxy: connection from {} (user {}) closed before it logged in: {}", peer_, user_.empty() ? "?" : user_, why);
    if (auth_timer_ != 0) loop_->CancelTimer(auth_timer_);
    auth_timer_ = 0;
    if (move_timer_ != 0) loop_->CancelTimer(move_timer_);
    move_timer_ = 0;
    LeaveGate();
    if (gate_since_) {
      MutexLock lock(&m_.busy_mu);
      m_.busy.erase(id_);
    }
    if (in_unauth_) {
      if (!evicted_) m_.Leave(id_);
      core_.AbandonAuth();
      in_unauth_ = false;
    }
    if (counted_) core_.EndClient(ep_);
    counted_ = false;
    if (key_pid_ != 0 || key_secret_ != 0) {
      MutexLock lock(&m_.keys_mu);
      m_.keys.erase({key_pid_, key_secret_});
    }
    for (auto& l : links_) {
      if (!l) continue;
      if (l->timer != 0) loop_->CancelTimer(l->timer);
      if (l->state == Link::State::kReady) l->conn->Write(wire::Terminate());
      l->conn->Close();
    }
    client_->Close();
    core_.Unregister(id_);
  }

  void LeaveGate() {
    if (!in_gate_) return;
    in_gate_ = false;
    gate_since_->store(0);
    core_.LeaveTransaction(ep_);
  }

  // The session ends with a FATAL error the client is told (one only).
  void Fail(const std::string& sqlstate, const std::string& message) {
    if (phase_ == Phase::kClosed) return;
    if (!fatal_sent_) client_->Write(wire::ErrorResponse("FATAL", sqlstate, message));
    fatal_sent_ = true;
    if (phase_ == Phase::kReady) LOG_INFO("proxy: session {} (user {}) closed: {}", peer_, user_, message);
    Close(message);
  }

  void ProtocolError(const std::string& message) {
    ++core_.protocol_errors;
    Fail("08P01", message);
  }

  void OnClientInput() {
    switch (phase_) {
      case Phase::kStartup: return ProcessStartup();
      case Phase::kAuth: return ProcessAuth();
      case Phase::kReady: return ProcessClient();
      default: return;  // kept until the phase that reads it
    }
  }

  // ---- Startup and authentication.

  void ProcessStartup() {
    while (phase_ == Phase::kStartup) {
      std::string_view in = client_->input();
      if (in.size() < 4) return client_->SetReadLimit(4);
      const uint32_t len = wire::GetUint32(in.data());
      if (len < 8 || len > wire::kMaxStartupPacket) {
        // An impossible length (a Terminate, garbage, another protocol): the
        // bytes are not a PostgreSQL client's, so like PostgreSQL (a
        // COMMERROR: logged, not sent) close without a reply.
        ++core_.protocol_errors;
        // What the client sent with it is read and dropped first: a socket
        // closed with unread input sends a reset, not PostgreSQL's plain close.
        char drop[4096];
        for (int i = 0; i < 16 && recv(client_->fd(), drop, sizeof drop, MSG_DONTWAIT) > 0; ++i) {
        }
        return Close(fmt::format("invalid startup packet length {}", len));
      }
      // Never past the packet: a TLS ClientHello may follow an SSLRequest
      // at once and is OpenSSL's to read.
      client_->SetReadLimit(len);
      if (in.size() < len) return;
      const std::string body(in.substr(4, len - 4));
      client_->Consume(len);
      auto parsed = wire::ParseStartup(body);
      if (!parsed.ok()) return ProtocolError("invalid startup packet: " + parsed.status().message());
      wire::StartupPacket& startup = *parsed;
      switch (startup.kind) {
        case wire::StartupPacket::Kind::kCancel:
          m_.Cancel(loop_, startup.cancel_pid, startup.cancel_secret);
          return Close("cancel request handled");
        case wire::StartupPacket::Kind::kSslRequest:
          if (m_.ssl_ctx != nullptr && client_->input().empty()) {
            client_->Write("S");
            phase_ = Phase::kTls;
            if (Status st = client_->StartServerTls(m_.ssl_ctx); !st.ok()) return Close(st.message());
            return;  // OnConnTlsDone or OnConnClosed
          }
          client_->Write("N");
          continue;
        case wire::StartupPacket::Kind::kGssEncRequest:
          client_->Write("N");
          continue;
        default: break;
      }
      client_->SetReadLimit(Conn::kDefaultReadLimit);
      for (auto& [k, v] : startup.params) {
        if (k == "user") {
          user_ = v;
        } else if (k == "database") {
          database_ = v;
        } else if (k != "replication") {
          startup_params_.emplace_back(k, v);
        } else {
          return Fail("08P01", "the midflight proxy does not relay replication connections");
        }
      }
      if (user_.empty()) return Fail("28000", "no PostgreSQL user name specified in startup packet");
      if (database_.empty()) database_ = user_;
      const auto& cfg = m_.config;
      if (database_ != cfg.servers[0].database && database_ != cfg.servers[1].database)
        return Fail("3D000",
                    fmt::format("database \"{}\" is not served by this midflight proxy (migration {} serves \"{}\")",
                                database_, cfg.migration, cfg.servers[0].database));
      return StartAuth();
    }
  }

  void StartAuth() {
    phase_ = Phase::kAuth;
    for (const auto& u : m_.config.users)
      if (u.name == user_) found_ = &u;
    if (m_.config.auth == "md5") {
      RAND_bytes(salt_, sizeof salt_);
      auth_step_ = AuthStep::kMd5;
      client_->Write(wire::AuthMd5(salt_));
    } else {
      // SCRAM-SHA-256 against the user's verifier. An unknown user still
      // goes through the exchange (a mock verifier with a salt stable for the
      // name and keys nobody knows), so the reply does not tell which users exist.
      wire::ScramServerOptions options;
      options.tls_server_end_point = TlsServerEndPoint(client_->ssl());  // SCRAM-SHA-256-PLUS over TLS
      std::string verifier;
      if (auto it = m_.verifiers.find(user_); found_ && it != m_.verifiers.end()) {
        verifier = it->second;
      } else {
        uint8_t salt[SHA256_DIGEST_LENGTH], keys[64];
        const std::string seed = m_.mock_secret + user_;
        SHA256(reinterpret_cast<const uint8_t*>(seed.data()), seed.size(), salt);
        RAND_bytes(keys, sizeof keys);
        auto b64 = [](const uint8_t* p, size_t n) { return wire::Base64Encode(std::string_view(reinterpret_cast<const char*>(p), n)); };
        verifier = fmt::format("SCRAM-SHA-256${}:{}${}:{}", wire::kScramDefaultIterations, b64(salt, 16), b64(keys, 32),
                               b64(keys + 32, 32));
      }
      auto server = wire::ScramServer::FromVerifier(verifier, options);
      if (!server.ok()) return Fail("XX000", "midflight proxy: " + server.status().message());
      scram_ = std::make_unique<wire::ScramServer>(std::move(*server));
      auth_step_ = AuthStep::kSaslInitial;
      client_->Write(wire::AuthSasl(scram_->Mechanisms()));
    }
    ProcessAuth();
  }

  void RefuseAuth() {
    ++core_.auth_failures;
    Fail("28P01", fmt::format("password authentication failed for user \"{}\"", user_));
  }

  void ProcessAuth() {
    while (phase_ == Phase::kAuth) {
      std::string_view in = client_->input();
      if (in.size() < 5) return;
      const char type = in[0];
      const uint32_t len = wire::GetUint32(in.data() + 1);
      if (len < 4 || len > kMaxAuthMessage) return ProtocolError(fmt::format("invalid message length {} during authentication", len));
      if (in.size() < size_t{len} + 1) return client_->NeedInput(size_t{len} + 1);
      const std::string body(in.substr(5, len - 4));
      client_->Consume(size_t{len} + 1);
      switch (auth_step_) {
        case AuthStep::kMd5: {
          if (type != 'p') return Fail("08P01", fmt::format("expected a password message, got message type '{}'", type));
          const std::string response = body.substr(0, body.find('\0'));
          if (!found_ || !wire::Md5Verify(user_, found_->password, salt_, response)) return RefuseAuth();
          return Authenticated();
        }
        case AuthStep::kSaslInitial: {
          if (type != 'p')
            return Fail("08P01", fmt::format("expected SASLInitialResponse, got message type '{}'", type));
          // mechanism\0 int32 length, data
          const auto nul = body.find('\0');
          if (nul == std::string::npos || body.size() < nul + 5) return Fail("08P01", "malformed SASLInitialResponse");
          if (Status st = scram_->ChooseMechanism(body.substr(0, nul)); !st.ok()) return Fail("28000", st.message());
          auto server_first = scram_->ClientFirst(body.substr(nul + 5));
          if (!server_first.ok()) return Fail("08P01", server_first.status().message());
          client_->Write(wire::AuthSaslContinue(*server_first));
          auth_step_ = AuthStep::kSaslFinal;
          continue;
        }
        case AuthStep::kSaslFinal: {
          if (type != 'p') return Fail("08P01", fmt::format("expected SASLResponse, got message type '{}'", type));
          auto server_final = scram_->ClientFinal(body);
          if (!server_final.ok() || !found_) return RefuseAuth();
          client_->Write(wire::AuthSaslFinal(*server_final));
          scram_.reset();
          return Authenticated();
        }
      }
    }
  }

  // The client proved its password: the first server link, then the greeting.
  void Authenticated() {
    password_ = found_->password;
    if (auth_timer_ != 0) loop_->CancelTimer(auth_timer_);
    auth_timer_ = 0;
    m_.Leave(id_);
    in_unauth_ = false;
    if (!core_.FinishAuth(ep_))
      return Fail("53300", fmt::format("sorry, too many clients already (midflight proxy, proxy.max_clients = {})",
                                       m_.config.max_clients));
    counted_ = true;
    if (readonly_) {
      // The server session's default, set at its start (so RESET, RESET ALL
      // and DISCARD ALL come back to it); it comes after the client's own
      // startup parameters and "options", so it wins over them.
      std::erase_if(startup_params_, [](const auto& p) {
        std::string k = p.first;
        std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        return k == "default_transaction_read_only";
      });
      startup_params_.emplace_back("default_transaction_read_only", "on");
    }
    phase_ = Phase::kConnecting;
    current_ = readonly_ ? (core_.read_percent() >= 100 ? Side::kTarget : Side::kSource) : core_.write_side();
    OpenLink(current_);
  }

  // The first link is ready: the greeting, then the relay.
  void Greet() {
    Link& l = *Current();
    {
      // The real pid, so that pg_backend_pid() and the pid of the session's
      // own notifications match what the driver was told; with a secret of
      // the proxy's, unique among the sessions with the same pid (the two
      // servers' pids may coincide).
      MutexLock lock(&m_.keys_mu);
      int32_t secret = 0;
      do {
        RAND_bytes(reinterpret_cast<uint8_t*>(&secret), sizeof secret);
      } while (secret == 0 || m_.keys.count({l.pid, secret}) > 0);
      key_pid_ = l.pid;
      key_secret_ = secret;
      m_.keys[{key_pid_, key_secret_}] = {current_, l.pid, l.secret, peer_};
    }
    std::string out = wire::AuthOk();
    for (auto& [k, v] : l.parameters) out += wire::ParameterStatus(k, v);
    out += wire::BackendKeyData(key_pid_, key_secret_);
    out += wire::ReadyForQuery('I');
    client_->Write(out);
    phase_ = Phase::kReady;
    l.state_version = state_version_;  // the (empty) session state
    PublishSide();
    ProcessServer(l);  // anything the server sent after its ReadyForQuery
    ProcessClient();   // a client may pipeline its first query
  }

  void PublishSide() {
    core_.Update(id_, [&](core::SessionRecord& r) {
      r.has_server = true;
      r.side = current_;
    });
    if (key_pid_ == 0 && key_secret_ == 0) return;
    Link* l = Current();
    MutexLock lock(&m_.keys_mu);
    m_.keys[{key_pid_, key_secret_}] = {current_, l->pid, l->secret, peer_};
  }

  // The server still works on this session's request: ask it to stop.
  void CancelQuery() {
    Link* l = Current();
    if (l == nullptr || l->state != Link::State::kReady || l->pid == 0) return;
    Canceller::Start(loop_, m_.config.servers[static_cast<int>(current_)], l->pid, l->secret, peer_);
  }

  // ---- Server links.

  void OpenLink(Side side) {
    const ServerAddress& s = m_.config.servers[static_cast<int>(side)];
    wire::BackendParams p;
    p.host = s.host;
    p.port = s.port;
    p.database = s.database;
    p.user = user_;
    p.password = user_ == s.user ? s.password : password_;
    p.startup_params = startup_params_;
    p.tls = s.tls;
    auto l = std::make_unique<Link>();
    l->side = side;
    l->login = std::make_unique<wire::BackendLogin>(std::move(p));
    auto c = Conn::Connect(loop_, s.host, s.port, this, static_cast<int>(side));
    if (!c.ok()) return LinkFailed(side, l->login->label() + ": " + c.status().message());
    l->conn = std::move(*c);
    std::weak_ptr<PgSession> w = weak_from_this();
    l->timer = loop_->AddTimer(LoopClock::now() + kServerLoginTimeout, [w, side] {
      if (auto sess = w.lock()) {
        Link* link = sess->links_[static_cast<int>(side)].get();
        if (link == nullptr) return;
        link->timer = 0;
        if (link->state != Link::State::kReady) sess->LinkFailed(side, link->login->label() + ": timed out");
      }
    });
    ++core_.server_connects[static_cast<int>(side)];
    links_[static_cast<int>(side)] = std::move(l);
  }

  void LinkConnected(Link& l) {
    if (wire::WantsTls(l.login->params())) {
      l.state = Link::State::kSslAnswer;
      l.conn->SetReadLimit(1);  // the answer byte only: the TLS handshake follows
      l.conn->Write(wire::SslRequest());
      return;
    }
    l.state = Link::State::kLogin;
    l.conn->Write(l.login->Start());
  }

  // Drops link `side` (closed, not yet destroyed: a callback may be on it).
  void DropLink(Side side) {
    auto& l = links_[static_cast<int>(side)];
    if (!l) return;
    if (l->timer != 0) loop_->CancelTimer(l->timer);
    if (l->state == Link::State::kReady) l->conn->Write(wire::Terminate());
    l->conn->Close();
    std::shared_ptr<Link> gone(std::move(l));
    loop_->Defer([gone] {});
  }

  // A link that is not ready failed (connect, TLS, login).
  void LinkFailed(Side side, const std::string& why) {
    if (phase_ == Phase::kClosed) return;
    DropLink(side);
    Fail("08006", fmt::format("midflight proxy cannot reach the {} server: {}", SideName(side), why));
  }

  void LinkClosed(Link& l, const std::string& why) {
    const Side side = l.side;
    if (l.state != Link::State::kReady) {
      if (l.state == Link::State::kTls && l.conn->ssl() != nullptr)
        return LinkFailed(side, l.login->label() + ": " +
                                    wire::TlsHandshakeError(l.login->params(), l.conn->ssl(), why).message());
      return LinkFailed(side, l.login->label() + ": " + why);
    }
    if (side == current_ || move_ != Move::kNone) {
      // The server ended the session with a FATAL error (already relayed):
      // that error is the client's last message.
      if (server_fatal_) {
        fatal_sent_ = true;
        return Close(fmt::format("the {} server ended the session with a FATAL error", SideName(side)));
      }
      return Fail("08006", fmt::format("the {} server closed the connection", SideName(side)));
    }
    // The other side's link a read-only session keeps: opened again when needed.
    DropLink(side);
  }

  // Reads the login of a link that is not ready yet.
  void LoginStep(Link& l) {
    if (l.state == Link::State::kSslAnswer) {
      std::string_view in = l.conn->input();
      if (in.empty()) return;
      const char answer = in[0];
      l.conn->Consume(1);
      l.conn->SetReadLimit(Conn::kDefaultReadLimit);
      if (answer == 'S') {
        auto ssl = wire::NewClientTls(l.login->params());
        if (!ssl.ok()) return LinkFailed(l.side, l.login->label() + ": " + ssl.status().message());
        l.state = Link::State::kTls;
        l.conn->StartClientTls(*ssl);
        return;  // OnConnTlsDone or OnConnClosed
      }
      if (answer != 'N')
        return LinkFailed(l.side, fmt::format("{}: TLS: unexpected answer {} to the SSLRequest", l.login->label(),
                                              wire::DescribeType(answer)));
      if (Status st = wire::TlsRefused(l.login->params()); !st.ok())
        return LinkFailed(l.side, l.login->label() + ": " + st.message());
      l.state = Link::State::kLogin;
      l.conn->Write(l.login->Start());
      return;
    }
    if (l.state != Link::State::kLogin) return;
    while (!l.login->done()) {
      std::string_view in = l.conn->input();
      if (in.size() < 5) return;
      const uint32_t len = wire::GetUint32(in.data() + 1);
      if (len < 4 || len > kMaxAuthMessage)
        return LinkFailed(l.side, fmt::format("{}: invalid message length {} during connection startup",
                                              l.login->label(), len));
      if (in.size() < size_t{len} + 1) return l.conn->NeedInput(size_t{len} + 1);
      const char type = in[0];
      const std::string body(in.substr(5, len - 4));
      l.conn->Consume(size_t{len} + 1);
      auto reply = l.login->OnMessage(type, body);
      if (!reply.ok()) return LinkFailed(l.side, reply.status().message());
      if (!reply->empty()) l.conn->Write(*reply);
    }
    l.state = Link::State::kReady;
    if (l.timer != 0) loop_->CancelTimer(l.timer);
    l.timer = 0;
    l.pid = l.login->backend().pid;
    l.secret = l.login->backend().secret;
    l.parameters = std::move(l.login->backend().parameters);
    if (phase_ == Phase::kConnecting && l.side == current_) return Greet();
    if (move_ == Move::kOpening && l.side == want_) return ContinueMove();
  }

  // ---- The relay: client to server.

  void ProcessClient() {
    // Messages go straight to the server connection's output: Conn::Write
    // only buffers, and what one dispatch wrote leaves in one send.
    while (phase_ == Phase::kReady && !waiting_gate_ && move_ == Move::kNone) {
      Link* l = Current();
      if (l == nullptr || l->conn->out_full()) break;  // OnConnDrained resumes
      std::string_view in = client_->input();
      if (stream_left_ > 0) {  // the rest of a long message, as it comes
        const size_t k = std::min(stream_left_, in.size());
        if (k == 0) break;
        if (!stream_discard_) l->conn->Write(in.substr(0, k));
        client_->Consume(k);
        stream_left_ -= k;
        continue;
      }
      if (in.size() < 5) break;
      const char type = in[0];
      const uint32_t len = wire::GetUint32(in.data() + 1);
      if (len < 4 || len > wire::kDefaultMaxMessage) {
        return ProtocolError(fmt::format("invalid message from the client: invalid message length {} for message type {}",
                                         len, wire::DescribeType(type)));
      }
      const size_t total = size_t{len} + 1;
      if (total > kStreamAbove && in.size() < total) {
        const LargeMessage plan = PlanLargeMessage(readonly_, type, total, in);
        if (plan == LargeMessage::kWaitForPrefix) {
          client_->NeedInput(std::min(total, 5 + kClassifyPrefix));
          break;
        }
        if (plan == LargeMessage::kHoldWhole) {
          client_->NeedInput(total);
          break;
        }
        if (!busy_) {
          if (!BeginTransaction()) return;
          continue;  // the link may have changed
        }
        if (plan == LargeMessage::kRefuse) {
          const std::string refusal = LargeMessageRefusal(type, total, in);
          LOG_INFO("proxy: session {} (user {}) sent a {} message of {} bytes; refused (above {} MiB held whole)",
                   peer_, user_, wire::DescribeType(type), total, kMaxHeldMessage >> 20);
          Track(type, std::string_view(refusal).substr(5), refusal);
          l->conn->Write(refusal);
        } else {
          Track(type, {}, {});  // the type is all Track needs of a streamed message
        }
        stream_left_ = total;
        stream_discard_ = plan == LargeMessage::kRefuse;
        continue;
      }
      if (in.size() < total) {
        client_->NeedInput(total);
        break;
      }
      const std::string_view bytes = in.substr(0, total);
      const std::string_view body = bytes.substr(5);
      if (type == 'X') {
        return Close("the client said goodbye");
      }
      if (!busy_ && !ungated_) {
        if (!readonly_ && PreparesOnlyUntilSync(in)) {
          // Parse/Describe/Close up to a Sync execute nothing: they pass the
          // write gate, as a client's synchronous prepare (libpq's PQprepare,
          // pgbench -M prepared at a connection's first transaction) must not
          // wait for a pause whose drain may wait for another connection of
          // that same client thread (a deadlock until the drain timeout).
          ungated_ = true;
        } else if (awaiting_rfq_ > 0) {
          break;  // a move must not start under unanswered ungated requests (ProcessServer resumes)
        } else {
          if (!BeginTransaction()) return;
          continue;  // the link may have changed
        }
      }
      if (ungated_ && type == 'S') ungated_ = false;
      std::optional<std::string> replaced;
      if (readonly_ && (type == 'Q' || type == 'P')) replaced = ReadOnlyReplacement(type, body);
      if (!replaced && (type == 'Q' || type == 'P')) {
        const size_t added = AddedSessionState(type, body, bytes.size());
        if (added > 0 && SessionStateBytes() + added > kMaxSessionState) {
          LOG_INFO("proxy: session {} (user {}) would keep more than {} MiB of session state; statement refused",
                   peer_, user_, kMaxSessionState >> 20);
          replaced = LimitRefusal(
              type, bytes,
              fmt::format("this statement would take the session state the proxy keeps above {} MiB",
                          kMaxSessionState >> 20),
              "SET and PREPARE statements and named prepared statements are kept to be replayed when the "
              "session moves; DEALLOCATE, RESET or DISCARD ALL free them.");
        }
      }
      if (replaced) {
        const std::string_view r = *replaced;
        Track(type, r.substr(5), r);
        l->conn->Write(r);
      } else {
        Track(type, body, bytes);
        l->conn->Write(bytes);
      }
      client_->Consume(total);
    }
  }

  // True: `in` starts with Parse, Describe, Close or Flush messages up to a
  // Sync, all buffered whole (nothing in them executes a statement).
  static bool PreparesOnlyUntilSync(std::string_view in) {
    while (in.size() >= 5) {
      const char type = in[0];
      const uint32_t len = wire::GetUint32(in.data() + 1);
      if (len < 4 || in.size() < size_t{len} + 1) return false;
      if (type == 'S') return true;
      if (type != 'P' && type != 'D' && type != 'C' && type != 'H') return false;
      in.remove_prefix(size_t{len} + 1);
    }
    return false;
  }

  size_t SessionStateBytes() const {
    size_t n = 0;
    for (const auto& sql : sets_) n += sql.size();
    for (const auto& sql : pending_sets_) n += sql.size();
    for (const auto& [name, sql] : sql_prepared_) n += sql.size();
    for (const auto& [name, bytes] : parsed_) n += bytes.size();
    return n;
  }

  // ---- Transactions.

  // A transaction starts with the next client message. True: send it now.
  // False: it waits (the gate is closed, the session moves, or it ended).
  bool BeginTransaction() {
    if (!readonly_ && !in_gate_) {
      if (!core_.EnterTransaction(shared_from_this(), loop_, ep_)) {
        waiting_gate_ = true;  // OnGateOpen at ResumeWrites
        return false;
      }
      in_gate_ = true;
      if (!gate_since_) {
        gate_since_ = std::make_shared<std::atomic<int64_t>>(0);
        MutexLock lock(&m_.busy_mu);
        m_.busy[id_] = {peer_, user_, gate_since_, loop_, weak_from_this()};
      }
      gate_since_->store(LoopClock::now().time_since_epoch().count());
    }
    Side want = core_.Route(ep_);
    busy_ = true;
    set_in_transaction(true);
    // A read-only session with state only its server has stays there (it
    // does not follow the canary); LISTEN too, as it is not carried between
    // the two connections a read-only session keeps.
    if (readonly_ && (pins_.pinned() || pins_.listening())) want = current_;
    if (want != current_ && !readonly_ && pins_.pinned()) {
      // The cutover refuses a write switch while PinnedSessions lists this
      // session; should writes have moved anyway, the session ends with the
      // reason rather than lose its state silently.
      Fail("57P01", fmt::format("midflight proxy: writes moved to the {} but this session holds state only the {} "
                                "has ({}); reconnect",
                                SideName(want), SideName(current_), pins_.Reason()));
      return false;
    }
    Link* next = links_[static_cast<int>(want)].get();
    if (want == current_ && next->state_version == state_version_) {
      ++core_.transactions[static_cast<int>(want)];
      return true;
    }
    want_ = want;
    move_ = Move::kOpening;
    // The servers answer the replay and the carry at once; one that does not
    // within this is treated as lost rather than left to hold a session
    // counted busy (which would stall a write switch's drain).
    std::weak_ptr<PgSession> w = weak_from_this();
    move_timer_ = loop_->AddTimer(LoopClock::now() + kServerLoginTimeout, [w] {
      if (auto sess = w.lock()) {
        sess->move_timer_ = 0;
        if (sess->move_ != Move::kNone)
          sess->Fail("08006", fmt::format("midflight proxy lost the {} server: no answer within {} s while moving the "
                                          "session there",
                                          SideName(sess->want_), kServerLoginTimeout.count()));
      }
    });
    if (next == nullptr) OpenLink(want);
    else ContinueMove();
    return false;
  }

  void EndTransaction() {
    busy_ = false;
    LeaveGate();
    set_in_transaction(false);
  }

  // The next step of a move to want_ (see the top of the file); each step
  // that asks a server something returns and comes back when it is answered.
  void ContinueMove() {
    if (phase_ != Phase::kReady) return;
    Link& next = *links_[static_cast<int>(want_)];
    if (move_ == Move::kOpening) {
      move_ = Move::kSyncing;
      if (SendStateReplay(next)) return;
    }
    if (move_ == Move::kSyncing) {
      next.state_version = state_version_;
      if (want_ != current_ && !readonly_) {
        // What the SQL replay cannot know: the old server's own session
        // settings and LISTEN channels (pg_session_state.h).
        Link& prev = *Current();
        move_ = Move::kCarryQuery;
        prev.swallow = 1;
        prev.collect = true;
        prev.rows.clear();
        prev.conn->Write(SessionStateQuery(pins_.custom_settings()));
        return;
      }
    }
    if (move_ == Move::kCarryQuery) {
      Link& prev = *Current();
      prev.collect = false;
      const std::vector<std::string> replay = ReplayStatements(prev.rows);
      prev.rows.clear();
      if (!replay.empty()) {
        move_ = Move::kCarryReplay;
        std::string out;
        for (const auto& q : replay) out += q;
        next.swallow = static_cast<int>(replay.size());
        next.conn->Write(out);
        LOG_DEBUG("proxy: session {} moves with {} setting(s) and LISTEN channel(s) carried", peer_, replay.size());
        return;
      }
    }
    // Done.
    move_ = Move::kNone;
    if (move_timer_ != 0) loop_->CancelTimer(move_timer_);
    move_timer_ = 0;
    if (want_ != current_) {
      const Side old = current_;
      current_ = want_;
      ++core_.session_moves;
      if (!readonly_) DropLink(old);  // a read-write session leaves the old side (until the next switch)
      PublishSide();
      if (!notifications_.empty()) client_->Write(std::exchange(notifications_, {}));
    }
    ++core_.transactions[static_cast<int>(current_)];
    ProcessServer(*Current());
    ProcessClient();
  }

  // Brings `l` up to the session's state: SET parameters, SQL PREPAREd and
  // protocol-level named statements, replayed in one round trip with their
  // answers swallowed. False: nothing to send.
  bool SendStateReplay(Link& l) {
    if (l.state_version == state_version_) return false;
    std::string out;
    int expect = 0;
    if (l.state_version != 0) {
      out += wire::Query("DISCARD ALL");
      ++expect;
    }
    for (const auto& s : sets_) {
      // Never recorded (the relay replaces such statements), and never replayed.
      if (readonly_ && !ReadWriteAttempt(s).empty()) continue;
      out += wire::Query(s);
      ++expect;
    }
    for (const auto& [name, sql] : sql_prepared_) {
      out += wire::Query(sql);
      ++expect;
    }
    if (!parsed_.empty()) {
      for (const auto& [name, bytes] : parsed_) out += bytes;
      out += wire::Sync();
      ++expect;
    }
    if (expect == 0) return false;
    l.swallow = expect;
    l.conn->Write(out);
    return true;
  }

  // Answers to the proxy's own requests on `l`.
  void Swallow(Link& l) {
    while (l.swallow > 0) {
      std::string_view in = l.conn->input();
      if (in.size() < 5) return;
      const char type = in[0];
      const uint32_t len = wire::GetUint32(in.data() + 1);
      if (len < 4 || len > wire::kDefaultMaxMessage)
        return Fail("08P01", fmt::format("invalid message from the {} server: length {}", SideName(l.side), len));
      if (in.size() < size_t{len} + 1) return l.conn->NeedInput(size_t{len} + 1);
      const std::string_view body = in.substr(5, len - 4);
      if (type == 'Z') --l.swallow;
      if (type == 'E') {
        auto fields = wire::ParseErrorFields(body);
        LOG_WARN("proxy: {} session state of {} on the {}: {}", l.collect ? "reading the" : "replaying the", peer_,
                 SideName(l.side), fields.ok() ? wire::DescribeErrorFields(*fields) : std::string("error"));
        if (wire::IsFatalError(body)) server_fatal_ = true;
      }
      if (type == 'A') notifications_.append(in.substr(0, size_t{len} + 1));  // the client must still get them
      if (type == 'D' && l.collect) {
        auto row = DataRowColumns(body);
        if (row.ok()) l.rows.push_back(std::move(*row));
      }
      l.conn->Consume(size_t{len} + 1);
    }
    if (move_ != Move::kNone) ContinueMove();
  }

  // ---- The relay: server to client.

  void ProcessServer(Link& l) {
    if (phase_ == Phase::kClosed) return;
    if (l.state != Link::State::kReady) return LoginStep(l);
    if (l.swallow > 0) return Swallow(l);
    // The other link a read-only session keeps: what it sends waits until it is current again.
    if (phase_ != Phase::kReady || &l != Current() || move_ != Move::kNone) return;
    // Messages go straight to the client's output (one send per dispatch).
    bool consumed = false;  // a transaction can only end on something read now
    while (!client_->out_full()) {
      std::string_view in = l.conn->input();
      if (l.stream_left > 0) {  // a long DataRow or CopyData, as it comes
        const size_t k = std::min(l.stream_left, in.size());
        if (k == 0) break;
        client_->Write(in.substr(0, k));
        l.conn->Consume(k);
        l.stream_left -= k;
        consumed = true;
        continue;
      }
      if (in.size() < 5) break;
      const char type = in[0];
      const uint32_t len = wire::GetUint32(in.data() + 1);
      if (len < 4 || len > wire::kDefaultMaxMessage) {
        return Fail("08P01", fmt::format("invalid message from the server: invalid message length {} for message type {}",
                                         len, wire::DescribeType(type)));
      }
      const size_t total = size_t{len} + 1;
      if (total > kStreamAbove && in.size() < total) {
        OnServerMessage(type, {});  // the type is all it needs of a long message
        l.stream_left = total;
        continue;
      }
      if (in.size() < total) {
        l.conn->NeedInput(total);
        break;
      }
      const std::string_view bytes = in.substr(0, total);
      consumed = true;
      OnServerMessage(type, bytes.substr(5));
      if (type == 'A' && l.pid != key_pid_) {
        // The session's own notification from a later server connection:
        // the pid the client knows, so it recognises it as its own.
        auto pid = wire::ParseNotificationPid(bytes.substr(5));
        if (pid.ok() && *pid == l.pid) {
          client_->Write(wire::WithNotificationPid(bytes, key_pid_));
          l.conn->Consume(total);
          continue;
        }
      }
      client_->Write(bytes);
      l.conn->Consume(total);
    }
    if (read_write_reported_)
      return Fail("25006",
                  "midflight proxy: the session on the read-only endpoint turned default_transaction_read_only "
                  "off; closing it (send writes to the read-write endpoint)");
    if (consumed && awaiting_rfq_ == 0 && !unsynced_ && txn_status_ == 'I' && !ungated_) {
      if (busy_) EndTransaction();
      // The client's next transaction may be buffered already (or waited for
      // the answers to its ungated prepares).
      if (!client_->input().empty()) ProcessClient();
    }
  }

  void Track(char type, std::string_view body, std::string_view bytes) {
    Link& cur = *Current();
    switch (type) {
      case 'Q': {
        ++awaiting_rfq_;
        std::string_view sql = body.substr(0, body.find('\0'));
        std::string name;
        if (MayChangeState(sql) && Classify(sql, &name) != StateEffect::kNone) pending_sets_.emplace_back(sql);
        if (MayHoldSessionState(sql))
          for (SessionEffect& e : SessionEffects(sql)) open_effects_.push_back(std::move(e));
        effect_batches_.push_back(std::exchange(open_effects_, {}));
        break;
      }
      case 'S':
        ++awaiting_rfq_;
        unsynced_ = false;
        effect_batches_.push_back(std::exchange(open_effects_, {}));
        break;
      case 'F':
        ++awaiting_rfq_;
        effect_batches_.push_back(std::exchange(open_effects_, {}));
        break;
      case 'P': {
        unsynced_ = true;
        auto parse = wire::ParseParse(body);
        if (!parse.ok()) break;
        // Counted when parsed (a named statement may run later, more than once).
        if (MayHoldSessionState(parse->query))
          for (SessionEffect& e : SessionEffects(parse->query)) open_effects_.push_back(std::move(e));
        if (!parse->statement.empty()) {
          // The server this goes to gets it now; others get it replayed.
          const bool current_had_all = cur.state_version == state_version_;
          parsed_[parse->statement] = std::string(bytes);
          ++state_version_;
          if (current_had_all) cur.state_version = state_version_;
        } else {
          std::string name;
          if (MayChangeState(parse->query) && Classify(parse->query, &name) == StateEffect::kSet)
            pending_sets_.push_back(parse->query);
        }
        break;
      }
      case 'C': {
        unsynced_ = true;
        auto cl = wire::ParseClose(body);
        if (cl.ok() && cl->kind == 'S' && parsed_.erase(cl->name)) {
          const bool current_had_all = cur.state_version == state_version_;
          ++state_version_;
          if (current_had_all) cur.state_version = state_version_;
        }
        break;
      }
      case 'B': case 'E': case 'D': case 'H': unsynced_ = true; break;
      case 'c': case 'f': copy_in_ = false; break;
      default: break;
    }
  }

  void OnServerMessage(char type, std::string_view body) {
    if (type == 'E') {
      error_since_rfq_ = true;
      error_since_last_rfq_ = true;
      if (wire::IsFatalError(body)) server_fatal_ = true;
    }
    if (type == 'C' && body.starts_with("ROLLBACK")) pins_.RolledBack();
    if (type == 'S' && readonly_) {
      auto ps = wire::ParseParameterStatus(body);
      if (ps.ok() && ps->first == "default_transaction_read_only" && ps->second != "on") read_write_reported_ = true;
    }
    if (type == 'G') copy_in_ = true;
    if (type != 'Z') return;
    if (awaiting_rfq_ > 0) --awaiting_rfq_;
    copy_in_ = false;
    txn_status_ = body.empty() ? 'I' : body[0];
    {
      std::vector<SessionEffect> batch;
      if (!effect_batches_.empty()) {
        batch = std::move(effect_batches_.front());
        effect_batches_.pop_front();
      }
      if (!batch.empty() || txn_status_ == 'I') {
        pins_.Answered(batch, error_since_last_rfq_, txn_status_);
        UpdatePins();
      }
      error_since_last_rfq_ = false;
    }
    if (!pending_sets_.empty() && awaiting_rfq_ == 0) {
      if (!error_since_rfq_) {
        for (auto& sql : pending_sets_) {
          std::string name;
          switch (Classify(sql, &name)) {
            case StateEffect::kSet: {
              // A later SET or RESET of a setting overrides the earlier ones:
              // only the last is kept, so a session that SETs per transaction
              // keeps one statement per setting, not one per transaction.
              const std::string key = SettingKey(sql);
              if (!key.empty()) std::erase_if(sets_, [&](const std::string& old) { return SettingKey(old) == key; });
              sets_.push_back(sql);
              break;
            }
            case StateEffect::kResetAll: sets_.clear(); break;
            case StateEffect::kDiscardAll:
              sets_.clear();
              sql_prepared_.clear();
              parsed_.clear();
              break;
            case StateEffect::kPrepare: sql_prepared_[name] = sql; break;
            case StateEffect::kDeallocate:
              if (name == "ALL") sql_prepared_.clear();
              else sql_prepared_.erase(name);
              break;
            case StateEffect::kNone: break;
          }
        }
        ++state_version_;
        // The server this ran on has it already.
        Current()->state_version = state_version_;
      }
      pending_sets_.clear();
    }
    if (awaiting_rfq_ == 0) error_since_rfq_ = false;
  }

  void UpdatePins() {
    std::string reason = pins_.Reason();
    if (reason == pin_reason_) return;
    pin_reason_ = reason;
    core_.Update(id_, [&](core::SessionRecord& r) { r.pinned = reason; });
  }

  PgProxy::Impl& m_;
  ProxyCore& core_;
  EventLoop* loop_;
  const Endpoint ep_;
  const bool readonly_;
  const uint64_t id_;
  std::unique_ptr<Conn> client_;
  std::string peer_;
  Phase phase_ = Phase::kStartup;

  // Login.
  EventLoop::TimerId auth_timer_ = 0;
  bool in_unauth_ = false, evicted_ = false, counted_ = false;
  AuthStep auth_step_ = AuthStep::kMd5;
  const ProxyUser* found_ = nullptr;
  uint8_t salt_[4] = {};
  std::unique_ptr<wire::ScramServer> scram_;
  std::string user_, password_, database_;
  std::vector<std::pair<std::string, std::string>> startup_params_;  // passed to every server connection
  // The cancel key handed to the client: the pid of the session's first
  // server connection and a secret of the proxy's.
  int32_t key_pid_ = 0, key_secret_ = 0;
  bool fatal_sent_ = false;

  // Server links, by Side; the one in use.
  std::unique_ptr<Link> links_[2];
  Side current_ = Side::kSource;
  Move move_ = Move::kNone;
  Side want_ = Side::kSource;
  EventLoop::TimerId move_timer_ = 0;
  std::string notifications_;  // received while the proxy read the old server's state

  // Transaction tracking.
  bool busy_ = false, in_gate_ = false, waiting_gate_ = false;
  std::shared_ptr<std::atomic<int64_t>> gate_since_;  // this session's Impl::busy entry (made at its first transaction)
  bool ungated_ = false;  // relaying Parse/Describe/Close up to a Sync outside a transaction (no gate)
  int awaiting_rfq_ = 0;   // Query/Sync/FunctionCall sent, ReadyForQuery not yet back
  bool unsynced_ = false;  // extended-protocol messages sent since the last Sync
  bool copy_in_ = false;   // the server waits for CopyData from the client
  char txn_status_ = 'I';
  size_t stream_left_ = 0;  // a long client message being relayed (or, refused, dropped) as it comes
  bool stream_discard_ = false;

  // Session state carried to another server.
  std::vector<std::string> sets_;                    // SET/RESET statements in order
  std::map<std::string, std::string> sql_prepared_;  // PREPARE name -> statement
  std::map<std::string, std::string> parsed_;        // named Parse message -> its bytes
  uint64_t state_version_ = 0;
  std::vector<std::string> pending_sets_;  // run, not yet confirmed by ReadyForQuery
  bool error_since_rfq_ = false;
  // State that pins the session to its server (pg_session_state.h), from
  // the statements it ran; effects wait here for their ReadyForQuery. One
  // batch per request that gets its own ReadyForQuery (Query, Sync,
  // FunctionCall), answered in order; `open_effects_` collects the extended-
  // protocol messages before their Sync.
  SessionPins pins_;
  std::deque<std::vector<SessionEffect>> effect_batches_;
  std::vector<SessionEffect> open_effects_;
  bool error_since_last_rfq_ = false;
  std::string pin_reason_;
  // The server sent a FATAL ErrorResponse: it closes the connection next, and
  // that error (already relayed) is the client's last word.
  bool server_fatal_ = false;
  // The read-only endpoint's server reported default_transaction_read_only off.
  bool read_write_reported_ = false;
};

}  // namespace

bool PgProxy::Impl::Admit(uint64_t id, EventLoop* loop, std::weak_ptr<PgSession> session) {
  MutexLock lock(&unauth_mu);
  const auto now = LoopClock::now();
  if (static_cast<int>(unauthenticated.size()) >= config.max_unauthenticated) {
    auto oldest = unauthenticated.begin();
    const bool evict = now - oldest->second.since >= kEvictUnauthenticatedAfter;
    if (now - last_unauth_warning >= std::chrono::seconds(10)) {
      last_unauth_warning = now;
      LOG_WARN("proxy: {} connections are waiting to authenticate (proxy.max_unauthenticated); {}",
               unauthenticated.size(),
               evict ? "evicting the oldest for each new one" : "refusing new ones until some finish");
    }
    if (!evict) return false;
    // Closed on its own loop; its entry is gone already.
    oldest->second.loop->Post([w = oldest->second.session] {
      if (auto s = w.lock()) s->Evict();
    });
    unauthenticated.erase(oldest);
  }
  unauthenticated[id] = {now, loop, std::move(session)};
  return true;
}

std::shared_ptr<core::Session> PgProxy::Impl::NewSession(ProxyCore& core, EventLoop* loop, int fd, Endpoint endpoint,
                                                         uint64_t id) {
  return std::make_shared<PgSession>(*this, core, loop, fd, endpoint, id);
}

// --- the proxy ---------------------------------------------------------------

Result<std::unique_ptr<PgProxy>> PgProxy::Start(ProxyConfig config) {
  std::unique_ptr<PgProxy> proxy(new PgProxy());
  proxy->impl_ = std::make_unique<Impl>();
  Impl& impl = *proxy->impl_;
  impl.config = std::move(config);
  if (!impl.config.tls_cert.empty() || !impl.config.tls_key.empty()) {
    impl.ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (impl.ssl_ctx == nullptr ||
        SSL_CTX_use_certificate_chain_file(impl.ssl_ctx, impl.config.tls_cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(impl.ssl_ctx, impl.config.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)
      return OperatorError(fmt::format("proxy.tls_cert / proxy.tls_key: cannot load {} / {}", impl.config.tls_cert,
                                       impl.config.tls_key));
    // Conn::Write hands OpenSSL the front of a buffer that may grow or move between retries.
    SSL_CTX_set_mode(impl.ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
  if (impl.config.auth != "md5") {
    for (const auto& u : impl.config.users) {
      auto v = wire::MakeScramVerifier(u.password);
      if (!v.ok()) return v.status().WithContext(fmt::format("proxy user {}", u.name));
      impl.verifiers[u.name] = std::move(*v);
    }
    uint8_t secret[32];
    RAND_bytes(secret, sizeof secret);
    impl.mock_secret.assign(reinterpret_cast<const char*>(secret), sizeof secret);
  }
  core::CoreConfig cc;
  cc.migration = impl.config.migration;
  cc.listen[0] = impl.config.listen_rw;
  cc.listen[1] = impl.config.listen_ro;
  cc.max_clients = impl.config.max_clients;
  // The module admits (and evicts) connections still logging in itself.
  cc.max_unauthenticated = std::numeric_limits<int>::max() / 2;
  cc.auth_timeout = impl.config.auth_timeout;
  cc.loops = impl.config.loops;
  ASSIGN_OR_RETURN(proxy->core_, core::ProxyCore::Start(std::move(cc), &impl));
  impl.core = proxy->core_.get();
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  const rlim_t need = 2 * static_cast<rlim_t>(impl.config.max_clients + impl.config.max_unauthenticated) + 64;
  const std::string rw = proxy->core_->address(Endpoint::kReadWrite), ro = proxy->core_->address(Endpoint::kReadOnly);
  if (files.rlim_cur < need)
    LOG_WARN("proxy: the open-file limit is {}; proxy.max_clients = {} and proxy.max_unauthenticated = {} need about {}",
             files.rlim_cur, impl.config.max_clients, impl.config.max_unauthenticated, need);
  else
    LOG_INFO("proxy: listening on {}{}{} (open-file limit {})", rw, ro.empty() ? "" : " and read-only on ", ro,
             files.rlim_cur);
  return proxy;
}

PgProxy::~PgProxy() { Stop(); }

void PgProxy::Stop() {
  if (core_) core_->Stop();
}

std::string PgProxy::rw_address() const { return core_->address(Endpoint::kReadWrite); }
std::string PgProxy::ro_address() const { return core_->address(Endpoint::kReadOnly); }
Side PgProxy::write_side() const { return core_->write_side(); }
void PgProxy::SetWriteSide(Side side) { core_->SetWriteSide(side); }
int PgProxy::read_percent() const { return core_->read_percent(); }
void PgProxy::SetReadPercent(int percent) { core_->SetReadPercent(percent); }
Status PgProxy::PauseWrites(std::chrono::milliseconds drain_timeout) {
  if (core_->PauseWrites(drain_timeout).ok()) return Status::Ok();
  std::string who;
  size_t n = 0;
  {
    MutexLock lock(&impl_->busy_mu);
    const auto now = LoopClock::now();
    int listed = 0;
    for (const auto& [id, b] : impl_->busy) {
      const int64_t since = b.since->load();
      if (since == 0) continue;  // between transactions
      ++n;
      if (listed++ < 5)
        who += fmt::format("{}{} (user {}, in a transaction for {:.1f} s)", who.empty() ? "" : ", ", b.peer, b.user,
                           std::chrono::duration<double>(now - LoopClock::time_point(LoopClock::duration(since))).count());
      b.loop->Post([w = b.session] {
        if (auto s = w.lock()) s->LogBusy();
      });
    }
  }
  return OperatorError(fmt::format("{} client session(s) still inside a transaction after the drain timeout of {:.1f} s: {}",
                                   n, drain_timeout.count() / 1000.0, who.empty() ? "?" : who));
}
void PgProxy::ResumeWrites() { core_->ResumeWrites(); }
ProxyStats PgProxy::stats() const { return core_->stats(); }
std::vector<std::string> PgProxy::PinnedSessions(Side side) const {
  std::vector<std::string> out = core_->PinnedSessions(side);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace midflight::proxy
