#include "engines/postgres/pgoutput.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <string_view>
#include <utility>

namespace midflight::pg {
namespace {

// Renders a type/kind byte for an error message: 'X' (0x58), or just 0x01 when
// the byte is not printable.
std::string DescribeByte(uint8_t b) {
  if (b >= 0x20 && b < 0x7f) return fmt::format("'{}' (0x{:02x})", static_cast<char>(b), b);
  return fmt::format("0x{:02x}", b);
}

// Bounds-checked big-endian cursor over one message. `what` names the message
// ("Insert message", "XLogData frame") in every error it returns.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const char* what) : bytes_(bytes), what_(what) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }
  const char* what() const { return what_; }

  Status Truncated(size_t at) const {
    return DataLoss(fmt::format("pgoutput: truncated {} at byte {}", what_, at));
  }
  // A structurally invalid field that starts at byte `at`.
  Status Malformed(size_t at, std::string_view problem) const {
    return DataLoss(fmt::format("pgoutput: {} in {} at byte {}", problem, what_, at));
  }

  Status ReadU8(uint8_t* out) {
    if (remaining() < 1) return Truncated(pos_);
    *out = bytes_[pos_++];
    return Status::Ok();
  }
  Status ReadU16(uint16_t* out) {
    uint64_t v = 0;
    RETURN_IF_ERROR(ReadBigEndian(2, &v));
    *out = static_cast<uint16_t>(v);
    return Status::Ok();
  }
  Status ReadI16(int16_t* out) {
    uint16_t v = 0;
    RETURN_IF_ERROR(ReadU16(&v));
    *out = static_cast<int16_t>(v);
    return Status::Ok();
  }
  Status ReadU32(uint32_t* out) {
    uint64_t v = 0;
    RETURN_IF_ERROR(ReadBigEndian(4, &v));
    *out = static_cast<uint32_t>(v);
    return Status::Ok();
  }
  Status ReadI32(int32_t* out) {
    uint32_t v = 0;
    RETURN_IF_ERROR(ReadU32(&v));
    *out = static_cast<int32_t>(v);
    return Status::Ok();
  }
  Status ReadU64(uint64_t* out) { return ReadBigEndian(8, out); }
  Status ReadI64(int64_t* out) {
    uint64_t v = 0;
    RETURN_IF_ERROR(ReadU64(&v));
    *out = static_cast<int64_t>(v);
    return Status::Ok();
  }

  // A NUL-terminated string; the NUL is consumed but not returned.
  Status ReadString(std::string* out) {
    for (size_t i = pos_; i < bytes_.size(); ++i) {
      if (bytes_[i] == 0) {
        out->assign(reinterpret_cast<const char*>(bytes_.data() + pos_), i - pos_);
        pos_ = i + 1;
        return Status::Ok();
      }
    }
    return Malformed(pos_, "string without terminating NUL");
  }

  // An Int32 length (must not be negative) followed by that many bytes.
  Status ReadLengthPrefixed(std::string* out) {
    const size_t at = pos_;
    int32_t len = 0;
    RETURN_IF_ERROR(ReadI32(&len));
    if (len < 0) return Malformed(at, fmt::format("negative length {}", len));
    return ReadBytes(static_cast<size_t>(len), out);
  }

  Status ReadBytes(size_t n, std::string* out) {
    if (remaining() < n) return Truncated(pos_);
    out->assign(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return Status::Ok();
  }

  std::span<const uint8_t> Rest() {
    auto rest = bytes_.subspan(pos_);
    pos_ = bytes_.size();
    return rest;
  }

  // Every message is self-delimiting: bytes after it mean we misparsed it.
  Status ExpectEnd() const {
    if (remaining() == 0) return Status::Ok();
    return Malformed(pos_, fmt::format("{} unexpected trailing byte{}", remaining(),
                                       remaining() == 1 ? "" : "s"));
  }

 private:
  Status ReadBigEndian(size_t n, uint64_t* out) {
    if (remaining() < n) return Truncated(pos_);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | bytes_[pos_ + i];
    pos_ += n;
    *out = v;
    return Status::Ok();
  }

  std::span<const uint8_t> bytes_;
  const char* what_;
  size_t pos_ = 0;
};

// Int16 count that must not be negative, for column lists.
Status ReadCount16(Reader& r, const char* of, size_t* out) {
  const size_t at = r.pos();
  int16_t n = 0;
  RETURN_IF_ERROR(r.ReadI16(&n));
  if (n < 0) return r.Malformed(at, fmt::format("negative {} count {}", of, n));
  *out = static_cast<size_t>(n);
  return Status::Ok();
}

Status ReadTupleData(Reader& r, PgTuple* tuple) {
  size_t ncols = 0;
  RETURN_IF_ERROR(ReadCount16(r, "column", &ncols));
  tuple->columns.clear();
  // Each column takes at least one byte, so this never over-allocates on a
  // corrupt count.
  tuple->columns.reserve(std::min(ncols, r.remaining()));
  for (size_t i = 0; i < ncols; ++i) {
    const size_t at = r.pos();
    uint8_t kind = 0;
    RETURN_IF_ERROR(r.ReadU8(&kind));
    PgColumnValue value;
    switch (kind) {
      case 'n':
        value.kind = PgColumnValue::Kind::kNull;
        break;
      case 'u':
        value.kind = PgColumnValue::Kind::kUnchangedToast;
        break;
      case 't':
        value.kind = PgColumnValue::Kind::kText;
        RETURN_IF_ERROR(r.ReadLengthPrefixed(&value.data));
        break;
      case 'b':
        value.kind = PgColumnValue::Kind::kBinary;
        RETURN_IF_ERROR(r.ReadLengthPrefixed(&value.data));
        break;
      default:
        return r.Malformed(at, fmt::format("unknown tuple kind {} for column {}",
                                           DescribeByte(kind), i));
    }
    tuple->columns.push_back(std::move(value));
  }
  return Status::Ok();
}

// Reads the byte announcing a tuple and checks it is one of `allowed`.
Status ReadTupleMarker(Reader& r, std::string_view allowed, char* out) {
  const size_t at = r.pos();
  uint8_t marker = 0;
  RETURN_IF_ERROR(r.ReadU8(&marker));
  if (allowed.find(static_cast<char>(marker)) == std::string_view::npos) {
    return r.Malformed(at, fmt::format("unexpected tuple marker {}", DescribeByte(marker)));
  }
  *out = static_cast<char>(marker);
  return Status::Ok();
}

Result<PgOutputMessage> DecodeBegin(Reader& r) {
  PgBegin m;
  RETURN_IF_ERROR(r.ReadU64(&m.final_lsn));
  RETURN_IF_ERROR(r.ReadI64(&m.commit_time));
  RETURN_IF_ERROR(r.ReadU32(&m.xid));
  return PgOutputMessage(m);
}

Result<PgOutputMessage> DecodeCommit(Reader& r) {
  PgCommit m;
  RETURN_IF_ERROR(r.ReadU8(&m.flags));
  RETURN_IF_ERROR(r.ReadU64(&m.commit_lsn));
  RETURN_IF_ERROR(r.ReadU64(&m.end_lsn));
  RETURN_IF_ERROR(r.ReadI64(&m.commit_time));
  return PgOutputMessage(m);
}

Result<PgOutputMessage> DecodeOrigin(Reader& r) {
  PgOrigin m;
  RETURN_IF_ERROR(r.ReadU64(&m.commit_lsn));
  RETURN_IF_ERROR(r.ReadString(&m.name));
  return PgOutputMessage(std::move(m));
}

Result<PgOutputMessage> DecodeRelation(Reader& r) {
  PgRelation m;
  RETURN_IF_ERROR(r.ReadU32(&m.relation_id));
  RETURN_IF_ERROR(r.ReadString(&m.namespace_name));
  RETURN_IF_ERROR(r.ReadString(&m.relation_name));
  const size_t ident_at = r.pos();
  uint8_t ident = 0;
  RETURN_IF_ERROR(r.ReadU8(&ident));
  if (ident != 'd' && ident != 'n' && ident != 'f' && ident != 'i') {
    return r.Malformed(ident_at, fmt::format("unknown replica identity {}", DescribeByte(ident)));
  }
  m.replica_identity = static_cast<char>(ident);
  size_t ncols = 0;
  RETURN_IF_ERROR(ReadCount16(r, "column", &ncols));
  // Each column takes at least 10 bytes.
  m.columns.reserve(std::min(ncols, r.remaining() / 10));
  for (size_t i = 0; i < ncols; ++i) {
    PgRelationColumn c;
    uint8_t flags = 0;
    RETURN_IF_ERROR(r.ReadU8(&flags));
    c.part_of_key = (flags & 1) != 0;
    RETURN_IF_ERROR(r.ReadString(&c.name));
    RETURN_IF_ERROR(r.ReadU32(&c.type_oid));
    RETURN_IF_ERROR(r.ReadI32(&c.type_modifier));
    m.columns.push_back(std::move(c));
  }
  return PgOutputMessage(std::move(m));
}

Result<PgOutputMessage> DecodeType(Reader& r) {
  PgType m;
  RETURN_IF_ERROR(r.ReadU32(&m.type_oid));
  RETURN_IF_ERROR(r.ReadString(&m.namespace_name));
  RETURN_IF_ERROR(r.ReadString(&m.type_name));
  return PgOutputMessage(std::move(m));
}

Result<PgOutputMessage> DecodeInsert(Reader& r) {
  PgInsert m;
  RETURN_IF_ERROR(r.ReadU32(&m.relation_id));
  char marker = 0;
  RETURN_IF_ERROR(ReadTupleMarker(r, "N", &marker));
  RETURN_IF_ERROR(ReadTupleData(r, &m.new_tuple));
  return PgOutputMessage(std::move(m));
}

Result<PgOutputMessage> DecodeUpdate(Reader& r) {
  PgUpdate m;
  RETURN_IF_ERROR(r.ReadU32(&m.relation_id));
  char marker = 0;
  RETURN_IF_ERROR(ReadTupleMarker(r, "KON", &marker));
  if (marker != 'N') {
    m.old_kind = marker;
    m.old_tuple.emplace();
    RETURN_IF_ERROR(ReadTupleData(r, &*m.old_tuple));
    RETURN_IF_ERROR(ReadTupleMarker(r, "N", &marker));
  }
  RETURN_IF_ERROR(ReadTupleData(r, &m.new_tuple));
  return PgOutputMessage(std::move(m));
}

Result<PgOutputMessage> DecodeDelete(Reader& r) {
  PgDelete m;
  RETURN_IF_ERROR(r.ReadU32(&m.relation_id));
  RETURN_IF_ERROR(ReadTupleMarker(r, "KO", &m.old_kind));
  RETURN_IF_ERROR(ReadTupleData(r, &m.old_tuple));
  return PgOutputMessage(std::move(m));
}

Result<PgOutputMessage> DecodeTruncate(Reader& r) {
  PgTruncate m;
  const size_t count_at = r.pos();
  int32_t nrels = 0;
  RETURN_IF_ERROR(r.ReadI32(&nrels));
  if (nrels < 0) return r.Malformed(count_at, fmt::format("negative relation count {}", nrels));
  RETURN_IF_ERROR(r.ReadU8(&m.options));
  m.relation_ids.reserve(std::min(static_cast<size_t>(nrels), r.remaining() / 4));
  for (int32_t i = 0; i < nrels; ++i) {
    uint32_t relid = 0;
    RETURN_IF_ERROR(r.ReadU32(&relid));
    m.relation_ids.push_back(relid);
  }
  return PgOutputMessage(std::move(m));
}

Result<PgOutputMessage> DecodeMessage(Reader& r) {
  PgMessage m;
  uint8_t flags = 0;
  RETURN_IF_ERROR(r.ReadU8(&flags));
  m.transactional = (flags & 1) != 0;
  RETURN_IF_ERROR(r.ReadU64(&m.lsn));
  RETURN_IF_ERROR(r.ReadString(&m.prefix));
  RETURN_IF_ERROR(r.ReadLengthPrefixed(&m.content));
  return PgOutputMessage(std::move(m));
}

const char* MessageName(uint8_t type) {
  switch (type) {
    case 'B': return "Begin message";
    case 'C': return "Commit message";
    case 'O': return "Origin message";
    case 'R': return "Relation message";
    case 'Y': return "Type message";
    case 'I': return "Insert message";
    case 'U': return "Update message";
    case 'D': return "Delete message";
    case 'T': return "Truncate message";
    case 'M': return "logical decoding message";
    default: return nullptr;
  }
}

}  // namespace

Result<PgOutputMessage> DecodePgOutput(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return DataLoss("pgoutput: empty message at byte 0");
  const uint8_t type = bytes[0];
  const char* name = MessageName(type);
  if (name == nullptr) {
    return DataLoss(fmt::format("pgoutput: unknown message type {} at byte 0", DescribeByte(type)));
  }
  Reader r(bytes, name);
  uint8_t skip = 0;
  RETURN_IF_ERROR(r.ReadU8(&skip));

  auto decode = [&r, type]() -> Result<PgOutputMessage> {
    switch (type) {
      case 'B': return DecodeBegin(r);
      case 'C': return DecodeCommit(r);
      case 'O': return DecodeOrigin(r);
      case 'R': return DecodeRelation(r);
      case 'Y': return DecodeType(r);
      case 'I': return DecodeInsert(r);
      case 'U': return DecodeUpdate(r);
      case 'D': return DecodeDelete(r);
      case 'T': return DecodeTruncate(r);
      default: return DecodeMessage(r);  // 'M'; MessageName() rejected every other byte
    }
  };
  Result<PgOutputMessage> result = decode();
  if (!result.ok()) return result;
  RETURN_IF_ERROR(r.ExpectEnd());
  return result;
}

Result<ReplicationFrame> DecodeReplicationFrame(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return DataLoss("pgoutput: empty replication frame at byte 0");
  switch (bytes[0]) {
    case 'w': {
      Reader r(bytes, "XLogData frame");
      uint8_t skip = 0;
      RETURN_IF_ERROR(r.ReadU8(&skip));
      XLogData f;
      RETURN_IF_ERROR(r.ReadU64(&f.wal_start));
      RETURN_IF_ERROR(r.ReadU64(&f.wal_end));
      RETURN_IF_ERROR(r.ReadI64(&f.send_time));
      f.payload = r.Rest();
      return ReplicationFrame(f);
    }
    case 'k': {
      Reader r(bytes, "Primary keepalive frame");
      uint8_t skip = 0;
      RETURN_IF_ERROR(r.ReadU8(&skip));
      PrimaryKeepalive f;
      RETURN_IF_ERROR(r.ReadU64(&f.wal_end));
      RETURN_IF_ERROR(r.ReadI64(&f.send_time));
      uint8_t reply = 0;
      RETURN_IF_ERROR(r.ReadU8(&reply));
      f.reply_requested = reply != 0;
      RETURN_IF_ERROR(r.ExpectEnd());
      return ReplicationFrame(f);
    }
    default:
      return DataLoss(fmt::format("pgoutput: unknown replication frame type {} at byte 0",
                                  DescribeByte(bytes[0])));
  }
}

std::vector<uint8_t> EncodeStandbyStatus(uint64_t written, uint64_t flushed, uint64_t applied,
                                         int64_t client_time, bool reply_requested) {
  std::vector<uint8_t> out;
  out.reserve(34);
  out.push_back('r');
  auto put64 = [&out](uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
  };
  put64(written);
  put64(flushed);
  put64(applied);
  put64(static_cast<uint64_t>(client_time));
  out.push_back(reply_requested ? 1 : 0);
  return out;
}

}  // namespace midflight::pg
