// pgoutput (PostgreSQL's built-in logical decoding output plugin), protocol
// version 1, decoded from bytes. Pure functions: no I/O, no libpq, so they are
// unit-tested on captured bytes and can be fuzzed.
//
// Input is the payload of one XLogData ('w') message of the streaming
// replication protocol, i.e. one pgoutput message starting with its type byte
// ('B', 'C', 'O', 'R', 'Y', 'I', 'U', 'D', 'T', 'M'). A malformed or truncated
// message returns a DataLoss status naming the message type and byte offset;
// the decoder never reads past the end of the input.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "base/status.h"

namespace midflight::pg {

// One column value inside TupleData.
struct PgColumnValue {
  enum class Kind : uint8_t { kNull, kUnchangedToast, kText, kBinary };
  Kind kind = Kind::kNull;
  std::string data;  // kText: the value's text form; kBinary: its binary form
};

struct PgTuple {
  std::vector<PgColumnValue> columns;
};

struct PgBegin {            // 'B'
  uint64_t final_lsn = 0;   // LSN of the transaction's commit record
  int64_t commit_time = 0;  // microseconds since 2000-01-01 00:00:00 UTC
  uint32_t xid = 0;
};

struct PgCommit {           // 'C'
  uint8_t flags = 0;
  uint64_t commit_lsn = 0;
  uint64_t end_lsn = 0;
  int64_t commit_time = 0;
};

struct PgOrigin {           // 'O'
  uint64_t commit_lsn = 0;
  std::string name;
};

struct PgRelationColumn {
  bool part_of_key = false;  // flags & 1
  std::string name;
  uint32_t type_oid = 0;
  int32_t type_modifier = -1;
};

struct PgRelation {         // 'R'
  uint32_t relation_id = 0;
  std::string namespace_name;  // "" for pg_catalog is sent as empty string
  std::string relation_name;
  char replica_identity = 'd';  // 'd' default, 'n' nothing, 'f' full, 'i' index
  std::vector<PgRelationColumn> columns;
};

struct PgType {             // 'Y'
  uint32_t type_oid = 0;
  std::string namespace_name;
  std::string type_name;
};

struct PgInsert {           // 'I'
  uint32_t relation_id = 0;
  PgTuple new_tuple;
};

struct PgUpdate {           // 'U'
  uint32_t relation_id = 0;
  // 'K' (key columns only, others null) or 'O' (whole old row), when sent.
  char old_kind = 0;  // 0 when no old tuple was sent
  std::optional<PgTuple> old_tuple;
  PgTuple new_tuple;
};

struct PgDelete {           // 'D'
  uint32_t relation_id = 0;
  char old_kind = 'K';  // 'K' or 'O'
  PgTuple old_tuple;
};

struct PgTruncate {         // 'T'
  uint8_t options = 0;  // 1 = CASCADE, 2 = RESTART IDENTITY
  std::vector<uint32_t> relation_ids;
};

struct PgMessage {          // 'M' (logical decoding message)
  bool transactional = false;
  uint64_t lsn = 0;
  std::string prefix;
  std::string content;
};

using PgOutputMessage = std::variant<PgBegin, PgCommit, PgOrigin, PgRelation, PgType, PgInsert,
                                     PgUpdate, PgDelete, PgTruncate, PgMessage>;

// Decodes one pgoutput message.
Result<PgOutputMessage> DecodePgOutput(std::span<const uint8_t> bytes);

// The streaming replication protocol frames around pgoutput (inside CopyBoth data).
struct XLogData {           // 'w'
  uint64_t wal_start = 0;
  uint64_t wal_end = 0;
  int64_t send_time = 0;
  std::span<const uint8_t> payload;  // points into the input
};

struct PrimaryKeepalive {   // 'k'
  uint64_t wal_end = 0;
  int64_t send_time = 0;
  bool reply_requested = false;
};

using ReplicationFrame = std::variant<XLogData, PrimaryKeepalive>;

Result<ReplicationFrame> DecodeReplicationFrame(std::span<const uint8_t> bytes);

// Standby status update ('r'): the positions the client has written, flushed
// and applied, its clock (microseconds since 2000-01-01) and whether it wants
// an immediate keepalive back. Returns the 34 bytes to send with PQputCopyData.
std::vector<uint8_t> EncodeStandbyStatus(uint64_t written, uint64_t flushed, uint64_t applied,
                                         int64_t client_time, bool reply_requested);

// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
inline constexpr int64_t kPgEpochOffsetMicros = 946684800LL * 1000000LL;

}  // namespace midflight::pg
