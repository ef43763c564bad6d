// Fuzzes the Kafka change decoder (kafka/change_codec.h): message values a
// broker hands back, which anything with write access to the topic could
// have produced.
//
// Properties: no crash, no sanitizer report, no exception (none is caught);
// an error is DataLoss with a message; an accepted change has images of the
// table's writable width (or none), and encodes to a value that decodes to
// the same change.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "kafka/change_codec.h"

namespace {

std::shared_ptr<const midflight::TableSchema> Table() {
  static const auto t = [] {
    auto t = std::make_shared<midflight::TableSchema>();
    t->id = {"public", "accounts"};
    midflight::ColumnSchema id, note;
    id.name = "id";
    note.name = "note";
    t->columns = {id, note};
    t->key = {0};
    t->key_kind = midflight::KeyKind::kPrimaryKey;
    t->Finalize();
    return t;
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace midflight;
  const std::string_view value(reinterpret_cast<const char*>(data), size);
  kafka::TableLookup lookup = [](uint32_t ref) { return ref == 0 ? Table() : nullptr; };
  auto r = kafka::DecodeChange(value, 1, lookup);
  if (!r.ok()) {
    if (r.status().code() != StatusCode::kDataLoss || r.status().message().empty()) std::abort();
    return 0;
  }
  if (!r->has_value()) return 0;
  const Change& c = **r;
  const size_t w = c.table->writable.size();
  if ((!c.values.empty() && c.values.size() != w) || (!c.old.empty() && c.old.size() != w)) std::abort();
  std::vector<uint32_t> refs(c.truncated.size(), 0);
  auto again = kafka::DecodeChange(kafka::EncodeChange(c, 1, 0, refs, "fuzz").value, 1, lookup);
  if (!again.ok() || !again->has_value()) std::abort();
  const Change& d = **again;
  if (d.kind != c.kind || d.pos != c.pos || d.values != c.values || d.old != c.old || d.check != c.check ||
      d.commit_time_us != c.commit_time_us || d.truncated.size() != c.truncated.size() ||
      d.truncate_restart_identity != c.truncate_restart_identity)
    std::abort();
  return 0;
}
