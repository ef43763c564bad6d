#include "kafka/schema_registry.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

namespace midflight::kafka {
namespace {

using nlohmann::json;

Status CurlInit() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (rc != CURLE_OK) return Internal(fmt::format("curl_global_init: {}", curl_easy_strerror(rc)));
  return Status::Ok();
}

size_t Append(char* data, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->size() > (16u << 20)) return 0;  // a registry answer is small
  s->append(data, size * n);
  return size * n;
}

std::string WithoutUserinfo(const std::string& url) {
  const size_t scheme = url.find("://");
  const size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  const size_t slash = url.find('/', start);
  const size_t at = url.rfind('@', slash == std::string::npos ? std::string::npos : slash);
  if (at == std::string::npos || at < start) return url;
  return url.substr(0, start) + url.substr(at + 1);
}

// The registry's own words: {"error_code": 409, "message": "..."}, else the body.
std::string RegistryMessage(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    std::string m = j["message"].get<std::string>();
    if (j.contains("error_code")) m += fmt::format(" (error_code {})", j["error_code"].dump());
    return m;
  }
  std::string b = body.substr(0, 200);
  for (char& c : b)
    if (c == '\n' || c == '\r') c = ' ';
  return b.empty() ? "no message" : b;
}

}  // namespace

std::string EscapeSubject(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
        c == '-' || c == '~')
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

SchemaRegistry::SchemaRegistry(std::string url, std::chrono::milliseconds timeout)
    : url_(std::move(url)), timeout_(timeout) {
  while (!url_.empty() && url_.back() == '/') url_.pop_back();
  shown_ = WithoutUserinfo(url_);
}

Result<SchemaRegistry::Reply> SchemaRegistry::Call(const char* method, const std::string& path,
                                                   const std::string& body) {
  RETURN_IF_ERROR(CurlInit());
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> easy(curl_easy_init(), curl_easy_cleanup);
  if (!easy) return Internal("schema registry: cannot create a curl handle");
  curl_slist* list = curl_slist_append(nullptr, "Content-Type: application/vnd.schemaregistry.v1+json");
  if (list) list = curl_slist_append(list, "Accept: application/vnd.schemaregistry.v1+json, application/json");
  if (list) list = curl_slist_append(list, "Expect:");
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(list, curl_slist_free_all);
  const std::string url = url_ + path;
  Reply reply;
  char error[CURL_ERROR_SIZE] = {0};
  CURL* e = easy.get();
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_.count()));
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Append);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &reply.body);
  if (std::string(method) != "GET") {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  CURLcode rc = curl_easy_perform(e);
  if (rc != CURLE_OK) {
    // libcurl's text names the host, not the user or password.
    return RetryCall(fmt::format("schema registry {}: {} {}: {}", shown_, method, path,
                                 error[0] ? error : curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &reply.code);
  return reply;
}

Result<int32_t> SchemaRegistry::Register(const std::string& subject, const std::string& schema) {
  auto key = std::make_pair(subject, schema);
  if (auto it = ids_.find(key); it != ids_.end()) return it->second;
  const std::string path = "/subjects/" + EscapeSubject(subject) + "/versions";
  ASSIGN_OR_RETURN(Reply r, Call("POST", path, json{{"schema", schema}}.dump()));
  if (r.code == 409 || r.code == 422)
    return OperatorError(fmt::format("schema registry {}: subject {} refused the schema: {}", shown_, subject,
                                     RegistryMessage(r.body)));
  if (r.code == 401 || r.code == 403)
    return OperatorError(fmt::format("schema registry {}: subject {}: not allowed (HTTP {}): {}", shown_, subject,
                                     r.code, RegistryMessage(r.body)));
  if (r.code != 200)
    return RetryCall(fmt::format("schema registry {}: subject {}: HTTP {}: {}", shown_, subject, r.code,
                                 RegistryMessage(r.body)));
  json j = json::parse(r.body, nullptr, false);
  if (!j.is_object() || !j.contains("id") || !j["id"].is_number_integer() || j["id"].get<int64_t>() < 0 ||
      j["id"].get<int64_t>() > INT32_MAX)
    return RetryCall(fmt::format("schema registry {}: subject {}: an answer without a schema id", shown_, subject));
  const int32_t id = j["id"].get<int32_t>();
  ids_[key] = id;
  return id;
}

Result<std::string> SchemaRegistry::SchemaById(int32_t id) {
  ASSIGN_OR_RETURN(Reply r, Call("GET", fmt::format("/schemas/ids/{}", id), ""));
  if (r.code == 404) return NotFound(fmt::format("schema registry {}: no schema id {}", shown_, id));
  if (r.code != 200)
    return RetryCall(fmt::format("schema registry {}: schema id {}: HTTP {}: {}", shown_, id, r.code,
                                 RegistryMessage(r.body)));
  json j = json::parse(r.body, nullptr, false);
  if (!j.is_object() || !j.contains("schema") || !j["schema"].is_string())
    return RetryCall(fmt::format("schema registry {}: schema id {}: an answer without a schema", shown_, id));
  return j["schema"].get<std::string>();
}

Result<std::string> SchemaRegistry::Compatibility(const std::string& subject) {
  ASSIGN_OR_RETURN(Reply r, Call("GET", "/config/" + EscapeSubject(subject), ""));
  if (r.code == 404) {
    ASSIGN_OR_RETURN(r, Call("GET", "/config", ""));
  }
  if (r.code != 200)
    return RetryCall(fmt::format("schema registry {}: config of {}: HTTP {}: {}", shown_, subject, r.code,
                                 RegistryMessage(r.body)));
  json j = json::parse(r.body, nullptr, false);
  if (!j.is_object() || !j.contains("compatibilityLevel") || !j["compatibilityLevel"].is_string())
    return RetryCall(fmt::format("schema registry {}: config of {}: no compatibilityLevel", shown_, subject));
  return j["compatibilityLevel"].get<std::string>();
}

}  // namespace midflight::kafka
