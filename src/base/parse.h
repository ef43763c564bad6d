// Checked conversions of text that comes from outside the program (the state
// store, a server's answer, a URI): no exceptions, no silent partial parses.
#pragma once

#include <charconv>
#include <cstdint>
#include <string_view>

namespace midflight {

// Whole of `text` as a decimal number; false (and *out unchanged) otherwise.
inline bool ParseU64(std::string_view text, uint64_t* out) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return false;
  *out = v;
  return true;
}

inline bool ParseI64(std::string_view text, int64_t* out) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return false;
  *out = v;
  return true;
}

}  // namespace midflight
