// MariaDB / MySQL binary log events, decoded from bytes. Pure functions: no
// I/O, no Connector/C, so they are unit-tested on captured binlog files and
// can be fuzzed.
//
// Input is one whole event: the 19-byte common header, the body and, when the
// binlog has checksums (the FORMAT_DESCRIPTION event says so), the 4-byte
// CRC32 trailer. That is both what a binlog file holds after its 4-byte magic
// and what COM_BINLOG_DUMP sends after each packet's leading OK byte.
//
// A malformed or truncated event returns a DataLoss status naming the event
// type and byte offset ("truncated WRITE_ROWS event at byte 57"); the decoder
// never reads past the end of its input.
//
// Row values come out as Datums in the form midflight's MySQL applier writes
// back (see DecodeRows): numbers as decimal text, temporal values as
// 'YYYY-MM-DD HH:MM:SS[.ffffff]' text, string and binary values as their raw
// bytes in the column's own character set.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "core/value.h"

namespace midflight::mysql {

// Binlog event type codes (MySQL and MariaDB share the low ones).
enum class EventType : uint8_t {
  kQuery = 2,
  kStop = 3,
  kRotate = 4,
  kIntvar = 5,
  kRand = 13,
  kUserVar = 14,
  kFormatDescription = 15,
  kXid = 16,
  kTableMap = 19,
  kWriteRowsV1 = 23,
  kUpdateRowsV1 = 24,
  kDeleteRowsV1 = 25,
  kHeartbeat = 27,
  kWriteRowsV2 = 30,
  kUpdateRowsV2 = 31,
  kDeleteRowsV2 = 32,
  kAnnotateRows = 160,   // MariaDB: the statement text of the following row events
  kBinlogCheckpoint = 161,
  kGtid = 162,           // MariaDB: starts a transaction (or a standalone DDL)
  kGtidList = 163,
  kStartEncryption = 164,
  kQueryCompressed = 165,
  kWriteRowsCompressedV1 = 169,
  kUpdateRowsCompressedV1 = 170,
  kDeleteRowsCompressedV1 = 171,
};

// Name for messages: "WRITE_ROWS", "TABLE_MAP", or "event type 42".
std::string EventTypeName(uint8_t type);

// LOG_EVENT_SKIP_REPLICATION_F (mariadb_rpl.h): set on every event a session
// with skip_replication = 1 wrote; kept in a replica's binlog
// (log_slave_updates) while the replica has
// replicate_events_marked_for_skip = REPLICATE, checked on MariaDB 10.11.
constexpr uint16_t kSkipReplicationFlag = 0x8000;

struct EventHeader {
  uint32_t timestamp = 0;  // seconds since the Unix epoch (statement start on the source)
  uint8_t type = 0;
  uint32_t server_id = 0;
  uint32_t event_size = 0;  // whole event, header and checksum included
  uint32_t log_pos = 0;     // position of the NEXT event in the binlog file (0 for artificial events)
  uint16_t flags = 0;
};

// What a FORMAT_DESCRIPTION event tells about the events after it.
struct FormatDescription {
  uint16_t binlog_version = 4;
  std::string server_version;
  uint8_t header_length = 19;
  std::vector<uint8_t> post_header_lengths;  // index = type - 1
  bool checksum_crc32 = false;               // every event (this one included) ends with CRC32
};

struct RotateEvent {
  uint64_t position = 0;  // position in the next file
  std::string next_file;  // "mariadb-bin.000002"
};

struct QueryEvent {
  uint32_t thread_id = 0;
  uint32_t exec_time = 0;
  int16_t error_code = 0;
  std::string schema;  // default database of the statement
  std::string query;   // "BEGIN", "COMMIT", DDL text, ...
};

struct XidEvent {
  uint64_t xid = 0;
};

struct GtidEvent {  // MariaDB GTID_EVENT
  uint64_t seq_no = 0;
  uint32_t domain_id = 0;
  uint32_t server_id = 0;  // from the header
  uint8_t flags2 = 0;
  bool standalone() const { return (flags2 & 1) != 0; }  // FL_STANDALONE: no BEGIN/COMMIT follows (DDL)
  std::string ToString() const;  // "0-1-42"
};

// MySQL column type codes as they appear in TABLE_MAP.
enum ColumnTypeCode : uint8_t {
  kTypeDecimal = 0, kTypeTiny = 1, kTypeShort = 2, kTypeLong = 3, kTypeFloat = 4, kTypeDouble = 5,
  kTypeNull = 6, kTypeTimestamp = 7, kTypeLongLong = 8, kTypeInt24 = 9, kTypeDate = 10, kTypeTime = 11,
  kTypeDatetime = 12, kTypeYear = 13, kTypeNewDate = 14, kTypeVarchar = 15, kTypeBit = 16,
  kTypeTimestamp2 = 17, kTypeDatetime2 = 18, kTypeTime2 = 19,
  kTypeJson = 245, kTypeNewDecimal = 246, kTypeEnum = 247, kTypeSet = 248, kTypeTinyBlob = 249,
  kTypeMediumBlob = 250, kTypeLongBlob = 251, kTypeBlob = 252, kTypeVarString = 253, kTypeString = 254,
  kTypeGeometry = 255,
};

struct TableMapEvent {
  uint64_t table_id = 0;
  uint16_t flags = 0;
  std::string schema;
  std::string table;
  std::vector<uint8_t> types;      // ColumnTypeCode per column, as in TABLE_MAP (kTypeString may hide ENUM/SET)
  std::vector<uint16_t> metadata;  // per column, decoded from the metadata block (0 when the type has none)
  // metadata packing, as MySQL's table_def does it: NEWDECIMAL precision << 8 | scale;
  // STRING/ENUM/SET first byte << 8 | second byte (real type and length, see DecodeRows);
  // VARCHAR max byte length; BIT bytes << 8 | extra bits; BLOB/GEOMETRY/JSON length bytes;
  // FLOAT/DOUBLE byte size; TIME2/DATETIME2/TIMESTAMP2 fractional digits.
  std::vector<bool> nullable;
  // From the optional metadata block when the server logs it (binlog_row_metadata=MINIMAL/FULL);
  // empty otherwise.
  std::vector<bool> is_unsigned;   // per numeric column in column order, expanded to all columns (false elsewhere)
  std::vector<std::string> column_names;
};

enum class RowsKind : uint8_t { kWrite, kUpdate, kDelete };

// A rows event before its row images are decoded: they need the TABLE_MAP.
struct RowsEvent {
  RowsKind kind = RowsKind::kWrite;
  uint64_t table_id = 0;
  uint16_t flags = 0;  // bit 0: STMT_END (the last rows event of its statement)
  uint32_t column_count = 0;
  std::vector<bool> columns_before;  // columns present in the before image (update/delete)
  std::vector<bool> columns_after;   // columns present in the after image (write/update)
  std::string_view rows;             // the packed row images; points into the event's bytes
  bool stmt_end() const { return (flags & 1) != 0; }
  size_t rows_offset = 0;  // where `rows` starts in the event, so DecodeRows errors name event offsets
};

// One decoded row change. `before` is empty for writes and `after` for deletes.
// Each image has one Datum per column of the TABLE_MAP; a column absent from
// the image (binlog_row_image other than FULL) is Datum::Unchanged().
struct RowImage {
  std::vector<Datum> before;
  std::vector<Datum> after;
};

// Column semantics the binlog does not carry, from the catalog: whether an
// integer column is UNSIGNED (the TABLE_MAP has no sign unless the optional
// metadata is logged). Index = column index in the TABLE_MAP.
struct ColumnHints {
  std::vector<bool> is_unsigned;
  // Fractional-second digits of each temporal column (information_schema
  // COLUMNS.DATETIME_PRECISION; 0 or absent for other columns). Only read for
  // the pre-5.6 types TIME/DATETIME/TIMESTAMP (11/12/7), whose TABLE_MAP
  // entry carries no precision: MariaDB logs TIME(n)/DATETIME(n)/TIMESTAMP(n)
  // columns created with mysql56_temporal_format=OFF (or before 10.1; SHOW
  // CREATE TABLE marks them /* mariadb-5.3 */) that way, in a wider format
  // when n > 0. Getting n wrong misreads every later column of the row.
  std::vector<uint8_t> temporal_precision;
  // The size of each fixed-size binary column whose trailing 0x00 bytes the
  // server strips when logging, and which must be padded back (catalog.h
  // FixedBinarySize): BINARY(n) (n), MariaDB's UUID and INET6 (16), INET4 (4);
  // 0 for the others. Without it a UUID ending in 00 comes out 15 bytes long,
  // INET6 '::' empty, and a BINARY(4) key x'61620000' as x'6162', which
  // matches no row on the target.
  std::vector<uint8_t> pad_to;
};

struct Event {
  EventHeader header;
  // Exactly one of these is set, by header.type; none for types midflight skips.
  std::optional<FormatDescription> format;
  std::optional<RotateEvent> rotate;
  std::optional<QueryEvent> query;
  std::optional<XidEvent> xid;
  std::optional<GtidEvent> gtid;
  std::optional<TableMapEvent> table_map;
  std::optional<RowsEvent> rows;
  std::optional<std::string> annotate;  // ANNOTATE_ROWS statement text
};

// Parses one event. `format` is the last FORMAT_DESCRIPTION seen (nullptr
// before the first one; a FORMAT_DESCRIPTION event itself is parsed without
// it). When the format says checksum_crc32, the trailer is verified and a
// mismatch is DataLoss. The returned RowsEvent::rows views into `bytes`.
// With nullptr no trailer is assumed: for the artificial ROTATE a dump sends
// before its first FORMAT_DESCRIPTION, pass a FormatDescription whose
// checksum_crc32 says whether @master_binlog_checksum was set to CRC32.
// MariaDB compressed events (165-171) and MySQL's PARTIAL_UPDATE_ROWS (39)
// and TRANSACTION_PAYLOAD (40) are DataLoss: skipping them would lose changes.
Result<Event> ParseEvent(std::string_view bytes, const FormatDescription* format);

// Decodes every row image of `rows` with the column layout of `map`.
// Datum text forms, by column type:
//   TINY/SHORT/INT24/LONG/LONGLONG  decimal text, unsigned per hints ("255", "-1", "18446744073709551615")
//   NEWDECIMAL                      exact decimal text with the declared scale ("-12.50", "0.000")
//   FLOAT / DOUBLE                  shortest text that reads back to the same value ("3.1415927", "1e+300")
//   YEAR                            "2024" ("0" for 0000)
//   DATE                            "2024-02-29" (zero dates as "0000-00-00")
//   TIME / TIME2                    "-838:59:59", "12:34:56.123400" (fraction to the column's precision)
//   DATETIME / DATETIME2            "2024-02-29 12:34:56.000001"
//   TIMESTAMP / TIMESTAMP2          UTC: "2024-02-29 12:34:56.5" (apply sessions use time_zone '+00:00');
//                                   zero timestamp "0000-00-00 00:00:00"
//   BIT                             unsigned decimal text of the bits ("5")
//   ENUM                            1-based index as decimal text ("2"; "0" for the empty value)
//   SET                             bitmask as decimal text ("5" = first and third member)
//   CHAR/VARCHAR/BINARY/VARBINARY/
//   TEXT/BLOB/JSON/GEOMETRY         the raw bytes (GEOMETRY: MySQL's internal SRID + WKB form)
// NULL is Datum::Null().
// Notes: CHAR and BINARY values arrive without their trailing pad (spaces,
// resp. 0x00 bytes): the server strips them when logging; the columns
// ColumnHints::pad_to names (BINARY among them) are padded back to their size. Signedness comes
// from the TABLE_MAP's optional metadata when logged, else from hints (else
// signed). MySQL 8's binary JSON (type 245) is DataLoss "MySQL binary JSON is
// not supported"; MariaDB's JSON is LONGTEXT and comes out as its text.
Result<std::vector<RowImage>> DecodeRows(const RowsEvent& rows, const TableMapEvent& map, const ColumnHints& hints);

}  // namespace midflight::mysql
