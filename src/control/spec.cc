#include "control/spec.h"

#include "control/knobs.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <algorithm>

#include "base/uri.h"

namespace midflight {
namespace {

Status Field(const std::string& origin, const std::string& field, const std::string& problem) {
  return InvalidArgument(fmt::format("{}: field '{}': {}", origin, field, problem));
}

template <typename T>
Status Get(const YAML::Node& root, const std::string& origin, const std::string& key, T* out) {
  YAML::Node n = root[key];
  if (!n) return Status::Ok();
  try {
    *out = n.as<T>();
  } catch (const YAML::Exception&) {
    return Field(origin, key, "has the wrong type");
  }
  return Status::Ok();
}

Status GetList(const YAML::Node& root, const std::string& origin, const std::string& key,
               std::vector<std::string>* out) {
  YAML::Node n = root[key];
  if (!n) return Status::Ok();
  if (n.IsScalar()) {
    out->push_back(n.as<std::string>());
    return Status::Ok();
  }
  if (!n.IsSequence()) return Field(origin, key, "must be a list of table patterns");
  for (const auto& item : n) {
    if (!item.IsScalar()) return Field(origin, key, "must be a list of table patterns");
    out->push_back(item.as<std::string>());
  }
  return Status::Ok();
}

Status CheckUri(const std::string& origin, const std::string& field, const std::string& uri) {
  if (uri.empty()) return Field(origin, field, "is required (postgres://user:pass@host:port/db or mysql://...)");
  std::string scheme = UriScheme(uri);
  const bool mysql = scheme == "mysql" || scheme == "mariadb";
  if (!mysql && scheme != "postgres" && scheme != "postgresql")
    return Field(origin, field, fmt::format("'{}' is not a postgres:// or mysql:// URI", RedactUri(uri)));
  // Parsed here, by our own code, so that a malformed URI never reaches
  // libpq or Connector/C (whose messages quote it, password and all). The
  // problem is said without the URI: it may be the password that is wrong.
  auto parts = ParseUri(uri);
  if (!parts.ok()) return Field(origin, field, parts.status().message());
  if (mysql && parts->hosts.size() > 1) return Field(origin, field, "names several hosts; MySQL/MariaDB takes one");
  if (mysql && parts->database.empty()) return Field(origin, field, "names no database (mysql://user:pass@host:port/db)");
  return Status::Ok();
}

// The name of a mapping's key; a key that is a list or a mapping (YAML allows
// them: "? [a]") names nothing, and as<std::string>() would throw.
Result<std::string> KeyName(const YAML::Node& key, const std::string& origin, const std::string& section) {
  if (!key.IsScalar()) return Field(origin, section, "every key must be a plain name, not a list or a mapping");
  return key.as<std::string>();
}

Status CheckKeys(const YAML::Node& node, const std::string& origin, const std::string& section,
                 const std::set<std::string>& known) {
  if (!node.IsMap()) return Field(origin, section, "must be a mapping");
  for (const auto& kv : node) {
    ASSIGN_OR_RETURN(std::string key, KeyName(kv.first, origin, section));
    if (!known.count(key)) return Field(origin, section + "." + key, "unknown field");
  }
  return Status::Ok();
}

// ${VAR} in `text` replaced from `env`; $${ is a literal ${. The error
// names the variable, never the text (it may be a password).
Result<std::string> ExpandVariables(const std::string& text, const std::string& origin, const std::string& field,
                                    const EnvLookup& env) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text.compare(i, 3, "$${") == 0) {
      out += "${";
      i += 2;
      continue;
    }
    if (text.compare(i, 2, "${") != 0) {
      out.push_back(text[i]);
      continue;
    }
    const size_t close = text.find('}', i + 2);
    const std::string name = close == std::string::npos ? "" : text.substr(i + 2, close - i - 2);
    const bool valid = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0])) &&
                       std::all_of(name.begin(), name.end(), [](char c) {
                         return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                       });
    if (!valid)
      return Field(origin, field,
                   "has a '${' that is not '${NAME}' (NAME: letters, digits and _); write a literal ${ as $${");
    std::optional<std::string> value = env(name);
    if (!value) return Field(origin, field, fmt::format("environment variable {} is not set", name));
    out += *value;
    i = close;
  }
  return out;
}

// Expands ${VAR} in every string value under `node` (not in keys), in place.
// `path` names the node in messages: "source", "proxy.users[0].password".
// `done` holds the scalars already expanded: a YAML alias (*name) is the
// same node as its anchor, and a value from the environment is never
// expanded a second time.
Status ExpandTree(YAML::Node node, const std::string& origin, const std::string& path, const EnvLookup& env,
                  std::vector<YAML::Node>* done) {
  if (node.IsScalar()) {
    const std::string text = node.Scalar();
    if (text.find("${") == std::string::npos) return Status::Ok();
    if (std::any_of(done->begin(), done->end(), [&node](const YAML::Node& d) { return d.is(node); }))
      return Status::Ok();
    ASSIGN_OR_RETURN(std::string expanded, ExpandVariables(text, origin, path, env));
    node = expanded;
    done->push_back(node);
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i)
      RETURN_IF_ERROR(ExpandTree(node[i], origin, fmt::format("{}[{}]", path, i), env, done));
  } else if (node.IsMap()) {
    for (auto kv : node) {
      // Keys were checked to be scalars by the caller for the known sections;
      // a key of another kind is named as it is found.
      std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      RETURN_IF_ERROR(ExpandTree(kv.second, origin, path.empty() ? key : path + "." + key, env, done));
    }
  }
  return Status::Ok();
}

// The password held in file `path`: its content without one trailing newline
// ("\n" or "\r\n"). Refused: a file group or others may open (as libpq does
// ~/.pgpass), one that cannot be read, an empty one, and one of several lines.
Result<std::string> ReadPasswordFile(const std::string& origin, const std::string& field, const std::string& path) {
  if (path.empty()) return Field(origin, field, "is empty (the path of a file holding the password)");
  // O_NONBLOCK: a FIFO named by mistake must not hang the load (it is refused below).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Field(origin, field, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  struct stat st {};
  std::string text;
  Status problem = Status::Ok();
  if (::fstat(fd, &st) != 0) {
    problem = Field(origin, field, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  } else if (!S_ISREG(st.st_mode)) {
    problem = Field(origin, field, fmt::format("{} is not a regular file", path));
  } else if (st.st_mode & 077) {
    problem = Field(origin, field,
                    fmt::format("{} is open to group or others (mode {:04o}); make it private: chmod 600 {}", path,
                                st.st_mode & 07777, path));
  } else {
    constexpr size_t kMaxBytes = 4096;  // a password, not a document
    char buf[kMaxBytes + 1];
    ssize_t n = 0;
    while ((n = ::read(fd, buf, sizeof buf)) > 0 && text.size() <= kMaxBytes) text.append(buf, static_cast<size_t>(n));
    if (n < 0)
      problem = Field(origin, field, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
    else if (text.size() > kMaxBytes)
      problem = Field(origin, field, fmt::format("{} is larger than 4 kB; it must hold the password only", path));
  }
  ::close(fd);
  RETURN_IF_ERROR(problem);
  if (text.size() >= 1 && text.back() == '\n') text.pop_back();
  if (text.size() >= 1 && text.back() == '\r') text.pop_back();
  if (text.empty()) return Field(origin, field, fmt::format("{} is empty", path));
  if (text.find_first_of(std::string("\n\r\0", 3)) != std::string::npos)
    return Field(origin, field,
                 fmt::format("{} holds more than one line (or a NUL byte); it must hold the password only", path));
  return text;
}

bool IsMySqlUri(const std::string& uri) { return UriScheme(uri) == "mysql" || UriScheme(uri) == "mariadb"; }

// Gives the URI in field `uri_field` its password when it has none: from the
// file in `<uri_field>_password_file`, else from PGPASSWORD / MYSQL_PWD.
Status ResolvePassword(const YAML::Node& root, const std::string& origin, const std::string& uri_field,
                       const EnvLookup& env, std::string* uri) {
  const std::string file_field = uri_field + "_password_file";
  std::string file;
  RETURN_IF_ERROR(Get(root, origin, file_field, &file));
  if (root[file_field] && file.empty())
    return Field(origin, file_field, "is empty (the path of a file holding the password)");
  if (uri->empty()) {
    if (!file.empty()) return Field(origin, file_field, fmt::format("is set but '{}' is not", uri_field));
    return Status::Ok();
  }
  auto parts = ParseUri(*uri);
  if (!parts.ok()) return Field(origin, uri_field, parts.status().message());
  bool has_password = !parts->password.empty();
  for (const auto& kv : parts->params) has_password = has_password || kv.first == "password";
  std::string password;
  if (!file.empty()) {
    if (has_password)
      return Field(origin, file_field, fmt::format("'{}' has a password already: give it in one place", uri_field));
    if (parts->user.empty())
      return Field(origin, file_field,
                   fmt::format("'{}' names no user to go with the password (scheme://USER@host/database)", uri_field));
    ASSIGN_OR_RETURN(password, ReadPasswordFile(origin, file_field, file));
  } else {
    if (has_password || parts->user.empty()) return Status::Ok();
    std::optional<std::string> conventional = env(IsMySqlUri(*uri) ? "MYSQL_PWD" : "PGPASSWORD");
    if (!conventional || conventional->empty()) return Status::Ok();
    password = std::move(*conventional);
  }
  auto with = WithPassword(*uri, password);
  if (!with.ok()) return Field(origin, file.empty() ? uri_field : file_field, with.status().message());
  *uri = std::move(*with);
  return Status::Ok();
}

Status ParseProxy(const YAML::Node& root, const std::string& origin, MigrationSpec* s) {
  YAML::Node n = root["proxy"];
  if (!n) return Status::Ok();
  RETURN_IF_ERROR(CheckKeys(n, origin, "proxy",
                            {"listen", "listen_readonly", "users", "auth", "tls_cert", "tls_key", "max_clients",
                             "max_unauthenticated", "auth_timeout_seconds", "loops"}));
  s->has_proxy = true;
  ProxySpec& p = s->proxy;
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "listen", &p.listen));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "listen_readonly", &p.listen_readonly));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "auth", &p.auth));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "tls_cert", &p.tls_cert));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "tls_key", &p.tls_key));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "max_clients", &p.max_clients));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "max_unauthenticated", &p.max_unauthenticated));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "auth_timeout_seconds", &p.auth_timeout_seconds));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "loops", &p.loops));
  if (YAML::Node users = n["users"]) {
    if (!users.IsSequence()) return Field(origin, "proxy.users", "must be a list of {name, password}");
    for (size_t i = 0; i < users.size(); ++i) {
      const YAML::Node u = users[i];
      const std::string where = fmt::format("proxy.users[{}]", i);
      auto scalar = [&u](const char* key) { return u[key] && u[key].IsScalar(); };
      if (!u.IsMap() || !scalar("name") || scalar("password") == scalar("password_file"))
        return Field(origin, "proxy.users", "each entry needs name and password (or password_file)");
      RETURN_IF_ERROR(CheckKeys(u, origin, where, {"name", "password", "password_file"}));
      ProxySpec::User user{u["name"].as<std::string>(), ""};
      if (scalar("password")) {
        user.password = u["password"].as<std::string>();
      } else {
        ASSIGN_OR_RETURN(user.password, ReadPasswordFile(origin, where + ".password_file",
                                                         u["password_file"].as<std::string>()));
      }
      p.users.push_back(std::move(user));
    }
  }
  if (p.listen.empty()) return Field(origin, "proxy.listen", "is required (HOST:PORT of the read-write endpoint)");
  if (p.auth != "scram-sha-256" && p.auth != "md5" && p.auth != "mysql_native_password" &&
      p.auth != "caching_sha2_password" && p.auth != "client_ed25519")
    return Field(origin, "proxy.auth",
                 fmt::format("'{}' is not scram-sha-256 or md5 (PostgreSQL) or mysql_native_password, "
                             "caching_sha2_password or client_ed25519 (MySQL)",
                             p.auth));
  if (p.tls_cert.empty() != p.tls_key.empty())
    return Field(origin, p.tls_cert.empty() ? "proxy.tls_cert" : "proxy.tls_key", "tls_cert and tls_key go together");
  if (p.max_clients < 1) return Field(origin, "proxy.max_clients", "must be at least 1");
  if (p.max_unauthenticated < 1) return Field(origin, "proxy.max_unauthenticated", "must be at least 1");
  if (p.loops < 0 || p.loops > 64) return Field(origin, "proxy.loops", "must be 0 (one per two cores) to 64");
  if (!(p.auth_timeout_seconds > 0) || p.auth_timeout_seconds > 3600)
    return Field(origin, "proxy.auth_timeout_seconds", "must be above 0 and at most 3600");
  return Status::Ok();
}

Status ParseCasting(const YAML::Node& root, const std::string& origin, MigrationSpec* s) {
  YAML::Node n = root["casting"];
  if (!n) return Status::Ok();
  RETURN_IF_ERROR(CheckKeys(n, origin, "casting", {"tinyint1", "zero_dates", "target_schema", "columns", "numeric",
                                                        "out_of_range", "collation"}));
  CastingSpec& c = s->casting;
  const std::string o = origin + ": casting";
  std::string tinyint1 = "smallint", zero = "refuse";
  RETURN_IF_ERROR(Get(n, o, "tinyint1", &tinyint1));
  if (tinyint1 != "smallint" && tinyint1 != "boolean")
    return Field(origin, "casting.tinyint1", fmt::format("'{}' must be smallint or boolean", tinyint1));
  c.tinyint1_boolean = tinyint1 == "boolean";
  if (YAML::Node z = n["zero_dates"]; z && z.IsNull()) zero = "null";
  else RETURN_IF_ERROR(Get(n, o, "zero_dates", &zero));
  if (zero != "refuse" && zero != "null")
    return Field(origin, "casting.zero_dates", fmt::format("'{}' must be refuse or null", zero));
  c.zero_dates_null = zero == "null";
  RETURN_IF_ERROR(Get(n, o, "target_schema", &c.target_schema));
  std::string numeric = "refuse", range = "refuse";
  RETURN_IF_ERROR(Get(n, o, "numeric", &numeric));
  if (numeric != "refuse" && numeric != "decimal")
    return Field(origin, "casting.numeric", fmt::format("'{}' must be refuse or decimal", numeric));
  c.numeric_decimal = numeric == "decimal";
  if (YAML::Node r = n["out_of_range"]; r && r.IsNull()) range = "null";
  else RETURN_IF_ERROR(Get(n, o, "out_of_range", &range));
  if (range != "refuse" && range != "null")
    return Field(origin, "casting.out_of_range", fmt::format("'{}' must be refuse or null", range));
  c.out_of_range_null = range == "null";
  RETURN_IF_ERROR(Get(n, o, "collation", &c.collation));
  if (YAML::Node cols = n["columns"]) {
    if (!cols.IsMap()) return Field(origin, "casting.columns", "expected a mapping of table.column: the target's type");
    for (const auto& kv : cols) {
      ASSIGN_OR_RETURN(std::string k, KeyName(kv.first, origin, "casting.columns"));
      if (k.find('.') == std::string::npos || !kv.second.IsScalar() || kv.second.as<std::string>().empty())
        return Field(origin, "casting.columns." + k, "expected table.column: the target's type");
      c.columns[k] = kv.second.as<std::string>();
    }
  }
  return Status::Ok();
}

// transforms: {TABLE: {rename, include | exclude, columns: {COL: {rename, cast, zone}}, add: {COL: EXPR},
// filter}}; the syntax is checked here (core/transform.h), the names against
// the source's catalog at preflight.
Status ParseTransforms(const YAML::Node& root, const std::string& origin, MigrationSpec* s) {
  YAML::Node n = root["transforms"];
  if (!n) return Status::Ok();
  if (!n.IsMap()) return Field(origin, "transforms", "must be a mapping of table: {rename, exclude, columns, add, filter}");
  for (const auto& kv : n) {
    ASSIGN_OR_RETURN(std::string table, KeyName(kv.first, origin, "transforms"));
    const std::string where = "transforms." + table;
    RETURN_IF_ERROR(CheckKeys(kv.second, origin, where, {"rename", "include", "exclude", "columns", "add", "filter"}));
    TableTransformSpec t;
    t.table = table;
    if (YAML::Node r = kv.second["rename"]) {
      if (!r.IsScalar()) return Field(origin, where + ".rename", "must be a table name");
      t.rename = r.as<std::string>();
    }
    for (const char* list : {"include", "exclude"}) {
      YAML::Node l = kv.second[list];
      if (!l) continue;
      if (!l.IsSequence()) return Field(origin, where + "." + list, "must be a list of column names");
      for (const auto& item : l) {
        if (!item.IsScalar()) return Field(origin, where + "." + list, "must be a list of column names");
        (std::string(list) == "include" ? t.include : t.exclude).push_back(item.as<std::string>());
      }
    }
    if (YAML::Node cols = kv.second["columns"]) {
      if (!cols.IsMap()) return Field(origin, where + ".columns", "must be a mapping of column: {rename, cast, zone}");
      for (const auto& c : cols) {
        ASSIGN_OR_RETURN(std::string col, KeyName(c.first, origin, where + ".columns"));
        const std::string cw = where + ".columns." + col;
        RETURN_IF_ERROR(CheckKeys(c.second, origin, cw, {"rename", "cast", "zone"}));
        ColumnTransformSpec ct;
        ct.column = col;
        const std::pair<const char*, std::string*> fields[] = {{"rename", &ct.rename}, {"cast", &ct.cast},
                                                               {"zone", &ct.zone}};
        for (auto [key, out] : fields) {
          YAML::Node v = c.second[key];
          if (!v) continue;
          if (!v.IsScalar() || v.as<std::string>().empty()) return Field(origin, cw + "." + key, "must be a name");
          *out = v.as<std::string>();
        }
        t.columns.push_back(std::move(ct));
      }
    }
    if (YAML::Node add = kv.second["add"]) {
      if (!add.IsMap()) return Field(origin, where + ".add", "must be a mapping of column: expression");
      for (const auto& a : add) {
        ASSIGN_OR_RETURN(std::string col, KeyName(a.first, origin, where + ".add"));
        if (!a.second.IsScalar() || a.second.as<std::string>().empty())
          return Field(origin, where + ".add." + col, "must be an expression (concat(a, ' ', b), price * qty, ...)");
        t.add.push_back({col, a.second.as<std::string>()});
      }
    }
    if (YAML::Node f = kv.second["filter"]) {
      if (!f.IsScalar()) return Field(origin, where + ".filter", "must be a condition (status <> 'gone' and qty > 0)");
      t.filter = f.as<std::string>();
    }
    Status syntax = CheckTransformSyntax(t);
    if (!syntax.ok()) return InvalidArgument(fmt::format("{}: {}", origin, syntax.message()));
    s->transforms.push_back(std::move(t));
  }
  return Status::Ok();
}

Status ParseCutover(const YAML::Node& root, const std::string& origin, MigrationSpec* s) {
  if (YAML::Node n = root["cutover"]) {
    RETURN_IF_ERROR(CheckKeys(n, origin, "cutover",
                              {"max_lag_seconds", "drain_timeout_seconds", "catchup_timeout_seconds",
                               "min_validation_seconds", "require_approval", "require_verify",
                               "verify_max_age_seconds"}));
    CutoverSpec& c = s->cutover;
    std::string o = origin + ": cutover";
    RETURN_IF_ERROR(Get(n, o, "max_lag_seconds", &c.max_lag_seconds));
    RETURN_IF_ERROR(Get(n, o, "drain_timeout_seconds", &c.drain_timeout_seconds));
    RETURN_IF_ERROR(Get(n, o, "catchup_timeout_seconds", &c.catchup_timeout_seconds));
    RETURN_IF_ERROR(Get(n, o, "min_validation_seconds", &c.min_validation_seconds));
    RETURN_IF_ERROR(Get(n, o, "require_approval", &c.require_approval));
    RETURN_IF_ERROR(Get(n, o, "require_verify", &c.require_verify));
    RETURN_IF_ERROR(Get(n, o, "verify_max_age_seconds", &c.verify_max_age_seconds));
    if (c.max_lag_seconds <= 0) return Field(origin, "cutover.max_lag_seconds", "must be more than 0");
    if (c.drain_timeout_seconds <= 0) return Field(origin, "cutover.drain_timeout_seconds", "must be more than 0");
    if (c.catchup_timeout_seconds <= 0) return Field(origin, "cutover.catchup_timeout_seconds", "must be more than 0");
    if (c.min_validation_seconds < 0) return Field(origin, "cutover.min_validation_seconds", "must be 0 or more");
    if (c.verify_max_age_seconds < 0) return Field(origin, "cutover.verify_max_age_seconds", "must be 0 or more");
  }
  if (YAML::Node n = root["knobs"]) {
    if (!n.IsMap()) return Field(origin, "knobs", "expected a mapping of knob: value");
    for (const auto& kv : n) {
      ASSIGN_OR_RETURN(std::string k, KeyName(kv.first, origin, "knobs"));
      double v = 0;
      try {
        v = kv.second.as<double>();
      } catch (const YAML::Exception&) {
        return Field(origin, "knobs." + k, "expected a number");
      }
      s->knobs[k] = v;
    }
    Knobs check(*s);
    for (const auto& [k, v] : s->knobs)
      if (Status st = check.Set(k, v); !st.ok()) {
        const std::string& m = st.message();  // "knob NAME: problem" or "unknown knob ..."
        return Field(origin, "knobs." + k, m.rfind("knob ", 0) == 0 ? m.substr(m.find(": ") + 2) : m);
      }
  }
  if (YAML::Node n = root["notify"]) {
    RETURN_IF_ERROR(CheckKeys(n, origin, "notify", {"webhook", "ca_file"}));
    RETURN_IF_ERROR(Get(n, origin + ": notify", "webhook", &s->notify.webhook));
    RETURN_IF_ERROR(Get(n, origin + ": notify", "ca_file", &s->notify.ca_file));
    const std::string& w = s->notify.webhook;
    if (!w.empty() && w.rfind("http://", 0) != 0 && w.rfind("https://", 0) != 0)
      return Field(origin, "notify.webhook", "must be an http:// or https:// URL");
  }
  if (YAML::Node n = root["verify"]) {
    RETURN_IF_ERROR(CheckKeys(n, origin, "verify",
                              {"rows_per_s", "chunk_rows", "continuous", "continuous_rows_per_s",
                               "continuous_pause_seconds", "continuous_repair"}));
    VerifySpec& v = s->verify;
    const std::string o = origin + ": verify";
    RETURN_IF_ERROR(Get(n, o, "rows_per_s", &v.rows_per_s));
    RETURN_IF_ERROR(Get(n, o, "chunk_rows", &v.chunk_rows));
    RETURN_IF_ERROR(Get(n, o, "continuous", &v.continuous));
    RETURN_IF_ERROR(Get(n, o, "continuous_rows_per_s", &v.continuous_rows_per_s));
    RETURN_IF_ERROR(Get(n, o, "continuous_pause_seconds", &v.continuous_pause_seconds));
    RETURN_IF_ERROR(Get(n, o, "continuous_repair", &v.continuous_repair));
    if (v.rows_per_s < 0) return Field(origin, "verify.rows_per_s", "must be 0 (unlimited) or more");
    if (v.chunk_rows < 100) return Field(origin, "verify.chunk_rows", "must be at least 100");
    if (v.continuous_rows_per_s < 0)
      return Field(origin, "verify.continuous_rows_per_s", "must be 0 (unlimited) or more");
    if (!(v.continuous_pause_seconds >= 0) || v.continuous_pause_seconds > 604800)
      return Field(origin, "verify.continuous_pause_seconds", "must be 0 to 604800");
  }
  return Status::Ok();
}

}  // namespace

int DefaultPartitions() {
  // One applier per core of this machine, 2 to 8: more appliers than cores
  // cost more in context switches and smaller batches than they gain.
  unsigned cores = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(cores, 2u, 8u));
}

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

Result<MigrationSpec> ParseSpec(const std::string& yaml_text, const std::string& origin) {
  return ParseSpec(yaml_text, origin, ProcessEnvironment());
}

Result<MigrationSpec> ParseSpec(const std::string& yaml_text, const std::string& origin, const EnvLookup& env) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(fmt::format("{}: not valid YAML at line {}: {}", origin, e.mark.line + 1, e.msg));
  }
  if (!root.IsMap()) return InvalidArgument(fmt::format("{}: expected a mapping of fields (name, source, target, ...)", origin));
  static const std::set<std::string> kKnown = {"name", "source", "target", "tables", "exclude", "state_dir",
                                               "copy_workers", "partitions", "batch_size", "chunk_rows",
                                               "partition_log_mb", "index_memory_mb", "allow_nonempty_target", "early_indexes",
                                               "source_replica", "max_row_bytes", "copy_binlog", "proxy", "cutover",
                                               "verify", "control", "notify", "knobs", "on_conflict",
                                               "source_password_file", "target_password_file",
                                               "source_replica_password_file", "transport", "casting", "transforms"};
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) {
      return InvalidArgument(fmt::format("{}: every key must be a plain name, not a list or a mapping", origin));
    }
    std::string key = kv.first.as<std::string>();
    if (!kKnown.count(key)) return Field(origin, key, "unknown field");
  }
  std::vector<YAML::Node> expanded;
  RETURN_IF_ERROR(ExpandTree(root, origin, "", env, &expanded));
  MigrationSpec s;
  RETURN_IF_ERROR(Get(root, origin, "name", &s.name));
  RETURN_IF_ERROR(Get(root, origin, "source", &s.source));
  RETURN_IF_ERROR(Get(root, origin, "target", &s.target));
  RETURN_IF_ERROR(GetList(root, origin, "tables", &s.tables));
  RETURN_IF_ERROR(GetList(root, origin, "exclude", &s.exclude));
  RETURN_IF_ERROR(Get(root, origin, "state_dir", &s.state_dir));
  RETURN_IF_ERROR(Get(root, origin, "copy_workers", &s.copy_workers));
  RETURN_IF_ERROR(Get(root, origin, "partitions", &s.partitions));
  RETURN_IF_ERROR(Get(root, origin, "batch_size", &s.batch_size));
  RETURN_IF_ERROR(Get(root, origin, "chunk_rows", &s.chunk_rows));
  RETURN_IF_ERROR(Get(root, origin, "partition_log_mb", &s.partition_log_mb));
  RETURN_IF_ERROR(Get(root, origin, "allow_nonempty_target", &s.allow_nonempty_target));
  RETURN_IF_ERROR(Get(root, origin, "index_memory_mb", &s.index_memory_mb));
  RETURN_IF_ERROR(Get(root, origin, "early_indexes", &s.early_indexes));
  RETURN_IF_ERROR(Get(root, origin, "source_replica", &s.source_replica));
  RETURN_IF_ERROR(Get(root, origin, "max_row_bytes", &s.max_row_bytes));
  RETURN_IF_ERROR(Get(root, origin, "copy_binlog", &s.copy_binlog));
  RETURN_IF_ERROR(Get(root, origin, "on_conflict", &s.on_conflict));
  if (s.on_conflict != "overwrite" && s.on_conflict != "stop")
    return Field(origin, "on_conflict", fmt::format("'{}' must be overwrite or stop", s.on_conflict));

  RETURN_IF_ERROR(Get(root, origin, "control", &s.control));
  RETURN_IF_ERROR(ParseProxy(root, origin, &s));
  RETURN_IF_ERROR(ParseCutover(root, origin, &s));
  RETURN_IF_ERROR(ParseCasting(root, origin, &s));
  RETURN_IF_ERROR(ParseTransforms(root, origin, &s));
  RETURN_IF_ERROR(ParseTransport(root, origin, &s.transport));

  if (s.name.empty()) return Field(origin, "name", "is required");
  if (s.name.size() > 40) return Field(origin, "name", "must be at most 40 characters");
  for (char c : s.name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return Field(origin, "name", fmt::format("'{}' may only use a-z, 0-9 and _", s.name));
  RETURN_IF_ERROR(CheckUri(origin, "source", s.source));
  RETURN_IF_ERROR(CheckUri(origin, "target", s.target));
  // Which source/target pairs run (same engine, or mysql -> postgres) is the
  // engine registry's call (engines/engine.h EngineFor), with one error naming both.
  auto is_mysql = IsMySqlUri;
  if (!s.source_replica.empty()) {
    RETURN_IF_ERROR(CheckUri(origin, "source_replica", s.source_replica));
    if (!is_mysql(s.source_replica) || !is_mysql(s.source))
      return Field(origin, "source_replica", "is for mysql:// sources: a replica of the source to read from");
  }
  RETURN_IF_ERROR(ResolvePassword(root, origin, "source", env, &s.source));
  RETURN_IF_ERROR(ResolvePassword(root, origin, "target", env, &s.target));
  RETURN_IF_ERROR(ResolvePassword(root, origin, "source_replica", env, &s.source_replica));
  // MySQL -> MySQL applies transforms too (engines/mysql), with two limits
  // that the spec's text shows: a MySQL target keeps every table in the
  // database its URI names, and has no column type that keeps a time zone.
  if (is_mysql(s.source) && is_mysql(s.target))
    for (const auto& t : s.transforms) {
      if (t.rename.find('.') != std::string::npos)
        return Field(origin, t.where() + ".rename",
                     fmt::format("'{}' names a database: a mysql:// target puts every table in the database its URI "
                                 "names; rename to a table name",
                                 t.rename));
      for (const auto& c : t.columns)
        if (c.cast == "timestamp_to_timestamptz")
          return Field(origin, t.where() + ".columns." + c.column + ".cast",
                       "timestamp_to_timestamptz is not applied on mysql:// -> mysql:// migrations: MySQL has no "
                       "column type that keeps a time zone (a TIMESTAMP column already travels as UTC)");
    }
  if (!s.copy_binlog && !(is_mysql(s.target) && is_mysql(s.source)))
    return Field(origin, "copy_binlog",
                 "is for mysql:// -> mysql:// migrations (for now): false copies without writing the target's binlog");
  // Only the same-engine copies publish their rows (Engine::PublishCopy);
  // said here rather than when the copy starts, after preflight and the schema.
  if (s.transport.publish_snapshot && is_mysql(s.source) != is_mysql(s.target))
    return Field(origin, "transport.publish_snapshot",
                 "is for postgres:// -> postgres:// and mysql:// -> mysql:// migrations (for now): a copy into "
                 "another engine does not publish its rows to Kafka");
  if (s.max_row_bytes < 0) return Field(origin, "max_row_bytes", "must be 0 (the target's max_allowed_packet) or more");
  if (s.copy_workers < 1 || s.copy_workers > 64) return Field(origin, "copy_workers", "must be between 1 and 64");
  if (s.transport.partitions != 0 && s.partitions != 0 && s.transport.partitions != s.partitions)
    return Field(origin, "transport.partitions",
                 fmt::format("{} differs from partitions {}: the topic has one partition per applier", s.transport.partitions,
                             s.partitions));
  if (s.partitions == 0) s.partitions = s.transport.partitions != 0 ? s.transport.partitions : DefaultPartitions();
  if (s.partitions < 1 || s.partitions > 256) return Field(origin, "partitions", "must be between 1 and 256");
  if (s.batch_size < 1 || s.batch_size > 100000) return Field(origin, "batch_size", "must be between 1 and 100000");
  if (s.chunk_rows < 1000) return Field(origin, "chunk_rows", "must be at least 1000");
  if (s.partition_log_mb < 1 || s.partition_log_mb > 4096)
    return Field(origin, "partition_log_mb", "must be between 1 and 4096");
  if (s.index_memory_mb < 1 || s.index_memory_mb > 65536)
    return Field(origin, "index_memory_mb", "must be between 1 and 65536");
  if (s.state_dir.empty()) s.state_dir = "./.midflight/" + s.name;
  if (s.control.empty()) s.control = "unix:" + s.state_dir + "/control.sock";
  auto mysql_plugin = [](const std::string& a) {
    return a == "mysql_native_password" || a == "caching_sha2_password" || a == "client_ed25519";
  };
  if (s.has_proxy && is_mysql(s.source)) {
    // The MySQL proxy authenticates clients with one plugin: the one named,
    // else (empty) the one the source's handshake announces.
    const YAML::Node proxy = root["proxy"];
    if (proxy["auth"] && !mysql_plugin(s.proxy.auth))
      return Field(origin, "proxy.auth",
                   fmt::format("'{}' is for PostgreSQL: a MySQL migration's proxy uses mysql_native_password, "
                               "caching_sha2_password or client_ed25519",
                               s.proxy.auth));
    if (!proxy["auth"]) s.proxy.auth = "";
    // Sessions carry their current schema from one server to the other by
    // name, and SQL text is never rewritten: both sides must use one name.
    auto su = ParseUri(s.source);
    auto tu = ParseUri(s.target);
    if (su.ok() && tu.ok() && su->database != tu->database)
      return Field(origin, "target",
                   fmt::format("database '{}' differs from the source's '{}': the MySQL proxy moves sessions between "
                               "servers by schema name and does not rewrite SQL; give the target database the "
                               "source's name",
                               tu->database, su->database));
  } else if (s.has_proxy && mysql_plugin(s.proxy.auth)) {
    return Field(origin, "proxy.auth", fmt::format("{} is for MySQL migrations: use scram-sha-256 or md5", s.proxy.auth));
  }
  if (s.has_proxy && s.proxy.users.empty()) {
    // Default: the application logs in as the source URI's user.
    auto u = ParseUri(s.source);
    if (u.ok() && !u->user.empty()) s.proxy.users.push_back({u->user, u->password});
  }
  return s;
}

Result<MigrationSpec> LoadSpec(const std::string& path) {
  std::ifstream in(path);
  if (!in) return InvalidArgument(fmt::format("cannot read spec file {}", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseSpec(ss.str(), path);
}

}  // namespace midflight
