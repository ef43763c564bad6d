// Fuzzes the pgoutput decoder and the replication frames around it
// (engines/postgres/pgoutput.h): bytes a PostgreSQL server sends on a logical
// replication connection.
//
// The input is tried both as one pgoutput message and as one CopyBoth frame
// ('w' XLogData / 'k' keepalive) whose XLogData payload is then decoded as the
// change stream does. Properties: no crash, no sanitizer report, no exception
// (none is caught: one escaping is a finding); a decoded XLogData payload lies
// inside the input; a decoded message's strings and tuples are no larger than
// the input they came from.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <variant>

#include "engines/postgres/pgoutput.h"

namespace {

using midflight::pg::PgOutputMessage;
using midflight::pg::PgTuple;

void Check(bool ok) {
  if (!ok) std::abort();
}

size_t TupleBytes(const PgTuple& t) {
  size_t n = 0;
  for (const auto& c : t.columns) n += c.data.size();
  return n;
}

void DecodeMessage(std::span<const uint8_t> bytes) {
  midflight::Result<PgOutputMessage> m = midflight::pg::DecodePgOutput(bytes);
  if (!m.ok()) {
    Check(!m.status().message().empty());
    return;
  }
  std::visit(
      [&](const auto& msg) {
        using T = std::decay_t<decltype(msg)>;
        if constexpr (std::is_same_v<T, midflight::pg::PgInsert>) {
          Check(TupleBytes(msg.new_tuple) <= bytes.size());
        } else if constexpr (std::is_same_v<T, midflight::pg::PgUpdate>) {
          Check(TupleBytes(msg.new_tuple) + (msg.old_tuple ? TupleBytes(*msg.old_tuple) : 0) <= bytes.size());
          Check(msg.old_tuple.has_value() == (msg.old_kind != 0));
        } else if constexpr (std::is_same_v<T, midflight::pg::PgDelete>) {
          Check(TupleBytes(msg.old_tuple) <= bytes.size());
        } else if constexpr (std::is_same_v<T, midflight::pg::PgRelation>) {
          Check(msg.columns.size() <= bytes.size());
        } else if constexpr (std::is_same_v<T, midflight::pg::PgTruncate>) {
          Check(msg.relation_ids.size() * 4 <= bytes.size());
        } else if constexpr (std::is_same_v<T, midflight::pg::PgMessage>) {
          Check(msg.prefix.size() + msg.content.size() <= bytes.size());
        }
      },
      *m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  DecodeMessage(bytes);

  midflight::Result<midflight::pg::ReplicationFrame> frame = midflight::pg::DecodeReplicationFrame(bytes);
  if (frame.ok()) {
    if (const auto* w = std::get_if<midflight::pg::XLogData>(&*frame)) {
      Check(w->payload.data() >= data && w->payload.data() + w->payload.size() <= data + size);
      DecodeMessage(w->payload);
    }
  }
  return 0;
}
