// How a Change is written to and read from a Kafka message: a pure codec over
// bytes, no librdkafka (tests/fuzz/kafka_codec_fuzz.cc fuzzes the decoder).
//
// Key: a JSON object of the key columns, {"aid": "42"} (every column of the
// image for a table without a key), as Debezium keys a topic's messages.
//
// Value: Debezium's change-event envelope, schemaless JSON
// (value.converter.schemas.enable=false), plus one "midflight" member that
// carries what midflight needs to rebuild the Change exactly:
//
//   {"before": {col: v, ...} | null,     // kDelete: the old image (key columns, others null);
//                                        // kUpdate: the old image when the source sent one
//    "after":  {col: v, ...} | null,     // insert/update: the new image
//    "source": {"connector": "midflight", "name": <migration>, "schema": ..., "table": ...,
//               "lsn": <commit position, u64>, "sequence": <ordinal in the transaction>,
//               "ts_ms": <commit time>, "snapshot": "false"},
//    "op": "c" | "u" | "d" | "t",
//    "ts_ms": <commit time, ms>,
//    "midflight": {"v": 1, "run": <u64>, "table": <ref>, "kind": "insert|update|delete|truncate",
//                  "lsn": u64, "seq": u32, "commit_us": i64, "check": "none|insert|update|delete",
//                  "values": [d, ...], "old": [d, ...],       // TableSchema::writable order
//                  "truncated": [<ref>, ...], "restart_identity": bool}}
//
// A value d is the source's text form as a JSON string, null for NULL, and
// {"hex": "..."} for text that is not valid UTF-8 (SQL_ASCII, latin1 bytes).
// In "before"/"after", MariaDB's UUID, INET6 and INET4 (whose binlog form is
// their stored bytes) are their text form, as the server prints them
// (FixedBinaryText); "values" keeps the bytes.
// An unchanged TOASTed value is {"unchanged": true} in "values" and
// Debezium's placeholder "__debezium_unavailable_value" in "after".
// A delete is followed by a tombstone: the same key with a null value
// (KafkaPartitionLog produces it; the decoder never sees it).
//
// "run" names the KafkaPartitionLog that wrote the message (one per flow
// run); <ref> numbers a TableSchema version inside that log (a table's
// layout can change mid-stream). Only the log that wrote a message reads it
// back (kafka_partition_log.h says why), so refs need no registry.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "core/change.h"

namespace midflight::kafka {

// Well-formed UTF-8: no overlong forms, surrogates or code points past
// U+10FFFF (both codecs send other text as bytes).
bool ValidUtf8(std::string_view s);
// Hex digits (either case) to bytes; false on an odd length or a non-digit.
bool Unhex(std::string_view h, std::string* out);

// MariaDB's UUID, INET6 and INET4 (column type `type_base`) travel in the
// change stream as their stored bytes (16, 16 and 4: the binlog's form,
// mysql/catalog.h BinlogFormSelect); Debezium's envelope carries them as
// strings. Returns the text the server prints for them
// ("123e4567-e89b-42d3-a456-426614174000", "2001:db8::ff00:42:8329",
// "::ffff:10.1.2.3", "192.168.0.1"); any other type, or a value of another
// length (already text), comes back unchanged.
std::string FixedBinaryText(std::string_view type_base, const std::string& value);

struct EncodedChange {
  std::string key;
  std::string value;
};

// Encodes `change`; `table_ref` names change.table, `truncated_refs` the
// tables of change.truncated (same order). `source_name` goes to source.name.
EncodedChange EncodeChange(const Change& change, uint64_t run, uint32_t table_ref,
                           const std::vector<uint32_t>& truncated_refs, const std::string& source_name);

// The TableSchema a ref names, or null when unknown.
using TableLookup = std::function<std::shared_ptr<const TableSchema>(uint32_t ref)>;

// Rebuilds the Change EncodeChange encoded, or returns nullopt for a message
// another run wrote (its tables are not looked up). Anything malformed (not JSON, a
// member missing or of the wrong type, an unknown table ref, a table whose
// name differs from source.schema/table, an image whose length is not the
// table's writable column count) returns DataLoss naming what is wrong:
// the caller must stop, a change it cannot read would be lost.
Result<std::optional<Change>> DecodeChange(std::string_view value, uint64_t run, const TableLookup& lookup);

// For a reader outside the run that wrote the message (an apply worker, a
// replay: kafka/apply_worker.h): every run's messages are decoded, and the
// table is found by source.schema/source.table (refs are the writing run's
// own). `lookup` returns null for a table it does not know. A truncate
// (applied by the run at a barrier, outside the log) decodes to nullopt.
// Snapshot records (below) decode to nullopt here.
using NamedTableLookup = std::function<std::shared_ptr<const TableSchema>(const TableId& id)>;
Result<std::optional<Change>> DecodeChangeAnyRun(std::string_view value, const NamedTableLookup& lookup);

// SNAPSHOT RECORDS (transport.publish_snapshot, kafka/snapshot_publisher.h).
// A copied row: the envelope with "op": "r", "before" null, source.snapshot
// "true", and "kind": "read" in the midflight member (check "none": an
// upsert), at the chunk's snapshot position, keyed like a change; "chunk"
// names the copy chunk. A chunk reset: "op": "midflight.reset", no row
// images, the midflight member {"kind": "reset", "chunk": n, "column": the
// integer chunk column or null (every row of the table), "lo"/"hi": the
// chunk's value range [lo, hi) (null: unbounded), "lsn": the snapshot the
// chunk is copied from again}, key {"midflight_reset": "<schema.table>#<chunk>"}.
// The run's own log (DecodeChange) and apply workers skip both: the copy
// wrote those rows to the target itself; a replay applies them (apply_worker.h).
struct ChunkReset {
  TableId table;
  int chunk = 0;
  std::string column;  // empty: the whole table
  std::optional<int64_t> lo, hi;
  uint64_t snapshot = 0;
  bool operator==(const ChunkReset&) const = default;
};
// `row`: kind insert, the copied values, pos = {snapshot, 0}, commit_time_us
// = when it was copied.
EncodedChange EncodeSnapshotRow(const Change& row, uint64_t run, const std::string& source_name, int chunk);
EncodedChange EncodeChunkReset(const ChunkReset& reset, uint64_t run, const std::string& source_name);

struct LogRecord {
  enum class Kind : uint8_t { kChange, kSnapshotRow, kChunkReset };
  Kind kind = Kind::kChange;
  // kChange: the change (nullopt for a truncate: applied by the run at a
  // barrier); kSnapshotRow: an insert of the copied row, check none.
  std::optional<Change> change;
  ChunkReset reset;  // kChunkReset
};
// DecodeChangeAnyRun, plus the snapshot records. A reset naming a table the
// lookup does not know is DataLoss, as a change is.
Result<LogRecord> DecodeRecordAnyRun(std::string_view value, const NamedTableLookup& lookup);

}  // namespace midflight::kafka
