// Fuzzes the HTTP/1.1 wire codec of the control API (control/http.h): the
// request head a client sends to the server, the response head a server
// sends to `Call`, and the helpers applied to what they carry.
//
// The input is what arrives on a connection: the head is taken from it as
// Server::ServeConnection does (blank lines before the request line dropped,
// up to the first empty line) and parsed with the default limits and with
// small ones; the same head is parsed as a response head.
//
// Properties: no crash, no sanitizer report, no exception (none is caught);
// - an accepted request has a token method and a path starting with '/'
//   (or "*" for OPTIONS), a Content-Length within the limit;
// - a rejected one names a status among 400, 411, 413, 431, 505 and a reason;
// - a response head with a status from 100 to 599, serialized again by SerializeResponse, parses back to
//   the same status and headers;
// - UrlDecode(UrlEncode(x)) == x, and JsonEscape(x) between quotes is a JSON
//   string (nlohmann's parser, which also checks UTF-8, accepts it).
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/http.h"

namespace {

using namespace midflight::http;

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckText(std::string_view s) {
  Check(UrlDecode(UrlEncode(s)) == s);
  (void)UrlDecode(s);
  const nlohmann::json j = nlohmann::json::parse("\"" + JsonEscape(s) + "\"", nullptr, /*allow_exceptions=*/false);
  Check(j.is_string());
}

void CheckRequest(std::string_view head, const ServerOptions& limits) {
  const HeadParse parsed = ParseRequestHead(head, limits);
  if (parsed.error_status != 0) {
    const int s = parsed.error_status;
    Check(s == 400 || s == 411 || s == 413 || s == 431 || s == 505);
    Check(!parsed.error.empty());
    return;
  }
  const RequestHead& h = parsed.head;
  Check(!h.method.empty());
  Check(h.path.starts_with('/') || (h.path == "*" && h.method == "OPTIONS"));
  Check(h.content_length <= limits.max_body_bytes);
  Request request;
  request.method = h.method;
  request.path = h.path;
  request.query = h.query;
  request.headers = h.headers;
  (void)request.QueryParam("name");
  (void)request.QueryParam("");
  (void)request.Header("host");
  for (const auto& [name, value] : h.headers) {
    Check(!name.empty());
    CheckText(value);
  }
  CheckText(h.query);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  CheckText(in);

  while (in.starts_with("\r\n")) in.remove_prefix(2);
  const size_t end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) return 0;
  const std::string_view head = in.substr(0, end + 4);

  CheckRequest(head, ServerOptions{});
  ServerOptions small;
  small.max_header_bytes = 64;
  small.max_body_bytes = 10;
  CheckRequest(head, small);

  midflight::Result<ResponseHead> response = ParseResponseHead(head);
  if (response.ok()) {
    Check(response->status >= 0 && response->status <= 999);
    for (const auto& [name, value] : response->headers) Check(!name.empty());
  }
  if (response.ok() && response->status >= 100 && response->status <= 599) {
    // What the server would send with this status (it sends 100-599 only) and
    // these headers parses back to them, less the framing headers
    // SerializeResponse sets itself.
    Response r;
    r.status = response->status;
    r.content_type.clear();
    r.headers = response->headers;
    const std::string sent = SerializeResponse(r, /*keep_alive=*/true, /*head_only=*/true);
    midflight::Result<ResponseHead> back = ParseResponseHead(sent);
    Check(back.ok() && back->status == r.status);
    std::vector<std::pair<std::string, std::string>> want;
    for (const auto& h : r.headers) {
      if (h.first != "content-length" && h.first != "connection") want.push_back(h);
    }
    std::vector<std::pair<std::string, std::string>> got;
    for (const auto& h : back->headers) {
      if (h.first != "content-length" && h.first != "connection") got.push_back(h);
    }
    Check(got == want);
  }
  return 0;
}
