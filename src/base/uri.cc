#include "base/uri.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <regex>

namespace midflight {
namespace {

constexpr std::string_view kMask = "***";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX escapes. Fails (nullopt) on a '%' without two hex digits after
// it, and on %00 (a C string would end there).
std::optional<std::string> StrictDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = HexValue(s[i + 1]), lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

// Decodes the valid %XX escapes and keeps everything else (for scrubbing).
std::string LenientDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    int hi = s[i] == '%' && i + 2 < s.size() ? HexValue(s[i + 1]) : -1;
    int lo = hi >= 0 ? HexValue(s[i + 2]) : -1;
    if (lo >= 0) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string Encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') out.push_back(static_cast<char>(c));
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

// Where the password is in `uri` as written: [begin, end), or begin == end
// when there is none. Shared by RedactUri and ScrubSecrets so that they agree
// with ParseUri; for text that does not parse it leans towards hiding more.
struct Span {
  size_t begin = 0, end = 0;
};
Span UserinfoPassword(std::string_view uri) {
  auto se = uri.find("://");
  if (se == std::string_view::npos) return {};
  size_t start = se + 3;
  size_t query = std::min(uri.find('?', start), uri.size());
  size_t at = uri.rfind('@', query == 0 ? 0 : query - 1);
  if (at == std::string_view::npos || at < start) {
    // No '@' before the query: a raw '?' in the password ("u:p?ss@host")
    // would hide it there; take the last '@' anywhere.
    at = uri.rfind('@');
    if (at == std::string_view::npos || at < start) return {};
  }
  size_t colon = uri.find(':', start);
  if (colon == std::string_view::npos || colon > at) return {};
  return {colon + 1, at};
}

// password=VALUE in a query string or a key=value conninfo ('quoted' or bare).
const std::regex& PasswordParam() {
  static const std::regex kRe(R"((password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*))", std::regex::icase);
  return kRe;
}

Status Bad(std::string problem) { return InvalidArgument(std::move(problem)); }

Status BadEscape(std::string_view part) {
  return Bad(fmt::format("the {} has a '%' that is not a %XX escape, or is %00 (write a literal % as %25)", part));
}

Result<int> ParsePort(std::string_view text) {
  int port = 0;
  if (text.empty() || text.size() > 5) return Bad("the port is not a number from 1 to 65535");
  for (char c : text) {
    if (c < '0' || c > '9') return Bad("the port is not a number from 1 to 65535");
    port = port * 10 + (c - '0');
  }
  if (port < 1 || port > 65535) return Bad("the port is not a number from 1 to 65535");
  return port;
}

Result<UriHost> ParseHost(std::string_view item) {
  UriHost h;
  std::string_view port;
  if (!item.empty() && item[0] == '[') {
    auto close = item.find(']');
    if (close == std::string_view::npos) return Bad("unclosed '[' in the host (an IPv6 address is written [::1]:5432)");
    h.host = std::string(item.substr(1, close - 1));
    std::string_view after = item.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return Bad("unexpected text after the ']' of the host (expected :port)");
      port = after.substr(1);
      if (port.empty()) return Bad("the port is not a number from 1 to 65535");
    }
  } else {
    if (item.find_first_of("[]") != std::string_view::npos)
      return Bad("a '[' or ']' in the host (an IPv6 address is written [::1]:5432)");
    auto colon = item.rfind(':');
    std::string_view name = item.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = item.substr(colon + 1);
      if (port.empty()) return Bad("the port is not a number from 1 to 65535");
    }
    auto decoded = StrictDecode(name);
    if (!decoded) return BadEscape("host");
    h.host = std::move(*decoded);
  }
  if (!port.empty()) {
    ASSIGN_OR_RETURN(h.port, ParsePort(port));
  }
  return h;
}

}  // namespace

std::string RedactUri(const std::string& uri) {
  std::string out = uri;
  Span pw = UserinfoPassword(out);
  if (pw.end > pw.begin) out.replace(pw.begin, pw.end - pw.begin, kMask);
  return std::regex_replace(out, PasswordParam(), "$1***");
}

std::string UriScheme(const std::string& uri) {
  auto pos = uri.find("://");
  return pos == std::string::npos ? std::string() : uri.substr(0, pos);
}

Result<UriParts> ParseUri(const std::string& uri) {
  UriParts p;
  auto se = uri.find("://");
  if (se == std::string::npos || se == 0) return Bad("not a URI (scheme://user:password@host:port/database)");
  p.scheme = uri.substr(0, se);
  for (char c : p.scheme)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.')
      return Bad("not a URI (scheme://user:password@host:port/database)");
  if (uri.find('#') != std::string::npos) return Bad("a raw '#' (write it as %23)");
  std::string_view rest(uri);
  rest.remove_prefix(se + 3);
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    p.query = std::string(rest.substr(q + 1));
    rest = rest.substr(0, q);
  }
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view auth = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    auto colon = auth.find(':');
    auto user = StrictDecode(auth.substr(0, colon));
    if (!user) return BadEscape("user name");
    p.user = std::move(*user);
    if (colon != std::string_view::npos) {
      auto password = StrictDecode(auth.substr(colon + 1));
      if (!password) return BadEscape("password");
      p.password = std::move(*password);
    }
  }
  std::string_view hosts = rest;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    hosts = rest.substr(0, slash);
    auto db = StrictDecode(rest.substr(slash + 1));
    if (!db) return BadEscape("database name");
    p.database = std::move(*db);
  }
  if (!hosts.empty()) {
    size_t pos = 0;
    while (true) {
      size_t comma = hosts.find(',', pos);
      ASSIGN_OR_RETURN(UriHost h, ParseHost(hosts.substr(pos, comma == std::string_view::npos ? comma : comma - pos)));
      p.hosts.push_back(std::move(h));
      if (comma == std::string_view::npos) break;
      pos = comma + 1;
    }
    p.host = p.hosts.front().host;
    p.port = p.hosts.front().port;
  }
  if (!p.query.empty()) {
    std::string_view q(p.query);
    size_t pos = 0;
    while (pos <= q.size()) {
      size_t amp = std::min(q.find('&', pos), q.size());
      std::string_view kv = q.substr(pos, amp - pos);
      pos = amp + 1;
      if (kv.empty()) continue;
      auto eq = kv.find('=');
      // Never quote the text: a raw '?' in a password puts the rest of it here.
      if (eq == std::string_view::npos || eq == 0)
        return Bad("a query parameter is not key=value (a '?' in a password must be written %3F)");
      auto key = StrictDecode(kv.substr(0, eq));
      auto value = StrictDecode(kv.substr(eq + 1));
      if (!key || !value) return BadEscape("query string");
      p.params.emplace_back(std::move(*key), std::move(*value));
    }
  }
  return p;
}

Result<std::string> WithPassword(const std::string& uri, std::string_view password) {
  ASSIGN_OR_RETURN(UriParts parts, ParseUri(uri));
  if (parts.user.empty()) return Bad("names no user to go with the password (scheme://USER@host/database)");
  bool has_password = !parts.password.empty();
  for (const auto& [key, value] : parts.params) has_password = has_password || key == "password";
  if (has_password) return Bad("has a password already");
  // ParseUri found a user, so there is a '@' ending the user information: the
  // last one before the query, as ParseUri takes it.
  const size_t start = uri.find("://") + 3;
  const size_t query = std::min(uri.find('?', start), uri.size());
  const size_t at = uri.rfind('@', query - 1);
  std::string out = uri.substr(0, at);
  if (!out.empty() && out.back() == ':') out.pop_back();  // "user:@host": an empty password
  return out + ":" + Encode(password) + uri.substr(at);
}

namespace {

// ScrubSecrets for one URI; `visible` is every URI's redacted form.
std::string ScrubOne(std::string text, const std::string& uri, const std::vector<std::string>& visible) {
  if (uri.empty() || text.empty()) return text;
  // The whole connection string first, so that what remains reads well.
  const std::string redacted = RedactUri(uri);
  if (redacted != uri)
    for (size_t pos = 0; (pos = text.find(uri, pos)) != std::string::npos; pos += redacted.size())
      text.replace(pos, uri.size(), redacted);
  std::vector<std::string> secrets;
  auto add = [&secrets](std::string raw) {
    if (!raw.empty() && raw.front() == '\'' && raw.size() >= 2 && raw.back() == '\'') raw = raw.substr(1, raw.size() - 2);
    std::string decoded = LenientDecode(raw);
    secrets.push_back(Encode(decoded));
    secrets.push_back(std::move(decoded));
    secrets.push_back(std::move(raw));
  };
  if (Span pw = UserinfoPassword(uri); pw.end > pw.begin) add(uri.substr(pw.begin, pw.end - pw.begin));
  for (std::sregex_iterator it(uri.begin(), uri.end(), PasswordParam()), end; it != end; ++it) add((*it)[2].str());
  // Longest first, so that a password is not half-replaced by a shorter form
  // of itself. Left alone: very short strings (replacing every "a" in a
  // message would hide the message, not the password), and a password that
  // is part of what a redacted URI shows anyway (a user named like their
  // password): hiding it would mangle every message and protect nothing.
  std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& s : secrets) {
    if (s.size() < 3) continue;
    if (std::any_of(visible.begin(), visible.end(), [&s](const std::string& v) { return v.find(s) != std::string::npos; }))
      continue;
    for (size_t pos = 0; (pos = text.find(s, pos)) != std::string::npos; pos += kMask.size())
      text.replace(pos, s.size(), kMask);
  }
  return text;
}

}  // namespace

std::string ScrubSecrets(std::string text, const std::string& uri) {
  return ScrubOne(std::move(text), uri, {RedactUri(uri)});
}

std::string ScrubSecrets(std::string text, const std::vector<std::string>& uris) {
  std::vector<std::string> visible;
  for (const auto& u : uris) visible.push_back(RedactUri(u));
  for (const auto& u : uris) text = ScrubOne(std::move(text), u, visible);
  return text;
}

}  // namespace midflight
