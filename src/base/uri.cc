#include "base/uri.h"

#include <regex>

namespace midflight {

std::string RedactUri(const std::string& uri) {
  std::string out = uri;
  auto scheme_end = out.find("://");
  if (scheme_end != std::string::npos) {
    auto auth_start = scheme_end + 3;
    auto at = out.find('@', auth_start);
    auto slash = out.find('/', auth_start);
    if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
      auto colon = out.find(':', auth_start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  static const std::regex kPasswordParam("(password=)[^&\\s]*", std::regex::icase);
  return std::regex_replace(out, kPasswordParam, "$1***");
}

std::string UriScheme(const std::string& uri) {
  auto pos = uri.find("://");
  return pos == std::string::npos ? std::string() : uri.substr(0, pos);
}

}  // namespace midflight
