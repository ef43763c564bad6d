// Fuzzes the Avro decoder (kafka/avro_codec.h) with the value schema of a
// Debezium event that midflight builds, and with the Confluent frame: bytes
// a broker hands a consumer, which anyone with write access to a table
// topic could have produced.
//
// Properties: no crash, no sanitizer report, no exception (none is caught);
// an error is InvalidArgument with a message; an accepted datum has the
// envelope's members.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "kafka/avro_codec.h"

namespace {

const nlohmann::json& Schema() {
  static const nlohmann::json s = [] {
    using namespace midflight;
    auto t = std::make_shared<TableSchema>();
    t->id = {"public", "accounts"};
    ColumnSchema id, note, amount, at;
    id.name = "id";
    id.type.kind = TypeKind::kInt;
    id.type.width = 8;
    id.not_null = true;
    note.name = "note";
    note.type.kind = TypeKind::kText;
    amount.name = "amount";
    amount.type.kind = TypeKind::kDecimal;
    at.name = "at";
    at.type.kind = TypeKind::kTimestamp;
    t->columns = {id, note, amount, at};
    t->key = {0};
    t->key_kind = KeyKind::kPrimaryKey;
    t->Finalize();
    auto avro = kafka::DebeziumAvroTable::Build(t, "fuzz.public.accounts", PositionKind::kPgLsn);
    if (!avro.ok()) std::abort();
    return nlohmann::json::parse((*avro)->value_schema());
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace midflight;
  const std::string_view message(reinterpret_cast<const char*>(data), size);
  auto framed = kafka::ConfluentUnframe(message);
  if (!framed.ok() && framed.status().code() != StatusCode::kInvalidArgument) std::abort();
  auto r = kafka::AvroDecode(Schema(), framed.ok() ? framed->second : message);
  if (!r.ok()) {
    if (r.status().code() != StatusCode::kInvalidArgument || r.status().message().empty()) std::abort();
    return 0;
  }
  if (!r->is_object() || !r->contains("op") || !r->contains("source") || !(*r)["op"].is_string()) std::abort();
  return 0;
}
