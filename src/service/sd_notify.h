// systemd's service notification protocol (sd_notify(3)), spoken without
// libsystemd: `midflight serve` under a `Type=notify` unit
// (packaging/midflight.service) tells systemd when it is ready, what it is
// doing and that it is still healthy.
//
//   serve starts ──► Service::Start (API listening, hosted migrations started)
//                    └─► READY=1 + STATUS=ready: N migration(s) ...
//   watchdog thread, every WATCHDOG_USEC/2:
//        health() ok ──► WATCHDOG=1 (+ STATUS= when it changed)
//        health() not ok ──► no WATCHDOG=1, STATUS=unhealthy: REASON
//                            (systemd kills and restarts the service once
//                             WATCHDOG_USEC passes without a ping)
//   SIGTERM ──► STOPPING=1
//
// The protocol: one datagram of "NAME=VALUE\n..." lines per message, sent
// to the AF_UNIX datagram socket named by $NOTIFY_SOCKET: a path, or an
// abstract name when it starts with '@' (the '@' becomes a leading NUL).
// Without $NOTIFY_SOCKET (not started by systemd) every call does nothing.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "base/status.h"

namespace midflight {

class SystemdNotifier {
 public:
  // The notifier for $NOTIFY_SOCKET and the watchdog interval from
  // $WATCHDOG_USEC (honoured only when $WATCHDOG_PID is unset or this
  // process's id, as sd_watchdog_enabled(3) does). The three variables are
  // removed from the environment afterwards, so the processes midflight
  // starts (pg_dump, pg_restore) do not inherit them. A socket name that is
  // not usable → kInvalidArgument naming NOTIFY_SOCKET; none set → a
  // notifier whose calls do nothing.
  static Result<std::unique_ptr<SystemdNotifier>> FromEnvironment();

  // `socket` as in $NOTIFY_SOCKET ("" = disabled); `watchdog` 0 = none.
  static Result<std::unique_ptr<SystemdNotifier>> Create(std::string socket, std::chrono::microseconds watchdog);

  ~SystemdNotifier();  // stops the watchdog thread

  bool enabled() const { return !socket_.empty(); }
  std::chrono::microseconds watchdog_interval() const { return watchdog_; }

  // Sends one message, e.g. "READY=1\nSTATUS=serving". Line breaks inside a
  // STATUS value must not occur (the caller joins lines). Disabled: Ok.
  // Errors (kRetryCall) name the socket; the caller logs them and goes on:
  // systemd's start timeout is the judge of a READY=1 that never arrived.
  Status Send(std::string_view message);

  // With a watchdog interval: a thread that every interval/2 calls
  // `health` and sends WATCHDOG=1 when it is Ok, and STATUS=`status()`
  // whenever that text changed (or "unhealthy: " + the health error, and no
  // WATCHDOG=1). Without one: nothing. Call once.
  void StartWatchdog(std::function<Status()> health, std::function<std::string()> status);

  // Ends the watchdog thread (idempotent).
  void StopWatchdog();

 private:
  SystemdNotifier(std::string socket, std::chrono::microseconds watchdog, int fd);
  void WatchdogLoop(std::function<Status()> health, std::function<std::string()> status);

  // Constant after construction.
  const std::string socket_;  // as given: a path or "@abstract"
  const std::chrono::microseconds watchdog_;
  const int fd_;  // the AF_UNIX datagram socket, -1 when disabled
  // Guard the watchdog thread's stop flag.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread watchdog_thread_;
};

}  // namespace midflight
