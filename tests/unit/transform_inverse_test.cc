// TableTransform::Inverse: reverse replication carries a change of the
// transformed target table back to the source table, or refuses naming the
// transform that has no inverse.
#include <gtest/gtest.h>

#include <set>

#include "core/transform.h"
#include "test_tables.h"

namespace midflight {
using namespace testing;

namespace {

// public."order items" (id bigint key, "select" text, price numeric(10,2),
// qty_text text, made timestamp, note text, secret text NOT NULL (with a default), doc jsonb)
std::shared_ptr<const TableSchema> Items() {
  auto t = std::make_shared<TableSchema>();
  t->id = {"public", "order items"};
  t->columns = {Col("id", Type(TypeKind::kInt, "bigint", 8)),       Col("select", Type(TypeKind::kText, "text")),
                Col("price", Type(TypeKind::kDecimal, "numeric(10,2)")), Col("qty_text", Type(TypeKind::kText, "text")),
                Col("made", Type(TypeKind::kTimestamp, "timestamp without time zone")),
                Col("note", Type(TypeKind::kText, "text")),       Col("secret", Type(TypeKind::kText, "text")),
                Col("doc", Type(TypeKind::kJson, "jsonb"))};
  t->columns[6].not_null = true;
  t->key = {0};
  t->key_kind = KeyKind::kPrimaryKey;
  t->Finalize();
  return t;
}

// Renamed table and columns, an excluded column, casts with inverses, an added column.
TableTransformSpec Reversible() {
  TableTransformSpec s;
  s.table = "public.order items";
  s.rename = "line items";
  s.exclude = {"note", "doc"};
  s.columns = {{"select", "picked", "", ""},
               {"price", "", "numeric_to_text", ""},
               {"qty_text", "qty", "text_to_int", ""},
               {"made", "", "timestamp_to_timestamptz", "+02:00"},
               {"id", "", "int_to_text", ""}};
  s.add = {{"total", "price * qty_text"}};
  return s;
}

std::shared_ptr<const TableTransform> Bound(const TableTransformSpec& s, std::shared_ptr<const TableSchema> t = Items()) {
  auto b = TableTransform::Bind(s, std::move(t));
  EXPECT_TRUE(b.ok()) << b.status().message();
  return b.ok() ? *b : nullptr;
}

// The source's columns with a default: secret.
std::string InverseError(const TableTransformSpec& s, std::shared_ptr<const TableSchema> t = Items(),
                         std::set<std::string> defaulted = {"secret"}) {
  auto inv = Bound(s, std::move(t))->Inverse(nullptr, &defaulted);
  return inv.ok() ? "ok" : inv.status().message();
}

std::string Shape(const TableSchema& t) {
  std::string out = t.id.ToString() + "(";
  for (size_t i = 0; i < t.columns.size(); ++i) out += (i ? "," : "") + t.columns[i].name + ":" + t.columns[i].type.native;
  return out + ") key " + t.KeyDescription();
}

std::string Texts(const std::vector<Datum>& row) {
  std::string out;
  for (const auto& d : row)
    out += (out.empty() ? "" : "|") + (d.is_null() ? std::string("NULL") : d.is_unchanged() ? "~" : d.text);
  return out;
}

Change On(ChangeKind kind, std::shared_ptr<const TableSchema> t, std::vector<Datum> values, std::vector<Datum> old = {}) {
  Change c;
  c.kind = kind;
  c.table = std::move(t);
  c.values = std::move(values);
  c.old = std::move(old);
  return c;
}

}  // namespace

TEST(TransformInverseTest, WritesTheCarriedSourceColumnsUnderTheirOwnNamesAndTypes) {
  auto fwd = Bound(Reversible());
  auto inv = fwd->Inverse();
  ASSERT_TRUE(inv.ok()) << inv.status().message();
  EXPECT_EQ((*inv)->source().id.ToString(), "public.line items");
  EXPECT_EQ(Shape(*(*inv)->target()),
            "public.order items(id:bigint,select:text,price:numeric(10,2),qty_text:text,made:timestamp without time "
            "zone,secret:text) key (id)");
}

TEST(TransformInverseTest, RowGoesBackThroughTheInverseCasts) {
  auto fwd = Bound(Reversible());
  auto inv = *fwd->Inverse();
  // Forward, then back: the carried values come back as the source had them.
  std::vector<Datum> src = {T("42"), T("it's"), T("19.50"), T("3"), T("2024-03-01 10:00:00.5"), T("n"), T("s"),
                            T("{}")};
  auto there = fwd->Row(src);
  ASSERT_TRUE(there.ok() && *there);
  EXPECT_EQ(Texts(**there), "42|it's|19.50|3|2024-03-01 10:00:00.5+02:00|s|58.50");
  // The target prints the instant in its own zone.
  std::vector<Datum> read = **there;
  read[4] = T("2024-03-01 08:00:00.5+00");
  auto back = inv->Row(read);
  ASSERT_TRUE(back.ok() && *back) << back.status().message();
  EXPECT_EQ(Texts(**back), "42|it's|19.50|3|2024-03-01 10:00:00.5|s");
}

TEST(TransformInverseTest, TimestamptzGoesBackAcrossDayAndYearBoundaries) {
  TableTransformSpec s;
  s.table = "public.order items";
  s.columns = {{"made", "", "timestamp_to_timestamptz", "-05:30"}};
  auto inv = *Bound(s)->Inverse();
  auto made = [&](const char* v) {
    std::vector<Datum> row = {T("1"), T("a"), T("1.00"), T("1"), T(v), T("n"), T("s"), T("{}")};
    auto r = inv->Row(row);
    return r.ok() ? (*r)->at(4).text : r.status().message();
  };
  EXPECT_EQ(made("2024-01-01 03:00:00+00"), "2023-12-31 21:30:00");
  EXPECT_EQ(made("2024-02-29 23:59:59.999999+01:00"), "2024-02-29 17:29:59.999999");
  EXPECT_EQ(made("2024-03-01T00:00:00Z"), "2024-02-29 18:30:00");
  EXPECT_EQ(made("infinity"), "infinity");
  EXPECT_EQ(made("yesterday"),
            "transform of table public.order items key (id)=(1) column made: 'yesterday' is not a timestamp with a "
            "zone offset, years 1 to 9999 (cast timestamptz_to_timestamp, the inverse of timestamp_to_timestamptz)");
}

TEST(TransformInverseTest, UpdateCarriesOnlyTheCarriedColumnsAndKeyMovesMapBack) {
  auto fwd = Bound(Reversible());
  auto inv = *fwd->Inverse();
  auto target = fwd->target();
  // id, picked, price, qty, made, secret, total
  Change up = On(ChangeKind::kUpdate, target,
                 {T("8"), T("b"), T("2.00"), T("5"), Datum::Unchanged(), T("s"), T("10.00")}, {T("7"), Datum::Null(),
                 Datum::Null(), Datum::Null(), Datum::Null(), Datum::Null(), Datum::Null()});
  auto back = inv->Apply(up);
  ASSERT_TRUE(back.ok() && *back) << back.status().message();
  EXPECT_EQ((*back)->table, inv->target());
  EXPECT_EQ(Texts((*back)->values), "8|b|2.00|5|~|s");
  EXPECT_EQ(Texts((*back)->old), "7|NULL|NULL|NULL|NULL|NULL");
  Change del = On(ChangeKind::kDelete, target, {}, {T("8"), Datum::Null(), Datum::Null(), Datum::Null(),
                                                     Datum::Null(), Datum::Null(), Datum::Null()});
  auto gone = inv->Apply(del);
  ASSERT_TRUE(gone.ok() && *gone);
  EXPECT_EQ(Texts((*gone)->old), "8|NULL|NULL|NULL|NULL|NULL");
}

TEST(TransformInverseTest, AValueTheInverseCannotReadStopsNamingIt) {
  // price is text on the target (numeric_to_text): the application may write anything there.
  auto inv = *Bound(Reversible())->Inverse();
  auto r = inv->Row({T("9"), T("x"), T("cheap"), T("3"), T("2024-01-01 00:00:00+00"), T("s"), T("0")});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "transform of table public.line items key (id)=(9) column price: 'cheap' is not a number (cast "
            "text_to_numeric)");
}

TEST(TransformInverseTest, KeyTimestampIsMappedBackInTheKeyImage) {
  auto t = std::make_shared<TableSchema>(*Items());
  t->key = {4};
  t->Finalize();
  TableTransformSpec s;
  s.table = "public.order items";
  s.columns = {{"made", "at", "timestamp_to_timestamptz", "UTC"}};
  auto fwd = Bound(s, t);
  auto inv = *fwd->Inverse();
  std::vector<Datum> old(8);
  old[4] = T("2024-05-05 12:00:00+03");
  auto back = inv->Apply(On(ChangeKind::kDelete, fwd->target(), {}, old));
  ASSERT_TRUE(back.ok() && *back);
  EXPECT_EQ((*back)->old[4].text, "2024-05-05 09:00:00");
}

TEST(TransformInverseTest, RefusesAFilterNamingIt) {
  TableTransformSpec s = Reversible();
  s.filter = "price > 10";
  EXPECT_EQ(InverseError(s),
            "transforms.public.order items.filter: 'price > 10' cannot be reversed: a row written on the target that "
            "the filter would have left out has no place on the source; keep writes on the source, or migrate "
            "without the filter");
}

TEST(TransformInverseTest, RefusesLossyCastsNamingTheColumn) {
  TableTransformSpec s;
  s.table = "public.order items";
  s.columns = {{"select", "", "lower", ""}};
  EXPECT_EQ(InverseError(s),
            "transforms.public.order items.columns.select.cast: lower cannot be reversed: the original case is gone; "
            "keep writes on the source, or migrate the column without the cast");
  s.columns = {{"doc", "", "json_to_text", ""}};
  EXPECT_EQ(InverseError(s),
            "transforms.public.order items.columns.doc.cast: json_to_text cannot be reversed: the target holds free "
            "text, which the source's JSON column may refuse or reformat; keep writes on the source, or migrate the "
            "column without the cast");
  s.columns = {{"select", "", "trim", ""}};
  EXPECT_NE(InverseError(s).find("columns.select.cast: trim cannot be reversed"), std::string::npos);
}

TEST(TransformInverseTest, RefusesADroppedNotNullColumnWithoutDefault) {
  auto t = std::make_shared<TableSchema>(*Items());
  t->columns[5].not_null = true;  // note
  TableTransformSpec s;
  s.table = "public.order items";
  s.exclude = {"note"};
  EXPECT_EQ(InverseError(s, t),
            "transforms.public.order items.exclude: column 'note' is left out on the target and is NOT NULL without "
            "a default on the source, so a row inserted on the target cannot be written back; give it a default on "
            "the source (ALTER TABLE ... ALTER COLUMN ... SET DEFAULT), or keep writes on the source");
  EXPECT_EQ(InverseError(s, t, {"note", "secret"}), "ok");
  // Without the catalog's answer (a check before the servers are asked), it is not checked.
  EXPECT_TRUE(Bound(s, t)->Inverse().ok());
  // include leaves out the rest: secret is NOT NULL with a default, note nullable.
  s.exclude.clear();
  s.include = {"id", "select"};
  EXPECT_EQ(InverseError(s), "ok");
  EXPECT_NE(InverseError(s, Items(), {}).find("column 'secret' is left out"), std::string::npos);
}

TEST(TransformInverseTest, TheTargetAsReadMustHaveTheTransformsColumns) {
  auto fwd = Bound(Reversible());
  auto read = std::make_shared<TableSchema>(*fwd->target());
  read->columns[1].name = "chosen";
  read->Finalize();
  auto inv = fwd->Inverse(read);
  ASSERT_FALSE(inv.ok());
  EXPECT_EQ(inv.status().message(),
            "reverse replication: table public.line items has the columns (id, chosen, price, qty, made, secret, "
            "total) on the target, not the (id, picked, price, qty, made, secret, total) transforms.public.order "
            "items made; make them match, or keep writes on the source");
  // The catalog's own copy of the same shape binds, and changes read with it map back.
  auto same = std::make_shared<TableSchema>(*fwd->target());
  auto ok = fwd->Inverse(same);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  auto back = (*ok)->Apply(On(ChangeKind::kInsert, same, {T("1"), T("a"), T("1.00"), T("2"),
                                                          T("2024-01-01 00:00:00+02"), T("s"), T("2.00")}));
  ASSERT_TRUE(back.ok() && *back);
  EXPECT_EQ(Texts((*back)->values), "1|a|1.00|2|2024-01-01 00:00:00|s");
}

}  // namespace midflight
