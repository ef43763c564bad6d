#include "control/spec.h"

#include "control/knobs.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

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

Status ParseProxy(const YAML::Node& root, const std::string& origin, MigrationSpec* s) {
  YAML::Node n = root["proxy"];
  if (!n) return Status::Ok();
  RETURN_IF_ERROR(CheckKeys(n, origin, "proxy",
                            {"listen", "listen_readonly", "users", "auth", "tls_cert", "tls_key", "max_clients"}));
  s->has_proxy = true;
  ProxySpec& p = s->proxy;
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "listen", &p.listen));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "listen_readonly", &p.listen_readonly));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "auth", &p.auth));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "tls_cert", &p.tls_cert));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "tls_key", &p.tls_key));
  RETURN_IF_ERROR(Get(n, origin + ": proxy", "max_clients", &p.max_clients));
  if (YAML::Node users = n["users"]) {
    if (!users.IsSequence()) return Field(origin, "proxy.users", "must be a list of {name, password}");
    for (const auto& u : users) {
      if (!u.IsMap() || !u["name"] || !u["password"] || !u["name"].IsScalar() || !u["password"].IsScalar())
        return Field(origin, "proxy.users", "each entry needs name and password");
      p.users.push_back({u["name"].as<std::string>(), u["password"].as<std::string>()});
    }
  }
  if (p.listen.empty()) return Field(origin, "proxy.listen", "is required (HOST:PORT of the read-write endpoint)");
  if (p.auth != "scram-sha-256" && p.auth != "md5")
    return Field(origin, "proxy.auth", fmt::format("'{}' is not scram-sha-256 or md5", p.auth));
  if (p.tls_cert.empty() != p.tls_key.empty())
    return Field(origin, p.tls_cert.empty() ? "proxy.tls_cert" : "proxy.tls_key", "tls_cert and tls_key go together");
  if (p.max_clients < 1) return Field(origin, "proxy.max_clients", "must be at least 1");
  return Status::Ok();
}

Status ParseCutover(const YAML::Node& root, const std::string& origin, MigrationSpec* s) {
  if (YAML::Node n = root["cutover"]) {
    RETURN_IF_ERROR(CheckKeys(n, origin, "cutover",
                              {"max_lag_seconds", "drain_timeout_seconds", "catchup_timeout_seconds",
                               "min_validation_seconds", "require_approval", "require_verify"}));
    CutoverSpec& c = s->cutover;
    std::string o = origin + ": cutover";
    RETURN_IF_ERROR(Get(n, o, "max_lag_seconds", &c.max_lag_seconds));
    RETURN_IF_ERROR(Get(n, o, "drain_timeout_seconds", &c.drain_timeout_seconds));
    RETURN_IF_ERROR(Get(n, o, "catchup_timeout_seconds", &c.catchup_timeout_seconds));
    RETURN_IF_ERROR(Get(n, o, "min_validation_seconds", &c.min_validation_seconds));
    RETURN_IF_ERROR(Get(n, o, "require_approval", &c.require_approval));
    RETURN_IF_ERROR(Get(n, o, "require_verify", &c.require_verify));
    if (c.max_lag_seconds <= 0) return Field(origin, "cutover.max_lag_seconds", "must be more than 0");
    if (c.drain_timeout_seconds <= 0) return Field(origin, "cutover.drain_timeout_seconds", "must be more than 0");
    if (c.catchup_timeout_seconds <= 0) return Field(origin, "cutover.catchup_timeout_seconds", "must be more than 0");
    if (c.min_validation_seconds < 0) return Field(origin, "cutover.min_validation_seconds", "must be 0 or more");
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
    RETURN_IF_ERROR(CheckKeys(n, origin, "verify", {"rows_per_s", "chunk_rows"}));
    RETURN_IF_ERROR(Get(n, origin + ": verify", "rows_per_s", &s->verify.rows_per_s));
    RETURN_IF_ERROR(Get(n, origin + ": verify", "chunk_rows", &s->verify.chunk_rows));
    if (s->verify.rows_per_s < 0) return Field(origin, "verify.rows_per_s", "must be 0 (unlimited) or more");
    if (s->verify.chunk_rows < 100) return Field(origin, "verify.chunk_rows", "must be at least 100");
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

Result<MigrationSpec> ParseSpec(const std::string& yaml_text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(fmt::format("{}: not valid YAML at line {}: {}", origin, e.mark.line + 1, e.msg));
  }
  if (!root.IsMap()) return InvalidArgument(fmt::format("{}: expected a mapping of fields (name, source, target, ...)", origin));
  static const std::set<std::string> kKnown = {"name", "source", "target", "tables", "exclude", "state_dir",
                                               "copy_workers", "partitions", "batch_size", "chunk_rows",
                                               "partition_log_mb", "index_memory_mb", "allow_nonempty_target",
                                               "source_replica", "max_row_bytes", "proxy", "cutover",
                                               "verify", "control", "notify", "knobs", "on_conflict"};
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) {
      return InvalidArgument(fmt::format("{}: every key must be a plain name, not a list or a mapping", origin));
    }
    std::string key = kv.first.as<std::string>();
    if (!kKnown.count(key)) return Field(origin, key, "unknown field");
  }
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
  RETURN_IF_ERROR(Get(root, origin, "source_replica", &s.source_replica));
  RETURN_IF_ERROR(Get(root, origin, "max_row_bytes", &s.max_row_bytes));
  RETURN_IF_ERROR(Get(root, origin, "on_conflict", &s.on_conflict));
  if (s.on_conflict != "overwrite" && s.on_conflict != "stop")
    return Field(origin, "on_conflict", fmt::format("'{}' must be overwrite or stop", s.on_conflict));

  RETURN_IF_ERROR(Get(root, origin, "control", &s.control));
  RETURN_IF_ERROR(ParseProxy(root, origin, &s));
  RETURN_IF_ERROR(ParseCutover(root, origin, &s));

  if (s.name.empty()) return Field(origin, "name", "is required");
  if (s.name.size() > 40) return Field(origin, "name", "must be at most 40 characters");
  for (char c : s.name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return Field(origin, "name", fmt::format("'{}' may only use a-z, 0-9 and _", s.name));
  RETURN_IF_ERROR(CheckUri(origin, "source", s.source));
  RETURN_IF_ERROR(CheckUri(origin, "target", s.target));
  auto is_mysql = [](const std::string& u) { return UriScheme(u) == "mysql" || UriScheme(u) == "mariadb"; };
  if (is_mysql(s.source) != is_mysql(s.target))
    return Field(origin, "target", "must use the same engine as source (mysql:// to mysql://, postgres:// to postgres://)");
  if (!s.source_replica.empty()) {
    RETURN_IF_ERROR(CheckUri(origin, "source_replica", s.source_replica));
    if (!is_mysql(s.source_replica) || !is_mysql(s.source))
      return Field(origin, "source_replica", "is for mysql:// sources: a replica of the source to read from");
  }
  if (s.max_row_bytes < 0) return Field(origin, "max_row_bytes", "must be 0 (the target's max_allowed_packet) or more");
  if (s.copy_workers < 1 || s.copy_workers > 64) return Field(origin, "copy_workers", "must be between 1 and 64");
  if (s.partitions == 0) s.partitions = DefaultPartitions();
  if (s.partitions < 1 || s.partitions > 256) return Field(origin, "partitions", "must be between 1 and 256");
  if (s.batch_size < 1 || s.batch_size > 100000) return Field(origin, "batch_size", "must be between 1 and 100000");
  if (s.chunk_rows < 1000) return Field(origin, "chunk_rows", "must be at least 1000");
  if (s.partition_log_mb < 1 || s.partition_log_mb > 4096)
    return Field(origin, "partition_log_mb", "must be between 1 and 4096");
  if (s.index_memory_mb < 1 || s.index_memory_mb > 65536)
    return Field(origin, "index_memory_mb", "must be between 1 and 65536");
  if (s.state_dir.empty()) s.state_dir = "./.midflight/" + s.name;
  if (s.control.empty()) s.control = "unix:" + s.state_dir + "/control.sock";
  if (s.has_proxy && is_mysql(s.source))
    return Field(origin, "proxy", "the proxy speaks the PostgreSQL protocol only (for now)");
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
