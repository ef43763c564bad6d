// A client of a Confluent-compatible schema registry, the subset of its REST
// API producers use (blocking HTTP through libcurl; a real registry and
// tests/tools/schema_registry.py answer alike):
//
//   POST /subjects/{subject}/versions  {"schema": "<text>"}  → {"id": N}
//   GET  /schemas/ids/{id}                                    → {"schema": "<text>"}
//   GET  /config/{subject}  (404: the global GET /config)     → {"compatibilityLevel": "..."}
//
// Register caches ids per (subject, schema text): one request per table
// layout and subject for the life of the client. Errors say what to do:
//  - the registry refused the schema (409 incompatible, 422 invalid):
//    OperatorError "schema registry <url>: subject <s> refused the schema:
//    <the registry's message>", the migration stops until an operator acts;
//  - no answer, a 5xx, a malformed answer: RetryCall naming the URL.
// The URL's user and password (https://user:pass@host) go to the server as
// basic auth and never into a message.
//
// Thread-safety: one thread at a time (the router's); not synchronised.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "base/status.h"

namespace midflight::kafka {

class SchemaRegistry {
 public:
  explicit SchemaRegistry(std::string url, std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

  Result<int32_t> Register(const std::string& subject, const std::string& schema);
  Result<std::string> SchemaById(int32_t id);
  Result<std::string> Compatibility(const std::string& subject);

  // The URL without user and password, for messages.
  const std::string& shown_url() const { return shown_; }

 private:
  struct Reply {
    long code = 0;
    std::string body;
  };
  Result<Reply> Call(const char* method, const std::string& path, const std::string& body);

  std::string url_;    // without a trailing '/'
  std::string shown_;  // url_ without userinfo
  std::chrono::milliseconds timeout_;
  std::map<std::pair<std::string, std::string>, int32_t> ids_;
};

// Percent-encodes a subject for a URL path ("a.b-value" stays as it is).
std::string EscapeSubject(const std::string& subject);

}  // namespace midflight::kafka
