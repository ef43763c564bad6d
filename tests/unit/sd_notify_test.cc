#include "service/sd_notify.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace midflight {
namespace {

using namespace std::chrono_literals;

// A datagram socket standing in for systemd's notification socket: bound to
// a path, or to an abstract name when `name` starts with '@'.
class FakeSystemd {
 public:
  explicit FakeSystemd(std::string name) : name_(std::move(name)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name_.data(), name_.size());
    if (name_[0] == '@') addr.sun_path[0] = '\0';
    socklen_t len = offsetof(sockaddr_un, sun_path) + name_.size() + (name_[0] == '@' ? 0 : 1);
    bound_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0;
  }
  ~FakeSystemd() {
    if (fd_ >= 0) ::close(fd_);
    if (name_[0] == '/') ::unlink(name_.c_str());
  }
  bool bound() const { return bound_; }

  // The next datagram, or "" when none arrives within `wait`.
  std::string Receive(std::chrono::milliseconds wait = 2000ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) != 1) return "";
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

 private:
  std::string name_;
  int fd_ = -1;
  bool bound_ = false;
};

std::string Unique(const char* what) {
  return fmt::format("{}-{}-{}", what, ::getpid(), std::chrono::steady_clock::now().time_since_epoch().count());
}

TEST(SdNotifyTest, ReadyArrivesOnAnAbstractSocketFromTheEnvironment) {
  const std::string name = "@midflight-test-" + Unique("abstract");
  FakeSystemd systemd(name);
  ASSERT_TRUE(systemd.bound());
  ::setenv("NOTIFY_SOCKET", name.c_str(), 1);
  ::unsetenv("WATCHDOG_USEC");
  auto n = SystemdNotifier::FromEnvironment();
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_TRUE((*n)->enabled());
  EXPECT_EQ((*n)->watchdog_interval().count(), 0);
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr) << "children (pg_dump) must not inherit it";
  ASSERT_TRUE((*n)->Send("READY=1\nSTATUS=ready: 0 migration(s)").ok());
  EXPECT_EQ(systemd.Receive(), "READY=1\nSTATUS=ready: 0 migration(s)");
}

TEST(SdNotifyTest, ReadyArrivesOnAPathSocket) {
  const std::string path = (std::filesystem::temp_directory_path() / Unique("mf-notify")).string();
  FakeSystemd systemd(path);
  ASSERT_TRUE(systemd.bound());
  auto n = SystemdNotifier::Create(path, 0us);
  ASSERT_TRUE(n.ok()) << n.status().message();
  ASSERT_TRUE((*n)->Send("READY=1").ok());
  EXPECT_EQ(systemd.Receive(), "READY=1");
}

TEST(SdNotifyTest, WithoutNotifySocketNothingIsSent) {
  ::unsetenv("NOTIFY_SOCKET");
  ::setenv("WATCHDOG_USEC", "100000", 1);
  auto n = SystemdNotifier::FromEnvironment();
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE((*n)->enabled());
  EXPECT_EQ((*n)->watchdog_interval().count(), 0);
  EXPECT_TRUE((*n)->Send("READY=1").ok());
  (*n)->StartWatchdog([] { return Status::Ok(); }, [] { return std::string("x"); });  // no thread, no crash
}

TEST(SdNotifyTest, WatchdogPingsAtHalfTheIntervalWhileHealthy) {
  const std::string name = "@midflight-test-" + Unique("watchdog");
  FakeSystemd systemd(name);
  ASSERT_TRUE(systemd.bound());
  ::setenv("NOTIFY_SOCKET", name.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "200000", 1);  // 200 ms: a ping every 100 ms
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  auto n = SystemdNotifier::FromEnvironment();
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ((*n)->watchdog_interval(), 200ms);
  EXPECT_EQ(std::getenv("WATCHDOG_USEC"), nullptr);
  std::atomic<bool> healthy{true};
  (*n)->StartWatchdog([&] { return healthy ? Status::Ok() : Internal("the sampler loop is stuck"); },
                      [] { return std::string("ready: 1 migration(s)"); });
  // The first message carries the status once; later ones only the ping.
  EXPECT_EQ(systemd.Receive(), "WATCHDOG=1\nSTATUS=ready: 1 migration(s)");
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(systemd.Receive(), "WATCHDOG=1");
  EXPECT_EQ(systemd.Receive(), "WATCHDOG=1");
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 150ms);  // two pings, 100 ms apart
  EXPECT_LT(took, 1000ms);

  healthy = false;  // no more pings: systemd would restart the service
  std::string m;
  do {
    m = systemd.Receive();
  } while (m == "WATCHDOG=1");
  EXPECT_EQ(m, "STATUS=unhealthy: the sampler loop is stuck");
  EXPECT_EQ(systemd.Receive(400ms), "") << "no ping while unhealthy";
  healthy = true;
  EXPECT_EQ(systemd.Receive(), "WATCHDOG=1\nSTATUS=ready: 1 migration(s)");
  (*n)->StopWatchdog();
}

TEST(SdNotifyTest, WatchdogForAnotherProcessIsIgnored) {
  ::setenv("NOTIFY_SOCKET", "@midflight-test-unused", 1);
  ::setenv("WATCHDOG_USEC", "200000", 1);
  ::setenv("WATCHDOG_PID", "1", 1);
  auto n = SystemdNotifier::FromEnvironment();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ((*n)->watchdog_interval().count(), 0);
}

TEST(SdNotifyTest, BadSettingsAreNamed) {
  auto relative = SystemdNotifier::Create("run/notify", 0us);
  ASSERT_FALSE(relative.ok());
  EXPECT_EQ(relative.status().message(),
            "NOTIFY_SOCKET: \"run/notify\" is neither an absolute path nor an abstract name (@NAME)");
  ::setenv("NOTIFY_SOCKET", "@x", 1);
  ::setenv("WATCHDOG_USEC", "soon", 1);
  ::unsetenv("WATCHDOG_PID");
  auto bad = SystemdNotifier::FromEnvironment();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "WATCHDOG_USEC: \"soon\" is not a positive number of microseconds");
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
}

TEST(SdNotifyTest, NobodyListeningIsAnErrorNamingTheSocket) {
  auto n = SystemdNotifier::Create("@midflight-test-nobody-" + Unique("x"), 0us);
  ASSERT_TRUE(n.ok());
  Status st = (*n)->Send("READY=1");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kRetryCall);
  EXPECT_NE(st.message().find("NOTIFY_SOCKET @midflight-test-nobody-"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("Connection refused"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace midflight
