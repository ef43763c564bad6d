#include "core/transform.h"

#include <gtest/gtest.h>

#include "control/spec.h"
#include "pipeline/transform_sink.h"
#include "test_tables.h"

namespace midflight {
using namespace testing;

namespace {

// public.orders (id bigint key, qty_text text, price numeric(10,2), status text,
// made timestamp(3), note text, secret text, doc jsonb)
std::shared_ptr<const TableSchema> Orders() {
  auto t = std::make_shared<TableSchema>();
  t->id = {"public", "orders"};
  ColumnType ts = Type(TypeKind::kTimestamp, "timestamp(3) without time zone");
  ts.precision = 3;
  t->columns = {Col("id", Type(TypeKind::kInt, "bigint", 8)),    Col("qty_text", Type(TypeKind::kText, "text")),
                Col("price", Type(TypeKind::kDecimal, "numeric(10,2)")), Col("status", Type(TypeKind::kText, "text")),
                Col("made", ts),                                 Col("note", Type(TypeKind::kText, "text")),
                Col("secret", Type(TypeKind::kText, "text")),    Col("doc", Type(TypeKind::kJson, "jsonb"))};
  t->key = {0};
  t->key_kind = KeyKind::kPrimaryKey;
  t->Finalize();
  return t;
}

std::vector<Datum> Row(const char* id, const char* qty, const char* price, const char* status,
                       Datum note = T("n")) {
  return {T(id), T(qty), T(price), T(status), T("2024-03-01 10:00:00.5"), note, T("s3cret"), T("{\"a\": 1}")};
}

TableTransformSpec FullSpec() {
  TableTransformSpec s;
  s.table = "public.orders";
  s.rename = "sales";
  s.exclude = {"secret"};
  s.columns = {{"qty_text", "qty", "text_to_int", ""},
               {"made", "", "timestamp_to_timestamptz", "+02:00"},
               {"doc", "doc_text", "json_to_text", ""},
               {"status", "", "upper", ""}};
  s.add = {{"total", "price * qty_text"}, {"label", "concat(status, '#', id)"}, {"mask", "sha256(secret)"}};
  s.filter = "status <> 'cancelled' and price >= 10";
  return s;
}

std::string Names(const TableSchema& t) {
  std::string out;
  for (const auto& c : t.columns) out += (out.empty() ? "" : ",") + c.name + ":" + c.type.native;
  return out;
}

std::string Texts(const std::vector<Datum>& row) {
  std::string out;
  for (const auto& d : row) out += (out.empty() ? "" : "|") + (d.is_null() ? std::string("NULL") : d.text);
  return out;
}

std::shared_ptr<const TableTransform> Bound(const TableTransformSpec& s) {
  auto b = TableTransform::Bind(s, Orders());
  EXPECT_TRUE(b.ok()) << b.status().message();
  return b.ok() ? *b : nullptr;
}

std::string BindError(const TableTransformSpec& s) {
  auto b = TableTransform::Bind(s, Orders());
  return b.ok() ? "ok" : b.status().message();
}

}  // namespace

TEST(TransformTest, TargetShapeIsRenamedCastAndExtended) {
  auto t = Bound(FullSpec());
  EXPECT_EQ(t->target()->id.ToString(), "public.sales");
  EXPECT_EQ(Names(*t->target()),
            "id:bigint,qty:bigint,price:numeric(10,2),status:text,made:timestamp(3) with time zone,note:text,"
            "doc_text:text,total:numeric,label:text,mask:text");
  EXPECT_EQ(t->target()->key, std::vector<int>{0});
  // Where each target column comes from (the casting table of a MySQL target reads it).
  std::vector<int> from;
  for (size_t i = 0; i < t->target()->columns.size(); ++i) from.push_back(t->SourceColumn(i));
  EXPECT_EQ(from, (std::vector<int>{0, 1, 2, 3, 4, 5, 7, -1, -1, -1}));
}

TEST(TransformTest, RowIsTransformed) {
  auto t = Bound(FullSpec());
  auto r = t->Row(Row("7", " 3 ", "12.50", "paid"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ(Texts(**r),
            "7|3|12.50|PAID|2024-03-01 10:00:00.5+02:00|n|{\"a\": 1}|37.50|paid#7|"
            "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0");
}

TEST(TransformTest, FilterDropsRows) {
  auto t = Bound(FullSpec());
  auto cancelled = t->Row(Row("7", "3", "12.50", "cancelled"));
  ASSERT_TRUE(cancelled.ok());
  EXPECT_FALSE(cancelled->has_value());
  auto cheap = t->Row(Row("7", "3", "9.99", "paid"));
  ASSERT_TRUE(cheap.ok());
  EXPECT_FALSE(cheap->has_value());
  auto null_status = t->Row({T("7"), T("3"), T("12"), Datum::Null(), T("2024-03-01 10:00:00"), T("n"), T("s"),
                             T("{}")});
  ASSERT_TRUE(null_status.ok());
  EXPECT_FALSE(null_status->has_value()) << "a comparison with NULL is false";
}

TEST(TransformTest, BadValueStopsNamingTableKeyColumnAndValue) {
  auto t = Bound(FullSpec());
  auto r = t->Row(Row("42", "three", "12.50", "paid"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "transform of table public.orders key (id)=(42) column qty_text: 'three' is not an integer (cast "
            "text_to_int)");
}

TEST(TransformTest, ArithmeticIsExact) {
  TableTransformSpec s;
  s.table = "orders";
  s.add = {{"a", "price * 3 - 0.01"}, {"b", "coalesce(note, 'none')"}, {"c", "-price + 1"}};
  auto t = Bound(s);
  auto r = t->Row(Row("1", "2", "0.10", "x", Datum::Null()));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(Texts(**r).substr(Texts(**r).rfind("{\"a\": 1}") + 9), "0.29|none|0.90");
}

TEST(TransformTest, ChangesFollowTheFilter) {
  auto t = Bound(FullSpec());
  auto src = Orders();
  Change ins = Make(ChangeKind::kInsert, src, 10, 1, Row("1", "1", "20", "cancelled"));
  ins.log_offset = 42;  // read from Kafka by an apply worker
  auto a = t->Apply(ins);
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->log_offset, 42) << "a fenced worker's sink records the batch's offset with its checkpoint";
  EXPECT_EQ((*a)->kind, ChangeKind::kDelete)
      << "an insert the filter refuses deletes its key: collapsing makes full-image updates inserts";
  EXPECT_EQ((*a)->check, ConflictCheck::kNone);

  Change enter = Make(ChangeKind::kUpdate, src, 10, 2, Row("1", "1", "20", "paid"));
  enter.check = ConflictCheck::kUpdate;
  a = t->Apply(enter);
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->kind, ChangeKind::kInsert) << "a row entering the filter is upserted";
  EXPECT_EQ((*a)->check, ConflictCheck::kNone);
  EXPECT_EQ((*a)->table->id.ToString(), "public.sales");

  Change leave = Make(ChangeKind::kUpdate, src, 10, 3, Row("1", "1", "20", "cancelled"));
  a = t->Apply(leave);
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->kind, ChangeKind::kDelete) << "a row leaving the filter is deleted";
  EXPECT_EQ((*a)->old[0].text, "1");
  EXPECT_EQ((*a)->KeyText(), "1");

  Change unchanged = Make(ChangeKind::kUpdate, src, 10, 4, Row("1", "1", "20", "paid", Datum::Unchanged()));
  a = t->Apply(unchanged);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("column note: the source did not resend"), std::string::npos)
      << a.status().message();
}

TEST(TransformTest, WithoutFilterUnchangedValuesPassThrough) {
  TableTransformSpec s;
  s.table = "public.orders";
  s.columns = {{"note", "remark", "", ""}};
  auto t = Bound(s);
  Change u = Make(ChangeKind::kUpdate, Orders(), 10, 1, Row("1", "1", "20", "paid", Datum::Unchanged()));
  u.check = ConflictCheck::kUpdate;
  auto a = t->Apply(u);
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->kind, ChangeKind::kUpdate);
  EXPECT_EQ((*a)->check, ConflictCheck::kUpdate);
  EXPECT_TRUE((*a)->values[5].is_unchanged());
}

TEST(TransformTest, KeyRulesAreEnforced) {
  TableTransformSpec s;
  s.table = "public.orders";
  s.exclude = {"id"};
  EXPECT_EQ(BindError(s),
            "transforms.public.orders.exclude: key column 'id' of public.orders cannot be left out: rows are "
            "matched and ordered by their key (id)");
  s.exclude.clear();
  s.include = {"price"};
  EXPECT_NE(BindError(s).find("key column 'id'"), std::string::npos);
  s.include.clear();
  s.columns = {{"id", "", "int_to_text", ""}};
  EXPECT_EQ(BindError(s), "ok");
  auto history = TableTransform::Bind(s, History());
  ASSERT_FALSE(history.ok());
  EXPECT_NE(history.status().message().find("has no primary key"), std::string::npos);
}

TEST(TransformTest, BindErrorsNameTableColumnAndPart) {
  TableTransformSpec s;
  s.table = "public.orders";
  s.columns = {{"nope", "x", "", ""}};
  EXPECT_EQ(BindError(s), "transforms.public.orders.columns.nope: 'nope' is not a column of public.orders");
  s.columns = {{"price", "", "text_to_int", ""}};
  EXPECT_EQ(BindError(s),
            "transforms.public.orders.columns.price.cast: text_to_int does not apply to column 'price' of type "
            "numeric(10,2)");
  s.columns.clear();
  s.add = {{"x", "made * 2"}};
  EXPECT_EQ(BindError(s), "transforms.public.orders.add.x: 'made * 2': arithmetic needs numbers; column made is "
                          "not one");
  s.add = {{"note", "'a'"}};
  EXPECT_EQ(BindError(s), "transforms.public.orders.add.note: the target has a column named 'note' already");
  s.add.clear();
  s.filter = "missing = 1";
  EXPECT_EQ(BindError(s), "transforms.public.orders.filter: 'missing = 1': 'missing' is not a column of public.orders");
}

TEST(TransformTest, SyntaxErrorsNameTheBadPart) {
  TableTransformSpec s;
  s.table = "public.orders";
  s.filter = "status = = 'x'";
  EXPECT_EQ(CheckTransformSyntax(s).message(),
            "transforms.public.orders.filter: 'status = = 'x'': unexpected '=' at offset 9");
  s.filter = "price";
  EXPECT_EQ(CheckTransformSyntax(s).ok(), true) << "a boolean column is checked at bind";
  s.filter = "price + 1";
  EXPECT_EQ(CheckTransformSyntax(s).message(), "transforms.public.orders.filter: 'price + 1' is a value, not a condition");
  s.filter.clear();
  s.add = {{"x", "md5(note)"}};
  EXPECT_EQ(CheckTransformSyntax(s).message(),
            "transforms.public.orders.add.x: 'md5(note)': unknown function 'md5' at offset 0 (concat, coalesce, "
            "lower, upper, trim, sha256)");
  s.add = {{"x", "concat('a"}};
  EXPECT_EQ(CheckTransformSyntax(s).message(), "transforms.public.orders.add.x: 'concat('a': unterminated 'text' at offset 7");
  s.add.clear();
  s.columns = {{"made", "", "timestamp_to_timestamptz", "Europe/Paris"}};
  EXPECT_EQ(CheckTransformSyntax(s).message(),
            "transforms.public.orders.columns.made.zone: 'Europe/Paris' is not a zone: UTC, +HH or +HH:MM "
            "(timestamp_to_timestamptz needs one)");
  s.columns = {{"made", "", "to_date", ""}};
  EXPECT_NE(CheckTransformSyntax(s).message().find("'to_date' is not a cast"), std::string::npos);
}

TEST(TransformTest, SpecSectionParses) {
  const char* yaml = R"(
name: m
source: postgres://u@h/db
target: postgres://u@h2/db
transforms:
  public.orders:
    rename: sales
    exclude: [secret]
    columns:
      qty_text: {rename: qty, cast: text_to_int}
      made: {cast: timestamp_to_timestamptz, zone: "+02:00"}
    add:
      total: price * qty_text
    filter: status <> 'cancelled'
)";
  auto spec = ParseSpec(yaml, "SPEC", [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  ASSERT_EQ(spec->transforms.size(), 1u);
  const auto& t = spec->transforms[0];
  EXPECT_EQ(t.rename, "sales");
  EXPECT_EQ(t.columns.size(), 2u);
  EXPECT_EQ(t.columns[1].zone, "+02:00");
  EXPECT_EQ(t.add[0].expr, "price * qty_text");
  EXPECT_EQ(t.filter, "status <> 'cancelled'");

  std::string bad = yaml;
  bad.replace(bad.find("text_to_int"), 11, "text_to_bool");
  auto err = ParseSpec(bad, "SPEC", [](const std::string&) { return std::nullopt; });
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find("SPEC: transforms.public.orders.columns.qty_text.cast: 'text_to_bool' is not "
                                        "a cast"),
            std::string::npos)
      << err.status().message();
  bad = yaml;
  bad.replace(bad.find("filter"), 6, "filtre");
  err = ParseSpec(bad, "SPEC", [](const std::string&) { return std::nullopt; });
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.status().message(), "SPEC: field 'transforms.public.orders.filtre': unknown field");

  // Every pairing applies them, MySQL -> MySQL too; there a rename into
  // another database and a cast to a zoned timestamp are refused by name.
  bad = yaml;
  bad.replace(bad.find("target: postgres://u@h2/db"), 26, "target: mysql://u@h2/db   ");
  EXPECT_TRUE(ParseSpec(bad, "SPEC", [](const std::string&) { return std::nullopt; }).ok());
  bad.replace(bad.find("source: postgres://u@h/db"), 25, "source: mysql://u@h/db");
  err = ParseSpec(bad, "SPEC", [](const std::string&) { return std::nullopt; });
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.status().message(),
            "SPEC: field 'transforms.public.orders.columns.made.cast': timestamp_to_timestamptz is not applied on "
            "mysql:// -> mysql:// migrations: MySQL has no column type that keeps a time zone (a TIMESTAMP column "
            "already travels as UTC)");
  const std::string zoned = "made: {cast: timestamp_to_timestamptz, zone: \"+02:00\"}";
  bad.replace(bad.find(zoned), zoned.size(), "made: {cast: trim}");
  EXPECT_TRUE(ParseSpec(bad, "SPEC", [](const std::string&) { return std::nullopt; }).ok())
      << ParseSpec(bad, "SPEC", [](const std::string&) { return std::nullopt; }).status().message();
  bad.replace(bad.find("rename: sales"), 13, "rename: b.sales");
  err = ParseSpec(bad, "SPEC", [](const std::string&) { return std::nullopt; });
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.status().message(),
            "SPEC: field 'transforms.public.orders.rename': 'b.sales' names a database: a mysql:// target puts every "
            "table in the database its URI names; rename to a table name");
}

TEST(TransformTest, BindTransformsNamesAnUnusedEntry) {
  TableTransformSpec s;
  s.table = "public.nothere";
  s.rename = "x";
  auto r = BindTransforms({s}, {Orders()});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "transforms.public.nothere: names no migrated table");
  s.table = "orders";
  s.rename = "accounts";
  r = BindTransforms({s}, {Orders(), Accounts()});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "transforms.public.orders: the target table public.accounts is also where public.accounts goes");
}

TEST(TransformTest, SinkRewritesAndMapsConflictsBack) {
  class Recorder final : public ChangeSink {
   public:
    std::vector<Change> seen;
    Result<ChangePosition> LoadCheckpoint() override { return ChangePosition{}; }
    Status ApplyBatch(std::span<const Change> changes, ChangePosition, BatchConflicts* conflicts) override {
      seen.assign(changes.begin(), changes.end());
      conflicts->found.push_back({ConflictKind::kUpdateMissing, &changes[changes.size() - 1]});
      return Status::Ok();
    }
    Status ApplyBarrier(const Change&, uint32_t) override { return Status::Ok(); }
    Status Reconnect() override { return Status::Ok(); }
  };
  auto inner = std::make_unique<Recorder>();
  Recorder* rec = inner.get();
  auto map = std::make_shared<TransformMap>(TransformsBySource({Bound(FullSpec())}));
  TransformSink sink(std::move(inner), map);
  auto src = Orders();
  std::vector<Change> batch = {Make(ChangeKind::kInsert, src, 10, 1, Row("1", "1", "20", "cancelled")),
                               Make(ChangeKind::kInsert, Accounts(), 10, 2, {T("5"), T("1"), T("x")}),
                               Make(ChangeKind::kInsert, src, 10, 3, Row("2", "1", "20", "paid"))};
  BatchConflicts conflicts;
  ASSERT_TRUE(sink.ApplyBatch(batch, {}, &conflicts).ok());
  ASSERT_EQ(rec->seen.size(), 3u);
  EXPECT_EQ(rec->seen[0].table->id.ToString(), "public.sales");
  EXPECT_EQ(rec->seen[0].kind, ChangeKind::kDelete);
  EXPECT_EQ(rec->seen[1].table->id.ToString(), "public.accounts");
  EXPECT_EQ(rec->seen[2].table->id.ToString(), "public.sales");
  EXPECT_EQ(rec->seen[2].kind, ChangeKind::kInsert);
  ASSERT_EQ(conflicts.found.size(), 1u);
  EXPECT_EQ(conflicts.found[0].change, &batch[2]) << "a conflict names the source's change";
}

}  // namespace midflight
