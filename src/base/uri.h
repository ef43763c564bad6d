// Connection URIs as the operator writes them (postgres://user:pass@host:port/db).
// RedactUri is the only form that may reach a log, an error or the status output.
#pragma once

#include <string>

#include "base/status.h"

namespace midflight {

// "postgres://app:s3cret@db1:5432/shop" -> "postgres://app:***@db1:5432/shop";
// also hides password=... in the query string. Never fails.
std::string RedactUri(const std::string& uri);

// The URI's scheme ("postgres", "postgresql", "mysql"), or "" when there is none.
std::string UriScheme(const std::string& uri);

// The parts of scheme://user:password@host:port/database?params, with
// %-escapes decoded. Missing parts are empty (port 0).
struct UriParts {
  std::string scheme, user, password, host, database, query;
  int port = 0;
};
Result<UriParts> ParseUri(const std::string& uri);

}  // namespace midflight
