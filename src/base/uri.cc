#include "base/uri.h"

#include <cctype>
#include <regex>
#include <string_view>

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

namespace {
std::string Decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}
}  // namespace

Result<UriParts> ParseUri(const std::string& uri) {
  UriParts p;
  auto se = uri.find("://");
  if (se == std::string::npos) return InvalidArgument("'" + RedactUri(uri) + "' is not a URI (scheme://...)");
  p.scheme = uri.substr(0, se);
  std::string rest = uri.substr(se + 3);
  if (auto q = rest.find('?'); q != std::string::npos) {
    p.query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    p.database = Decode(rest.substr(slash + 1));
    rest = rest.substr(0, slash);
  }
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    std::string auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = auth.find(':');
    p.user = Decode(auth.substr(0, colon));
    if (colon != std::string::npos) p.password = Decode(auth.substr(colon + 1));
  }
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos) return InvalidArgument("'" + RedactUri(uri) + "': unclosed [ in the host");
    p.host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty() && rest[0] == ':') rest = rest.substr(1);
    else rest.clear();
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    p.host = rest.substr(0, colon);
    rest = rest.substr(colon + 1);
  } else {
    p.host = rest;
    rest.clear();
  }
  if (!rest.empty()) {
    for (char c : rest)
      if (!isdigit(static_cast<unsigned char>(c)))
        return InvalidArgument("'" + RedactUri(uri) + "': port '" + rest + "' is not a number");
    p.port = std::stoi(rest);
  }
  return p;
}

}  // namespace midflight
