// Wall-clock and monotonic time in the units midflight stores and compares.
#pragma once

#include <chrono>
#include <cstdint>

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

}  // namespace midflight
