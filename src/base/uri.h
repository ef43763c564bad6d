// Connection URIs as the operator writes them (postgres://user:pass@host:port/db).
// RedactUri is the only form that may reach a log, an error or the status output.
//
// The grammar midflight accepts (ParseUri), and which RedactUri and
// ScrubSecrets follow so that all three agree on where the password is:
//
//   scheme://[user[:password]@]host[:port][,host[:port]...][/database][?key=value&...]
//
// - The user information ends at the LAST '@' before the '?': a password may
//   hold a raw '@', ':' or '/' ("postgres://app:p@ss/w:rd@db1/shop").
// - A '?' or '#' in a password, a '@' in a database name, and every '%' that
//   is meant literally must be %-escaped (%3F, %23, %40, %25). A '%' not
//   followed by two hex digits is an error, never passed on.
// - An IPv6 host is bracketed: [::1]:5432.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace midflight {

// "postgres://app:s3cret@db1:5432/shop" -> "postgres://app:***@db1:5432/shop";
// also hides password=... in the query string or in a key=value conninfo.
// Never fails: a URI that does not parse is redacted all the same (from the
// first ':' of the user information to its last '@').
std::string RedactUri(const std::string& uri);

// The URI's scheme ("postgres", "postgresql", "mysql"), or "" when there is none.
std::string UriScheme(const std::string& uri);

struct UriHost {
  std::string host;  // without the brackets of an IPv6 address; "" for the default
  int port = 0;      // 0: the default
};

// The parts of a URI, with %-escapes decoded. Missing parts are empty (port 0).
// host and port are the first entry of `hosts` (libpq accepts several).
struct UriParts {
  std::string scheme, user, password, host, database, query;
  int port = 0;
  std::vector<UriHost> hosts;
  std::vector<std::pair<std::string, std::string>> params;  // the query, decoded, in order
};

// Parses `uri` by the grammar above. On failure the message says what is wrong
// ("unclosed '[' in the host", "the password has a '%' that is not a %XX
// escape (write a literal % as %25)") and never contains the URI, the password
// or any part of it: the caller adds which setting it was ("source: ...").
Result<UriParts> ParseUri(const std::string& uri);

// `uri` with `password` put into its user information, %-encoded (every byte
// but A-Z a-z 0-9 - . _ ~), so that ParseUri gives it back exactly and
// RedactUri and ScrubSecrets hide it as any other. For passwords read from a
// file or the environment. Fails, saying why and never quoting the URI or
// the password, when `uri` does not parse, names no user, or already has a
// password (in the user information or as ?password=).
Result<std::string> WithPassword(const std::string& uri, std::string_view password);

// The last line of defence for any text that came from a server, a client
// library or a tool and may quote a connection string: returns `text` with
// `uri` replaced by RedactUri(uri) and every remaining occurrence of its
// password (as written, %-decoded, and %-encoded) replaced by "***". Works
// when `uri` does not parse, and for key=value conninfo strings. A password
// shorter than 3 bytes, or one that the redacted URIs show anyway (a user
// named like their password), is not hunted through the rest of the text.
std::string ScrubSecrets(std::string text, const std::string& uri);
// The same for several connection strings (source, target, replica).
std::string ScrubSecrets(std::string text, const std::vector<std::string>& uris);

}  // namespace midflight
