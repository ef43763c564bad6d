// Small pieces both engines' migration runners share.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>

#include "base/log.h"
#include "base/stop.h"

namespace midflight {

// Test-only fault points: MIDFLIGHT_CRASH_AT=<point>[=<n>] kills the process
// with SIGKILL there, as a crash would (see tests/integration).
inline void CrashPoint(const std::string& point, int64_t count = 0) {
  static const char* spec = std::getenv("MIDFLIGHT_CRASH_AT");
  if (!spec) return;
  std::string s = spec;
  auto eq = s.find('=');
  std::string name = s.substr(0, eq);
  int64_t n = eq == std::string::npos ? 0 : std::atoll(s.c_str() + eq + 1);
  if (name == point && count >= n) {
    std::fprintf(stderr, "midflight: test crash point %s reached\n", point.c_str());
    kill(getpid(), SIGKILL);
  }
}

// Runs `fn` every `period` on its own thread until destroyed, in the log
// context (base/log.h) of the thread that made it. The destructor wakes the
// thread at once (it waits on a StopSource, not a sleep) and returns when a
// `fn` already running has returned.
class Ticker {
 public:
  Ticker(std::chrono::milliseconds period, std::function<void()> fn)
      : thread_([stop = stop_, period, fn = std::move(fn), context = CurrentLogContext()] {
          ScopedLogContext log_context(context);
          do fn();
          while (!stop.WaitFor(period));
        }) {}
  ~Ticker() {
    stop_.Stop();
    thread_.join();
  }
  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;

 private:
  StopSource stop_;  // declared before thread_: the thread captures a copy of it
  std::thread thread_;
};

// 1234567 -> "1,234,567".
inline std::string Commas(int64_t v) {
  std::string digits = std::to_string(v);
  std::string out;
  out.reserve(digits.size() + digits.size() / 3);
  size_t start = v < 0 ? 1 : 0;
  if (start) out.push_back('-');
  for (size_t i = start; i < digits.size(); ++i) {
    if (i > start && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

}  // namespace midflight
