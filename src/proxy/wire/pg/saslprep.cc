#include "proxy/wire/pg/saslprep.h"

#include <stringprep.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace midflight::pgwire {

namespace {

// Well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF), as
// pg_utf8_string_len checks it; a NUL byte cannot be in a C string and fails.
bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

}  // namespace

std::string SaslPrep(std::string_view password) {
  bool ascii = true;
  for (char c : password) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii || !ValidUtf8(password)) return std::string(password);
  const std::string in(password);
  char* out = nullptr;
  const int rc = stringprep_profile(in.c_str(), &out, "SASLprep", STRINGPREP_NO_UNASSIGNED);
  std::string result;
  if (rc == STRINGPREP_OK && out != nullptr && out[0] != '\0') result.assign(out);
  else result = in;  // prohibited, unassigned, bidi failure or empty: the raw bytes
  if (out != nullptr) {
    std::memset(out, 0, std::strlen(out));
    std::free(out);
  }
  return result;
}

}  // namespace midflight::pgwire
