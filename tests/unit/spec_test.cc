#include "control/spec.h"

#include <gtest/gtest.h>

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
  auto mixed = ParseSpec("name: a\nsource: mysql://h/db\ntarget: postgres://h/db2\n", "m.yaml");
  EXPECT_EQ(mixed.status().message(),
            "m.yaml: field 'target': must use the same engine as source (mysql:// to mysql://, postgres:// to postgres://)");
  auto replica = ParseSpec("name: a\nsource: postgres://h/db\ntarget: postgres://h/db2\nsource_replica: postgres://r/db\n",
                           "m.yaml");
  EXPECT_EQ(replica.status().message(),
            "m.yaml: field 'source_replica': is for mysql:// sources: a replica of the source to read from");
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
            "m.yaml: field 'proxy.users': each entry needs name and password");
}

}  // namespace midflight
