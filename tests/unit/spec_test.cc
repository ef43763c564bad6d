#include "control/spec.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/uri.h"
#include "control/knobs.h"
#include "engines/engine.h"

namespace midflight {

TEST(SpecTest, ParsesTheDocumentedFieldsWithDefaults) {
  auto s = ParseSpec(R"(
name: shop
source: postgres://app:secret@db1:5432/shop
target: postgres://app:secret@db2:5432/shop
tables: [public.*]
exclude: public.audit_*
)", "spec.yaml");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->name, "shop");
  EXPECT_EQ(s->tables, std::vector<std::string>{"public.*"});
  EXPECT_EQ(s->exclude, std::vector<std::string>{"public.audit_*"});
  EXPECT_EQ(s->state_dir, "./.midflight/shop");
  EXPECT_EQ(s->slot_name(), "midflight_shop");
  EXPECT_EQ(s->partitions, DefaultPartitions());
  EXPECT_GE(s->partitions, 2);
}

TEST(SpecTest, TransportKafkaWithSettingsAndASecretFromTheEnvironment) {
  const std::string base = "name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\n";
  EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "KAFKA_PASSWORD") return std::string("s3cret");
    return std::nullopt;
  };
  auto s = ParseSpec(base + R"(transport:
  kind: kafka
  brokers: "k1:9092,k2:9092"
  topic_prefix: cdc
  partitions: 6
  max_message_bytes: 200000
  settings: {security.protocol: SASL_SSL, sasl.password: "${KAFKA_PASSWORD}", linger.ms: 10}
)", "m.yaml", env);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->transport.kind, TransportSpec::Kind::kKafka);
  EXPECT_EQ(s->transport.brokers, "k1:9092,k2:9092");
  EXPECT_EQ(s->transport.Topic(s->name), "cdc.a.changes");
  EXPECT_EQ(s->transport.max_message_bytes, 200000);
  EXPECT_EQ(s->partitions, 6) << "transport.partitions sets the migration's";
  EXPECT_EQ(s->transport.settings.at("sasl.password"), "s3cret");
  EXPECT_EQ(s->transport.settings.at("linger.ms"), "10");
  EXPECT_FALSE(s->transport.publish_snapshot);
  auto pub = ParseSpec(base + "transport: {kind: kafka, brokers: h:1, publish_snapshot: true}\n", "m.yaml");
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_TRUE(pub->transport.publish_snapshot);

  auto mem = ParseSpec(base + "transport: {kind: memory}\n", "m.yaml");
  ASSERT_TRUE(mem.ok()) << mem.status().message();
  EXPECT_EQ(mem->transport.kind, TransportSpec::Kind::kMemory);
  auto none = ParseSpec(base, "m.yaml");
  EXPECT_EQ(none->transport.kind, TransportSpec::Kind::kMemory);
}

TEST(SpecTest, TransportErrorsNameTheField) {
  const std::string base = "name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\n";
  auto err = [&](const std::string& yaml) { return ParseSpec(base + yaml, "m.yaml").status().message(); };
  EXPECT_EQ(err("transport: {kind: rabbit}\n"), "m.yaml: field 'transport.kind': 'rabbit' must be memory or kafka");
  EXPECT_EQ(err("transport: {kind: kafka}\n"),
            "m.yaml: field 'transport.brokers': is required for kind kafka (\"host:port,...\")");
  EXPECT_EQ(err("transport: {kind: kafka, brokers: h:1, topics: x}\n"), "m.yaml: field 'transport.topics': unknown field");
  EXPECT_EQ(err("transport: {kind: kafka, brokers: h:1, publish_snapshot: sometimes}\n"),
            "m.yaml: field 'transport.publish_snapshot': 'sometimes' must be true (the copy's rows are produced as op "
            "r events too) or false");
  EXPECT_EQ(ParseSpec("name: a\nsource: mysql://h/db\ntarget: postgres://h/db2\n"
                      "transport: {kind: kafka, brokers: h:1, publish_snapshot: true}\n",
                      "m.yaml")
                .status()
                .message(),
            "m.yaml: field 'transport.publish_snapshot': is for postgres:// -> postgres:// and mysql:// -> mysql:// "
            "migrations (for now): a copy into another engine does not publish its rows to Kafka");
  EXPECT_TRUE(ParseSpec("name: a\nsource: mysql://h/db\ntarget: mysql://h/db2\n"
                        "transport: {kind: kafka, brokers: h:1, publish_snapshot: true}\n",
                        "m.yaml")
                  .ok());
  EXPECT_EQ(err("transport: {kind: kafka, brokers: h:1, topic_prefix: 'a b'}\n"),
            "m.yaml: field 'transport.topic_prefix': 'a b' may only use a-z, A-Z, 0-9, '.', '_' and '-'");
  EXPECT_EQ(err("transport: {kind: kafka, brokers: h:1, max_message_bytes: 10}\n"),
            "m.yaml: field 'transport.max_message_bytes': must be between 1024 and 1000000000");
  EXPECT_EQ(err("transport: {kind: kafka, brokers: h:1, settings: {acks: '1'}}\n"),
            "m.yaml: field 'transport.settings.acks': is set by midflight (idempotent producer, acks=all, brokers)");
  EXPECT_EQ(err("partitions: 4\ntransport: {kind: kafka, brokers: h:1, partitions: 8}\n"),
            "m.yaml: field 'transport.partitions': 8 differs from partitions 4: the topic has one partition per applier");
  EXPECT_EQ(err("transport: {kind: memory, brokers: h:1}\n"),
            "m.yaml: field 'transport.kind': memory takes no other transport fields");
  EXPECT_EQ(err("transport: kafka\n"), "m.yaml: field 'transport': expected a mapping (kind, brokers, ...)");
}

TEST(SpecTest, ContinuousVerification) {
  const std::string base = "name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\n";
  auto off = ParseSpec(base, "spec.yaml");
  ASSERT_TRUE(off.ok()) << off.status().message();
  EXPECT_FALSE(off->verify.continuous);
  auto s = ParseSpec(base + R"(verify:
  continuous: true
  continuous_rows_per_s: 500
  continuous_pause_seconds: 30
  continuous_repair: true
)", "spec.yaml");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_TRUE(s->verify.continuous);
  EXPECT_EQ(s->verify.continuous_rows_per_s, 500);
  EXPECT_EQ(s->verify.continuous_pause_seconds, 30);
  EXPECT_TRUE(s->verify.continuous_repair);
  EXPECT_EQ(Knobs(*s).Int(Knob::kContinuousVerifyRowsPerS), 500);
  auto bad = ParseSpec(base + "verify:\n  continuous_pause_seconds: -1\n", "spec.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "spec.yaml: field 'verify.continuous_pause_seconds': must be 0 to 604800");
}

TEST(SpecTest, UnknownFieldIsNamed) {
  auto s = ParseSpec("name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\ntabels: [x]\n", "m.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(), "m.yaml: field 'tabels': unknown field");
}

TEST(SpecTest, MalformedUrisNameTheFieldAndNotThePassword) {
  auto bracket = ParseSpec("name: a\nsource: 'postgres://u:hunter2@[::1:5432/db'\ntarget: postgres://h/db2\n", "m.yaml");
  EXPECT_EQ(bracket.status().message(),
            "m.yaml: field 'source': unclosed '[' in the host (an IPv6 address is written [::1]:5432)");
  auto escape = ParseSpec("name: a\nsource: postgres://h/db\ntarget: 'postgres://u:hunter%zz@h/db2'\n", "m.yaml");
  EXPECT_EQ(escape.status().message(),
            "m.yaml: field 'target': the password has a '%' that is not a %XX escape, or is %00 (write a literal % as %25)");
  auto nodb = ParseSpec("name: a\nsource: mysql://u:hunter2@h\ntarget: mysql://h/db2\n", "m.yaml");
  EXPECT_EQ(nodb.status().message(), "m.yaml: field 'source': names no database (mysql://user:pass@host:port/db)");
  auto at = ParseSpec("name: a\nsource: postgres://u:p@ss@h/db\ntarget: postgres://h/db2\n", "m.yaml");
  EXPECT_TRUE(at.ok()) << at.status().message();
}

TEST(SpecTest, CastingSection) {
  auto s = ParseSpec("name: a\nsource: mysql://h/db\ntarget: postgres://h/db2\ncasting:\n  tinyint1: boolean\n"
                     "  zero_dates: null\n  target_schema: public\n  columns:\n    t.c: interval\n",
                     "m.yaml");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_TRUE(s->casting.tinyint1_boolean);
  EXPECT_TRUE(s->casting.zero_dates_null);
  EXPECT_EQ(s->casting.target_schema, "public");
  EXPECT_EQ(s->casting.columns.at("t.c"), "interval");
  auto bad = ParseSpec("name: a\nsource: mysql://h/db\ntarget: postgres://h/db2\ncasting:\n  zero_dates: zero\n",
                       "m.yaml");
  EXPECT_EQ(bad.status().message(), "m.yaml: field 'casting.zero_dates': 'zero' must be refuse or null");
}

TEST(SpecTest, BadValuesNameTheFieldAndHideThePassword) {
  auto s = ParseSpec("name: a\nsource: http://u:hunter2@h/db\ntarget: postgres://h/db2\n", "m.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(), "m.yaml: field 'source': 'http://u:***@h/db' is not a postgres:// or mysql:// URI");
  auto n = ParseSpec("name: Bad-Name\nsource: postgres://h/db\ntarget: postgres://h/db2\n", "m.yaml");
  EXPECT_EQ(n.status().message(), "m.yaml: field 'name': 'Bad-Name' may only use a-z, 0-9 and _");
  auto p = ParseSpec("name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\npartitions: lots\n", "m.yaml");
  EXPECT_EQ(p.status().message(), "m.yaml: field 'partitions': has the wrong type");
  auto missing = ParseSpec("name: a\nsource: postgres://h/db\n", "m.yaml");
  EXPECT_EQ(missing.status().message(),
            "m.yaml: field 'target': is required (postgres://user:pass@host:port/db or mysql://...)");
  // Engines may differ: the registry pairs them, or refuses naming both.
  auto mixed = ParseSpec("name: a\nsource: mysql://h/db\ntarget: postgres://h/db2\n", "m.yaml");
  ASSERT_TRUE(mixed.ok()) << mixed.status().message();
  auto kind = EngineFor(*mixed);
  ASSERT_TRUE(kind.ok()) << kind.status().message();
  EXPECT_EQ((*kind)->name(), "mysql-to-postgres");
  auto back = ParseSpec("name: a\nsource: postgres://h/db\ntarget: mysql://h/db2\n", "m.yaml");
  ASSERT_TRUE(back.ok()) << back.status().message();
  auto back_kind = EngineFor(*back);
  ASSERT_TRUE(back_kind.ok()) << back_kind.status().message();
  EXPECT_EQ((*back_kind)->name(), "postgres-to-mysql");
  // Its casting choices.
  auto casting = ParseSpec("name: a\nsource: postgres://h/db\ntarget: mysql://h/db2\ncasting:\n  numeric: decimal\n"
                           "  out_of_range: null\n  collation: utf8mb4_unicode_ci\n",
                           "m.yaml");
  ASSERT_TRUE(casting.ok()) << casting.status().message();
  EXPECT_TRUE(casting->casting.numeric_decimal);
  EXPECT_TRUE(casting->casting.out_of_range_null);
  EXPECT_EQ(casting->casting.collation, "utf8mb4_unicode_ci");
  auto bad_numeric = ParseSpec("name: a\nsource: postgres://h/db\ntarget: mysql://h/db2\ncasting:\n  numeric: round\n",
                               "m.yaml");
  EXPECT_EQ(bad_numeric.status().message(), "m.yaml: field 'casting.numeric': 'round' must be refuse or decimal");
  auto replica = ParseSpec("name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\nsource_replica: postgres://r/db\n",
                           "m.yaml");
  EXPECT_EQ(replica.status().message(),
            "m.yaml: field 'source_replica': is for mysql:// sources: a replica of the source to read from");
  auto nobinlog = ParseSpec("name: a\nsource: mysql://h/db\ntarget: mysql://h2/db\ncopy_binlog: false\n", "m.yaml");
  ASSERT_TRUE(nobinlog.ok()) << nobinlog.status().message();
  EXPECT_FALSE(nobinlog->copy_binlog);
  EXPECT_TRUE(ParseSpec("name: a\nsource: mysql://h/db\ntarget: mysql://h2/db\n", "m.yaml")->copy_binlog);
  auto pg_nobinlog = ParseSpec("name: a\nsource: mysql://h/db\ntarget: postgres://h2/db\ncopy_binlog: false\n", "m.yaml");
  const std::string refused =
      "m.yaml: field 'copy_binlog': is for mysql:// -> mysql:// migrations (for now): false copies without writing "
      "the target's binlog";
  EXPECT_EQ(pg_nobinlog.status().message(), refused);
  // PostgreSQL -> MySQL loads through its own path, which would ignore it.
  auto cross = ParseSpec("name: a\nsource: postgres://h/db\ntarget: mysql://h2/db\ncopy_binlog: false\n", "m.yaml");
  EXPECT_EQ(cross.status().message(), refused);
}

TEST(SpecTest, NotYaml) {
  auto s = ParseSpec("name: [unclosed\n", "m.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.status().message().starts_with("m.yaml: not valid YAML at line")) << s.status().message();
}

// Found by tests/fuzz/spec_fuzz.cc: a key that is a list or a mapping, or a
// proxy user whose name is not a string, threw YAML::TypedBadConversion out
// of ParseSpec instead of naming the field.
TEST(SpecTest, KeysThatAreNotNamesAreErrors) {
  const std::string base = "name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\n";
  EXPECT_EQ(ParseSpec("? [a]\n: 1\n", "m.yaml").status().message(),
            "m.yaml: every key must be a plain name, not a list or a mapping");
  EXPECT_EQ(ParseSpec(base + "cutover:\n  ? {x: 1}\n  : 2\n", "m.yaml").status().message(),
            "m.yaml: field 'cutover': every key must be a plain name, not a list or a mapping");
  EXPECT_EQ(ParseSpec(base + "knobs: {[x]: 1}\n", "m.yaml").status().message(),
            "m.yaml: field 'knobs': every key must be a plain name, not a list or a mapping");
  EXPECT_EQ(ParseSpec(base + "proxy:\n  listen: h:1\n  users: [{name: [u], password: p}]\n", "m.yaml")
                .status()
                .message(),
            "m.yaml: field 'proxy.users': each entry needs name and password (or password_file)");
}

TEST(SpecTest, ProxyLoginLimits) {
  const std::string base = "name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\nproxy:\n  listen: h:1\n";
  auto s = ParseSpec(base, "m.yaml");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->proxy.max_unauthenticated, 200);
  EXPECT_EQ(s->proxy.auth_timeout_seconds, 10);
  s = ParseSpec(base + "  max_unauthenticated: 50\n  auth_timeout_seconds: 2.5\n", "m.yaml");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->proxy.max_unauthenticated, 50);
  EXPECT_EQ(s->proxy.auth_timeout_seconds, 2.5);
  EXPECT_EQ(ParseSpec(base + "  max_unauthenticated: 0\n", "m.yaml").status().message(),
            "m.yaml: field 'proxy.max_unauthenticated': must be at least 1");
  EXPECT_EQ(ParseSpec(base + "  auth_timeout_seconds: 0\n", "m.yaml").status().message(),
            "m.yaml: field 'proxy.auth_timeout_seconds': must be above 0 and at most 3600");
  EXPECT_EQ(s->proxy.loops, 0);  // one per two cores
  s = ParseSpec(base + "  loops: 1\n", "m.yaml");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->proxy.loops, 1);
  EXPECT_EQ(ParseSpec(base + "  loops: -1\n", "m.yaml").status().message(),
            "m.yaml: field 'proxy.loops': must be 0 (one per two cores) to 64");
}

TEST(SpecTest, MySqlProxyUsesNativePassword) {
  const std::string base = "name: a\nsource: mysql://app:pw@h/db\ntarget: mysql://h2/db\nproxy:\n  listen: h:1\n";
  auto s = ParseSpec(base, "m.yaml");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->proxy.auth, "");  // the plugin the source announces
  ASSERT_EQ(s->proxy.users.size(), 1u);
  EXPECT_EQ(s->proxy.users[0].name, "app");
  auto sha2 = ParseSpec(base + "  auth: caching_sha2_password\n", "m.yaml");
  ASSERT_TRUE(sha2.ok()) << sha2.status().message();
  EXPECT_EQ(sha2->proxy.auth, "caching_sha2_password");
  EXPECT_EQ(ParseSpec(base + "  auth: scram-sha-256\n", "m.yaml").status().message(),
            "m.yaml: field 'proxy.auth': 'scram-sha-256' is for PostgreSQL: a MySQL migration's proxy uses "
            "mysql_native_password, caching_sha2_password or client_ed25519");
  EXPECT_EQ(ParseSpec("name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\nproxy:\n  listen: h:1\n"
                      "  auth: mysql_native_password\n",
                      "m.yaml")
                .status()
                .message(),
            "m.yaml: field 'proxy.auth': mysql_native_password is for MySQL migrations: use scram-sha-256 or md5");
  // The proxy moves sessions by schema name: one database name on both sides.
  EXPECT_EQ(ParseSpec("name: a\nsource: mysql://app:pw@h/shop\ntarget: mysql://h2/shop_new\nproxy:\n  listen: h:1\n",
                      "m.yaml")
                .status()
                .message(),
            "m.yaml: field 'target': database 'shop_new' differs from the source's 'shop': the MySQL proxy moves "
            "sessions between servers by schema name and does not rewrite SQL; give the target database the "
            "source's name");
}

// Secrets kept out of the spec: ${VAR}, password files, PGPASSWORD / MYSQL_PWD.
class SpecSecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/midflight-spec-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes a password file NAME holding `text` with `mode`; returns its path.
  std::string File(const std::string& name, const std::string& text, mode_t mode = 0600) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    chmod(path.c_str(), mode);
    return path;
  }
  Result<MigrationSpec> Parse(const std::string& yaml) {
    return ParseSpec(yaml, "m.yaml", [this](const std::string& name) -> std::optional<std::string> {
      auto it = env_.find(name);
      if (it == env_.end()) return std::nullopt;
      return it->second;
    });
  }
  std::string Error(const std::string& yaml) {
    auto s = Parse(yaml);
    return s.ok() ? "(parsed)" : s.status().message();
  }

  std::string dir_;
  std::map<std::string, std::string> env_;
};

TEST_F(SpecSecretsTest, VariablesAreExpandedInEveryStringValue) {
  env_ = {{"SRC_PW", "s3cret"}, {"DB", "shop"}, {"WORKERS", "3"}, {"EMPTY", ""}};
  auto s = Parse("name: a\nsource: postgres://app:${SRC_PW}@db1/${DB}\ntarget: postgres://app@db2/shop${EMPTY}\n"
                 "copy_workers: ${WORKERS}\ntables: ['${DB}.*']\n"
                 "proxy:\n  listen: 'h:1'\n  users: [{name: app, password: '${SRC_PW}'}]\n");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->source, "postgres://app:s3cret@db1/shop");
  EXPECT_EQ(s->target, "postgres://app@db2/shop");
  EXPECT_EQ(s->copy_workers, 3);
  EXPECT_EQ(s->tables, std::vector<std::string>{"shop.*"});
  ASSERT_EQ(s->proxy.users.size(), 1u);
  EXPECT_EQ(s->proxy.users[0].password, "s3cret");
}

TEST_F(SpecSecretsTest, DollarDollarBraceIsALiteral) {
  env_ = {{"X", "x"}};
  auto s = Parse("name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\n"
                 "proxy:\n  listen: 'h:1'\n  users: [{name: app, password: 'a$${X}b$x${X}$'}]\n");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->proxy.users[0].password, "a${X}b$xx$");
}

TEST_F(SpecSecretsTest, AValueFromTheEnvironmentIsNotExpandedAgain) {
  env_ = {{"PW", "a${B}c"}};
  // Through an alias too: the aliased node is the anchor's own node.
  auto s = Parse("name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\n"
                 "proxy:\n  listen: 'h:1'\n  users: [{name: u1, password: &pw '${PW}'}, {name: u2, password: *pw}]\n");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->proxy.users[0].password, "a${B}c");
  EXPECT_EQ(s->proxy.users[1].password, "a${B}c");
}

TEST_F(SpecSecretsTest, UnsetOrMalformedVariableNamesTheFieldNotTheValue) {
  EXPECT_EQ(Error("name: a\nsource: postgres://app:${SRC_PW}@h/db\ntarget: postgres://h/db2\n"),
            "m.yaml: field 'source': environment variable SRC_PW is not set");
  EXPECT_EQ(Error("name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\n"
                  "proxy:\n  listen: 'h:1'\n  users: [{name: app, password: '${PROXY_PW}'}]\n"),
            "m.yaml: field 'proxy.users[0].password': environment variable PROXY_PW is not set");
  const std::string bad = "m.yaml: field 'target': has a '${' that is not '${NAME}' (NAME: letters, digits and _); "
                          "write a literal ${ as $${";
  EXPECT_EQ(Error("name: a\nsource: postgres://h/db\ntarget: 'postgres://u:hunter2${@h/db2'\n"), bad);
  EXPECT_EQ(Error("name: a\nsource: postgres://h/db\ntarget: 'postgres://u:${hun-ter2}@h/db2'\n"), bad);
  EXPECT_EQ(Error("name: a\nsource: postgres://h/db\ntarget: 'postgres://u:${}@h/db2'\n"), bad);
}

TEST_F(SpecSecretsTest, PasswordFileGoesIntoTheUriEncoded) {
  const std::string pw = "p@ss w%rd?#/:ü";
  File("src.pw", pw + "\n");
  File("dst.pw", "plain\r\n");
  auto s = Parse("name: a\nsource: postgres://app@db1:5432/shop?sslmode=disable\ntarget: postgres://app:@db2/shop\n"
                 "source_password_file: " + dir_ + "/src.pw\ntarget_password_file: " + dir_ + "/dst.pw\n");
  ASSERT_TRUE(s.ok()) << s.status().message();
  auto src = ParseUri(s->source);
  ASSERT_TRUE(src.ok()) << src.status().message();
  EXPECT_EQ(src->password, pw);
  EXPECT_EQ(src->user, "app");
  EXPECT_EQ(src->host, "db1");
  EXPECT_EQ(src->database, "shop");
  EXPECT_EQ(src->query, "sslmode=disable");
  EXPECT_EQ(ParseUri(s->target)->password, "plain");
  // Hidden as a password written in the URI is.
  EXPECT_EQ(RedactUri(s->source), "postgres://app:***@db1:5432/shop?sslmode=disable");
  EXPECT_EQ(ScrubSecrets("auth failed for " + s->source + " with " + pw, s->source),
            "auth failed for postgres://app:***@db1:5432/shop?sslmode=disable with ***");
}

TEST_F(SpecSecretsTest, ProxyUserPasswordFileAndDefaultUserTakeTheFilePassword) {
  File("app.pw", "apppw\n");
  File("ro.pw", "ropw");
  auto s = Parse("name: a\nsource: postgres://app@h/db\ntarget: postgres://h/db2\n"
                 "source_password_file: " + dir_ + "/app.pw\n"
                 "proxy:\n  listen: 'h:1'\n  users: [{name: ro, password_file: " + dir_ + "/ro.pw}]\n");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->proxy.users[0].name, "ro");
  EXPECT_EQ(s->proxy.users[0].password, "ropw");
  auto d = Parse("name: a\nsource: postgres://app@h/db\ntarget: postgres://h/db2\n"
                 "source_password_file: " + dir_ + "/app.pw\nproxy:\n  listen: 'h:1'\n");
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_EQ(d->proxy.users.size(), 1u);
  EXPECT_EQ(d->proxy.users[0].password, "apppw");
  EXPECT_EQ(Error("name: a\nsource: postgres://app@h/db\ntarget: postgres://h/db2\n"
                  "proxy:\n  listen: 'h:1'\n  users: [{name: ro, password: x, password_file: /x}]\n"),
            "m.yaml: field 'proxy.users': each entry needs name and password (or password_file)");
  EXPECT_EQ(Error("name: a\nsource: postgres://app@h/db\ntarget: postgres://h/db2\n"
                  "proxy:\n  listen: 'h:1'\n  users: [{name: ro, password: x, pasword: y}]\n"),
            "m.yaml: field 'proxy.users[0].pasword': unknown field");
  EXPECT_EQ(Error("name: a\nsource: postgres://app@h/db\ntarget: postgres://h/db2\n"
                  "proxy:\n  listen: 'h:1'\n  users: [{name: ro, password_file: " + dir_ + "/none}]\n"),
            "m.yaml: field 'proxy.users[0].password_file': cannot read " + dir_ + "/none: No such file or directory");
}

TEST_F(SpecSecretsTest, PasswordFileProblemsNameTheFieldAndPath) {
  const std::string base = "name: a\nsource: postgres://app@h/db\ntarget: postgres://app@h/db2\n";
  EXPECT_EQ(Error(base + "source_password_file: " + dir_ + "/missing\n"),
            "m.yaml: field 'source_password_file': cannot read " + dir_ + "/missing: No such file or directory");
  const std::string open = File("open.pw", "hunter2\n", 0640);
  EXPECT_EQ(Error(base + "target_password_file: " + open + "\n"),
            "m.yaml: field 'target_password_file': " + open +
                " is open to group or others (mode 0640); make it private: chmod 600 " + open);
  const std::string empty = File("empty.pw", "\n");
  EXPECT_EQ(Error(base + "source_password_file: " + empty + "\n"),
            "m.yaml: field 'source_password_file': " + empty + " is empty");
  const std::string two = File("two.pw", "hunter2\nsecond\n");
  EXPECT_EQ(Error(base + "source_password_file: " + two + "\n"),
            "m.yaml: field 'source_password_file': " + two +
                " holds more than one line (or a NUL byte); it must hold the password only");
  EXPECT_EQ(Error(base + "source_password_file: " + dir_ + "\n"),
            "m.yaml: field 'source_password_file': " + dir_ + " is not a regular file");
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(Error(base + "source_password_file: " + fifo + "\n"),
            "m.yaml: field 'source_password_file': " + fifo + " is not a regular file");
  const std::string big = File("big.pw", std::string(5000, 'x'));
  EXPECT_EQ(Error(base + "source_password_file: " + big + "\n"),
            "m.yaml: field 'source_password_file': " + big + " is larger than 4 kB; it must hold the password only");
  const std::string ok = File("ok.pw", "hunter2\n");
  EXPECT_EQ(Error("name: a\nsource: postgres://app:inline@h/db\ntarget: postgres://h/db2\n"
                  "source_password_file: " + ok + "\n"),
            "m.yaml: field 'source_password_file': 'source' has a password already: give it in one place");
  EXPECT_EQ(Error("name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\nsource_password_file: " + ok + "\n"),
            "m.yaml: field 'source_password_file': 'source' names no user to go with the password "
            "(scheme://USER@host/database)");
  EXPECT_EQ(Error(base + "source_replica_password_file: " + ok + "\n"),
            "m.yaml: field 'source_replica_password_file': is set but 'source_replica' is not");
  for (const std::string& e : {Error(base + "target_password_file: " + open + "\n"),
                               Error(base + "source_password_file: " + two + "\n")})
    EXPECT_EQ(e.find("hunter2"), std::string::npos) << e;
}

TEST_F(SpecSecretsTest, ConventionalVariablesFillAUriWithAUserAndNoPassword) {
  env_ = {{"PGPASSWORD", "pg:pw@1"}, {"MYSQL_PWD", "my%pw"}};
  auto pg = Parse("name: a\nsource: postgres://app@h/db\ntarget: postgres://admin:own@h2/db\n");
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  EXPECT_EQ(ParseUri(pg->source)->password, "pg:pw@1");
  EXPECT_EQ(ParseUri(pg->target)->password, "own");  // a password written wins
  auto nouser = Parse("name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\n");
  ASSERT_TRUE(nouser.ok()) << nouser.status().message();
  EXPECT_EQ(nouser->source, "postgres://h/db");  // libpq takes PGPASSWORD itself
  auto my = Parse("name: a\nsource: mysql://app@h/db\nsource_replica: mysql://rep@r/db\ntarget: mysql://app@h2/db\n");
  ASSERT_TRUE(my.ok()) << my.status().message();
  EXPECT_EQ(ParseUri(my->source)->password, "my%pw");
  EXPECT_EQ(ParseUri(my->source_replica)->password, "my%pw");
  EXPECT_EQ(ParseUri(my->target)->password, "my%pw");
  // A file wins over the variable.
  File("t.pw", "fromfile\n");
  auto f = Parse("name: a\nsource: postgres://app@h/db\ntarget: postgres://app@h/db2\ntarget_password_file: " + dir_ +
                 "/t.pw\n");
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(ParseUri(f->target)->password, "fromfile");
  EXPECT_EQ(ParseUri(f->source)->password, "pg:pw@1");
}

}  // namespace midflight
