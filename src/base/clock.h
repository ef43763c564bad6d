// Wall-clock and monotonic time in the units midflight stores and compares.
#pragma once

#include <time.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace midflight {

// Microseconds since the Unix epoch (wall clock): commit times, heartbeats.
inline int64_t NowUnixMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Milliseconds on the monotonic clock: intervals only.
inline int64_t NowMonotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// "2026-11-21T10:00:00Z": the UTC second of `unix_micros`, for audit
// trails, API answers and notifications.
inline std::string IsoUtc(int64_t unix_micros) {
  time_t secs = static_cast<time_t>(unix_micros / 1'000'000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &t);
  return buf;
}
inline std::string NowIsoUtc() { return IsoUtc(NowUnixMicros()); }

}  // namespace midflight
