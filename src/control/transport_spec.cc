#include "control/transport_spec.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <set>

namespace midflight {
namespace {

Status Field(const std::string& origin, const std::string& field, const std::string& problem) {
  return InvalidArgument(fmt::format("{}: field 'transport.{}': {}", origin, field, problem));
}

template <typename T>
Status Get(const YAML::Node& t, const std::string& origin, const std::string& key, T* out) {
  YAML::Node n = t[key];
  if (!n) return Status::Ok();
  if (!n.IsScalar()) return Field(origin, key, "has the wrong type");
  try {
    *out = n.as<T>();
  } catch (const YAML::Exception&) {
    return Field(origin, key, "has the wrong type");
  }
  return Status::Ok();
}

bool ValidTopicPart(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return false;
  return true;
}

}  // namespace

Status ParseTransport(const YAML::Node& root, const std::string& origin, TransportSpec* out) {
  YAML::Node t = root["transport"];
  if (!t) return Status::Ok();
  if (!t.IsMap())
    return InvalidArgument(fmt::format("{}: field 'transport': expected a mapping (kind, brokers, ...)", origin));
  static const std::set<std::string> kKnown = {"kind",     "brokers",          "topic_prefix", "partitions",
                                               "settings", "max_message_bytes", "schema_registry",
                                               "apply", "publish_snapshot"};
  for (const auto& kv : t) {
    if (!kv.first.IsScalar()) return Field(origin, "?", "every key must be a plain name");
    const std::string key = kv.first.as<std::string>();
    if (!kKnown.count(key)) return Field(origin, key, "unknown field");
  }
  TransportSpec s;
  std::string kind = "memory";
  RETURN_IF_ERROR(Get(t, origin, "kind", &kind));
  if (kind == "memory") {
    if (t.size() > 1) return Field(origin, "kind", "memory takes no other transport fields");
    *out = s;
    return Status::Ok();
  }
  if (kind != "kafka") return Field(origin, "kind", fmt::format("'{}' must be memory or kafka", kind));
  s.kind = TransportSpec::Kind::kKafka;
  RETURN_IF_ERROR(Get(t, origin, "brokers", &s.brokers));
  RETURN_IF_ERROR(Get(t, origin, "topic_prefix", &s.topic_prefix));
  RETURN_IF_ERROR(Get(t, origin, "partitions", &s.partitions));
  RETURN_IF_ERROR(Get(t, origin, "max_message_bytes", &s.max_message_bytes));
  RETURN_IF_ERROR(Get(t, origin, "schema_registry", &s.schema_registry));
  std::string apply = "run";
  RETURN_IF_ERROR(Get(t, origin, "apply", &apply));
  if (apply != "run" && apply != "workers")
    return Field(origin, "apply", fmt::format("'{}' must be run (the run process applies) or workers "
                                              "(`midflight apply-worker` processes apply)", apply));
  s.apply_by_workers = apply == "workers";
  if (YAML::Node n = t["publish_snapshot"]) {
    bool ok = n.IsScalar();
    if (ok) {
      try {
        s.publish_snapshot = n.as<bool>();
      } catch (const YAML::Exception&) {
        ok = false;
      }
    }
    if (!ok)
      return Field(origin, "publish_snapshot",
                   fmt::format("'{}' must be true (the copy's rows are produced as op r events too) or false",
                               n.IsScalar() ? n.as<std::string>() : "?"));
  }
  if (!s.schema_registry.empty() && s.schema_registry.rfind("http://", 0) != 0 &&
      s.schema_registry.rfind("https://", 0) != 0)
    return Field(origin, "schema_registry", "must be an http:// or https:// URL");
  if (s.brokers.empty()) return Field(origin, "brokers", "is required for kind kafka (\"host:port,...\")");
  if (!ValidTopicPart(s.topic_prefix))
    return Field(origin, "topic_prefix",
                 fmt::format("'{}' may only use a-z, A-Z, 0-9, '.', '_' and '-'", s.topic_prefix));
  if (s.partitions < 0 || s.partitions > 256) return Field(origin, "partitions", "must be between 1 and 256");
  if (s.max_message_bytes < 1024 || s.max_message_bytes > 1000000000)
    return Field(origin, "max_message_bytes", "must be between 1024 and 1000000000");
  if (YAML::Node set = t["settings"]) {
    if (!set.IsMap()) return Field(origin, "settings", "expected a mapping of librdkafka properties");
    for (const auto& kv : set) {
      if (!kv.first.IsScalar() || !kv.second.IsScalar())
        return Field(origin, "settings", "every librdkafka property and value must be a plain scalar");
      const std::string key = kv.first.as<std::string>();
      // These carry midflight's correctness rule (kafka/kafka_partition_log.h).
      static const std::set<std::string> kFixed = {"enable.idempotence",    "acks",
                                                   "request.required.acks", "enable.gapless.guarantee",
                                                   "enable.auto.commit",    "bootstrap.servers",
                                                   "metadata.broker.list"};
      if (kFixed.count(key))
        return Field(origin, "settings." + key, "is set by midflight (idempotent producer, acks=all, brokers)");
      s.settings[key] = kv.second.as<std::string>();
    }
  }
  *out = std::move(s);
  return Status::Ok();
}

std::string TransportSpec::OversizedRow(const std::string& table, const std::string& key, int64_t bytes) const {
  return fmt::format(
      "table {} key {}: the row is {} bytes as text, over {} (half of transport.max_message_bytes {}: a change "
      "message carries each value twice); raise max_message_bytes (and the topics' max.message.bytes) or shrink "
      "the row",
      table, key, bytes, max_row_text_bytes(), max_message_bytes);
}

}  // namespace midflight
