#include "control/spec.h"

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
  if (scheme == "postgres" || scheme == "postgresql" || scheme == "mysql" || scheme == "mariadb") return Status::Ok();
  return Field(origin, field, fmt::format("'{}' is not a postgres:// or mysql:// URI", RedactUri(uri)));
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
                                               "source_replica", "max_row_bytes"};
  for (const auto& kv : root) {
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
