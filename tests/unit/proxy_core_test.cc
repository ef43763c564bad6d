// The proxy core's event loop and bounded connections, over socketpairs.
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "proxy/core/connection.h"
#include "proxy/core/event_loop.h"
#include "proxy/core/proxy_core.h"

namespace midflight::proxy::core {
namespace {

// A relay of two connections, as a protocol module relays client and server:
// it consumes one side's input only while the other side's output has room.
class Relay final : public ConnOwner {
 public:
  std::unique_ptr<Conn> a, b;
  size_t max_in = 0, max_out = 0;
  bool closed = false;

  void Pump(Conn& from, Conn& to) {
    while (!from.input().empty() && !to.out_full()) {
      size_t n = std::min<size_t>(from.input().size(), 16 * 1024);
      to.Write(from.input().substr(0, n));
      from.Consume(n);
    }
    max_in = std::max({max_in, a->input().size(), b->input().size()});
    max_out = std::max({max_out, a->pending_output(), b->pending_output()});
  }
  Conn& Other(Conn& c) { return &c == a.get() ? *b : *a; }
  void OnConnRead(Conn& c) override { Pump(c, Other(c)); }
  void OnConnDrained(Conn& c) override { Pump(Other(c), c); }
  void OnConnClosed(Conn&, const std::string&) override { closed = true; }
};

struct LoopThread {
  std::unique_ptr<EventLoop> loop;
  std::thread t;
  LoopThread() {
    loop = EventLoop::Create().value();
    t = std::thread([this] { loop->Run(); });
  }
  ~LoopThread() {
    loop->Stop();
    t.join();
  }
  // Runs fn on the loop and waits for it.
  void Sync(std::function<void()> fn) {
    std::promise<void> done;
    loop->Post([&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }
};


TEST(EventLoopTest, TimersFireInDeadlineOrderAndCancelledOnesDoNot) {
  LoopThread lt;
  std::promise<std::string> result;
  std::string order;
  lt.Sync([&] {
    auto now = LoopClock::now();
    lt.loop->AddTimer(now + std::chrono::milliseconds(60), [&] {
      order += "c";
      result.set_value(order);
    });
    lt.loop->AddTimer(now + std::chrono::milliseconds(20), [&] { order += "a"; });
    auto id = lt.loop->AddTimer(now + std::chrono::milliseconds(30), [&] { order += "x"; });
    lt.loop->AddTimer(now + std::chrono::milliseconds(40), [&] { order += "b"; });
    lt.loop->CancelTimer(id);
  });
  auto f = result.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(f.get(), "abc");
  lt.Sync([&] { EXPECT_EQ(lt.loop->timers(), 0u); });
}

// Both peers write 8 MiB at once while reading only after they finished
// writing: a proxy that blocks in send or buffers without bound would
// deadlock or balloon; the relay's buffers stay within their bounds and both
// streams arrive whole.
TEST(ConnTest, BothDirectionsMoveIndependentlyWithBoundedBuffers) {
  int client[2], server[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, client), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, server), 0);
  LoopThread lt;
  Relay relay;
  lt.Sync([&] {
    relay.a = std::make_unique<Conn>(lt.loop.get(), client[1], &relay, false);
    relay.b = std::make_unique<Conn>(lt.loop.get(), server[1], &relay, false);
    ASSERT_TRUE(relay.a->Register().ok());
    ASSERT_TRUE(relay.b->Register().ok());
  });
  const size_t kBytes = 8 << 20;
  auto peer = [kBytes](int fd, char fill) {
    // Write everything first (non-blocking, retrying), reading only when stuck.
    std::string out(kBytes, fill), in;
    size_t sent = 0;
    char buf[65536];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while ((sent < kBytes || in.size() < kBytes) && std::chrono::steady_clock::now() < deadline) {
      bool progress = false;
      if (sent < kBytes) {
        ssize_t n = send(fd, out.data() + sent, kBytes - sent, MSG_NOSIGNAL);
        if (n > 0) {
          sent += static_cast<size_t>(n);
          progress = true;
        }
      }
      if (sent == kBytes || !progress) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) in.append(buf, static_cast<size_t>(n));
        else std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
    return in;
  };
  auto from_client = std::async(std::launch::async, peer, client[0], 'c');
  auto from_server = std::async(std::launch::async, peer, server[0], 's');
  std::string at_client = from_client.get(), at_server = from_server.get();
  EXPECT_EQ(at_client.size(), kBytes);
  EXPECT_EQ(at_server.size(), kBytes);
  EXPECT_EQ(at_client.find_first_not_of('s'), std::string::npos);
  EXPECT_EQ(at_server.find_first_not_of('c'), std::string::npos);
  lt.Sync([&] {
    EXPECT_LE(relay.max_in, Conn::kDefaultReadLimit);
    EXPECT_LE(relay.max_out, Conn::kDefaultOutLimit + 16 * 1024);
    relay.a.reset();
    relay.b.reset();
  });
  close(client[0]);
  close(server[0]);
}

// A peer that stops reading: the relay stops reading the other side once the
// output bound is reached (backpressure), and resumes when it drains.
TEST(ConnTest, StopsReadingWhenThePeersOutputIsFull) {
  int client[2], server[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, client), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, server), 0);
  int small = 16 * 1024;
  for (int fd : {client[0], client[1], server[0], server[1]}) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  LoopThread lt;
  Relay relay;
  lt.Sync([&] {
    relay.a = std::make_unique<Conn>(lt.loop.get(), client[1], &relay, false);
    relay.b = std::make_unique<Conn>(lt.loop.get(), server[1], &relay, false);
    ASSERT_TRUE(relay.a->Register().ok());
    ASSERT_TRUE(relay.b->Register().ok());
  });
  // The server writes 4 MiB; the client does not read.
  std::string block(1 << 20, 'x');
  size_t sent = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < deadline) {
    ssize_t n = send(server[0], block.data(), block.size(), MSG_NOSIGNAL);
    if (n > 0) sent += static_cast<size_t>(n);
    else std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Everything in flight is bounded: kernel buffers + the relay's bounds.
  EXPECT_LT(sent, size_t{2} << 20);
  lt.Sync([&] {
    EXPECT_TRUE(relay.a->out_full());
    EXPECT_LE(relay.b->input().size(), Conn::kDefaultReadLimit);
  });
  // The client reads: everything the server sent arrives.
  std::string got;
  char buf[65536];
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (got.size() < sent && std::chrono::steady_clock::now() < deadline) {
    ssize_t n = recv(client[0], buf, sizeof buf, 0);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    else std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(got.size(), sent);
  lt.Sync([&] {
    relay.a.reset();
    relay.b.reset();
  });
  close(client[0]);
  close(server[0]);
}

TEST(ConnTest, PeerCloseIsReportedEvenWhileNotReading) {
  int sp[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp), 0);
  LoopThread lt;
  struct Owner : ConnOwner {
    std::promise<std::string> closed;
    void OnConnRead(Conn&) override {}
    void OnConnDrained(Conn&) override {}
    void OnConnClosed(Conn&, const std::string& why) override { closed.set_value(why); }
  } owner;
  std::unique_ptr<Conn> c;
  lt.Sync([&] {
    c = std::make_unique<Conn>(lt.loop.get(), sp[1], &owner, false);
    ASSERT_TRUE(c->Register().ok());
    c->PauseReading(true);
  });
  close(sp[0]);
  auto f = owner.closed.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(f.get(), "connection closed by the peer");
  lt.Sync([&] { c.reset(); });
}


// A throwaway self-signed certificate for TLS between two Conns.
SSL_CTX* TestServerCtx() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(ctx, cert);
  SSL_CTX_use_PrivateKey(ctx, key);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ctx;
}

// Bytes OpenSSL holds decrypted (a record read only in part because the
// input limit was reached) are invisible to epoll: Conn reads them once the
// limit rises, with no new data on the socket. And the task that does so
// must not touch a connection destroyed before it runs (it is posted; a
// Conn dies through EventLoop::Defer, at the end of the loop iteration).
TEST(ConnTest, TlsBytesHeldDecryptedAreReadAndTheTaskOutlivesNoConn) {
  signal(SIGPIPE, SIG_IGN);  // OpenSSL writes with write(2), as in the midflight binary
  int sp[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp), 0);
  SSL_CTX* sctx = TestServerCtx();
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  LoopThread lt;
  struct Owner : ConnOwner {
    std::atomic<int> tls_done{0}, reads{0};
    std::atomic<size_t> buffered{0};
    void OnConnTlsDone(Conn&) override { ++tls_done; }
    void OnConnRead(Conn& c) override {
      ++reads;
      buffered = c.input().size();
    }
    void OnConnDrained(Conn&) override {}
    void OnConnClosed(Conn&, const std::string&) override {}
  } server_owner, client_owner;
  std::unique_ptr<Conn> server, client;
  lt.Sync([&] {
    server = std::make_unique<Conn>(lt.loop.get(), sp[0], &server_owner, false);
    client = std::make_unique<Conn>(lt.loop.get(), sp[1], &client_owner, false);
    ASSERT_TRUE(server->Register().ok());
    ASSERT_TRUE(client->Register().ok());
    ASSERT_TRUE(server->StartServerTls(sctx).ok());
    ASSERT_TRUE(client->StartClientTls(cctx, "localhost", false).ok());
  });
  auto wait_for = [](auto done) {
    for (int i = 0; i < 500 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return done();
  };
  ASSERT_TRUE(wait_for([&] { return server_owner.tls_done == 1 && client_owner.tls_done == 1; }));
  lt.Sync([&] {
    server->SetReadLimit(4);
    client->Write(std::string(100, 'x'));  // one TLS record
  });
  ASSERT_TRUE(wait_for([&] { return server_owner.buffered == 4; }));
  // The limit rises outside a read callback: the other 96 bytes come out of
  // OpenSSL (the socket has nothing more).
  lt.Sync([&] { server->SetReadLimit(Conn::kDefaultReadLimit); });
  ASSERT_TRUE(wait_for([&] { return server_owner.buffered == 100; }));

  // Again, then the connection is destroyed in the same turn of the loop as
  // the limit rises, from a posted task: the read task then runs after the
  // Conn is gone and must do nothing.
  lt.Sync([&] {
    server->Consume(100);
    server->SetReadLimit(4);
    client->Write(std::string(100, 'y'));
  });
  ASSERT_TRUE(wait_for([&] { return server_owner.buffered == 4; }));
  const int reads = server_owner.reads;
  // A decoy allocated right after (malloc usually hands it the same memory):
  // a plain, unregistered connection with data waiting, which nothing may read.
  int dp[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, dp), 0);
  ASSERT_EQ(write(dp[0], "z", 1), 1);
  struct Decoy : ConnOwner {
    std::atomic<int> reads{0};
    void OnConnRead(Conn&) override { ++reads; }
    void OnConnDrained(Conn&) override {}
    void OnConnClosed(Conn&, const std::string&) override {}
  } decoy_owner;
  std::unique_ptr<Conn> decoy;
  lt.Sync([&] {
    server->SetReadLimit(Conn::kDefaultReadLimit);  // posts the read of OpenSSL's 96 bytes
    server->Close();
    lt.loop->Defer([&] {
      server.reset();
      decoy = std::make_unique<Conn>(lt.loop.get(), dp[1], &decoy_owner, false);
    });
  });
  for (int i = 0; i < 3; ++i) lt.Sync([] {});
  EXPECT_EQ(server_owner.reads, reads);
  EXPECT_EQ(decoy_owner.reads, 0) << "a task posted for a destroyed connection ran on the memory it left";
  lt.Sync([&] {
    decoy.reset();
    client.reset();
  });
  close(dp[0]);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
}
}  // namespace
}  // namespace midflight::proxy::core

namespace midflight::proxy::core {
namespace {

class NoModule final : public ProtocolModule {
 public:
  std::shared_ptr<Session> NewSession(ProxyCore&, EventLoop*, int fd, Endpoint, uint64_t) override {
    close(fd);
    return nullptr;
  }
};

class GateSession final : public Session {
 public:
  std::promise<void> opened;
  void Start() override {}
  void OnGateOpen() override { opened.set_value(); }
  void Kill(bool) override {}
  void Shutdown() override {}
};

// The write gate: a transaction in progress holds PauseWrites until it ends
// (or the drain timeout names it); while paused, a new transaction waits and
// is told when writes resume; the read-only endpoint is never gated.
TEST(ProxyCoreTest, WriteGateDrainsAndHoldsNewTransactions) {
  NoModule module;
  CoreConfig cc;
  cc.migration = "t";
  cc.listen[0] = "127.0.0.1:0";
  cc.loops = 2;
  auto core = ProxyCore::Start(cc, &module);
  ASSERT_TRUE(core.ok()) << core.status().message();
  ProxyCore& c = **core;
  auto loop = EventLoop::Create().value();
  std::thread lt([&] { loop->Run(); });
  auto busy = std::make_shared<GateSession>();
  SessionRecord rec;
  rec.peer = "10.0.0.7:51234";
  busy->set_in_transaction(true);
  c.Register(7, busy, loop.get(), rec);
  ASSERT_TRUE(c.EnterTransaction(busy, loop.get(), Endpoint::kReadWrite));

  auto st = c.PauseWrites(std::chrono::milliseconds(50));
  EXPECT_EQ(st.message(),
            "proxy t: 1 read-write session(s) still in a transaction after the drain timeout of 50 ms: "
            "10.0.0.7:51234 (session 7)");
  // Still paused: a new transaction waits; the read-only endpoint does not.
  auto waiter = std::make_shared<GateSession>();
  EXPECT_FALSE(c.EnterTransaction(waiter, loop.get(), Endpoint::kReadWrite));
  EXPECT_TRUE(c.EnterTransaction(waiter, loop.get(), Endpoint::kReadOnly));

  // The busy transaction ends during a pause: the pause returns at once.
  std::thread ender([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    c.LeaveTransaction(Endpoint::kReadWrite);
  });
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.PauseWrites(std::chrono::seconds(5)).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  ender.join();

  c.ResumeWrites();
  auto f = waiter->opened.get_future();
  EXPECT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);

  c.SetReadPercent(0);
  EXPECT_EQ(c.Route(Endpoint::kReadOnly), Side::kSource);
  c.SetReadPercent(100);
  EXPECT_EQ(c.Route(Endpoint::kReadOnly), Side::kTarget);
  c.SetWriteSide(Side::kTarget);
  EXPECT_EQ(c.Route(Endpoint::kReadWrite), Side::kTarget);

  c.Update(7, [](SessionRecord& r) { r.pinned = "temporary table t1"; });
  EXPECT_EQ(c.PinnedSessions(Side::kSource), std::vector<std::string>{"10.0.0.7:51234 on the source: temporary table t1"});
  EXPECT_TRUE(c.PinnedSessions(Side::kTarget).empty());
  EXPECT_EQ(c.stats().pinned_sessions, 1);
  loop->Post([&] { c.Unregister(7); });
  c.Stop();
  loop->Stop();
  lt.join();
}

class CountingGateSession final : public Session {
 public:
  std::atomic<int> opened{0};
  void Start() override {}
  void OnGateOpen() override { ++opened; }
  void Kill(bool) override {}
  void Shutdown() override {}
};

// The gate's lock-free fast path under contention: threads enter and leave
// transactions as fast as they can while writes are paused and resumed
// again and again. Once PauseWrites returns, no transaction is inside and
// none starts until ResumeWrites; every pause drains.
TEST(ProxyCoreTest, WriteGateHoldsUnderConcurrentTransactions) {
  NoModule module;
  CoreConfig cc;
  cc.migration = "t";
  cc.listen[0] = "127.0.0.1:0";
  cc.loops = 1;
  auto core = ProxyCore::Start(cc, &module);
  ASSERT_TRUE(core.ok()) << core.status().message();
  ProxyCore& c = **core;
  auto loop = EventLoop::Create().value();
  std::thread lt([&] { loop->Run(); });
  std::atomic<bool> stop{false}, drained{false};
  std::atomic<int> inside{0}, violations{0}, entered{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&] {
      auto s = std::make_shared<CountingGateSession>();
      while (!stop) {
        if (c.EnterTransaction(s, loop.get(), Endpoint::kReadWrite)) {
          if (drained) ++violations;
          ++inside;
          ++entered;
          --inside;
          c.LeaveTransaction(Endpoint::kReadWrite);
        } else {
          while (c.paused() && !stop) std::this_thread::yield();
        }
      }
    });
  }
  for (int k = 0; k < 50; ++k) {
    if (Status st = c.PauseWrites(std::chrono::seconds(10)); !st.ok()) {
      ADD_FAILURE() << "pause " << k << ": " << st.message();
      break;
    }
    drained = true;
    if (inside != 0) ++violations;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (inside != 0) ++violations;
    drained = false;
    c.ResumeWrites();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  stop = true;
  for (auto& w : workers) w.join();
  EXPECT_EQ(violations, 0);
  EXPECT_GT(entered, 0);
  // Every transaction left: a last pause drains at once.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.PauseWrites(std::chrono::seconds(5)).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  c.ResumeWrites();
  c.Stop();
  loop->Stop();
  lt.join();
}

}  // namespace
}  // namespace midflight::proxy::core
