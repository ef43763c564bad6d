// Verify of a transformed table whose key column is cast, and after the
// write switch (engines/cross/cross_verify.h Reshape::KeyCast,
// engines/cross/canon_sides.h Reversed): how keys and chunk bounds are mapped.
#include <gtest/gtest.h>

#include "core/transform.h"
#include "engines/cross/canon_sides.h"
#include "engines/cross/cross_verify.h"
#include "test_tables.h"

namespace midflight::cross {
namespace {

using midflight::testing::Col;
using midflight::testing::Type;

// public."Key ""Codes""" (id integer key, made timestamp, v text)
std::shared_ptr<const TableSchema> Codes() {
  auto t = std::make_shared<TableSchema>();
  t->id = {"public", "Key \"Codes\""};
  t->columns = {Col("id", Type(TypeKind::kInt, "integer", 4)),
                Col("made", Type(TypeKind::kTimestamp, "timestamp without time zone")),
                Col("v", Type(TypeKind::kText, "text"))};
  t->key = {0, 1};
  t->key_kind = KeyKind::kPrimaryKey;
  t->Finalize();
  return t;
}

std::shared_ptr<const TableTransform> Bound(TableTransformSpec spec) {
  auto bound = TableTransform::Bind(spec, Codes());
  EXPECT_TRUE(bound.ok()) << bound.status().message();
  return *bound;
}

TableTransformSpec CastKeys() {
  TableTransformSpec s;
  s.table = "public.Key \"Codes\"";
  s.rename = "key codes";
  s.columns = {{"id", "code", "int_to_text", ""}, {"made", "", "timestamp_to_timestamptz", "+02:00"}};
  s.add = {{"label", "concat(v, '-', id)"}};
  return s;
}

TEST(CrossVerifyKeysTest, CastKeyColumnsAreMappedNotSkipped) {
  const CanonTable t = PgReshaped(Bound(CastKeys()));
  EXPECT_EQ(t.skipped, "");
  ASSERT_NE(t.reshape, nullptr);
  ASSERT_EQ(t.reshape->key_casts.size(), 2u);
  EXPECT_EQ(t.reshape->key_casts[0].cast, "int_to_text");
  EXPECT_EQ(t.reshape->key_casts[1].cast, "timestamp_to_timestamptz");
  EXPECT_EQ(t.reshape->key_casts[1].zone_minutes, 120);
  EXPECT_EQ(t.reshape->where, "transforms.public.Key \"Codes\"");
  EXPECT_EQ(t.reshape->computed, std::vector<int>{3});
  // The target's key columns compare by their new types; the source's keep theirs.
  EXPECT_EQ(t.columns[static_cast<size_t>(t.key[0])].kind, Canon::kText);
  EXPECT_EQ(t.reshape->source.columns[0].kind, Canon::kNumber);
}

TEST(CrossVerifyKeysTest, TargetKeysMapBackToTheSourceKeysThatCastToThem) {
  const CanonTable t = PgReshaped(Bound(CastKeys()));
  const Reshape& r = *t.reshape;
  // 2024-01-01 00:00:00+00 as the target's instant is 02:00 wall-clock time in +02:00.
  const std::string instant = "1704067200000000", wall = "1704074400000000";
  EXPECT_EQ(SourceKeyOf(r, {"42", instant}), (CanonKey{"42", wall}));
  EXPECT_EQ(SourceKeyOf(r, {"-7", "infinity"}), (CanonKey{"-7", "infinity"}));
  EXPECT_EQ(SourceKeyOf(r, {"2147483647", instant}), (CanonKey{"2147483647", wall}));
  // No integer of the source column prints so: no source row can hold it.
  for (const char* text : {"042", "x 1", "", "-0", "4.0", "2147483648", "-2147483649", "+1", "1 "})
    EXPECT_EQ(SourceKeyOf(r, {text, instant}), std::nullopt) << text;
  EXPECT_EQ(SourceKeyOf(r, {"-2147483648", instant}), (CanonKey{"-2147483648", wall}));

  // Chunk bounds: the zone shifts a timestamp both ways; int_to_text keeps the number.
  EXPECT_EQ(TargetBoundOf(r.key_casts[1], wall), instant);
  EXPECT_EQ(SourceBoundOf(r.key_casts[1], instant), wall);
  EXPECT_EQ(TargetBoundOf(r.key_casts[1], "infinity"), "infinity");
  EXPECT_EQ(TargetBoundOf(r.key_casts[0], "17"), "17");
}

TEST(CrossVerifyKeysTest, AfterTheSwitchTheTargetIsTheReferenceAndComputedColumnsAreNotCompared) {
  CanonTable forward = PgReshaped(Bound(CastKeys()));
  const CanonTable t = Reversed(forward, nullptr);
  EXPECT_TRUE(t.reversed);
  EXPECT_EQ(t.skipped, "");
  ASSERT_NE(t.reshape, nullptr);
  for (size_t i = 0; i < t.columns.size(); ++i) EXPECT_EQ(t.columns[i].compared, i != 3) << t.columns[i].pg.name;
  // A table verify cannot check stays named.
  forward.reshape = nullptr;
  forward.skipped = "no key";
  EXPECT_EQ(Reversed(forward, nullptr).skipped, "no key");
  EXPECT_FALSE(Reversed(forward, nullptr).reversed);
}

}  // namespace
}  // namespace midflight::cross
