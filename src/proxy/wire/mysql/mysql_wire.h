// MySQL/MariaDB client/server protocol: framing, connection phase, command
// phase and a response tracker. Pure functions over bytes: no sockets, no
// Connector/C, so everything here is unit-tested on captured bytes and fuzzed.
//
// Wire layout, which every function below follows:
//
//   packet   | payload length: int<3> LE | sequence id: int<1> | payload |
//
// A payload of 0xffffff bytes or more is split into packets of 0xffffff bytes
// followed by one shorter packet (possibly empty), their sequence ids
// consecutive (mod 256). A "message" below is the reassembled payload.
//
// Integers are little-endian. "lenenc" integers: < 0xfb one byte, 0xfc + 2,
// 0xfd + 3, 0xfe + 8 bytes; 0xfb is NULL in a text row, 0xff is invalid.
//
// Errors: anything malformed a peer sends (bad length, truncated payload, a
// string without its terminator, trailing bytes where none may be) is an
// OperatorError whose message names the packet; the connection that carried
// it cannot continue. Parsers never read past the end of their input.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace midflight::mywire {

// ---------------------------------------------------------------------------
// Constants.

inline constexpr size_t kMaxPacketPayload = 0xffffff;          // 16 MiB - 1
inline constexpr size_t kDefaultMaxMessage = size_t{1} << 30;  // MariaDB's max_allowed_packet ceiling
inline constexpr uint8_t kProtocolVersion10 = 10;

// Capability flags. The low 32 bits are the classic ones; MariaDB's extended
// capabilities travel in a separate int<4> and are kept here shifted by 32.
namespace cap {
inline constexpr uint64_t kLongPassword = 1;  // MariaDB: CLIENT_MYSQL (cleared by MariaDB servers)
inline constexpr uint64_t kFoundRows = 1 << 1;
inline constexpr uint64_t kLongFlag = 1 << 2;
inline constexpr uint64_t kConnectWithDb = 1 << 3;
inline constexpr uint64_t kNoSchema = 1 << 4;
inline constexpr uint64_t kCompress = 1 << 5;
inline constexpr uint64_t kOdbc = 1 << 6;
inline constexpr uint64_t kLocalFiles = 1 << 7;
inline constexpr uint64_t kIgnoreSpace = 1 << 8;
inline constexpr uint64_t kProtocol41 = 1 << 9;
inline constexpr uint64_t kInteractive = 1 << 10;
inline constexpr uint64_t kSsl = 1 << 11;
inline constexpr uint64_t kIgnoreSigpipe = 1 << 12;
inline constexpr uint64_t kTransactions = 1 << 13;
inline constexpr uint64_t kReserved = 1 << 14;
inline constexpr uint64_t kSecureConnection = 1 << 15;
inline constexpr uint64_t kMultiStatements = 1 << 16;
inline constexpr uint64_t kMultiResults = 1 << 17;
inline constexpr uint64_t kPsMultiResults = 1 << 18;
inline constexpr uint64_t kPluginAuth = 1 << 19;
inline constexpr uint64_t kConnectAttrs = 1 << 20;
inline constexpr uint64_t kPluginAuthLenencData = 1 << 21;
inline constexpr uint64_t kCanHandleExpiredPasswords = 1 << 22;
inline constexpr uint64_t kSessionTrack = 1 << 23;
inline constexpr uint64_t kDeprecateEof = 1 << 24;
inline constexpr uint64_t kOptionalMetadata = 1 << 25;  // MySQL 8
inline constexpr uint64_t kZstd = 1 << 26;              // MySQL 8
inline constexpr uint64_t kMysql = kLongPassword;
// MariaDB extended capabilities (the int<4> in the handshake's filler, << 32).
inline constexpr uint64_t kMariaDbProgress = uint64_t{1} << 32;
inline constexpr uint64_t kMariaDbComMulti = uint64_t{1} << 33;
inline constexpr uint64_t kMariaDbStmtBulk = uint64_t{1} << 34;
inline constexpr uint64_t kMariaDbExtendedTypeInfo = uint64_t{1} << 35;
inline constexpr uint64_t kMariaDbCacheMetadata = uint64_t{1} << 36;
}  // namespace cap

// Server status flags (OK, EOF).
namespace status {
inline constexpr uint16_t kInTrans = 1;
inline constexpr uint16_t kAutocommit = 2;
inline constexpr uint16_t kMoreResultsExist = 8;
inline constexpr uint16_t kNoGoodIndexUsed = 16;
inline constexpr uint16_t kNoIndexUsed = 32;
inline constexpr uint16_t kCursorExists = 64;
inline constexpr uint16_t kLastRowSent = 128;
inline constexpr uint16_t kDbDropped = 256;
inline constexpr uint16_t kNoBackslashEscapes = 512;
inline constexpr uint16_t kMetadataChanged = 1024;
inline constexpr uint16_t kQueryWasSlow = 2048;
inline constexpr uint16_t kPsOutParams = 4096;
inline constexpr uint16_t kInTransReadonly = 8192;
inline constexpr uint16_t kSessionStateChanged = 16384;
}  // namespace status

// ---------------------------------------------------------------------------
// Little-endian integers and lenenc values, for builders.

void PutInt(std::string& out, uint64_t v, int bytes);
void PutLenenc(std::string& out, uint64_t v);
void PutLenencString(std::string& out, std::string_view s);
// The size PutLenenc writes for v.
size_t LenencSize(uint64_t v);

// ---------------------------------------------------------------------------
// Framing.

// One physical packet seen in place inside a PacketReader's buffer: `bytes` is
// the whole packet (header and payload) ready to forward. Valid until the next
// call on the reader that produced it.
struct RawPacket {
  uint8_t seq = 0;
  std::string_view bytes;
  std::string_view payload;
};

// One reassembled message: the payloads of a run of packets whose last one is
// shorter than 0xffffff bytes.
struct Message {
  uint8_t seq = 0;       // of the first packet
  uint8_t last_seq = 0;  // of the last packet (== seq unless split)
  size_t packets = 1;
  std::string payload;
};

// Incremental parser of a byte stream into packets and messages, for an event
// loop: bytes go in with Append as they arrive; Next/NextPacket return nullopt
// (need more data) until a whole message / packet is buffered.
//
// Bounded: a message whose declared lengths add up to more than max_message is
// an OperatorError ("message of at least N bytes exceeds the maximum of M")
// as soon as the header that crosses the bound is buffered, before its
// payload arrives; nothing beyond one message (plus what the peer sent after
// it) is ever buffered. A split message whose sequence ids are not
// consecutive is an OperatorError too. After an error the stream cannot be
// resynchronised: close the connection. Not thread-safe; one reader per
// direction of one connection.
class PacketReader {
 public:
  explicit PacketReader(size_t max_message = kDefaultMaxMessage) : max_message_(max_message) {}

  void Append(std::string_view bytes);

  // The next physical packet (for zero-copy forwarding of each part of a
  // large message). Same bound: a single packet is at most 0xffffff bytes.
  Result<std::optional<RawPacket>> NextPacket();
  // The next reassembled message.
  Result<std::optional<Message>> Next();

  size_t buffered() const { return buf_.size() - begin_; }

 private:
  std::string buf_;
  size_t begin_ = 0;
  size_t max_message_;
  void Compact();
};

// The packets carrying `payload`, split at 0xffffff bytes (with an empty last
// packet when the size is a multiple of it), sequence ids from `seq` on.
// *next_seq (if given) receives the sequence id that follows.
std::string EncodePacket(uint8_t seq, std::string_view payload, uint8_t* next_seq = nullptr);

// ---------------------------------------------------------------------------
// Connection phase.

// Server Handshake v10 (the server's first packet).
struct Handshake {
  std::string server_version;
  uint32_t connection_id = 0;
  std::string scramble;       // auth plugin data, parts 1 and 2 (normally 20 bytes), without the trailing NUL
  uint64_t capabilities = 0;  // classic | MariaDB extended << 32
  uint8_t collation = 0;
  uint16_t status = 0;
  uint8_t auth_data_len = 0;  // as sent (21 for a 20-byte scramble); sizes scramble part 2: max(13, len - 8)
  std::string auth_plugin;    // with CLIENT_PLUGIN_AUTH
  bool mariadb() const { return (capabilities & cap::kMysql) == 0; }
};
Result<Handshake> ParseHandshake(std::string_view payload);
std::string EncodeHandshake(const Handshake& h);

// Client HandshakeResponse41 (and the 32-byte SSLRequest, its prefix).
struct HandshakeResponse {
  uint64_t capabilities = 0;  // classic | MariaDB extended << 32 (when the client cleared CLIENT_MYSQL)
  uint32_t max_packet = 0;
  uint8_t collation = 0;
  std::string user;
  std::string auth_response;
  std::optional<std::string> database;                     // with CLIENT_CONNECT_WITH_DB
  std::optional<std::string> auth_plugin;                  // with CLIENT_PLUGIN_AUTH
  std::vector<std::pair<std::string, std::string>> attrs;  // with CLIENT_CONNECT_ATTRS, in order
  std::optional<uint8_t> zstd_level;                       // with CLIENT_ZSTD_COMPRESSION_ALGORITHM
};
// The client's packet after the handshake: an SSLRequest (exactly 32 bytes,
// CLIENT_SSL set) or a HandshakeResponse41. Protocol 3.20 (no CLIENT_PROTOCOL_41)
// is an OperatorError "pre-4.1 HandshakeResponse is not supported".
bool IsSslRequest(std::string_view payload);
Result<HandshakeResponse> ParseSslRequest(std::string_view payload);
Result<HandshakeResponse> ParseHandshakeResponse(std::string_view payload);
std::string EncodeSslRequest(const HandshakeResponse& r);
std::string EncodeHandshakeResponse(const HandshakeResponse& r);

// 0xfe during authentication: switch to another plugin with new data. A bare
// 0xfe (old_password switch) parses with an empty plugin name.
struct AuthSwitchRequest {
  std::string plugin;
  std::string data;  // everything after the plugin name (native: 20-byte scramble + NUL)
};
Result<AuthSwitchRequest> ParseAuthSwitchRequest(std::string_view payload);
std::string EncodeAuthSwitchRequest(const AuthSwitchRequest& r);
// 0x01 during authentication: plugin-specific data (caching_sha2: 0x03 fast
// auth OK, 0x04 full auth required; a PEM public key).
Result<std::string> ParseAuthMoreData(std::string_view payload);
std::string EncodeAuthMoreData(std::string_view data);

// Authentication plugins the codec knows.
enum class AuthPlugin { kUnknown, kNativePassword, kCachingSha2Password, kClientEd25519, kClearPassword, kOldPassword };
AuthPlugin ClassifyAuthPlugin(std::string_view name);

// mysql_native_password: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))); empty
// for an empty password. `scramble` is the server's 20 bytes (a trailing NUL is ignored).
std::string NativePasswordResponse(std::string_view password, std::string_view scramble);
// SHA1(SHA1(pw)): what the server stores (mysql.user's "*HEX" without the '*').
std::string NativePasswordStage2(std::string_view password);
// Parses "*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29" into its 20 bytes; nullopt if malformed.
std::optional<std::string> ParseNativePasswordHash(std::string_view hex);
// Whether `response` proves knowledge of the password whose stage-2 hash is
// `stage2`, for `scramble`: what the server does, so the proxy can too.
bool NativePasswordVerify(std::string_view response, std::string_view scramble, std::string_view stage2);
// caching_sha2_password's fast-path response:
// SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble); empty for an empty password.
std::string CachingSha2Response(std::string_view password, std::string_view scramble);
// Whether `response` is CachingSha2Response(password, scramble) (constant time):
// the fast path checked by a proxy that knows its users' passwords.
bool CachingSha2Verify(std::string_view response, std::string_view scramble, std::string_view password);
// caching_sha2_password's full authentication without TLS: the client
// encrypts (password + NUL) XOR the scramble (repeated) with the server's RSA
// key. Gives the password back from the decrypted bytes (the trailing NUL
// removed); nullopt when no NUL ends it.
std::optional<std::string> CachingSha2UnxorPassword(std::string_view decrypted, std::string_view scramble);

// MariaDB's client_ed25519. Its key pair is not RFC 8032's: the secret scalar
// comes from SHA512(password) of the whole password (not of a 32-byte seed),
// so OpenSSL cannot sign with it; but verifying needs only the public key
// A = clamp(SHA512(password)[0..32]) * B, which X25519 computes on the
// birationally equivalent curve (the Montgomery u of A; y = (u - 1) / (u + 1)).
// The sign of A's x is lost on the way, so both encodings are returned
// (the one with sign 0 first); each is a valid Ed25519 public key, and only
// someone who knows the scalar can sign for either.
std::array<std::string, 2> Ed25519PublicKeyCandidates(std::string_view password);
// Whether `signature` (64 bytes) signs `nonce` (the server's 32 bytes) under
// the key of `password`.
bool Ed25519Verify(std::string_view signature, std::string_view nonce, std::string_view password);

// ---------------------------------------------------------------------------
// Command phase: client commands.

enum class Command : uint8_t {
  kSleep = 0x00,
  kQuit = 0x01,
  kInitDb = 0x02,
  kQuery = 0x03,
  kFieldList = 0x04,
  kCreateDb = 0x05,
  kDropDb = 0x06,
  kRefresh = 0x07,
  kShutdown = 0x08,
  kStatistics = 0x09,
  kProcessInfo = 0x0a,
  kConnect = 0x0b,
  kProcessKill = 0x0c,
  kDebug = 0x0d,
  kPing = 0x0e,
  kTime = 0x0f,
  kDelayedInsert = 0x10,
  kChangeUser = 0x11,
  kBinlogDump = 0x12,
  kTableDump = 0x13,
  kConnectOut = 0x14,
  kRegisterSlave = 0x15,
  kStmtPrepare = 0x16,
  kStmtExecute = 0x17,
  kStmtSendLongData = 0x18,
  kStmtClose = 0x19,
  kStmtReset = 0x1a,
  kSetOption = 0x1b,
  kStmtFetch = 0x1c,
  kDaemon = 0x1d,
  kBinlogDumpGtid = 0x1e,
  kResetConnection = 0x1f,
  kStmtBulkExecute = 0xfa,  // MariaDB
};

// What the server answers to a command.
enum class ResponseKind {
  kNone,         // COM_QUIT (the server closes), COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA
  kStatus,       // one OK / ERR (or EOF for COM_SET_OPTION, COM_DEBUG)
  kResultSets,   // COM_QUERY: OK / ERR / LOCAL INFILE request / text result sets, chained by MORE_RESULTS_EXIST
  kExecute,      // COM_STMT_EXECUTE, COM_STMT_BULK_EXECUTE: OK / ERR / binary result sets (or a cursor's metadata)
  kPrepare,      // COM_STMT_PREPARE: PREPARE_OK + parameter and column definitions, or ERR
  kFetch,        // COM_STMT_FETCH: binary rows + EOF, or ERR
  kFieldList,    // COM_FIELD_LIST: column definitions + EOF, or ERR
  kAuth,         // COM_CHANGE_USER: an authentication exchange ending in OK / ERR
  kString,       // COM_STATISTICS: one string packet
  kUnsupported,  // replication and obsolete commands: the proxy refuses them
};

struct CommandInfo {
  const char* name = "COM_UNKNOWN";
  ResponseKind response = ResponseKind::kUnsupported;
  // Client packets the command is: always one message (split if >= 16 MiB),
  // except that COM_QUERY's LOAD DATA LOCAL is followed by file data packets
  // and COM_CHANGE_USER by an auth exchange when the server asks for one.
};
CommandInfo Classify(uint8_t command);

// Commands that run no statement, open no transaction and leave nothing on
// the server that a moved session could not rebuild: COM_STMT_PREPARE
// (re-prepared on another server), COM_STMT_RESET, COM_STMT_CLOSE, COM_PING,
// COM_INIT_DB (the schema is carried). A proxy may relay them to an idle
// session's server while writes are paused. Not these: COM_STMT_SEND_LONG_DATA
// (its data lives in that server's statement, so the execute must follow it
// there), COM_FIELD_LIST (deprecated; it opens the table), and every command
// that executes SQL or resets the session.
bool PassesWriteGate(uint8_t command);

// True when `sql` (a COM_QUERY's text) only reads or sets the session's own
// variables, or ends a transaction that is not there: what connectors send
// as they connect, such as `SELECT @@version_comment LIMIT 1`, `SELECT
// @@session.auto_increment_increment AS a, @@character_set_client`, `SET
// NAMES utf8mb4 [COLLATE x]`, `SET autocommit=1, sql_mode='TRADITIONAL'`,
// `COMMIT` (pymysql's, after its init_command). With autocommit on and no
// transaction open it writes no row and opens no transaction, and session
// tracking reports what it changed, so a proxy may let it past a closed
// write gate like the commands above. Exactly one statement (a trailing ';'
// allowed; plain /* */, -- and # comments skipped):
//   SELECT of system variables, numbers, strings and DATABASE(), SCHEMA(),
//     VERSION(), USER(), CURRENT_USER(), each with an optional alias, and an
//     optional LIMIT n;
//   SET NAMES / CHARACTER SET / CHARSET;
//   SET of session system variables ([SESSION | LOCAL] name, @@name,
//     @@session.name, @@local.name) to a number, string, word (ON, DEFAULT,
//     NULL, a charset) or system variable;
//   COMMIT / ROLLBACK [WORK] alone.
// Everything else is false: FROM, INTO, user variables, other functions,
// expressions, GLOBAL, SET PASSWORD / ROLE / STATEMENT / TRANSACTION, COMMIT
// AND CHAIN / RELEASE, executable /*! */ comments, several statements.
bool SessionOnlyStatement(std::string_view sql);

// Builders for the client's commands (the payload; EncodePacket with seq 0 frames it).
std::string ComQuery(std::string_view sql);
std::string ComInitDb(std::string_view schema);
std::string ComSimple(Command c);  // COM_PING, COM_QUIT, COM_RESET_CONNECTION, COM_STATISTICS
std::string ComStmtPrepare(std::string_view sql);
std::string ComStmtClose(uint32_t stmt_id);
std::string ComStmtReset(uint32_t stmt_id);
std::string ComStmtFetch(uint32_t stmt_id, uint32_t rows);
std::string ComStmtSendLongData(uint32_t stmt_id, uint16_t param, std::string_view data);

// The statement id that COM_STMT_EXECUTE/CLOSE/RESET/FETCH/SEND_LONG_DATA carry.
Result<uint32_t> ParseStmtId(std::string_view payload);

// Cursor flags of COM_STMT_EXECUTE.
inline constexpr uint8_t kCursorTypeNoCursor = 0;
inline constexpr uint8_t kCursorTypeReadOnly = 1;
inline constexpr uint8_t kCursorTypeForUpdate = 2;
inline constexpr uint8_t kCursorTypeScrollable = 4;

struct StmtExecute {
  uint32_t stmt_id = 0;
  uint8_t flags = 0;  // cursor type
  uint32_t iterations = 1;
  std::string null_bitmap;  // (params + 7) / 8 bytes, when params > 0
  bool new_params_bound = false;
  std::vector<uint16_t> types;  // with new_params_bound: type | unsigned flag << 8 (0x8000)
  std::string values;           // the parameter values, raw (decoding them needs the types)
};
// `params` is the statement's parameter count (from its PREPARE_OK).
Result<StmtExecute> ParseStmtExecute(std::string_view payload, uint16_t params);
std::string EncodeStmtExecute(const StmtExecute& e, uint16_t params);

struct ChangeUser {
  std::string user;
  std::string auth_response;
  std::string database;
  std::optional<uint16_t> collation;
  std::optional<std::string> auth_plugin;
  std::vector<std::pair<std::string, std::string>> attrs;
};
// `capabilities`: the session's negotiated ones (they decide the layout).
Result<ChangeUser> ParseChangeUser(std::string_view payload, uint64_t capabilities);

// ---------------------------------------------------------------------------
// Command phase: server responses.

struct SessionStateChange {
  uint8_t type = 0;  // 0 system variable, 1 schema, 2 state change, 3 GTIDs, 4 characteristics, 5 trx state
  std::string data;  // the entry's data, raw
  // Decoded for type 0 (name, value) and type 1 (schema in `name`).
  std::string name;
  std::string value;
};
inline constexpr uint8_t kTrackSystemVariables = 0;
inline constexpr uint8_t kTrackSchema = 1;
inline constexpr uint8_t kTrackStateChange = 2;
inline constexpr uint8_t kTrackGtids = 3;
inline constexpr uint8_t kTrackTransactionCharacteristics = 4;
inline constexpr uint8_t kTrackTransactionState = 5;

struct OkPacket {
  uint8_t header = 0x00;  // 0xfe for OK-as-EOF (CLIENT_DEPRECATE_EOF)
  uint64_t affected_rows = 0;
  uint64_t last_insert_id = 0;
  uint16_t status = 0;
  uint16_t warnings = 0;
  std::string info;
  bool has_info = false;                          // the info string was present (possibly empty) on the wire
  std::vector<SessionStateChange> session_state;  // with CLIENT_SESSION_TRACK and SESSION_STATE_CHANGED
};
Result<OkPacket> ParseOk(std::string_view payload, uint64_t capabilities);
std::string EncodeOk(const OkPacket& ok, uint64_t capabilities);

struct ErrPacket {
  uint16_t code = 0;
  std::string sql_state;  // 5 characters, empty if the server sent none
  std::string message;
  // MariaDB progress report (code 0xffff): not an error, not the end of the response.
  bool progress() const { return code == 0xffff; }
};
Result<ErrPacket> ParseErr(std::string_view payload);
std::string EncodeErr(const ErrPacket& e);

struct EofPacket {
  uint16_t warnings = 0;
  uint16_t status = 0;
};
// A classic EOF: 0xfe and a payload under 9 bytes.
bool IsEof(std::string_view payload);
Result<EofPacket> ParseEof(std::string_view payload);
std::string EncodeEof(const EofPacket& e);

// The packet that ends a list of columns or rows: EOF, or with
// CLIENT_DEPRECATE_EOF an OK with header 0xfe (a row can begin with 0xfe only
// as an 8-byte lenenc, which makes it 16 MiB long or more).
bool IsTerminator(std::string_view payload, uint64_t capabilities);

struct ColumnDefinition {
  std::string catalog = "def";
  std::string schema;
  std::string table;
  std::string org_table;
  std::string name;
  std::string org_name;
  std::vector<std::pair<uint8_t, std::string>> extended_type_info;  // MariaDB, with MARIADB_CLIENT_EXTENDED_TYPE_INFO
  uint16_t charset = 0;
  uint32_t length = 0;
  uint8_t type = 0;
  uint16_t flags = 0;
  uint8_t decimals = 0;
  // COM_FIELD_LIST only: the column's default after the fixed fields, a lenenc
  // string or 0xfb for none (default_null).
  std::string default_value;
  bool has_default = false;
  bool default_null = false;
};
Result<ColumnDefinition> ParseColumnDefinition(std::string_view payload, uint64_t capabilities);
std::string EncodeColumnDefinition(const ColumnDefinition& c, uint64_t capabilities);

// Column types (the `type` byte).
namespace type {
inline constexpr uint8_t kDecimal = 0, kTiny = 1, kShort = 2, kLong = 3, kFloat = 4, kDouble = 5, kNull = 6,
                         kTimestamp = 7, kLongLong = 8, kInt24 = 9, kDate = 10, kTime = 11, kDateTime = 12, kYear = 13,
                         kNewDate = 14, kVarchar = 15, kBit = 16, kJson = 245, kNewDecimal = 246, kEnum = 247,
                         kSet = 248, kTinyBlob = 249, kMediumBlob = 250, kLongBlob = 251, kBlob = 252, kVarString = 253,
                         kString = 254, kGeometry = 255;
}

// The column count that starts a result set; with MARIADB_CLIENT_CACHE_METADATA
// a byte follows that says whether column definitions are sent (`metadata_follows`).
struct ResultSetHeader {
  uint64_t columns = 0;
  bool metadata_follows = true;
};
Result<ResultSetHeader> ParseResultSetHeader(std::string_view payload, uint64_t capabilities);
std::string EncodeResultSetHeader(const ResultSetHeader& h, uint64_t capabilities);

using Row = std::vector<std::optional<std::string>>;  // nullopt = NULL
// A text-protocol row of `columns` lenenc strings / 0xfb NULLs.
Result<Row> ParseTextRow(std::string_view payload, size_t columns);
std::string EncodeTextRow(const Row& row);
// A binary-protocol row (0x00, NULL bitmap with offset 2, values by column
// type): each value's raw bytes as sent (lenenc types without their length).
Result<Row> ParseBinaryRow(std::string_view payload, const std::vector<uint8_t>& column_types);
std::string EncodeBinaryRow(const Row& row, const std::vector<uint8_t>& column_types);

struct StmtPrepareOk {
  uint32_t stmt_id = 0;
  uint16_t columns = 0;
  uint16_t params = 0;
  uint16_t warnings = 0;
};
Result<StmtPrepareOk> ParseStmtPrepareOk(std::string_view payload);
std::string EncodeStmtPrepareOk(const StmtPrepareOk& p);

// 0xfb + file name, in answer to LOAD DATA LOCAL INFILE.
Result<std::string> ParseLocalInfileRequest(std::string_view payload);
std::string EncodeLocalInfileRequest(std::string_view filename);

// ---------------------------------------------------------------------------
// Response tracker.

// What one server message was, as the tracker read it.
enum class PacketKind {
  kOk,
  kErr,
  kEof,              // classic EOF or OK-as-EOF ending columns / rows
  kProgress,         // MariaDB progress report (an ERR with code 0xffff)
  kResultSetHeader,  // column count
  kColumnDefinition,
  kParamDefinition,  // COM_STMT_PREPARE's parameter definitions
  kRow,
  kPrepareOk,
  kLocalInfile,  // the client must now send the file (or an empty packet to refuse)
  kAuthSwitch,   // the client must now answer (COM_CHANGE_USER)
  kAuthMoreData,
  kString,  // COM_STATISTICS's answer
};
const char* PacketKindName(PacketKind k);

struct TrackedPacket {
  PacketKind kind = PacketKind::kOk;
  bool response_complete = false;  // this packet ended the command's response
};

// Follows one connection's command phase from the proxy's seat: told each
// command the client sends and each message the server sends, it knows when
// the response is complete and what the server's status flags say after it.
//
//   Idle ──OnCommand──> Awaiting ──OnServerMessage...──> Idle (response complete)
//
// Status flags are updated from every OK and EOF (including the intermediate
// ones of multi-statements and CALL); an ERR carries none, so after an ERR the
// status is unknown (StatusKnown() false) until the next OK/EOF: the server
// may have rolled the transaction back (deadlock) or kept it open. A proxy
// that needs to know sends its own COM_PING, whose OK carries the flags.
//
// Cursors (COM_STMT_EXECUTE with a cursor type): when the server opens one it
// answers with column definitions and an EOF carrying SERVER_STATUS_CURSOR_EXISTS
// and no rows; each COM_STMT_FETCH then gets rows and an EOF, with
// SERVER_STATUS_LAST_ROW_SENT once the cursor is exhausted. open_cursors()
// counts statements with an open cursor (closed by LAST_ROW_SENT,
// COM_STMT_RESET, COM_STMT_CLOSE, COM_RESET_CONNECTION, COM_CHANGE_USER): a
// session with an open cursor is not idle for a move.
//
// LOAD DATA LOCAL: after kLocalInfile the client's data packets go through
// OnClientMessage; the empty one ends them and the server's OK/ERR follows.
// COM_CHANGE_USER: the client's answers to AuthSwitchRequest / AuthMoreData
// go through OnClientMessage too. The caller tells the two kinds of client
// message apart by sequence id: a command always starts at 0, data and auth
// answers continue the exchange's numbering.
//
// Pipelining: a command sent while a response is pending (Connector/C's
// mariadb_stmt_execute_direct and Connector/J send COM_STMT_PREPARE and
// COM_STMT_EXECUTE back to back) is queued, up to kMaxPipelined, and tracked
// when the server starts answering it; Idle() is false while any is queued.
//
// Any message that does not fit the state (a server packet while idle other
// than an unsolicited ERR, client data nobody asked for, a command while the
// client owes LOCAL INFILE data or an auth answer) is an OperatorError naming
// the state and the packet. Not thread-safe.
class ResponseTracker {
 public:
  // `capabilities`: what client and server negotiated (the client's
  // HandshakeResponse capabilities, ANDed with the server's).
  explicit ResponseTracker(uint64_t capabilities) : caps_(capabilities) {}

  // The client's command (a whole message's payload).
  Status OnCommand(std::string_view payload);
  // A client message that is not a command: LOCAL INFILE data, auth answers.
  Status OnClientMessage(std::string_view payload);
  // One server message (reassembled payload).
  Result<TrackedPacket> OnServerMessage(std::string_view payload);

  static constexpr size_t kMaxPipelined = 64;

  bool Idle() const { return state_ == State::kIdle && pending_.empty(); }
  bool StatusKnown() const { return status_known_; }
  uint16_t status() const { return status_; }
  bool InTransaction() const { return (status_ & status::kInTrans) != 0; }
  bool Autocommit() const { return (status_ & status::kAutocommit) != 0; }
  // Idle, the status known, not in a transaction, no cursor open.
  bool AtTransactionBoundary() const { return Idle() && status_known_ && !InTransaction() && open_cursors_.empty(); }
  size_t open_cursors() const { return open_cursors_.size(); }
  // Result sets completed in the current (or last) response.
  size_t result_sets() const { return result_sets_; }
  // The last OK / ERR seen (session tracking changes are in last_ok().session_state).
  const OkPacket& last_ok() const { return last_ok_; }
  const std::optional<ErrPacket>& last_err() const { return last_err_; }
  // The last COM_STMT_PREPARE's answer (for mapping statement ids).
  const std::optional<StmtPrepareOk>& last_prepare() const { return last_prepare_; }
  // Columns of the result set being read (for ParseBinaryRow).
  const std::vector<uint8_t>& column_types() const { return column_types_; }

 private:
  enum class State {
    kIdle,
    kFirst,       // the first packet of a (next) result: OK / ERR / header / LOCAL INFILE
    kColumns,     // column definitions still to come
    kColumnsEof,  // the EOF after the column definitions (no CLIENT_DEPRECATE_EOF)
    kRows,        // rows until the terminator
    kPrepareParams,
    kPrepareParamsEof,
    kPrepareColumns,
    kPrepareColumnsEof,
    kLocalInfileData,  // the client is sending the file
    kStatus,           // one OK / ERR / EOF
    kAuth,             // COM_CHANGE_USER exchange
    kString,
  };
  Status Start(std::string_view payload);
  Result<TrackedPacket> Done(PacketKind k);
  Result<TrackedPacket> Next(PacketKind k) { return TrackedPacket{k, false}; }
  Result<TrackedPacket> OnOk(std::string_view p, bool chain);
  Result<TrackedPacket> OnTerminator(std::string_view p, bool after_columns);
  Result<TrackedPacket> OnErr(std::string_view p);
  Status Unexpected(std::string_view p) const;
  const char* StateName() const;

  uint64_t caps_;
  State state_ = State::kIdle;
  std::deque<std::string> pending_;  // pipelined commands, not yet answered
  bool client_turn_ = false;         // kAuth: the server asked the client for data
  Command command_ = Command::kSleep;
  uint32_t stmt_id_ = 0;
  bool cursor_requested_ = false;
  uint16_t status_ = status::kAutocommit;
  bool status_known_ = true;
  uint64_t remaining_ = 0;  // column / parameter definitions still to come
  uint16_t prepare_columns_ = 0;
  size_t result_sets_ = 0;
  std::vector<uint8_t> column_types_;
  std::map<uint32_t, std::vector<uint8_t>> open_cursors_;  // statement id -> its cursor's column types
  OkPacket last_ok_;
  std::optional<ErrPacket> last_err_;
  std::optional<StmtPrepareOk> last_prepare_;
};

}  // namespace midflight::mywire
