// sd_notify without libsystemd; see sd_notify.h.
#include "service/sd_notify.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "base/log.h"

namespace midflight {
namespace {

// $NOTIFY_SOCKET → sockaddr_un. '@' starts an abstract name (Linux): the
// address is a NUL then the rest, and its length counts only what is used.
Status Address(const std::string& socket, sockaddr_un* addr, socklen_t* len) {
  *addr = {};
  addr->sun_family = AF_UNIX;
  if (socket.size() < 2 || (socket[0] != '/' && socket[0] != '@'))
    return InvalidArgument(
        fmt::format("NOTIFY_SOCKET: \"{}\" is neither an absolute path nor an abstract name (@NAME)", socket));
  if (socket.size() >= sizeof(addr->sun_path))
    return InvalidArgument(fmt::format("NOTIFY_SOCKET: \"{}\" is longer than {} bytes", socket, sizeof(addr->sun_path) - 1));
  std::memcpy(addr->sun_path, socket.data(), socket.size());
  if (socket[0] == '@') addr->sun_path[0] = '\0';
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket.size() + (socket[0] == '@' ? 0 : 1));
  return Status::Ok();
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

}  // namespace

SystemdNotifier::SystemdNotifier(std::string socket, std::chrono::microseconds watchdog, int fd)
    : socket_(std::move(socket)), watchdog_(watchdog), fd_(fd) {}

SystemdNotifier::~SystemdNotifier() {
  StopWatchdog();
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<SystemdNotifier>> SystemdNotifier::Create(std::string socket,
                                                                 std::chrono::microseconds watchdog) {
  int fd = -1;
  if (!socket.empty()) {
    sockaddr_un addr;
    socklen_t len = 0;
    RETURN_IF_ERROR(Address(socket, &addr, &len));
    fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Internal(fmt::format("NOTIFY_SOCKET: socket(): {}", std::strerror(errno)));
  } else {
    watchdog = std::chrono::microseconds(0);  // nobody to ping
  }
  return std::unique_ptr<SystemdNotifier>(new SystemdNotifier(std::move(socket), watchdog, fd));
}

Result<std::unique_ptr<SystemdNotifier>> SystemdNotifier::FromEnvironment() {
  const std::string socket = Env("NOTIFY_SOCKET");
  std::chrono::microseconds watchdog(0);
  const std::string usec = Env("WATCHDOG_USEC"), pid = Env("WATCHDOG_PID");
  if (!usec.empty() && (pid.empty() || pid == std::to_string(::getpid()))) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(usec.c_str(), &end, 10);
    if (errno != 0 || end == usec.c_str() || *end != '\0' || v <= 0)
      return InvalidArgument(fmt::format("WATCHDOG_USEC: \"{}\" is not a positive number of microseconds", usec));
    watchdog = std::chrono::microseconds(v);
  }
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  return Create(socket, watchdog);
}

Status SystemdNotifier::Send(std::string_view message) {
  if (fd_ < 0) return Status::Ok();
  sockaddr_un addr;
  socklen_t len = 0;
  RETURN_IF_ERROR(Address(socket_, &addr, &len));
  ssize_t n;
  do {
    n = ::sendto(fd_, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), len);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return RetryCall(fmt::format("NOTIFY_SOCKET {}: sendto(): {}", socket_, std::strerror(errno)));
  if (static_cast<size_t>(n) != message.size())
    return RetryCall(fmt::format("NOTIFY_SOCKET {}: sent {} of {} bytes", socket_, n, message.size()));
  return Status::Ok();
}

void SystemdNotifier::StartWatchdog(std::function<Status()> health, std::function<std::string()> status) {
  if (watchdog_.count() <= 0 || watchdog_thread_.joinable()) return;
  LOG_INFO("systemd watchdog: a ping every {} ms", watchdog_.count() / 2000);
  watchdog_thread_ = std::thread([this, health = std::move(health), status = std::move(status)] {
    WatchdogLoop(health, status);
  });
}

void SystemdNotifier::StopWatchdog() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (watchdog_thread_.joinable()) watchdog_thread_.join();
}

void SystemdNotifier::WatchdogLoop(std::function<Status()> health, std::function<std::string()> status) {
  std::string last_status;
  bool last_healthy = true;
  for (;;) {
    Status h = health();
    std::string message;
    std::string now_status = h.ok() ? status() : "unhealthy: " + h.message();
    for (char& c : now_status)
      if (c == '\n') c = ' ';
    if (h.ok()) message = "WATCHDOG=1";
    if (now_status != last_status) message += (message.empty() ? "" : "\n") + ("STATUS=" + now_status);
    if (h.ok() != last_healthy) {
      if (h.ok())
        LOG_INFO("systemd watchdog: healthy again, pinging");
      else
        LOG_ERROR("systemd watchdog: not pinging: {}", h.message());
    }
    last_healthy = h.ok();
    last_status = now_status;
    if (!message.empty()) {
      if (Status st = Send(message); !st.ok()) LOG_WARN("systemd watchdog: {}", st.message());
    }
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, watchdog_ / 2, [&] { return stop_; })) return;
  }
}

}  // namespace midflight
