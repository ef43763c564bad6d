#include "proxy/mysql/mysql_proxy.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <regex>
#include <set>

#include <fmt/format.h>

#include "base/log.h"
#include "proxy/core/connection.h"
#include "proxy/core/proxy_core.h"
#include "proxy/wire/mysql/mysql_wire.h"

namespace midflight::proxy {

using core::Conn;
using core::ConnOwner;
using core::Endpoint;
using core::EventLoop;
using core::ProxyCore;
namespace mw = mywire;

namespace {

constexpr size_t kHeader = 4;
constexpr uint32_t kMaxPayload = 0xffffff;

// Capabilities the proxy offers clients (ANDed with the source server's):
// compression, the MySQL 8 extras and MariaDB's bulk / COM_MULTI / metadata
// cache / progress extensions are not relayed.
constexpr uint64_t kOffered =
    mw::cap::kLongPassword | mw::cap::kFoundRows | mw::cap::kLongFlag | mw::cap::kConnectWithDb | mw::cap::kNoSchema |
    mw::cap::kOdbc | mw::cap::kLocalFiles | mw::cap::kIgnoreSpace | mw::cap::kProtocol41 | mw::cap::kInteractive |
    mw::cap::kIgnoreSigpipe | mw::cap::kTransactions | mw::cap::kReserved | mw::cap::kSecureConnection |
    mw::cap::kMultiStatements | mw::cap::kMultiResults | mw::cap::kPsMultiResults | mw::cap::kPluginAuth |
    mw::cap::kConnectAttrs | mw::cap::kPluginAuthLenencData | mw::cap::kSessionTrack | mw::cap::kDeprecateEof |
    mw::cap::kMariaDbExtendedTypeInfo;
// Bits that only shape the handshake, which the proxy sets for its own logins.
constexpr uint64_t kLoginOnly = mw::cap::kConnectWithDb | mw::cap::kPluginAuth | mw::cap::kConnectAttrs |
                                mw::cap::kPluginAuthLenencData | mw::cap::kSecureConnection | mw::cap::kSsl;

const char* SideStr(Side side) { return side == Side::kSource ? "source" : "target"; }

size_t PayloadLen(std::string_view in) {
  return static_cast<uint8_t>(in[0]) | (static_cast<uint8_t>(in[1]) << 8) | (static_cast<size_t>(static_cast<uint8_t>(in[2])) << 16);
}

std::string Packet(uint8_t seq, std::string_view payload) { return mw::EncodePacket(seq, payload); }

std::string ErrPayload(uint16_t code, std::string_view state, std::string msg) {
  mw::ErrPacket e;
  e.code = code;
  e.sql_state = std::string(state);
  e.message = std::move(msg);
  return mw::EncodeErr(e);
}

std::string RandomScramble() {
  std::string s(20, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), 20);
  // Printable, no NUL (clients treat the scramble as a C string).
  for (auto& c : s) c = static_cast<char>(33 + (static_cast<uint8_t>(c) % 94));
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s.substr(0, 1 << 16));
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' || c == '.' || c == '`'; }

std::string StripQuotes(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '`'), s.end());
  return s;
}

// What a statement does to the state that pins a session to its server.
struct PinEffects {
  std::vector<std::string> temp_created, dropped, sql_prepared, sql_deallocated;
  int locks_taken = 0, locks_released = 0;
  bool release_all_locks = false, lock_tables = false, unlock_tables = false, user_variables = false;
  bool any() const {
    return !temp_created.empty() || !dropped.empty() || !sql_prepared.empty() || !sql_deallocated.empty() || locks_taken || locks_released || release_all_locks ||
           lock_tables || unlock_tables || user_variables;
  }
};

// Names after `pos` in `s`: "a, b.c" up to a non-name character.
std::vector<std::string> NamesAt(const std::string& s, size_t pos, bool list) {
  std::vector<std::string> out;
  while (pos < s.size()) {
    while (pos < s.size() && s[pos] == ' ') ++pos;
    size_t start = pos;
    while (pos < s.size() && IsIdentChar(s[pos])) ++pos;
    if (pos == start) break;
    std::string name = StripQuotes(s.substr(start, pos - start));
    if (auto dot = name.rfind('.'); dot != std::string::npos) name = name.substr(dot + 1);
    out.push_back(name);
    while (pos < s.size() && s[pos] == ' ') ++pos;
    if (!list || pos >= s.size() || s[pos] != ',') break;
    ++pos;
  }
  return out;
}

// A light scan of SQL text (lower-cased, whitespace collapsed; string
// literals are not told apart, which errs towards pinning).
PinEffects ScanPins(std::string_view sql) {
  PinEffects e;
  std::string s;
  s.reserve(std::min<size_t>(sql.size(), 1 << 16));
  for (char c : Lower(sql)) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!s.empty() && s.back() != ' ') s.push_back(' ');
    } else {
      s.push_back(c);
    }
  }
  auto each = [&](std::string_view needle, auto fn) {
    for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) fn(p + needle.size());
  };
  auto skip = [&](size_t p, std::string_view word) {
    if (s.compare(p, word.size(), word) == 0) return p + word.size();
    return p;
  };
  each("create temporary table ", [&](size_t p) {
    for (auto& n : NamesAt(s, skip(p, "if not exists "), false)) e.temp_created.push_back(n);
  });
  each("drop temporary table ", [&](size_t p) {
    for (auto& n : NamesAt(s, skip(p, "if exists "), true)) e.dropped.push_back(n);
  });
  each("drop table ", [&](size_t p) {
    for (auto& n : NamesAt(s, skip(p, "if exists "), true)) e.dropped.push_back(n);
  });
  each("get_lock(", [&](size_t) { ++e.locks_taken; });
  each("get_lock (", [&](size_t) { ++e.locks_taken; });
  each("release_lock(", [&](size_t) { ++e.locks_released; });
  each("release_all_locks(", [&](size_t) { e.release_all_locks = true; });
  each("lock table", [&](size_t p) {
    if (p >= 12 && s.compare(p - 12, 2, "un") == 0) return;
    e.lock_tables = true;
  });
  each("unlock table", [&](size_t) { e.unlock_tables = true; });
  // SQL-level PREPARE: a named statement only this server has.
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(';', start);
    if (end == std::string::npos) end = s.size();
    std::string stmt = s.substr(start, end - start);
    while (!stmt.empty() && stmt.front() == ' ') stmt.erase(0, 1);
    if (stmt.rfind("prepare ", 0) == 0) {
      for (auto& n : NamesAt(stmt, 8, false)) e.sql_prepared.push_back(n);
    } else if (stmt.rfind("deallocate prepare ", 0) == 0 || stmt.rfind("drop prepare ", 0) == 0) {
      for (auto& n : NamesAt(stmt, stmt[0] == 'd' && stmt[1] == 'e' ? 19 : 13, false)) e.sql_deallocated.push_back(n);
    }
    start = end + 1;
  }
  each("@", [&](size_t p) {
    // An assignment to a user variable: SET @x, @x :=, INTO @x.
    if (p < s.size() && s[p] == '@') return;
    if (p >= 2 && s[p - 2] == '@') return;
    size_t q = p;
    while (q < s.size() && IsIdentChar(s[q])) ++q;
    while (q < s.size() && s[q] == ' ') ++q;
    bool assign = s.compare(q, 2, ":=") == 0;
    size_t b = p - 1;
    while (b > 0 && s[b - 1] == ' ') --b;
    auto before = [&](std::string_view w) { return b >= w.size() && s.compare(b - w.size(), w.size(), w) == 0; };
    if (assign || before("set") || before("into") || (before(",") && s.find("set ") != std::string::npos && q < s.size() && s[q] == '='))
      e.user_variables = true;
  });
  return e;
}

// "KILL [QUERY|CONNECTION] n" -> (n, connection?)
std::optional<std::pair<uint64_t, bool>> ParseKill(std::string_view sql) {
  static const std::regex re(R"(^\s*kill\s+(query\s+|connection\s+)?(\d+)\s*;?\s*$)", std::regex::icase);
  std::string s(sql.substr(0, 200));
  std::smatch m;
  if (!std::regex_match(s, m, re)) return std::nullopt;
  bool query = m[1].matched && std::tolower(static_cast<unsigned char>(m[1].str()[0])) == 'q';
  return std::make_pair(std::stoull(m[2].str()), !query);
}

std::string QuoteValue(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "'";
}

bool IsNumber(const std::string& v) {
  if (v.empty()) return false;
  size_t i = (v[0] == '-') ? 1 : 0;
  if (i == v.size()) return false;
  bool dot = false;
  for (; i < v.size(); ++i) {
    if (v[i] == '.' && !dot) dot = true;
    else if (!std::isdigit(static_cast<unsigned char>(v[i]))) return false;
  }
  return true;
}

// Variables the proxy sets itself, or that never move with a session.
// (session_track_system_variables='*' also reports read-only ones such as
// last_gtid after every commit.)
bool NotCarried(const std::string& name) {
  static const std::set<std::string> kNever = {
      "tx_read_only", "transaction_read_only", "pseudo_thread_id", "last_insert_id", "insert_id", "timestamp",
      "rand_seed1", "rand_seed2", "gtid_seq_no", "server_id", "last_gtid", "warning_count", "error_count",
      "identity", "in_transaction", "external_user", "proxy_user", "gtid_binlog_pos", "gtid_current_pos",
      "gtid_slave_pos", "gtid_binlog_state", "rowcount", "tx_isolation_level", "warnings"};
  return name.rfind("session_track_", 0) == 0 || kNever.count(name) > 0;
}

// The SET that gives a server session the value tracked for `name`.
std::string SetClause(const std::string& name, const std::string& value) {
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return "";
  if (value.empty() && name == "character_set_results") return fmt::format("`{}`=NULL", name);
  return fmt::format("`{}`={}", name, IsNumber(value) ? value : QuoteValue(value));
}

// Reads the first packet a server sends (its handshake), with a deadline.
std::optional<mw::Handshake> ProbeServer(const MySqlServer& s) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(s.host.c_str(), std::to_string(s.port).c_str(), &hints, &res) != 0) return std::nullopt;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  bool ok = connect(fd, res->ai_addr, res->ai_addrlen) == 0;
  freeaddrinfo(res);
  std::string buf;
  char tmp[4096];
  while (ok) {
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) break;
    buf.append(tmp, static_cast<size_t>(n));
    if (buf.size() >= 4 && buf.size() >= 4 + PayloadLen(buf)) break;
  }
  close(fd);
  if (buf.size() < 4 || buf.size() < 4 + PayloadLen(buf)) return std::nullopt;
  auto h = mw::ParseHandshake(std::string_view(buf).substr(4, PayloadLen(buf)));
  if (!h.ok()) return std::nullopt;
  return *h;
}

}  // namespace

// ---------------------------------------------------------------------------

struct MySqlProxy::Module final : core::ProtocolModule {
  MySqlProxyConfig config;
  std::string server_version = "5.5.5-10.11.0-MariaDB-midflight";
  uint64_t caps = kOffered;
  uint8_t collation = 45;  // utf8mb4_general_ci
  std::map<std::string, std::string> stage2;  // user -> SHA1(SHA1(password))
  SSL_CTX* tls = nullptr;

  ~Module() override {
    if (tls != nullptr) SSL_CTX_free(tls);
  }
  std::shared_ptr<core::Session> NewSession(ProxyCore& core, EventLoop* loop, int fd, Endpoint endpoint,
                                            uint64_t id) override;
};

namespace {

// Logs in to a server and sends one KILL QUERY: how a session whose client
// went away stops the statement its server is still running. Owns itself.
class Killer final : public ConnOwner {
 public:
  static void Start(EventLoop* loop, const MySqlServer& server, uint32_t thread_id, bool connection) {
    auto* k = new Killer(loop, server, thread_id, connection);
    auto c = Conn::Connect(loop, server.host, server.port, k);
    if (!c.ok()) {
      delete k;
      return;
    }
    k->conn_ = std::move(*c);
  }
  void OnConnRead(Conn& c) override {
    auto in = c.input();
    if (in.size() < 4 || in.size() < 4 + PayloadLen(in)) return;
    std::string_view p = in.substr(4, PayloadLen(in));
    uint8_t seq = static_cast<uint8_t>(in[3]);
    if (step_ == 0) {
      auto h = mw::ParseHandshake(p);
      if (!h.ok()) return Done();
      mw::HandshakeResponse r;
      r.capabilities = mw::cap::kProtocol41 | mw::cap::kSecureConnection | mw::cap::kPluginAuth | (h->capabilities & 0);
      r.max_packet = 1 << 24;
      r.collation = 33;
      r.user = server_.user;
      r.auth_response = mw::NativePasswordResponse(server_.password, h->scramble);
      r.auth_plugin = "mysql_native_password";
      c.Consume(4 + p.size());
      c.Write(Packet(seq + 1, mw::EncodeHandshakeResponse(r)));
      step_ = 1;
    } else if (step_ == 1) {
      if (!p.empty() && static_cast<uint8_t>(p[0]) == 0xfe) {
        auto sw = mw::ParseAuthSwitchRequest(p);
        c.Consume(4 + p.size());
        if (!sw.ok() || mw::ClassifyAuthPlugin(sw->plugin) != mw::AuthPlugin::kNativePassword) return Done();
        c.Write(Packet(seq + 1, mw::NativePasswordResponse(server_.password, sw->data)));
        return;
      }
      c.Consume(4 + p.size());
      if (p.empty() || p[0] != 0) return Done();
      c.Write(Packet(0, mw::ComQuery(fmt::format("KILL {} {}", connection_ ? "CONNECTION" : "QUERY", thread_id_))));
      step_ = 2;
    } else {
      c.Consume(4 + p.size());
      Done();
    }
  }
  void OnConnDrained(Conn&) override {}
  void OnConnClosed(Conn&, const std::string&) override { Done(); }

 private:
  Killer(EventLoop* loop, MySqlServer server, uint32_t id, bool connection)
      : loop_(loop), server_(std::move(server)), thread_id_(id), connection_(connection) {}
  void Done() {
    if (done_) return;
    done_ = true;
    if (conn_) conn_->Close();
    loop_->Defer([this] { delete this; });
  }
  EventLoop* loop_;
  MySqlServer server_;
  uint32_t thread_id_;
  bool connection_;
  int step_ = 0;
  bool done_ = false;
  std::unique_ptr<Conn> conn_;
};

struct PreparedStmt {
  std::string sql;
  uint16_t params = 0, columns = 0;
  std::string types;  // 2 * params bytes, the last bound types
};

// An internal command: its answer is the proxy's, never the client's.
struct Internal {
  enum class Kind { kSetup, kSet, kInitDb, kPrepare, kPing, kClose };
  Internal(Kind k, std::string p) : kind(k), payload(std::move(p)) {}
  Kind kind;
  std::string payload;
  uint32_t client_stmt = 0;
  std::map<std::string, std::string> vars;  // kSet: what it sets
  std::string schema;                        // kInitDb
};

// One server session of a client session.
struct Link {
  enum class State { kConnecting, kHandshake, kAuth, kReady };
  Side side;
  State state = State::kConnecting;
  std::unique_ptr<Conn> conn;
  uint64_t caps = 0;
  uint32_t thread_id = 0;
  std::unique_ptr<mw::ResponseTracker> tracker;
  std::deque<Internal> internal;
  bool internal_sent = false;
  bool cont = false;  // the next server packet continues a split message
  // The session state this server session has.
  std::string schema;
  std::map<std::string, std::string> vars;
  std::map<uint32_t, uint32_t> stmts;  // client statement id -> this server's
  std::set<uint32_t> typed;            // statements whose parameter types this server has
};

// What the proxy expects an answer for, in order, on the session's current link.
struct Awaiting {
  uint8_t command = 0;
  std::string sql;  // COM_STMT_PREPARE
  PinEffects pins;
  bool reset = false;  // COM_RESET_CONNECTION
};

class MySession final : public core::Session, public ConnOwner, public std::enable_shared_from_this<MySession> {
 public:
  MySession(MySqlProxy::Module& m, ProxyCore& core, EventLoop* loop, int fd, Endpoint ep, uint64_t id)
      : m_(m), core_(core), loop_(loop), ep_(ep), id_(id) {
    client_ = std::make_unique<Conn>(loop, fd, this, false, kClientTag);
  }
  ~MySession() override = default;

  void Start() override {
    core::SessionRecord rec;
    rec.peer = client_->peer();
    rec.endpoint = ep_;
    peer_ = rec.peer;
    core_.Register(id_, shared_from_this(), loop_, rec);
    if (!client_->Register().ok()) return Close("cannot register the client socket");
    if (!core_.BeginAuth()) {
      client_->Write(Packet(0, ErrPayload(1040, "08004", "Too many connections (proxy: max_unauthenticated)")));
      return Close("too many unauthenticated connections");
    }
    in_auth_ = true;
    scramble_ = RandomScramble();
    mw::Handshake h;
    h.server_version = m_.server_version;
    h.connection_id = static_cast<uint32_t>(id_);
    h.scramble = scramble_;
    h.capabilities = m_.caps | (m_.tls != nullptr ? mw::cap::kSsl : 0);
    h.collation = m_.collation;
    h.status = mw::status::kAutocommit;
    h.auth_data_len = 21;
    h.auth_plugin = "mysql_native_password";
    client_->Write(Packet(0, mw::EncodeHandshake(h)));
    std::weak_ptr<MySession> w = shared_from_this();
    auth_timer_ = loop_->AddTimer(core::LoopClock::now() + core_.config().auth_timeout, [w] {
      if (auto s = w.lock()) {
        s->auth_timer_.reset();
        if (s->cstate_ != CState::kReady) {
          ++s->core_.protocol_errors;
          s->Close("authentication timed out");
        }
      }
    });
  }

  void OnGateOpen() override {
    waiting_gate_ = false;
    ProcessClient();
  }

  void Kill(bool connection) override {
    for (auto& l : links_)
      if (l && l->state == Link::State::kReady && !l->tracker->Idle())
        Killer::Start(loop_, m_.config.servers[static_cast<int>(l->side)], l->thread_id, false);
    if (connection) Close("killed");
  }

  void Shutdown() override { Close("proxy stopping"); }

  // ---- ConnOwner
  void OnConnConnected(Conn& c) override {
    Link* l = LinkOf(c);
    if (l != nullptr) l->state = Link::State::kHandshake;
  }
  void OnConnTlsDone(Conn&) override { ProcessClient(); }
  void OnConnRead(Conn& c) override {
    if (closed_) return;
    if (c.tag() == kClientTag) ProcessClient();
    else if (Link* l = LinkOf(c)) ProcessServer(*l);
  }
  void OnConnDrained(Conn& c) override {
    if (closed_) return;
    if (c.tag() == kClientTag) {
      // Room again towards the client: relay what the servers sent.
      for (auto& l : links_)
        if (l) ProcessServer(*l);
    } else {
      ProcessClient();
    }
  }
  void OnConnClosed(Conn& c, const std::string& why) override {
    if (closed_) return;
    if (c.tag() == kClientTag) return Close(fmt::format("client: {}", why));
    if (Link* l = LinkOf(c)) FailLink(*l, fmt::format("{} server: {}", SideStr(l->side), why));
  }

 private:
  static constexpr int kClientTag = 100;
  enum class CState { kHandshake, kAuthSwitch, kReady };

  Link* LinkOf(Conn& c) {
    for (auto& l : links_)
      if (l && l->conn.get() == &c) return l.get();
    return nullptr;
  }
  Link* Current() { return cur_ >= 0 ? links_[cur_].get() : nullptr; }

  void Close(const std::string& why) {
    if (closed_) return;
    closed_ = true;
    LOG_DEBUG("proxy {}: session {} ({}) closed: {}", m_.config.migration, id_, peer_, why);
    if (auth_timer_) loop_->CancelTimer(*auth_timer_);
    if (in_txn_) core_.LeaveTransaction(ep_);
    in_txn_ = false;
    if (in_auth_) core_.AbandonAuth();
    if (counted_) core_.EndClient(ep_);
    for (auto& l : links_) {
      if (!l) continue;
      // A statement still running is stopped now, not when it ends.
      if (l->state == Link::State::kReady && (!l->tracker->Idle() || l->internal_sent))
        Killer::Start(loop_, m_.config.servers[static_cast<int>(l->side)], l->thread_id, false);
      else if (l->state == Link::State::kReady)
        l->conn->Write(Packet(0, mw::ComSimple(mw::Command::kQuit)));
      l->conn->Close();
    }
    client_->Close();
    core_.Unregister(id_);
  }

  void ProtocolError(const std::string& why) {
    ++core_.protocol_errors;
    LOG_INFO("proxy {}: client {}: {}", m_.config.migration, peer_, why);
    Close(why);
  }

  // ---- Client side.

  void ProcessClient() {
    while (!closed_ && !waiting_gate_) {
      auto in = client_->input();
      if (in.size() < kHeader) {
        if (cstate_ != CState::kReady) client_->SetReadLimit(kHeader);
        return;
      }
      size_t len = PayloadLen(in);
      if (in.size() < kHeader + len && cstate_ == CState::kReady) {
        client_->NeedInput(kHeader + len);
        return;
      }
      uint8_t seq = static_cast<uint8_t>(in[3]);
      std::string_view payload = in.substr(kHeader, std::min(len, in.size() - kHeader));
      std::string_view raw = in.substr(0, std::min(kHeader + len, in.size()));
      if (cstate_ != CState::kReady) {
        if (len > 64 * 1024) return ProtocolError(fmt::format("a login packet of {} bytes", len));
        // Never read past the login packet: a TLS ClientHello follows an
        // SSLRequest without waiting, and must be left to OpenSSL.
        client_->SetReadLimit(in.size() < kHeader ? kHeader : kHeader + len);
        if (in.size() < kHeader + len) return;
        bool ok = cstate_ == CState::kHandshake ? OnHandshakeResponse(seq, payload) : OnAuthSwitchAnswer(seq, payload);
        if (closed_) return;
        if (!ok) return;
        continue;
      }
      if (client_data_ || client_cont_) {
        Link* l = Current();
        if (l == nullptr || l->conn->out_full()) return;
        bool was_cont = client_cont_;
        client_cont_ = len == kMaxPayload;
        if (client_data_ && !was_cont) {
          if (Status st = l->tracker->OnClientMessage(payload); !st.ok()) return ProtocolError(st.message());
          if (len == 0) client_data_ = false;
        }
        l->conn->Write(raw);
        client_->Consume(raw.size());
        continue;
      }
      if (len == 0) return ProtocolError("an empty command packet");
      if (!OnCommand(seq, payload, raw)) return;
    }
  }

  bool OnHandshakeResponse(uint8_t seq, std::string_view payload) {
    if (mw::IsSslRequest(payload)) {
      if (m_.tls == nullptr || client_->tls()) {
        ProtocolError("TLS requested but not offered");
        return false;
      }
      client_caps_ = mw::ParseSslRequest(payload).ok() ? mw::ParseSslRequest(payload)->capabilities : 0;
      client_->Consume(kHeader + payload.size());
      if (!client_->input().empty()) {
        ProtocolError("bytes after the SSLRequest");
        return false;
      }
      tls_pending_ = true;
      if (Status st = client_->StartServerTls(m_.tls); !st.ok()) {
        ProtocolError(st.message());
        return false;
      }
      return false;  // OnConnTlsDone continues
    }
    tls_pending_ = false;
    auto r = mw::ParseHandshakeResponse(payload);
    if (!r.ok()) {
      ProtocolError(r.status().message());
      return false;
    }
    client_->Consume(kHeader + payload.size());
    if (!(r->capabilities & mw::cap::kProtocol41)) {
      ProtocolError("a pre-4.1 client");
      return false;
    }
    caps_ = r->capabilities & (m_.caps | mw::cap::kSsl);
    if (r->capabilities & mw::cap::kMysql) caps_ &= 0xffffffffULL;  // a MySQL client: no MariaDB extensions
    user_ = r->user;
    collation_ = r->collation;
    if (r->database) schema_ = *r->database;
    auth_seq_ = seq;
    const bool native = !r->auth_plugin || r->auth_plugin->empty() ||
                        mw::ClassifyAuthPlugin(*r->auth_plugin) == mw::AuthPlugin::kNativePassword;
    if (!native) {
      mw::AuthSwitchRequest sw;
      sw.plugin = "mysql_native_password";
      sw.data = scramble_ + std::string(1, '\0');
      client_->Write(Packet(seq + 1, mw::EncodeAuthSwitchRequest(sw)));
      cstate_ = CState::kAuthSwitch;
      return true;
    }
    return Authenticate(seq, r->auth_response);
  }

  bool OnAuthSwitchAnswer(uint8_t seq, std::string_view payload) {
    std::string answer(payload);
    client_->Consume(kHeader + payload.size());
    return Authenticate(seq, answer);
  }

  bool Authenticate(uint8_t seq, const std::string& response) {
    auto it = m_.stage2.find(user_);
    bool ok = it != m_.stage2.end() &&
              (it->second.empty() ? response.empty() : mw::NativePasswordVerify(response, scramble_, it->second));
    if (!ok) {
      ++core_.auth_failures;
      client_->Write(Packet(seq + 1, ErrPayload(1045, "28000",
                                                fmt::format("Access denied for user '{}'@'{}' (using password: {})", user_,
                                                            peer_.substr(0, peer_.rfind(':')), response.empty() ? "NO" : "YES"))));
      Close("wrong user or password");
      return false;
    }
    in_auth_ = false;
    if (!core_.FinishAuth(ep_)) {
      client_->Write(Packet(seq + 1, ErrPayload(1040, "08004", "Too many connections (proxy: max_clients)")));
      Close("too many clients");
      return false;
    }
    counted_ = true;
    if (auth_timer_) {
      loop_->CancelTimer(*auth_timer_);
      auth_timer_.reset();
    }
    cstate_ = CState::kReady;
    client_->SetReadLimit(Conn::kDefaultReadLimit);
    mw::OkPacket ok_packet;
    ok_packet.status = mw::status::kAutocommit;
    client_->Write(Packet(seq + 1, mw::EncodeOk(ok_packet, caps_)));
    return true;
  }

  uint16_t KnownStatus() {
    Link* l = Current();
    return l != nullptr && l->tracker->StatusKnown() ? l->tracker->status() : mw::status::kAutocommit;
  }

  void ReplyOk(uint8_t seq) {
    mw::OkPacket ok;
    ok.status = KnownStatus() & ~mw::status::kSessionStateChanged;
    client_->Write(Packet(seq + 1, mw::EncodeOk(ok, caps_)));
  }

  // One command from the client. False: it stays buffered until something
  // changes (the gate opens, a server link is ready, output drains).
  bool OnCommand(uint8_t seq, std::string_view payload, std::string_view raw) {
    const auto cmd = static_cast<mw::Command>(payload[0]);
    if (seq != 0) {
      ProtocolError(fmt::format("a command with sequence id {}", seq));
      return false;
    }
    if (cmd == mw::Command::kQuit) {
      Close("COM_QUIT");
      return false;
    }
    if (mw::Classify(payload[0]).response == mw::ResponseKind::kUnsupported) {
      client_->Write(Packet(1, ErrPayload(1047, "08S01", fmt::format("{} is not supported by the proxy", mw::Classify(payload[0]).name))));
      client_->Consume(raw.size());
      return true;
    }
    if (client_->out_full()) return false;
    if (cmd == mw::Command::kChangeUser || cmd == mw::Command::kStmtBulkExecute) {
      // Not offered (MariaDB's bulk execute) or not relayed (a new user on
      // the proxy's server sessions would not follow a move).
      ReplyErr(seq, 1047, "08S01",
               cmd == mw::Command::kChangeUser ? "COM_CHANGE_USER is not supported by the proxy: reconnect as the other user"
                                                : "COM_STMT_BULK_EXECUTE is not supported by the proxy");
      client_->Consume(raw.size());
      return true;
    }
    if (cmd == mw::Command::kStmtClose) {
      // No answer; closed on every server that has it, with its id there.
      CloseStatement(payload);
      client_->Consume(raw.size());
      return true;
    }
    if (!in_txn_) {
      // Things the proxy answers itself, outside any transaction.
      if (cmd == mw::Command::kPing && Current() == nullptr) {
        ReplyOk(seq);
        client_->Consume(raw.size());
        return true;
      }
      if (cmd == mw::Command::kQuery) {
        if (auto k = ParseKill(payload.substr(1))) {
          if (core_.KillSession(k->first, k->second)) ReplyOk(seq);
          else ReplyErr(seq, 1094, "HY000", fmt::format("Unknown thread id: {}", k->first));
          client_->Consume(raw.size());
          return true;
        }
      }
      // A transaction starts here: the gate, then the route.
      if (!core_.EnterTransaction(shared_from_this(), loop_, ep_)) {
        waiting_gate_ = true;
        return false;
      }
      in_txn_ = true;
      // A pinned session (or one between SEND_LONG_DATA and its execute) stays where it is.
      want_ = cur_ >= 0 && (Pinned() || long_data_) ? cur_ : static_cast<int>(core_.Route(ep_));
      ++core_.transactions[want_];
      core_.Update(id_, [](core::SessionRecord& r) { r.in_transaction = true; });
    }
    Link* l = links_[want_].get();
    if (l == nullptr) {
      OpenLink(static_cast<Side>(want_));
      return false;
    }
    if (l->state != Link::State::kReady || !l->internal.empty()) return false;
    if (cur_ != want_ || !Synced(*l)) {
      if (!Synced(*l)) {
        QueueSync(*l);
        SendInternal(*l);
        return false;
      }
      if (cur_ >= 0 && cur_ != want_) {
        ++core_.session_moves;
        if (ep_ == Endpoint::kReadWrite) DropLink(cur_, true);
      }
      cur_ = want_;
      const Side side = l->side;
      core_.Update(id_, [side](core::SessionRecord& r) {
        r.side = side;
        r.has_server = true;
      });
    }
    if (l->conn->out_full()) return false;
    Forward(*l, payload, raw);
    return true;
  }

  void ReplyErr(uint8_t seq, uint16_t code, std::string_view state, std::string msg) {
    client_->Write(Packet(seq + 1, ErrPayload(code, state, std::move(msg))));
  }

  void Forward(Link& l, std::string_view payload, std::string_view raw) {
    const auto cmd = static_cast<mw::Command>(payload[0]);
    std::string rewritten;
    Awaiting a;
    a.command = static_cast<uint8_t>(cmd);
    switch (cmd) {
      case mw::Command::kQuery: a.pins = ScanPins(payload.substr(1)); break;
      case mw::Command::kStmtPrepare:
        a.sql = std::string(payload.substr(1));
        a.pins = ScanPins(a.sql);
        break;
      case mw::Command::kResetConnection: a.reset = true; break;
      case mw::Command::kStmtExecute:
      case mw::Command::kStmtFetch:
      case mw::Command::kStmtReset:
      case mw::Command::kStmtSendLongData: {
        if (payload.size() < 5) return ProtocolError("a statement command without its id");
        rewritten = RewriteStmt(l, payload);
        if (cmd == mw::Command::kStmtSendLongData) long_data_ = true;
        else long_data_ = false;
        break;
      }
      default: break;
    }
    if (Status st = l.tracker->OnCommand(rewritten.empty() ? payload : std::string_view(rewritten)); !st.ok())
      return ProtocolError(st.message());
    const bool answered = mw::Classify(payload[0]).response != mw::ResponseKind::kNone;
    if (answered) awaiting_.push_back(std::move(a));
    client_cont_ = payload.size() == kMaxPayload;
    if (rewritten.empty()) l.conn->Write(raw);
    else l.conn->Write(Packet(0, rewritten));
    client_->Consume(raw.size());  // payload and raw end here
    if (!answered) CheckBoundary(l);
  }

  // The command with the client's statement id replaced by the server's; an
  // execute gets the parameter types again when this server has not seen them.
  std::string RewriteStmt(Link& l, std::string_view payload) {
    std::string p(payload);
    uint32_t client_id = static_cast<uint8_t>(p[1]) | (static_cast<uint8_t>(p[2]) << 8) |
                         (static_cast<uint8_t>(p[3]) << 16) | (static_cast<uint32_t>(static_cast<uint8_t>(p[4])) << 24);
    if (client_id == 0xffffffff) return p;  // MariaDB: the statement just prepared
    auto sit = l.stmts.find(client_id);
    uint32_t server_id = sit == l.stmts.end() ? 0xfffffffe : sit->second;
    for (int i = 0; i < 4; ++i) p[1 + i] = static_cast<char>((server_id >> (8 * i)) & 0xff);
    if (static_cast<mw::Command>(p[0]) != mw::Command::kStmtExecute) return p;
    auto st = stmts_.find(client_id);
    if (st == stmts_.end() || st->second.params == 0) return p;
    const size_t bitmap = (st->second.params + 7) / 8;
    const size_t flag_at = 10 + bitmap;
    if (p.size() <= flag_at) return p;
    const size_t types_len = 2 * size_t{st->second.params};
    if (p[flag_at] == 1) {
      if (p.size() >= flag_at + 1 + types_len) {
        st->second.types = p.substr(flag_at + 1, types_len);
        l.typed.insert(client_id);
      }
    } else if (!l.typed.count(client_id) && st->second.types.size() == types_len) {
      p[flag_at] = 1;
      p.insert(flag_at + 1, st->second.types);
      l.typed.insert(client_id);
    }
    return p;
  }

  void CloseStatement(std::string_view payload) {
    if (payload.size() < 5) return;
    uint32_t id = static_cast<uint8_t>(payload[1]) | (static_cast<uint8_t>(payload[2]) << 8) |
                  (static_cast<uint8_t>(payload[3]) << 16) | (static_cast<uint32_t>(static_cast<uint8_t>(payload[4])) << 24);
    stmts_.erase(id);
    for (auto& l : links_) {
      if (!l) continue;
      auto it = l->stmts.find(id);
      if (it == l->stmts.end()) continue;
      Internal in{Internal::Kind::kClose, mw::ComStmtClose(it->second)};
      l->stmts.erase(it);
      l->typed.erase(id);
      l->internal.push_back(std::move(in));
      if (l->state == Link::State::kReady && l->tracker->Idle() && !l->internal_sent) SendInternal(*l);
    }
  }

  bool Pinned() const { return !PinReason().empty(); }
  std::string PinReason() const {
    std::vector<std::string> r;
    for (const auto& t : temp_tables_) r.push_back(fmt::format("temporary table {}", t));
    for (const auto& t : sql_prepared_) r.push_back(fmt::format("SQL prepared statement {}", t));
    if (named_locks_ > 0) r.push_back("named lock (GET_LOCK)");
    if (lock_tables_) r.push_back("LOCK TABLES");
    if (user_variables_) r.push_back("user variables");
    return fmt::format("{}", fmt::join(r, ", "));
  }
  void ApplyPins(const PinEffects& e) {
    if (!e.any()) return;
    for (const auto& t : e.temp_created) temp_tables_.insert(t);
    for (const auto& t : e.dropped) temp_tables_.erase(t);
    for (const auto& t : e.sql_prepared) sql_prepared_.insert(t);
    for (const auto& t : e.sql_deallocated) sql_prepared_.erase(t);
    named_locks_ += e.locks_taken;
    named_locks_ = std::max(0, named_locks_ - e.locks_released);
    if (e.release_all_locks) named_locks_ = 0;
    if (e.lock_tables) lock_tables_ = true;
    if (e.unlock_tables) lock_tables_ = false;
    if (e.user_variables) user_variables_ = true;
    PublishPins();
  }
  void PublishPins() {
    std::string reason = PinReason();
    core_.Update(id_, [&](core::SessionRecord& r) { r.pinned = reason; });
  }

  // ---- Server links.

  void OpenLink(Side side) {
    const MySqlServer& s = m_.config.servers[static_cast<int>(side)];
    auto c = Conn::Connect(loop_, s.host, s.port, this, static_cast<int>(side));
    if (!c.ok()) return FailPending(c.status().message());
    auto l = std::make_unique<Link>();
    l->side = side;
    l->conn = std::move(*c);
    ++core_.server_connects[static_cast<int>(side)];
    links_[static_cast<int>(side)] = std::move(l);
  }

  // The held command cannot reach its server: it gets the error, the session stays.
  void FailPending(const std::string& why) {
    if (!in_txn_ || closed_) return;
    auto in = client_->input();
    if (in.size() >= kHeader && in.size() >= kHeader + PayloadLen(in)) {
      uint8_t seq = static_cast<uint8_t>(in[3]);
      client_->Consume(kHeader + PayloadLen(in));
      ReplyErr(seq, 1105, "HY000", fmt::format("proxy: {}", why));
    }
    in_txn_ = false;
    core_.LeaveTransaction(ep_);
    core_.Update(id_, [](core::SessionRecord& r) { r.in_transaction = false; });
    loop_->Post([w = weak_from_this()] {
      if (auto s = w.lock()) s->ProcessClient();
    });
  }

  void DropLink(int side, bool quit) {
    auto& l = links_[side];
    if (!l) return;
    if (quit && l->state == Link::State::kReady) l->conn->Write(Packet(0, mw::ComSimple(mw::Command::kQuit)));
    l->conn->Close();
    std::shared_ptr<Link> gone(std::move(l));
    loop_->Defer([gone] {});
    if (cur_ == side) cur_ = -1;
  }

  void FailLink(Link& l, const std::string& why) {
    const int side = static_cast<int>(l.side);
    LOG_INFO("proxy {}: session {} ({}): {}", m_.config.migration, id_, peer_, why);
    if (cur_ == side) {
      // The session's own server went away mid-session: like the server, close.
      if (!client_->out_full() && !awaiting_.empty()) client_->Write(Packet(1, ErrPayload(1105, "HY000", fmt::format("proxy: {}", why))));
      return Close(why);
    }
    DropLink(side, false);
    if (want_ == side) FailPending(why);
  }

  void ProcessServer(Link& l) {
    while (!closed_ && !l.conn->closed()) {
      auto in = l.conn->input();
      if (in.size() < kHeader) return;
      size_t len = PayloadLen(in);
      if (in.size() < kHeader + len) {
        l.conn->NeedInput(kHeader + len);
        return;
      }
      uint8_t seq = static_cast<uint8_t>(in[3]);
      std::string_view payload = in.substr(kHeader, len);
      std::string_view raw = in.substr(0, kHeader + len);
      if (l.state != Link::State::kReady) {
        std::string p(payload);
        l.conn->Consume(raw.size());
        if (!Login(l, seq, p)) return;
        continue;
      }
      if (l.internal_sent) {
        std::string p(payload);
        l.conn->Consume(raw.size());
        if (!OnInternalAnswer(l, p)) return;
        continue;
      }
      if (cur_ != static_cast<int>(l.side) || (awaiting_.empty() && l.tracker->Idle())) {
        // Nothing asked: a server that closes an idle session says so first.
        std::string what = "an unexpected packet";
        if (!payload.empty() && static_cast<uint8_t>(payload[0]) == 0xff)
          if (auto err = mw::ParseErr(payload); err.ok()) what = err->message;
        FailLink(l, fmt::format("{} server: {}", SideStr(l.side), what));
        return;
      }
      if (client_->out_full()) return;
      if (l.cont) {
        l.cont = len == kMaxPayload;
        client_->Write(raw);
        l.conn->Consume(raw.size());
        continue;
      }
      l.cont = len == kMaxPayload;
      auto t = l.tracker->OnServerMessage(payload);
      if (!t.ok()) return ProtocolError(fmt::format("{} server: {}", SideStr(l.side), t.status().message()));
      RelayServerPacket(l, seq, payload, raw, *t);
      l.conn->Consume(raw.size());
      if (t->response_complete) OnResponseComplete(l);
    }
  }

  void RelayServerPacket(Link& l, uint8_t seq, std::string_view payload, std::string_view raw, const mw::TrackedPacket& t) {
    const bool ok_format = t.kind == mw::PacketKind::kOk ||
                           (t.kind == mw::PacketKind::kEof && (l.caps & mw::cap::kDeprecateEof) && !payload.empty());
    if (ok_format) {
      auto ok = mw::ParseOk(payload, l.caps);
      if (ok.ok()) {
        RecordTracking(l, ok->session_state);
        if (closed_) return;
        if (!(caps_ & mw::cap::kSessionTrack)) {
          ok->session_state.clear();
          ok->status &= ~mw::status::kSessionStateChanged;
          client_->Write(Packet(seq, mw::EncodeOk(*ok, caps_)));
          return;
        }
      }
    } else if (t.kind == mw::PacketKind::kPrepareOk && l.tracker->last_prepare()) {
      const auto& p = *l.tracker->last_prepare();
      uint32_t client_id = next_stmt_++;
      PreparedStmt st;
      st.sql = awaiting_.empty() ? "" : awaiting_.front().sql;
      st.params = p.params;
      st.columns = p.columns;
      stmts_[client_id] = st;
      l.stmts[client_id] = p.stmt_id;
      // The server's packet as sent, with the client's id in place of the server's.
      (void)seq;
      std::string out(raw);
      for (int i = 0; i < 4; ++i) out[kHeader + 1 + i] = static_cast<char>((client_id >> (8 * i)) & 0xff);
      client_->Write(out);
      return;
    } else if (t.kind == mw::PacketKind::kLocalInfile) {
      client_data_ = true;
    }
    client_->Write(raw);
  }

  void RecordTracking(Link& l, const std::vector<mw::SessionStateChange>& changes) {
    for (const auto& c : changes) {
      if (c.type == mw::kTrackSchema) {
        schema_ = c.name;
        l.schema = c.name;
      } else if (c.type == mw::kTrackSystemVariables) {
        if (ep_ == Endpoint::kReadOnly && (c.name == "tx_read_only" || c.name == "transaction_read_only") &&
            (c.value == "OFF" || c.value == "0")) {
          LOG_WARN("proxy {}: session {} ({}) turned read-only transactions off on the read-only endpoint: closed",
                   m_.config.migration, id_, peer_);
          return Close("read-only turned off");
        }
        if (NotCarried(c.name)) continue;
        vars_[c.name] = c.value;
        l.vars[c.name] = c.value;
      }
    }
  }

  void OnResponseComplete(Link& l) {
    if (!l.internal.empty() && !l.internal_sent && l.tracker->Idle()) SendInternal(l);
    if (!awaiting_.empty()) {
      Awaiting a = std::move(awaiting_.front());
      awaiting_.pop_front();
      const bool failed = l.tracker->last_err().has_value();
      if (!failed) ApplyPins(a.pins);
      if (a.reset && !failed) ResetSessionState(l);
    }
    if (!l.tracker->StatusKnown() && l.tracker->Idle()) {
      // After an ERR the transaction state is unknown: ask.
      l.internal.push_back({Internal::Kind::kPing, mw::ComSimple(mw::Command::kPing)});
      SendInternal(l);
      return;
    }
    CheckBoundary(l);
  }

  void ResetSessionState(Link& l) {
    vars_.clear();
    l.vars.clear();
    stmts_.clear();
    l.stmts.clear();
    l.typed.clear();
    temp_tables_.clear();
    sql_prepared_.clear();
    named_locks_ = 0;
    lock_tables_ = user_variables_ = false;
    PublishPins();
    for (int i = 0; i < 2; ++i)
      if (links_[i] && links_[i].get() != &l) DropLink(i, true);
    // The server forgot its setup too.
    QueueSetup(l);
    SendInternal(l);
  }

  void CheckBoundary(Link& l) {
    if (!in_txn_ || !l.internal.empty() || long_data_) return;
    if (!l.tracker->AtTransactionBoundary()) return;
    in_txn_ = false;
    core_.LeaveTransaction(ep_);
    core_.Update(id_, [](core::SessionRecord& r) { r.in_transaction = false; });
    loop_->Post([w = weak_from_this()] {
      if (auto s = w.lock()) s->ProcessClient();
    });
  }

  // ---- Login and internal commands.

  bool Login(Link& l, uint8_t seq, const std::string& p) {
    const MySqlServer& s = m_.config.servers[static_cast<int>(l.side)];
    if (l.state == Link::State::kHandshake || l.state == Link::State::kConnecting) {
      if (!p.empty() && static_cast<uint8_t>(p[0]) == 0xff) {
        auto e = mw::ParseErr(p);
        FailLink(l, fmt::format("{} server refused the connection: {}", SideStr(l.side), e.ok() ? e->message : "?"));
        return false;
      }
      auto h = mw::ParseHandshake(p);
      if (!h.ok()) {
        FailLink(l, fmt::format("{} server: {}", SideStr(l.side), h.status().message()));
        return false;
      }
      l.thread_id = h->connection_id;
      l.caps = ((caps_ & ~kLoginOnly) | mw::cap::kSessionTrack | mw::cap::kProtocol41) & h->capabilities;
      l.tracker = std::make_unique<mw::ResponseTracker>(l.caps);
      mw::HandshakeResponse r;
      r.capabilities = l.caps | ((mw::cap::kPluginAuth | mw::cap::kSecureConnection | mw::cap::kPluginAuthLenencData) & h->capabilities);
      if (!schema_.empty()) {
        r.capabilities |= mw::cap::kConnectWithDb;
        r.database = schema_;
      }
      r.max_packet = 1 << 30;
      r.collation = collation_;
      r.user = s.user;
      const auto plugin = mw::ClassifyAuthPlugin(h->auth_plugin);
      r.auth_response = plugin == mw::AuthPlugin::kCachingSha2Password ? mw::CachingSha2Response(s.password, h->scramble)
                                                                        : mw::NativePasswordResponse(s.password, h->scramble);
      r.auth_plugin = plugin == mw::AuthPlugin::kCachingSha2Password ? "caching_sha2_password" : "mysql_native_password";
      l.conn->Write(Packet(seq + 1, mw::EncodeHandshakeResponse(r)));
      l.state = Link::State::kAuth;
      l.schema = schema_;
      return true;
    }
    // kAuth
    const uint8_t first = p.empty() ? 0xff : static_cast<uint8_t>(p[0]);
    if (first == 0x00) {
      l.state = Link::State::kReady;
      QueueSetup(l);
      SendInternal(l);
      return true;
    }
    if (first == 0xfe) {
      auto sw = mw::ParseAuthSwitchRequest(p);
      if (!sw.ok()) {
        FailLink(l, fmt::format("{} server: {}", SideStr(l.side), sw.status().message()));
        return false;
      }
      const auto plugin = mw::ClassifyAuthPlugin(sw->plugin);
      if (plugin == mw::AuthPlugin::kNativePassword) {
        l.conn->Write(Packet(seq + 1, mw::NativePasswordResponse(s.password, sw->data)));
      } else if (plugin == mw::AuthPlugin::kCachingSha2Password) {
        l.conn->Write(Packet(seq + 1, mw::CachingSha2Response(s.password, sw->data)));
      } else {
        FailLink(l, fmt::format("{} server asks for authentication plugin {}, which the proxy cannot use for user {}",
                                SideStr(l.side), sw->plugin, s.user));
        return false;
      }
      return true;
    }
    if (first == 0x01 && p.size() >= 2 && static_cast<uint8_t>(p[1]) == 0x03) return true;  // caching_sha2 fast auth OK follows
    if (first == 0xff) {
      auto e = mw::ParseErr(p);
      FailLink(l, fmt::format("{} server refused the login of {}: {}", SideStr(l.side), s.user, e.ok() ? e->message : "?"));
      return false;
    }
    FailLink(l, fmt::format("{} server: an authentication step the proxy does not support (needs TLS or RSA for user {})",
                            SideStr(l.side), s.user));
    return false;
  }

  void QueueSetup(Link& l) {
    std::string set = "SET SESSION session_track_schema=ON, session_track_state_change=ON, session_track_system_variables='*'";
    l.internal.push_back({Internal::Kind::kSetup, mw::ComQuery(set)});
    if (ep_ == Endpoint::kReadOnly)
      l.internal.push_back({Internal::Kind::kSetup, mw::ComQuery("SET SESSION TRANSACTION READ ONLY")});
  }

  bool Synced(const Link& l) const {
    if (!schema_.empty() && l.schema != schema_) return false;
    for (const auto& [k, v] : vars_) {
      auto it = l.vars.find(k);
      if (it == l.vars.end() || it->second != v) return false;
    }
    for (const auto& [id, st] : stmts_)
      if (!l.stmts.count(id)) return false;
    return true;
  }

  void QueueSync(Link& l) {
    if (!schema_.empty() && l.schema != schema_) {
      Internal in{Internal::Kind::kInitDb, mw::ComInitDb(schema_)};
      in.schema = schema_;
      l.internal.push_back(std::move(in));
    }
    std::vector<std::string> clauses;
    std::map<std::string, std::string> set;
    for (const auto& [k, v] : vars_) {
      auto it = l.vars.find(k);
      if (it != l.vars.end() && it->second == v) continue;
      std::string c = SetClause(k, v);
      if (c.empty()) continue;
      clauses.push_back(c);
      set[k] = v;
    }
    if (!clauses.empty()) {
      Internal in{Internal::Kind::kSet, mw::ComQuery(fmt::format("SET SESSION {}", fmt::join(clauses, ", ")))};
      in.vars = std::move(set);
      l.internal.push_back(std::move(in));
    }
    for (const auto& [id, st] : stmts_) {
      if (l.stmts.count(id)) continue;
      Internal in{Internal::Kind::kPrepare, mw::ComStmtPrepare(st.sql)};
      in.client_stmt = id;
      l.internal.push_back(std::move(in));
    }
  }

  void SendInternal(Link& l) {
    while (!l.internal_sent && !l.internal.empty() && l.state == Link::State::kReady) {
      Internal& in = l.internal.front();
      if (Status st = l.tracker->OnCommand(in.payload); !st.ok()) return ProtocolError(st.message());
      l.conn->Write(Packet(0, in.payload));
      if (in.kind == Internal::Kind::kClose) {
        l.internal.pop_front();
        continue;
      }
      l.internal_sent = true;
    }
    if (l.internal.empty() && !l.internal_sent) {
      CheckBoundary(l);
      loop_->Post([w = weak_from_this()] {
        if (auto s = w.lock()) s->ProcessClient();
      });
    }
  }

  bool OnInternalAnswer(Link& l, const std::string& p) {
    auto t = l.tracker->OnServerMessage(p);
    if (!t.ok()) {
      ProtocolError(fmt::format("{} server: {}", SideStr(l.side), t.status().message()));
      return false;
    }
    Internal& in = l.internal.front();
    if (t->kind == mw::PacketKind::kPrepareOk && l.tracker->last_prepare()) {
      l.stmts[in.client_stmt] = l.tracker->last_prepare()->stmt_id;
      l.typed.erase(in.client_stmt);
    }
    if (!t->response_complete) return true;
    if (t->kind == mw::PacketKind::kErr) {
      const auto& e = l.tracker->last_err();
      std::string what = in.kind == Internal::Kind::kPrepare ? fmt::format("re-preparing statement {}", in.client_stmt)
                         : in.kind == Internal::Kind::kInitDb ? fmt::format("selecting schema {}", in.schema)
                         : in.kind == Internal::Kind::kSet    ? "restoring session variables"
                                                               : "setting up the session";
      std::string why = fmt::format("{} server: {}: {}", SideStr(l.side), what, e ? e->message : "error");
      l.internal.clear();
      l.internal_sent = false;
      if (cur_ == static_cast<int>(l.side)) {
        Close(why);
      } else {
        DropLink(static_cast<int>(l.side), true);
        FailPending(why);
      }
      return false;
    }
    if (in.kind == Internal::Kind::kSet)
      for (auto& [k, v] : in.vars) l.vars[k] = v;
    if (in.kind == Internal::Kind::kInitDb) l.schema = in.schema;
    l.internal.pop_front();
    l.internal_sent = false;
    SendInternal(l);
    return !closed_;
  }

  MySqlProxy::Module& m_;
  ProxyCore& core_;
  EventLoop* loop_;
  const Endpoint ep_;
  const uint64_t id_;
  std::string peer_;
  std::unique_ptr<Conn> client_;
  CState cstate_ = CState::kHandshake;
  bool closed_ = false, in_auth_ = false, counted_ = false, tls_pending_ = false;
  std::optional<EventLoop::TimerId> auth_timer_;
  std::string scramble_, user_;
  uint64_t client_caps_ = 0, caps_ = 0;
  uint8_t collation_ = 33;
  uint8_t auth_seq_ = 0;
  // Session state, carried to another server.
  std::string schema_;
  std::map<std::string, std::string> vars_;
  std::map<uint32_t, PreparedStmt> stmts_;
  uint32_t next_stmt_ = 1;
  // What pins the session.
  std::set<std::string> temp_tables_, sql_prepared_;
  int named_locks_ = 0;
  bool lock_tables_ = false, user_variables_ = false;
  // Routing.
  std::unique_ptr<Link> links_[2];
  int cur_ = -1, want_ = 0;
  bool in_txn_ = false, waiting_gate_ = false;
  bool client_data_ = false, client_cont_ = false, long_data_ = false;
  std::deque<Awaiting> awaiting_;
};

}  // namespace

std::shared_ptr<core::Session> MySqlProxy::Module::NewSession(ProxyCore& core, EventLoop* loop, int fd, Endpoint endpoint,
                                                             uint64_t id) {
  return std::make_shared<MySession>(*this, core, loop, fd, endpoint, id);
}

Result<std::unique_ptr<MySqlProxy>> MySqlProxy::Start(MySqlProxyConfig config) {
  std::unique_ptr<MySqlProxy> p(new MySqlProxy());
  p->module_ = std::make_unique<Module>();
  Module& m = *p->module_;
  m.config = std::move(config);
  if (m.config.users.empty()) return OperatorError(fmt::format("proxy {}: no users to log in as", m.config.migration));
  for (const auto& u : m.config.users) m.stage2[u.name] = u.password.empty() ? "" : mw::NativePasswordStage2(u.password);
  if (!m.config.tls_cert.empty() || !m.config.tls_key.empty()) {
    m.tls = SSL_CTX_new(TLS_server_method());
    if (m.tls == nullptr || SSL_CTX_use_certificate_chain_file(m.tls, m.config.tls_cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(m.tls, m.config.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)
      return OperatorError(fmt::format("proxy {}: cannot load tls_cert {} / tls_key {}", m.config.migration,
                                       m.config.tls_cert, m.config.tls_key));
    // Conn::Write hands OpenSSL the front of a buffer that may grow or move between retries.
    SSL_CTX_set_mode(m.tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
  // Clients see the source's version and capabilities (less what the proxy does not relay).
  if (auto h = ProbeServer(m.config.servers[0])) {
    m.server_version = h->server_version;
    m.caps = kOffered & h->capabilities;
    m.collation = h->collation;
  }
  core::CoreConfig cc;
  cc.migration = m.config.migration;
  cc.listen[0] = m.config.listen_rw;
  cc.listen[1] = m.config.listen_ro;
  cc.max_clients = m.config.max_clients;
  cc.max_unauthenticated = m.config.max_unauthenticated;
  cc.auth_timeout = m.config.auth_timeout;
  cc.loops = m.config.loops;
  ASSIGN_OR_RETURN(p->core_, core::ProxyCore::Start(std::move(cc), &m));
  return p;
}

MySqlProxy::~MySqlProxy() { Stop(); }
void MySqlProxy::Stop() {
  if (core_) core_->Stop();
}
std::string MySqlProxy::rw_address() const { return core_->address(Endpoint::kReadWrite); }
std::string MySqlProxy::ro_address() const { return core_->address(Endpoint::kReadOnly); }
Side MySqlProxy::write_side() const { return core_->write_side(); }
void MySqlProxy::SetWriteSide(Side side) { core_->SetWriteSide(side); }
int MySqlProxy::read_percent() const { return core_->read_percent(); }
void MySqlProxy::SetReadPercent(int percent) { core_->SetReadPercent(percent); }
Status MySqlProxy::PauseWrites(std::chrono::milliseconds drain_timeout) { return core_->PauseWrites(drain_timeout); }
void MySqlProxy::ResumeWrites() { core_->ResumeWrites(); }
ProxyStats MySqlProxy::stats() const { return core_->stats(); }
std::vector<std::string> MySqlProxy::PinnedSessions(Side side) const { return core_->PinnedSessions(side); }

}  // namespace midflight::proxy
