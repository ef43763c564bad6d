// One row change from a source's change stream, engine-neutral.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/position.h"
#include "core/schema.h"
#include "core/value.h"

namespace midflight {

enum class ChangeKind : uint8_t { kInsert, kUpdate, kDelete, kTruncate };

const char* ChangeKindName(ChangeKind kind);

// What the target must hold for a change's key just before it is applied,
// named after the kind of the key's first change in its apply batch: kInsert,
// no row; kUpdate or kDelete, a row. A target that disagrees is an apply
// conflict (pipeline/conflicts.h). kNone: not checked (a verification repair,
// a barrier, a reverse-replication change).
enum class ConflictCheck : uint8_t { kNone, kInsert, kUpdate, kDelete };

struct Change {
  ChangeKind kind = ChangeKind::kInsert;
  std::shared_ptr<const TableSchema> table;  // kTruncate: the first truncated table
  ChangePosition pos;
  int64_t commit_time_us = 0;  // source commit time, microseconds since the Unix epoch

  // New image, one Datum per writable column (TableSchema::writable order).
  // kUpdate may hold Datum::Unchanged() for TOASTed values the source did not resend.
  std::vector<Datum> values;
  // Old image, same layout as `values`: for kDelete the key columns (others null) or the
  // whole old row (KeyKind::kFullRow); for kUpdate only when the key changed or the
  // table matches on the whole row; empty otherwise.
  std::vector<Datum> old;

  // kTruncate: every table truncated together, and the options (CASCADE, RESTART IDENTITY).
  std::vector<std::shared_ptr<const TableSchema>> truncated;
  bool truncate_restart_identity = false;

  // Set for changes the stream routes (pipeline/routed_log.h); kept through
  // collapsing by the key's first change (pipeline/batch.h).
  ConflictCheck check = ConflictCheck::kNone;

  // Where the partition log holds this change when it can be read again from
  // there (a Kafka offset, set by kafka/apply_worker.h); -1 otherwise. A sink
  // records the batch's highest one with its checkpoint.
  int64_t log_offset = -1;

  // Approximate memory held by this change, for the bounded partition logs.
  size_t ByteSize() const;
  // The key's text form, used for routing and collapsing ("42" or "7\x1fEU").
  // From `old` for deletes and key-moving updates, else from `values`.
  std::string KeyText() const;
  // True for an update whose key changed (old holds the previous key).
  bool MovesKey() const;
  // True when some value of the new image is an unchanged TOAST marker.
  bool HasUnchangedValues() const;
};

}  // namespace midflight
