// Binlog event decoding; the format is described where each piece is read.
//
// What MariaDB 10.11 (10.11.19, binlog_format=ROW, binlog_row_image=FULL)
// actually logs, found on the captures in tests/unit/data/binlog (capture.sh
// there recreates them):
//
//  1. Generated columns: VIRTUAL and STORED ones are both in the TABLE_MAP
//     (they count in its column count) and in both row images, with their
//     computed values: `gen (id, a, v AS (a*2) VIRTUAL, s AS (a*3) STORED, w)`
//     maps 5 columns and the insert of a=10 logs v=20, s=30. An applier must
//     leave them out of its INSERT/UPDATE (the target computes them).
//  2. binlog_row_metadata defaults to NO_LOG: no optional metadata, so no
//     signedness and no column names; integers are decoded signed unless
//     ColumnHints say otherwise. MINIMAL adds SIGNEDNESS, COLUMN_CHARSET and
//     GEOMETRY_TYPE; FULL also COLUMN_NAME, SET/ENUM_STR_VALUE,
//     ENUM_AND_SET_DEFAULT_CHARSET and SIMPLE_PRIMARY_KEY. MariaDB's
//     SIGNEDNESS bitmap counts YEAR as a numeric (unsigned) column, MySQL's
//     does not; BIT is not numeric in either.
//  3. ENUM and SET are type 254 (STRING) in the TABLE_MAP; the metadata's
//     first byte is the real type (247 ENUM, 248 SET) and the second the value
//     size: ENUM 1 or 2 bytes (2 from 256 members), SET 1, 2, 3, 4 or 8 bytes.
//  4. TIMESTAMP, DATETIME and TIME columns are logged as TIMESTAMP2 (17),
//     DATETIME2 (18) and TIME2 (19) with the precision as metadata (the
//     default mysql56_temporal_format=ON). Columns created with it OFF (or
//     before 10.1) are logged as 7/12/11 without metadata, and when they have
//     a fraction in a wider MariaDB-only format that the TABLE_MAP does not
//     announce: ColumnHints::temporal_precision must supply it.
//  Also: JSON is LONGTEXT (type 252, 4 length bytes) holding the text as
//  inserted; rows events are always v1 (23-25); CHAR values lose trailing
//  spaces and BINARY values trailing 0x00 bytes; the FORMAT_DESCRIPTION of a
//  binlog still open has LOG_EVENT_BINLOG_IN_USE_F set, and its CRC32 is
//  computed as if that flag were clear.
#include "engines/mysql/binlog_event.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

namespace midflight::mysql {
namespace {

constexpr size_t kHeaderSize = 19;
constexpr size_t kChecksumSize = 4;
constexpr size_t kFlagsOffset = 17;
constexpr uint8_t kBinlogInUseFlag = 0x01;  // LOG_EVENT_BINLOG_IN_USE_F
constexpr size_t kServerVersionSize = 50;

// ---- CRC32 (IEEE, reflected, as zlib's crc32()) ----------------------------

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

// Continues `crc` (0 to start) over `bytes`, like zlib's crc32(crc, ...).
uint32_t Crc32(uint32_t crc, std::string_view bytes) {
  crc = ~crc;
  for (char ch : bytes) crc = kCrcTable[(crc ^ static_cast<uint8_t>(ch)) & 0xff] ^ (crc >> 8);
  return ~crc;
}

// ---- Reader --------------------------------------------------------------------

// Bounds-checked little-endian cursor over a part of one event. `base` is
// where `bytes` starts in the event, so every message names an event offset;
// `name` is the event's name ("WRITE_ROWS").
class Reader {
 public:
  Reader(std::string_view bytes, size_t base, std::string name) : bytes_(bytes), base_(base), name_(std::move(name)) {}

  size_t pos() const { return base_ + pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

  Status Truncated(size_t at) const { return DataLoss(fmt::format("truncated {} event at byte {}", name_, at)); }
  // A structurally invalid field that starts at event byte `at`.
  Status Malformed(size_t at, std::string_view problem) const {
    return DataLoss(fmt::format("{} in {} event at byte {}", problem, name_, at));
  }

  Status ReadU8(uint8_t* out) {
    if (remaining() < 1) return Truncated(pos());
    *out = static_cast<uint8_t>(bytes_[pos_++]);
    return Status::Ok();
  }
  Status ReadU16(uint16_t* out) { return ReadLittle(2, out); }
  Status ReadU32(uint32_t* out) { return ReadLittle(4, out); }
  Status ReadU64(uint64_t* out) { return ReadLittle(8, out); }

  // An n-byte (1..8) unsigned integer, least significant byte first.
  template <typename T>
  Status ReadLittle(size_t n, T* out) {
    if (remaining() < n) return Truncated(pos());
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes_[pos_ + i])) << (8 * i);
    pos_ += n;
    *out = static_cast<T>(v);
    return Status::Ok();
  }
  // An n-byte (1..8) unsigned integer, most significant byte first.
  Status ReadBig(size_t n, uint64_t* out) {
    if (remaining() < n) return Truncated(pos());
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(bytes_[pos_ + i]);
    pos_ += n;
    *out = v;
    return Status::Ok();
  }

  // MySQL's length-encoded integer: < 251 in one byte, else 0xfc/0xfd/0xfe
  // followed by 2, 3 or 8 bytes. 0xfb (NULL) and 0xff are not valid here.
  Status ReadPackedInt(uint64_t* out) {
    const size_t at = pos();
    uint8_t first = 0;
    RETURN_IF_ERROR(ReadU8(&first));
    switch (first) {
      case 0xfc: return ReadLittle(2, out);
      case 0xfd: return ReadLittle(3, out);
      case 0xfe: return ReadLittle(8, out);
      case 0xfb:
      case 0xff: return Malformed(at, fmt::format("invalid packed integer prefix 0x{:02x}", first));
      default: *out = first; return Status::Ok();
    }
  }

  Status ReadBytes(size_t n, std::string_view* out) {
    if (remaining() < n) return Truncated(pos());
    *out = bytes_.substr(pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  Status Skip(size_t n) {
    if (remaining() < n) return Truncated(pos());
    pos_ += n;
    return Status::Ok();
  }
  std::string_view Rest() {
    std::string_view rest = bytes_.substr(pos_);
    pos_ = bytes_.size();
    return rest;
  }
  Status ExpectEnd() const {
    if (remaining() == 0) return Status::Ok();
    return Malformed(pos(), fmt::format("{} unexpected trailing byte{}", remaining(), remaining() == 1 ? "" : "s"));
  }

 private:
  std::string_view bytes_;
  size_t base_;
  std::string name_;
  size_t pos_ = 0;
};

// Bit i of an LSB-first bitmap (column and NULL bitmaps).
bool BitLsb(std::string_view bitmap, size_t i) {
  return (static_cast<uint8_t>(bitmap[i / 8]) >> (i % 8) & 1) != 0;
}
// Bit i of an MSB-first bitmap (the optional SIGNEDNESS metadata).
bool BitMsb(std::string_view bitmap, size_t i) {
  return (static_cast<uint8_t>(bitmap[i / 8]) >> (7 - i % 8) & 1) != 0;
}

std::vector<bool> ReadBitmap(std::string_view bitmap, size_t n) {
  std::vector<bool> bits(n);
  for (size_t i = 0; i < n; ++i) bits[i] = BitLsb(bitmap, i);
  return bits;
}

// ---- Server flavour and FORMAT_DESCRIPTION ---------------------------------------

bool IsMariaDb(const FormatDescription* format) {
  return format != nullptr && format->server_version.find("MariaDB") != std::string::npos;
}

// "10.11.19-MariaDB-log" -> {10, 11, 19}; missing parts are 0.
std::array<int, 3> VersionTriple(std::string_view version) {
  std::array<int, 3> v{};
  size_t i = 0;
  for (int part = 0; part < 3; ++part) {
    int n = 0;
    while (i < version.size() && version[i] >= '0' && version[i] <= '9' && n < 100000) {
      n = n * 10 + (version[i] - '0');
      ++i;
    }
    v[part] = n;
    if (i >= version.size() || version[i] != '.') break;
    ++i;
  }
  return v;
}

// Servers from these versions on end the FORMAT_DESCRIPTION with the checksum
// algorithm byte and a 4-byte checksum (or room for one when the algorithm is
// OFF), whatever the algorithm.
bool HasChecksumAlgorithm(std::string_view server_version) {
  const std::array<int, 3> v = VersionTriple(server_version);
  const bool mariadb = server_version.find("MariaDB") != std::string_view::npos;
  return v >= (mariadb ? std::array<int, 3>{5, 3, 0} : std::array<int, 3>{5, 6, 1});
}

// Post-header length of `type` as the format announces it, or the v4 default.
size_t PostHeaderLength(const FormatDescription* format, uint8_t type, size_t fallback) {
  if (format != nullptr && type >= 1 && type <= format->post_header_lengths.size()) {
    return format->post_header_lengths[type - 1];
  }
  return fallback;
}

// FORMAT_DESCRIPTION: binlog version, server version (50 bytes, NUL-padded),
// creation time, header length, one post-header length per event type, and,
// from checksum-aware servers, the checksum algorithm and a CRC32 (room).
Result<FormatDescription> ParseFormatDescription(std::string_view bytes, Reader& r) {
  FormatDescription f;
  RETURN_IF_ERROR(r.ReadU16(&f.binlog_version));
  if (f.binlog_version != 4) {
    return r.Malformed(kHeaderSize, fmt::format("binlog version {} (only 4 is supported)", f.binlog_version));
  }
  std::string_view version;
  RETURN_IF_ERROR(r.ReadBytes(kServerVersionSize, &version));
  f.server_version.assign(version.substr(0, version.find('\0')));
  RETURN_IF_ERROR(r.Skip(4));  // create timestamp
  const size_t header_length_at = r.pos();
  RETURN_IF_ERROR(r.ReadU8(&f.header_length));
  if (f.header_length < kHeaderSize) {
    return r.Malformed(header_length_at, fmt::format("event header length {} below 19", f.header_length));
  }
  std::string_view rest = r.Rest();
  if (HasChecksumAlgorithm(f.server_version)) {
    if (rest.size() < 1 + kChecksumSize) return r.Truncated(bytes.size());
    const size_t alg_at = bytes.size() - kChecksumSize - 1;
    const uint8_t alg = static_cast<uint8_t>(bytes[alg_at]);
    if (alg != 0 && alg != 1 && alg != 0xff) {
      return r.Malformed(alg_at, fmt::format("unknown checksum algorithm {}", alg));
    }
    f.checksum_crc32 = alg == 1;
    rest.remove_suffix(1 + kChecksumSize);
  }
  f.post_header_lengths.assign(rest.begin(), rest.end());
  return f;
}

// Checks the CRC32 trailer. A FORMAT_DESCRIPTION is checksummed with
// LOG_EVENT_BINLOG_IN_USE_F clear: the server clears it in place when it
// closes the binlog, without recomputing the checksum.
Status VerifyChecksum(std::string_view bytes, const Reader& r) {
  const size_t trailer_at = bytes.size() - kChecksumSize;
  uint32_t stored = 0;
  for (size_t i = 0; i < kChecksumSize; ++i) {
    stored |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[trailer_at + i])) << (8 * i);
  }
  uint32_t computed = 0;
  if (static_cast<uint8_t>(bytes[4]) == static_cast<uint8_t>(EventType::kFormatDescription)) {
    const char flags = static_cast<char>(static_cast<uint8_t>(bytes[kFlagsOffset]) & ~kBinlogInUseFlag);
    computed = Crc32(computed, bytes.substr(0, kFlagsOffset));
    computed = Crc32(computed, std::string_view(&flags, 1));
    computed = Crc32(computed, bytes.substr(kFlagsOffset + 1, trailer_at - kFlagsOffset - 1));
  } else {
    computed = Crc32(computed, bytes.substr(0, trailer_at));
  }
  if (stored == computed) return Status::Ok();
  return r.Malformed(trailer_at, fmt::format("CRC32 mismatch (stored 0x{:08x}, computed 0x{:08x})", stored, computed));
}

// ---- Events other than rows --------------------------------------------------------

// QUERY: thread id, execution time, schema name length, error code, status
// variables length (post-header); status variables, schema name and NUL, then
// the statement to the end.
Result<QueryEvent> ParseQuery(Reader& r, size_t post_header_length) {
  QueryEvent q;
  uint8_t schema_length = 0;
  uint16_t status_vars_length = 0;
  RETURN_IF_ERROR(r.ReadU32(&q.thread_id));
  RETURN_IF_ERROR(r.ReadU32(&q.exec_time));
  RETURN_IF_ERROR(r.ReadU8(&schema_length));
  RETURN_IF_ERROR(r.ReadLittle(2, &q.error_code));
  size_t read = 11;
  if (post_header_length >= 13) {
    RETURN_IF_ERROR(r.ReadU16(&status_vars_length));
    read = 13;
  }
  if (post_header_length > read) RETURN_IF_ERROR(r.Skip(post_header_length - read));
  RETURN_IF_ERROR(r.Skip(status_vars_length));
  std::string_view schema;
  RETURN_IF_ERROR(r.ReadBytes(schema_length, &schema));
  const size_t nul_at = r.pos();
  uint8_t nul = 1;
  RETURN_IF_ERROR(r.ReadU8(&nul));
  if (nul != 0) return r.Malformed(nul_at, "schema name without terminating NUL");
  q.schema.assign(schema);
  q.query.assign(r.Rest());
  return q;
}

// ROTATE: the position in the next file, then its name to the end.
Result<RotateEvent> ParseRotate(Reader& r, size_t post_header_length) {
  RotateEvent e;
  RETURN_IF_ERROR(r.ReadU64(&e.position));
  if (post_header_length > 8) RETURN_IF_ERROR(r.Skip(post_header_length - 8));
  e.next_file.assign(r.Rest());
  return e;
}

Result<XidEvent> ParseXid(Reader& r) {
  XidEvent e;
  RETURN_IF_ERROR(r.ReadU64(&e.xid));
  RETURN_IF_ERROR(r.ExpectEnd());
  return e;
}

// MariaDB GTID_EVENT: seq_no, domain_id, flags2; then a commit id or XA
// details depending on flags2, which midflight does not need.
Result<GtidEvent> ParseGtid(Reader& r, uint32_t server_id) {
  GtidEvent g;
  g.server_id = server_id;
  RETURN_IF_ERROR(r.ReadU64(&g.seq_no));
  RETURN_IF_ERROR(r.ReadU32(&g.domain_id));
  RETURN_IF_ERROR(r.ReadU8(&g.flags2));
  r.Rest();
  return g;
}

// Table id: 6 bytes, or 4 in the 5.0-era layout whose post-header is 6 bytes.
Status ReadTableId(Reader& r, size_t post_header_length, uint64_t* table_id) {
  if (post_header_length == 6) return r.ReadLittle(4, table_id);
  return r.ReadLittle(6, table_id);
}

// Size of each column's entry in the TABLE_MAP metadata block.
Result<size_t> MetadataSize(const Reader& r, size_t at, uint8_t type, size_t column) {
  switch (type) {
    case kTypeDecimal:
    case kTypeTiny:
    case kTypeShort:
    case kTypeLong:
    case kTypeNull:
    case kTypeTimestamp:
    case kTypeLongLong:
    case kTypeInt24:
    case kTypeDate:
    case kTypeTime:
    case kTypeDatetime:
    case kTypeYear:
    case kTypeNewDate: return size_t{0};
    case kTypeFloat:
    case kTypeDouble:
    case kTypeTimestamp2:
    case kTypeDatetime2:
    case kTypeTime2:
    case kTypeJson:
    case kTypeTinyBlob:
    case kTypeMediumBlob:
    case kTypeLongBlob:
    case kTypeBlob:
    case kTypeGeometry: return size_t{1};
    case kTypeVarchar:
    case kTypeBit:
    case kTypeNewDecimal:
    case kTypeEnum:
    case kTypeSet:
    case kTypeVarString:
    case kTypeString: return size_t{2};
    default: return r.Malformed(at, fmt::format("unknown type {} of column {}", type, column));
  }
}

Status ParseColumnMetadata(Reader& r, TableMapEvent* t) {
  uint64_t block_length = 0;
  RETURN_IF_ERROR(r.ReadPackedInt(&block_length));
  const size_t block_at = r.pos();
  std::string_view block;
  RETURN_IF_ERROR(r.ReadBytes(block_length, &block));
  Reader m(block, block_at, r.name());
  t->metadata.assign(t->types.size(), 0);
  for (size_t i = 0; i < t->types.size(); ++i) {
    const uint8_t type = t->types[i];
    ASSIGN_OR_RETURN(const size_t size, MetadataSize(r, m.pos(), type, i));
    std::string_view b;
    RETURN_IF_ERROR(m.ReadBytes(size, &b));
    const auto byte = [&b](size_t k) { return static_cast<uint16_t>(static_cast<uint8_t>(b[k])); };
    switch (type) {
      case kTypeVarchar:
      case kTypeVarString:
      case kTypeBit:  // little-endian
        t->metadata[i] = static_cast<uint16_t>(byte(0) | byte(1) << 8);
        break;
      case kTypeNewDecimal:
      case kTypeEnum:
      case kTypeSet:
      case kTypeString:  // two separate bytes
        t->metadata[i] = static_cast<uint16_t>(byte(0) << 8 | byte(1));
        break;
      default:
        if (size == 1) t->metadata[i] = byte(0);
        break;
    }
  }
  if (m.remaining() != 0) {
    return r.Malformed(m.pos(), fmt::format("{} unused bytes in the column metadata", m.remaining()));
  }
  return Status::Ok();
}

// Columns the SIGNEDNESS bitmap has a bit for.
bool IsNumeric(uint8_t type, bool mariadb) {
  switch (type) {
    case kTypeTiny:
    case kTypeShort:
    case kTypeInt24:
    case kTypeLong:
    case kTypeLongLong:
    case kTypeNewDecimal:
    case kTypeFloat:
    case kTypeDouble: return true;
    case kTypeYear: return mariadb;
    default: return false;
  }
}

// Optional metadata (binlog_row_metadata=MINIMAL/FULL): type, packed length,
// value. Only SIGNEDNESS and COLUMN_NAME are kept.
Status ParseOptionalMetadata(Reader& r, bool mariadb, TableMapEvent* t) {
  constexpr uint8_t kSignedness = 1;
  constexpr uint8_t kColumnName = 4;
  const size_t n = t->types.size();
  while (r.remaining() > 0) {
    const size_t field_at = r.pos();
    uint8_t type = 0;
    uint64_t length = 0;
    std::string_view value;
    RETURN_IF_ERROR(r.ReadU8(&type));
    RETURN_IF_ERROR(r.ReadPackedInt(&length));
    const size_t value_at = r.pos();
    RETURN_IF_ERROR(r.ReadBytes(length, &value));
    if (type == kSignedness) {
      size_t numeric = 0;
      for (uint8_t column_type : t->types) numeric += IsNumeric(column_type, mariadb) ? 1 : 0;
      if (value.size() != (numeric + 7) / 8) {
        return r.Malformed(
            field_at, fmt::format("SIGNEDNESS metadata of {} bytes for {} numeric columns", value.size(), numeric));
      }
      t->is_unsigned.assign(n, false);
      size_t k = 0;
      for (size_t i = 0; i < n; ++i) {
        if (IsNumeric(t->types[i], mariadb)) t->is_unsigned[i] = BitMsb(value, k++);
      }
    } else if (type == kColumnName) {
      Reader names(value, value_at, r.name());
      std::vector<std::string> column_names;
      while (names.remaining() > 0 && column_names.size() < n) {
        uint64_t name_length = 0;
        std::string_view name;
        RETURN_IF_ERROR(names.ReadPackedInt(&name_length));
        RETURN_IF_ERROR(names.ReadBytes(name_length, &name));
        column_names.emplace_back(name);
      }
      if (column_names.size() != n || names.remaining() != 0) {
        return r.Malformed(field_at, fmt::format("COLUMN_NAME metadata does not hold {} names", n));
      }
      t->column_names = std::move(column_names);
    }
  }
  return Status::Ok();
}

// TABLE_MAP: table id, flags, schema, table, column count, types, metadata
// block, NULL bitmap, then optional metadata to the end.
Result<TableMapEvent> ParseTableMap(Reader& r, size_t post_header_length, bool mariadb) {
  TableMapEvent t;
  RETURN_IF_ERROR(ReadTableId(r, post_header_length, &t.table_id));
  RETURN_IF_ERROR(r.ReadU16(&t.flags));
  if (post_header_length > 8) RETURN_IF_ERROR(r.Skip(post_header_length - 8));
  for (std::string* name : {&t.schema, &t.table}) {
    uint8_t length = 0;
    std::string_view text;
    RETURN_IF_ERROR(r.ReadU8(&length));
    RETURN_IF_ERROR(r.ReadBytes(length, &text));
    const size_t nul_at = r.pos();
    uint8_t nul = 1;
    RETURN_IF_ERROR(r.ReadU8(&nul));
    if (nul != 0) return r.Malformed(nul_at, "name without terminating NUL");
    name->assign(text);
  }
  uint64_t count = 0;
  RETURN_IF_ERROR(r.ReadPackedInt(&count));
  std::string_view types;
  RETURN_IF_ERROR(r.ReadBytes(count, &types));  // one byte per column: a huge count fails here
  t.types.assign(types.begin(), types.end());
  RETURN_IF_ERROR(ParseColumnMetadata(r, &t));
  std::string_view nulls;
  RETURN_IF_ERROR(r.ReadBytes((t.types.size() + 7) / 8, &nulls));
  t.nullable = ReadBitmap(nulls, t.types.size());
  RETURN_IF_ERROR(ParseOptionalMetadata(r, mariadb, &t));
  return t;
}

// WRITE/UPDATE/DELETE_ROWS v1 and v2. Post-header: table id, flags and, in
// v2, the length of an extra-data block (counting its own 2 bytes). Body:
// column count, the present-columns bitmap(s), the row images.
Result<RowsEvent> ParseRows(Reader& r, uint8_t type, size_t post_header_length) {
  RowsEvent e;
  bool v2 = false;
  switch (static_cast<EventType>(type)) {
    case EventType::kWriteRowsV2: v2 = true; [[fallthrough]];
    case EventType::kWriteRowsV1: e.kind = RowsKind::kWrite; break;
    case EventType::kUpdateRowsV2: v2 = true; [[fallthrough]];
    case EventType::kUpdateRowsV1: e.kind = RowsKind::kUpdate; break;
    case EventType::kDeleteRowsV2: v2 = true; [[fallthrough]];
    default: e.kind = RowsKind::kDelete; break;
  }
  RETURN_IF_ERROR(ReadTableId(r, post_header_length, &e.table_id));
  RETURN_IF_ERROR(r.ReadU16(&e.flags));
  size_t read = post_header_length == 6 ? 6 : 8;
  if (v2) {
    const size_t extra_at = r.pos();
    uint16_t extra_length = 0;
    RETURN_IF_ERROR(r.ReadU16(&extra_length));
    if (extra_length < 2) return r.Malformed(extra_at, fmt::format("extra data length {} below 2", extra_length));
    RETURN_IF_ERROR(r.Skip(extra_length - 2u));
    read += 2;
  }
  if (post_header_length > read) RETURN_IF_ERROR(r.Skip(post_header_length - read));
  const size_t count_at = r.pos();
  uint64_t count = 0;
  RETURN_IF_ERROR(r.ReadPackedInt(&count));
  if (count > std::numeric_limits<uint32_t>::max()) {
    return r.Malformed(count_at, fmt::format("column count {}", count));
  }
  e.column_count = static_cast<uint32_t>(count);
  const size_t bitmap_size = (e.column_count + 7) / 8;
  std::string_view bitmap;
  if (e.kind != RowsKind::kWrite) {
    RETURN_IF_ERROR(r.ReadBytes(bitmap_size, &bitmap));
    e.columns_before = ReadBitmap(bitmap, e.column_count);
  }
  if (e.kind != RowsKind::kDelete) {
    RETURN_IF_ERROR(r.ReadBytes(bitmap_size, &bitmap));
    e.columns_after = ReadBitmap(bitmap, e.column_count);
  }
  e.rows_offset = r.pos();
  e.rows = r.Rest();
  return e;
}

bool IsRowsEvent(uint8_t type) {
  return (type >= static_cast<uint8_t>(EventType::kWriteRowsV1) &&
          type <= static_cast<uint8_t>(EventType::kDeleteRowsV1)) ||
         (type >= static_cast<uint8_t>(EventType::kWriteRowsV2) &&
          type <= static_cast<uint8_t>(EventType::kDeleteRowsV2));
}

// Events that carry changes midflight cannot decode: skipping them would lose data.
const char* UnsupportedReason(uint8_t type) {
  if (type >= static_cast<uint8_t>(EventType::kQueryCompressed) && type <= 171) {
    return "MariaDB compressed events are not supported (log_bin_compress=ON on the source)";
  }
  if (type == 39) return "MySQL partial JSON updates are not supported (binlog_row_value_options=PARTIAL_JSON)";
  if (type == 40) return "MySQL compressed transactions are not supported (binlog_transaction_compression=ON)";
  return nullptr;
}

// ---- Row images ----------------------------------------------------------------

constexpr std::array<uint64_t, 10> kPow10 = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000};

// "." and the first `digits` digits of `micros` (< 1000000), or "".
std::string Fraction(uint64_t micros, unsigned digits) {
  if (digits == 0) return {};
  return fmt::format(".{:0{}}", micros / kPow10[6 - digits], digits);
}

// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's civil_from_days).
void CivilFromDays(int64_t days, int64_t* year, unsigned* month, unsigned* day) {
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *day = doy - (153 * mp + 2) / 5 + 1;
  *month = mp < 10 ? mp + 3 : mp - 9;
  *year = static_cast<int64_t>(yoe) + era * 400 + (*month <= 2 ? 1 : 0);
}

class RowDecoder {
 public:
  RowDecoder(const RowsEvent& rows, const TableMapEvent& map, const ColumnHints& hints, const char* name)
      : rows_(rows), map_(map), hints_(hints), r_(rows.rows, rows.rows_offset, name) {}

  // Each row: the before image (update, delete), then the after image (write, update).
  Result<std::vector<RowImage>> DecodeAll() {
    std::vector<RowImage> images;
    while (r_.remaining() > 0) {
      const size_t row_at = r_.pos();
      RowImage image;
      if (rows_.kind != RowsKind::kWrite) RETURN_IF_ERROR(DecodeImage(rows_.columns_before, &image.before));
      if (rows_.kind != RowsKind::kDelete) RETURN_IF_ERROR(DecodeImage(rows_.columns_after, &image.after));
      if (r_.pos() == row_at) return r_.Malformed(row_at, "row image without columns");
      images.push_back(std::move(image));
    }
    return images;
  }

 private:
  // One image: a NULL bitmap over the present columns, then their values.
  Status DecodeImage(const std::vector<bool>& present, std::vector<Datum>* out) {
    const size_t n = map_.types.size();
    const size_t present_count = static_cast<size_t>(std::count(present.begin(), present.end(), true));
    std::string_view nulls;
    RETURN_IF_ERROR(r_.ReadBytes((present_count + 7) / 8, &nulls));
    out->assign(n, Datum::Unchanged());
    size_t k = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!present[i]) continue;
      if (BitLsb(nulls, k++)) {
        (*out)[i] = Datum::Null();
        continue;
      }
      column_ = i;
      value_at_ = r_.pos();
      RETURN_IF_ERROR(DecodeValue(&(*out)[i]));
    }
    return Status::Ok();
  }

  Status DecodeValue(Datum* out) {
    const uint8_t type = map_.types[column_];
    const uint16_t meta = map_.metadata[column_];
    switch (type) {
      case kTypeTiny: return DecodeInteger(1, out);
      case kTypeShort: return DecodeInteger(2, out);
      case kTypeInt24: return DecodeInteger(3, out);
      case kTypeLong: return DecodeInteger(4, out);
      case kTypeLongLong: return DecodeInteger(8, out);
      case kTypeNewDecimal: return DecodeDecimal(meta >> 8, meta & 0xff, out);
      case kTypeFloat: return DecodeFloat(out);
      case kTypeDouble: return DecodeDouble(out);
      case kTypeYear: return DecodeYear(out);
      case kTypeDate:
      case kTypeNewDate: return DecodeDate(out);
      case kTypeTime: return DecodeTime(out);
      case kTypeTime2: return DecodeTime2(meta, out);
      case kTypeDatetime: return DecodeDatetime(out);
      case kTypeDatetime2: return DecodeDatetime2(meta, out);
      case kTypeTimestamp: return DecodeTimestamp(out);
      case kTypeTimestamp2: return DecodeTimestamp2(meta, out);
      case kTypeBit: return DecodeBit(meta, out);
      case kTypeEnum:
      case kTypeSet: return DecodeEnumOrSet(type, meta & 0xff, out);
      case kTypeString: return DecodeString(meta, out);
      case kTypeVarchar:
      case kTypeVarString: return DecodeLengthPrefixed(meta > 255 ? 2 : 1, meta, out);
      case kTypeTinyBlob:
      case kTypeMediumBlob:
      case kTypeLongBlob:
      case kTypeBlob:
      case kTypeGeometry: return DecodeBlob(meta, out);
      case kTypeJson: return Bad("MySQL binary JSON is not supported");
      case kTypeNull: *out = Datum::Null(); return Status::Ok();
      default: return Bad(fmt::format("column type {} is not supported", type));
    }
  }

  // A value that cannot be decoded; names the column and the value's offset.
  Status Bad(std::string_view problem) const {
    std::string column = fmt::format("column {}", column_);
    if (column_ < map_.column_names.size()) column += fmt::format(" ({})", map_.column_names[column_]);
    return r_.Malformed(value_at_, fmt::format("{} for {} of {}.{}", problem, column, map_.schema, map_.table));
  }

  bool IsUnsigned() const {
    if (column_ < map_.is_unsigned.size()) return map_.is_unsigned[column_];
    return column_ < hints_.is_unsigned.size() && hints_.is_unsigned[column_];
  }

  unsigned Precision() const {
    return column_ < hints_.temporal_precision.size() ? hints_.temporal_precision[column_] : 0;
  }

  // TINY/SHORT/INT24/LONG/LONGLONG: little-endian two's complement.
  Status DecodeInteger(size_t size, Datum* out) {
    uint64_t v = 0;
    RETURN_IF_ERROR(r_.ReadLittle(size, &v));
    if (IsUnsigned()) {
      *out = Datum::Text(fmt::format("{}", v));
    } else {
      const unsigned shift = static_cast<unsigned>(64 - 8 * size);
      *out = Datum::Text(fmt::format("{}", static_cast<int64_t>(v << shift) >> shift));
    }
    return Status::Ok();
  }

  // MySQL's binary decimal: integer and fraction digits in groups of nine per
  // 4 bytes (a leading/trailing partial group takes 1-4 bytes), big-endian,
  // the sign bit of the first byte flipped, every byte inverted if negative.
  Status DecodeDecimal(unsigned precision, unsigned scale, Datum* out) {
    static constexpr std::array<unsigned, 10> kDigitBytes = {0, 1, 1, 2, 2, 3, 3, 4, 4, 4};
    if (precision == 0 || precision > 65 || scale > 38 || scale > precision) {
      return Bad(fmt::format("invalid DECIMAL({},{}) metadata", precision, scale));
    }
    const unsigned int_digits = precision - scale;
    const unsigned int_full = int_digits / 9, int_partial = int_digits % 9;
    const unsigned frac_full = scale / 9, frac_partial = scale % 9;
    const size_t size = int_full * 4 + kDigitBytes[int_partial] + frac_full * 4 + kDigitBytes[frac_partial];
    std::string_view raw;
    RETURN_IF_ERROR(r_.ReadBytes(size, &raw));
    std::string bytes(raw);
    const bool negative = (static_cast<uint8_t>(bytes[0]) & 0x80) == 0;
    bytes[0] = static_cast<char>(bytes[0] ^ 0x80);
    const uint8_t mask = negative ? 0xff : 0x00;
    size_t pos = 0;
    bool valid = true;
    // Reads one group of `digits` digits stored in kDigitBytes[digits] (or 4) bytes.
    auto group = [&](unsigned digits, size_t nbytes) {
      uint64_t v = 0;
      for (size_t i = 0; i < nbytes; ++i) v = (v << 8) | (static_cast<uint8_t>(bytes[pos++]) ^ mask);
      if (v >= kPow10[digits]) valid = false;
      return fmt::format("{:0{}}", v, digits);
    };
    std::string int_text;
    if (int_partial > 0) int_text += group(int_partial, kDigitBytes[int_partial]);
    for (unsigned i = 0; i < int_full; ++i) int_text += group(9, 4);
    std::string frac_text;
    for (unsigned i = 0; i < frac_full; ++i) frac_text += group(9, 4);
    if (frac_partial > 0) frac_text += group(frac_partial, kDigitBytes[frac_partial]);
    if (!valid) return Bad(fmt::format("invalid DECIMAL({},{}) value", precision, scale));
    const size_t first = int_text.find_first_not_of('0');
    int_text = first == std::string::npos ? "0" : int_text.substr(first);
    const bool zero = int_text == "0" && frac_text.find_first_not_of('0') == std::string::npos;
    std::string text = negative && !zero ? "-" : "";
    text += int_text;
    if (scale > 0) text += "." + frac_text;
    *out = Datum::Text(std::move(text));
    return Status::Ok();
  }

  template <typename T>
  static std::string Shortest(T v) {
    std::array<char, 64> buf{};
    const std::to_chars_result res = std::to_chars(buf.data(), buf.data() + buf.size(), v);
    return std::string(buf.data(), res.ptr);
  }
  Status DecodeFloat(Datum* out) {
    uint32_t bits = 0;
    RETURN_IF_ERROR(r_.ReadU32(&bits));
    float v = 0;
    std::memcpy(&v, &bits, sizeof v);
    *out = Datum::Text(Shortest(v));
    return Status::Ok();
  }
  Status DecodeDouble(Datum* out) {
    uint64_t bits = 0;
    RETURN_IF_ERROR(r_.ReadU64(&bits));
    double v = 0;
    std::memcpy(&v, &bits, sizeof v);
    *out = Datum::Text(Shortest(v));
    return Status::Ok();
  }

  // YEAR: one byte, years since 1900; 0 is the year 0000.
  Status DecodeYear(Datum* out) {
    uint8_t v = 0;
    RETURN_IF_ERROR(r_.ReadU8(&v));
    *out = Datum::Text(v == 0 ? "0" : fmt::format("{}", 1900 + v));
    return Status::Ok();
  }

  // DATE: 3 bytes little-endian, year << 9 | month << 5 | day.
  Status DecodeDate(Datum* out) {
    uint32_t v = 0;
    RETURN_IF_ERROR(r_.ReadLittle(3, &v));
    const unsigned day = v & 31, month = v >> 5 & 15, year = v >> 9;
    if (month > 12) return Bad(fmt::format("invalid DATE month {}", month));
    *out = Datum::Text(fmt::format("{:04}-{:02}-{:02}", year, month, day));
    return Status::Ok();
  }

  Status FormatTime(bool negative, uint64_t hours, uint64_t minutes, uint64_t seconds, uint64_t micros, unsigned digits,
                    Datum* out) const {
    if (minutes > 59 || seconds > 59 || micros > 999999) {
      return Bad(fmt::format("invalid TIME value {}:{}:{}.{}", hours, minutes, seconds, micros));
    }
    *out = Datum::Text(
        fmt::format("{}{:02}:{:02}:{:02}{}", negative ? "-" : "", hours, minutes, seconds, Fraction(micros, digits)));
    return Status::Ok();
  }
  Status FormatTime(int64_t total_micros, unsigned digits, Datum* out) const {
    const bool negative = total_micros < 0;
    const uint64_t m = negative ? 0 - static_cast<uint64_t>(total_micros) : static_cast<uint64_t>(total_micros);
    const uint64_t s = m / 1000000;
    return FormatTime(negative, s / 3600, s / 60 % 60, s % 60, m % 1000000, digits, out);
  }

  // TIME (classic): 3 bytes little-endian signed, HHMMSS as a decimal number.
  // MariaDB's TIME(n>0) of this type: n-dependent big-endian count of
  // 10^-n seconds offset by the count at 839:00:00.
  Status DecodeTime(Datum* out) {
    static constexpr std::array<size_t, 7> kHiresBytes = {3, 4, 4, 5, 5, 5, 6};
    const unsigned digits = Precision();
    if (digits > 6) return Bad(fmt::format("invalid TIME precision {}", digits));
    if (digits > 0) {
      uint64_t packed = 0;
      RETURN_IF_ERROR(r_.ReadBig(kHiresBytes[digits], &packed));
      const int64_t zero_point = 3020400LL * 1000000 / static_cast<int64_t>(kPow10[6 - digits]);
      const int64_t units = static_cast<int64_t>(packed) - zero_point;
      return FormatTime(units * static_cast<int64_t>(kPow10[6 - digits]), digits, out);
    }
    uint32_t raw = 0;
    RETURN_IF_ERROR(r_.ReadLittle(3, &raw));
    const int32_t v = static_cast<int32_t>(raw << 8) >> 8;
    const bool negative = v < 0;
    const uint32_t a = negative ? 0u - static_cast<uint32_t>(v) : static_cast<uint32_t>(v);
    return FormatTime(negative, a / 10000, a / 100 % 100, a % 100, 0, 0, out);
  }

  // The fraction of TIME2/DATETIME2/TIMESTAMP2: 0-3 bytes big-endian by
  // precision, in units of 10^-2, 10^-4 or 10^-6 s. Returns microseconds.
  // Valid fractions never have the top bit set, so reading them unsigned (MySQL
  // reads DATETIME2's signed) changes nothing but what counts as invalid.
  Status ReadFraction(unsigned digits, uint64_t* micros) {
    const size_t size = (digits + 1) / 2;
    uint64_t v = 0;
    RETURN_IF_ERROR(r_.ReadBig(size, &v));
    *micros = size == 0 ? 0 : v * kPow10[6 - 2 * size];
    return Status::Ok();
  }

  Status CheckDigits(uint16_t meta, const char* type) const {
    if (meta > 6) return Bad(fmt::format("invalid {} precision {}", type, meta));
    return Status::Ok();
  }

  // TIME2: 3 bytes big-endian, 0x800000 + (sign) hours << 12 | minutes << 6 |
  // seconds, then the fraction. A negative value with a fraction is stored as
  // the next lower second plus a positive fraction, for binary ordering.
  Status DecodeTime2(uint16_t meta, Datum* out) {
    RETURN_IF_ERROR(CheckDigits(meta, "TIME2"));
    uint64_t raw = 0;
    RETURN_IF_ERROR(r_.ReadBig(3, &raw));
    int64_t int_part = static_cast<int64_t>(raw) - 0x800000;
    const size_t frac_size = (meta + 1u) / 2;
    uint64_t frac_raw = 0;
    RETURN_IF_ERROR(r_.ReadBig(frac_size, &frac_raw));
    int64_t frac = static_cast<int64_t>(frac_raw);
    if (int_part < 0 && frac != 0) {
      ++int_part;
      frac -= static_cast<int64_t>(1) << (8 * frac_size);
    }
    // packed = int_part << 24 + fraction in microseconds, as MySQL's my_time_packed_from_binary.
    const int64_t frac_micros = frac_size == 0 ? 0 : frac * static_cast<int64_t>(kPow10[6 - 2 * frac_size]);
    const int64_t packed = int_part * (int64_t{1} << 24) + frac_micros;
    const bool negative = packed < 0;
    const uint64_t a = negative ? 0 - static_cast<uint64_t>(packed) : static_cast<uint64_t>(packed);
    const uint64_t hms = a >> 24;
    return FormatTime(negative, hms >> 12 & 0x3ff, hms >> 6 & 0x3f, hms & 0x3f, a & 0xffffff, meta, out);
  }

  Status FormatDatetime(uint64_t year, uint64_t month, uint64_t day, uint64_t hour, uint64_t minute, uint64_t second,
                        uint64_t micros, unsigned digits, Datum* out) const {
    if (year > 9999 || month > 12 || day > 31 || hour > 23 || minute > 59 || second > 59 || micros > 999999) {
      return Bad(
          fmt::format("invalid DATETIME value {}-{}-{} {}:{}:{}.{}", year, month, day, hour, minute, second, micros));
    }
    *out = Datum::Text(fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}{}", year, month, day, hour, minute, second,
                                   Fraction(micros, digits)));
    return Status::Ok();
  }

  // DATETIME (classic): 8 bytes little-endian, YYYYMMDDhhmmss as a decimal
  // number. MariaDB's DATETIME(n>0) of this type: n-dependent big-endian
  // count of 10^-n seconds in a calendar where a month has 32 days and a year 13 months.
  Status DecodeDatetime(Datum* out) {
    static constexpr std::array<size_t, 7> kHiresBytes = {5, 6, 6, 7, 7, 7, 8};
    const unsigned digits = Precision();
    if (digits > 6) return Bad(fmt::format("invalid DATETIME precision {}", digits));
    if (digits > 0) {
      uint64_t v = 0;
      RETURN_IF_ERROR(r_.ReadBig(kHiresBytes[digits], &v));
      if (v > std::numeric_limits<uint64_t>::max() / kPow10[6 - digits]) return Bad("invalid DATETIME value");
      v *= kPow10[6 - digits];
      const uint64_t micros = v % 1000000;
      v /= 1000000;
      const uint64_t second = v % 60, minute = v / 60 % 60, hour = v / 3600 % 24;
      v /= 86400;
      return FormatDatetime(v / 32 / 13, v / 32 % 13, v % 32, hour, minute, second, micros, digits, out);
    }
    uint64_t v = 0;
    RETURN_IF_ERROR(r_.ReadU64(&v));
    const uint64_t date = v / 1000000, time = v % 1000000;
    return FormatDatetime(date / 10000, date / 100 % 100, date % 100, time / 10000, time / 100 % 100, time % 100, 0, 0,
                          out);
  }

  // DATETIME2: 5 bytes big-endian, 0x8000000000 + (sign) (year * 13 + month)
  // << 22 | day << 17 | hour << 12 | minute << 6 | second, then the fraction.
  Status DecodeDatetime2(uint16_t meta, Datum* out) {
    RETURN_IF_ERROR(CheckDigits(meta, "DATETIME2"));
    uint64_t raw = 0;
    RETURN_IF_ERROR(r_.ReadBig(5, &raw));
    uint64_t micros = 0;
    RETURN_IF_ERROR(ReadFraction(meta, &micros));
    if (raw < 0x8000000000ULL) return Bad("negative DATETIME2 value");
    const uint64_t v = raw - 0x8000000000ULL;
    const uint64_t ymd = v >> 17, ym = ymd >> 5, hms = v & 0x1ffff;
    return FormatDatetime(ym / 13, ym % 13, ymd & 31, hms >> 12, hms >> 6 & 63, hms & 63, micros, meta, out);
  }

  Status FormatTimestamp(uint64_t seconds, uint64_t micros, unsigned digits, Datum* out) const {
    if (micros > 999999) return Bad(fmt::format("invalid TIMESTAMP fraction {}", micros));
    if (seconds == 0) {
      *out = Datum::Text("0000-00-00 00:00:00" + Fraction(micros, digits));
      return Status::Ok();
    }
    int64_t year = 0;
    unsigned month = 0, day = 0;
    CivilFromDays(static_cast<int64_t>(seconds / 86400), &year, &month, &day);
    const uint64_t s = seconds % 86400;
    return FormatDatetime(static_cast<uint64_t>(year), month, day, s / 3600, s / 60 % 60, s % 60, micros, digits, out);
  }

  // TIMESTAMP (classic): 4 bytes little-endian seconds since the epoch.
  // MariaDB's TIMESTAMP(n>0) of this type: 4 bytes big-endian seconds, then
  // 1-3 bytes big-endian of 10^-n seconds.
  Status DecodeTimestamp(Datum* out) {
    static constexpr std::array<size_t, 7> kFractionBytes = {0, 1, 1, 2, 2, 3, 3};
    const unsigned digits = Precision();
    if (digits > 6) return Bad(fmt::format("invalid TIMESTAMP precision {}", digits));
    if (digits > 0) {
      uint64_t seconds = 0, fraction = 0;
      RETURN_IF_ERROR(r_.ReadBig(4, &seconds));
      RETURN_IF_ERROR(r_.ReadBig(kFractionBytes[digits], &fraction));
      return FormatTimestamp(seconds, fraction * kPow10[6 - digits], digits, out);
    }
    uint32_t seconds = 0;
    RETURN_IF_ERROR(r_.ReadU32(&seconds));
    return FormatTimestamp(seconds, 0, 0, out);
  }

  // TIMESTAMP2: 4 bytes big-endian seconds since the epoch, then the fraction.
  Status DecodeTimestamp2(uint16_t meta, Datum* out) {
    RETURN_IF_ERROR(CheckDigits(meta, "TIMESTAMP2"));
    uint64_t seconds = 0;
    RETURN_IF_ERROR(r_.ReadBig(4, &seconds));
    uint64_t micros = 0;
    RETURN_IF_ERROR(ReadFraction(meta, &micros));
    return FormatTimestamp(seconds, micros, meta, out);
  }

  // BIT(n): ceil(n / 8) bytes big-endian; metadata bytes << 8 | extra bits.
  Status DecodeBit(uint16_t meta, Datum* out) {
    const unsigned bits = (meta >> 8) * 8u + (meta & 0xff);
    if (bits == 0 || bits > 64 || (meta & 0xff) > 7) return Bad(fmt::format("invalid BIT metadata 0x{:04x}", meta));
    uint64_t v = 0;
    RETURN_IF_ERROR(r_.ReadBig((bits + 7) / 8, &v));
    if (bits < 64 && (v >> bits) != 0) return Bad(fmt::format("BIT({}) value {} too wide", bits, v));
    *out = Datum::Text(fmt::format("{}", v));
    return Status::Ok();
  }

  // ENUM: 1-based index in 1 or 2 bytes; SET: member bitmask in 1-4 or 8 bytes.
  Status DecodeEnumOrSet(uint8_t type, unsigned size, Datum* out) {
    const bool valid = type == kTypeEnum ? size == 1 || size == 2 : (size >= 1 && size <= 4) || size == 8;
    if (!valid) return Bad(fmt::format("invalid {} size {}", type == kTypeEnum ? "ENUM" : "SET", size));
    uint64_t v = 0;
    RETURN_IF_ERROR(r_.ReadLittle(size, &v));
    *out = Datum::Text(fmt::format("{}", v));
    return Status::Ok();
  }

  // STRING covers CHAR, BINARY, ENUM and SET. Metadata: first byte the real
  // type, second the maximum byte length; a CHAR longer than 255 bytes keeps
  // bits 8-9 of its length inverted in bits 4-5 of the first byte.
  Status DecodeString(uint16_t meta, Datum* out) {
    const unsigned byte0 = meta >> 8, byte1 = meta & 0xff;
    if (byte0 == kTypeEnum || byte0 == kTypeSet) return DecodeEnumOrSet(static_cast<uint8_t>(byte0), byte1, out);
    unsigned max_length = byte1;
    if ((byte0 & 0x30) != 0x30) max_length |= ((byte0 & 0x30) ^ 0x30) << 4;
    RETURN_IF_ERROR(DecodeLengthPrefixed(max_length > 255 ? 2 : 1, max_length, out));
    if (column_ < hints_.pad_to.size() && out->text.size() < hints_.pad_to[column_])
      out->text.resize(hints_.pad_to[column_], '\0');
    return Status::Ok();
  }

  Status DecodeLengthPrefixed(size_t prefix, unsigned max_length, Datum* out) {
    uint32_t length = 0;
    RETURN_IF_ERROR(r_.ReadLittle(prefix, &length));
    if (length > max_length) return Bad(fmt::format("length {} over the maximum {}", length, max_length));
    std::string_view bytes;
    RETURN_IF_ERROR(r_.ReadBytes(length, &bytes));
    *out = Datum::Text(std::string(bytes));
    return Status::Ok();
  }

  // BLOB/TEXT/GEOMETRY (and MariaDB's JSON): a 1-4 byte little-endian length
  // (the size is the metadata), then the bytes.
  Status DecodeBlob(uint16_t meta, Datum* out) {
    if (meta < 1 || meta > 4) return Bad(fmt::format("invalid BLOB length size {}", meta));
    uint64_t length = 0;
    RETURN_IF_ERROR(r_.ReadLittle(meta, &length));
    std::string_view bytes;
    RETURN_IF_ERROR(r_.ReadBytes(length, &bytes));
    *out = Datum::Text(std::string(bytes));
    return Status::Ok();
  }

  const RowsEvent& rows_;
  const TableMapEvent& map_;
  const ColumnHints& hints_;
  Reader r_;
  size_t column_ = 0;    // column being decoded, for messages
  size_t value_at_ = 0;  // where its value starts
};

const char* RowsName(RowsKind kind) {
  switch (kind) {
    case RowsKind::kWrite: return "WRITE_ROWS";
    case RowsKind::kUpdate: return "UPDATE_ROWS";
    case RowsKind::kDelete: return "DELETE_ROWS";
  }
  return "ROWS";
}

}  // namespace

std::string EventTypeName(uint8_t type) {
  switch (type) {
    case 1: return "START_V3";
    case 2: return "QUERY";
    case 3: return "STOP";
    case 4: return "ROTATE";
    case 5: return "INTVAR";
    case 13: return "RAND";
    case 14: return "USER_VAR";
    case 15: return "FORMAT_DESCRIPTION";
    case 16: return "XID";
    case 19: return "TABLE_MAP";
    case 23:
    case 30: return "WRITE_ROWS";
    case 24:
    case 31: return "UPDATE_ROWS";
    case 25:
    case 32: return "DELETE_ROWS";
    case 26: return "INCIDENT";
    case 27: return "HEARTBEAT";
    case 29: return "ROWS_QUERY";
    case 33: return "MYSQL_GTID";
    case 34: return "ANONYMOUS_GTID";
    case 35: return "PREVIOUS_GTIDS";
    case 39: return "PARTIAL_UPDATE_ROWS";
    case 40: return "TRANSACTION_PAYLOAD";
    case 160: return "ANNOTATE_ROWS";
    case 161: return "BINLOG_CHECKPOINT";
    case 162: return "GTID";
    case 163: return "GTID_LIST";
    case 164: return "START_ENCRYPTION";
    case 165: return "QUERY_COMPRESSED";
    case 166: return "WRITE_ROWS_COMPRESSED_V1";
    case 167: return "UPDATE_ROWS_COMPRESSED_V1";
    case 168: return "DELETE_ROWS_COMPRESSED_V1";
    case 169: return "WRITE_ROWS_COMPRESSED";
    case 170: return "UPDATE_ROWS_COMPRESSED";
    case 171: return "DELETE_ROWS_COMPRESSED";
    default: return fmt::format("event type {}", type);
  }
}

std::string GtidEvent::ToString() const {
  return fmt::format("{}-{}-{}", domain_id, server_id, seq_no);
}

Result<Event> ParseEvent(std::string_view bytes, const FormatDescription* format) {
  Event ev;
  EventHeader& h = ev.header;
  Reader r(bytes, 0, "binlog");
  RETURN_IF_ERROR(r.ReadU32(&h.timestamp));
  RETURN_IF_ERROR(r.ReadU8(&h.type));
  r.set_name(EventTypeName(h.type));
  RETURN_IF_ERROR(r.ReadU32(&h.server_id));
  const size_t size_at = r.pos();
  RETURN_IF_ERROR(r.ReadU32(&h.event_size));
  RETURN_IF_ERROR(r.ReadU32(&h.log_pos));
  RETURN_IF_ERROR(r.ReadU16(&h.flags));
  if (h.event_size > bytes.size()) return r.Truncated(bytes.size());
  if (h.event_size < bytes.size()) {
    return r.Malformed(size_at,
                       fmt::format("event size {} does not match the {} bytes given", h.event_size, bytes.size()));
  }
  const bool is_format = h.type == static_cast<uint8_t>(EventType::kFormatDescription);
  const bool checksum = is_format ? false : format != nullptr && format->checksum_crc32;
  const size_t header_length =
      is_format || format == nullptr ? kHeaderSize : std::max<size_t>(kHeaderSize, format->header_length);
  const size_t body_end = bytes.size() - (checksum ? kChecksumSize : 0);
  if (body_end < header_length) {
    return r.Malformed(size_at, fmt::format("event size {} smaller than its header", h.event_size));
  }
  if (checksum) RETURN_IF_ERROR(VerifyChecksum(bytes, r));
  if (const char* reason = UnsupportedReason(h.type)) return r.Malformed(4, reason);

  // The body, without the extra header bytes and the checksum.
  Reader body(bytes.substr(header_length, body_end - header_length), header_length, r.name());
  switch (static_cast<EventType>(h.type)) {
    case EventType::kFormatDescription: {
      Reader whole(bytes, 0, r.name());
      RETURN_IF_ERROR(whole.Skip(kHeaderSize));
      ASSIGN_OR_RETURN(FormatDescription f, ParseFormatDescription(bytes, whole));
      if (f.checksum_crc32) RETURN_IF_ERROR(VerifyChecksum(bytes, r));
      ev.format = std::move(f);
      break;
    }
    case EventType::kRotate: {
      ASSIGN_OR_RETURN(RotateEvent e, ParseRotate(body, PostHeaderLength(format, h.type, 8)));
      ev.rotate = std::move(e);
      break;
    }
    case EventType::kQuery: {
      ASSIGN_OR_RETURN(QueryEvent e, ParseQuery(body, PostHeaderLength(format, h.type, 13)));
      ev.query = std::move(e);
      break;
    }
    case EventType::kXid: {
      ASSIGN_OR_RETURN(XidEvent e, ParseXid(body));
      ev.xid = e;
      break;
    }
    case EventType::kGtid: {
      ASSIGN_OR_RETURN(GtidEvent e, ParseGtid(body, h.server_id));
      ev.gtid = e;
      break;
    }
    case EventType::kTableMap: {
      ASSIGN_OR_RETURN(TableMapEvent e, ParseTableMap(body, PostHeaderLength(format, h.type, 8), IsMariaDb(format)));
      ev.table_map = std::move(e);
      break;
    }
    case EventType::kAnnotateRows: ev.annotate.emplace(body.Rest()); break;
    default:
      if (IsRowsEvent(h.type)) {
        const size_t v2 = h.type >= static_cast<uint8_t>(EventType::kWriteRowsV2) ? 2 : 0;
        ASSIGN_OR_RETURN(RowsEvent e, ParseRows(body, h.type, PostHeaderLength(format, h.type, 8 + v2)));
        ev.rows = std::move(e);
      }
      break;  // other types: the header only
  }
  return ev;
}

Result<std::vector<RowImage>> DecodeRows(const RowsEvent& rows, const TableMapEvent& map, const ColumnHints& hints) {
  const char* name = RowsName(rows.kind);
  if (rows.table_id != map.table_id) {
    return DataLoss(fmt::format("{} event of table id {} decoded with the TABLE_MAP of {}.{} (table id {})", name,
                                rows.table_id, map.schema, map.table, map.table_id));
  }
  const size_t n = map.types.size();
  const bool before = rows.kind != RowsKind::kWrite, after = rows.kind != RowsKind::kDelete;
  if (rows.column_count != n || map.metadata.size() != n || (before && rows.columns_before.size() != n) ||
      (after && rows.columns_after.size() != n)) {
    return DataLoss(fmt::format("{} event has {} columns but the TABLE_MAP of {}.{} has {}", name, rows.column_count,
                                map.schema, map.table, n));
  }
  RowDecoder decoder(rows, map, hints, name);
  return decoder.DecodeAll();
}

}  // namespace midflight::mysql
