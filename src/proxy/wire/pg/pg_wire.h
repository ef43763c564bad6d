// PostgreSQL frontend/backend protocol version 3: framing, builders and
// parsers. Pure functions over bytes: no sockets, no libpq, so everything here
// is unit-tested on bytes and can be fuzzed (backend.h does the I/O).
//
// Wire layout, which every function below follows:
//
//   typed message    | type: 1 byte | length: int32 BE, counts itself, not the type | body |
//   startup packet   | length: int32 BE, counts itself | code: int32 BE | ...             |
//
// A client's first packet (StartupMessage, SSLRequest, GSSENCRequest,
// CancelRequest) is untyped; everything after it, in both directions, is typed.
//
// Errors: anything malformed a peer sends (bad length, truncated body, a
// string without its terminator, trailing bytes) is an OperatorError whose
// message names the message type; the connection that carried it cannot
// continue. Parsers never read past the end of their input and leave nothing
// behind on failure.
//
// Strings written as C strings by the builders stop at their first NUL byte
// (the protocol cannot carry one); framing is always correct.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace midflight::pgwire {

// ---------------------------------------------------------------------------
// Big-endian integers.

inline void PutInt16(std::string& out, int16_t v) {
  const auto u = static_cast<uint16_t>(v);
  out.push_back(static_cast<char>(u >> 8));
  out.push_back(static_cast<char>(u));
}
inline void PutInt32(std::string& out, int32_t v) {
  const auto u = static_cast<uint32_t>(v);
  out.push_back(static_cast<char>(u >> 24));
  out.push_back(static_cast<char>(u >> 16));
  out.push_back(static_cast<char>(u >> 8));
  out.push_back(static_cast<char>(u));
}
// `p` must point at 2 (4) readable bytes.
inline uint16_t GetUint16(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>((b[0] << 8) | b[1]);
}
inline uint32_t GetUint32(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}
inline int16_t GetInt16(const char* p) {
  return static_cast<int16_t>(GetUint16(p));
}
inline int32_t GetInt32(const char* p) {
  return static_cast<int32_t>(GetUint32(p));
}

// ---------------------------------------------------------------------------
// Protocol constants.

inline constexpr int32_t kProtocol30 = 196608;                 // 3 << 16 | 0
inline constexpr int32_t kCancelRequestCode = 80877102;        // 1234 << 16 | 5678
inline constexpr int32_t kSslRequestCode = 80877103;           // 1234 << 16 | 5679
inline constexpr int32_t kGssEncRequestCode = 80877104;        // 1234 << 16 | 5680
inline constexpr size_t kMaxStartupPacket = 10000;             // PostgreSQL's MAX_STARTUP_PACKET_LENGTH
inline constexpr size_t kDefaultMaxMessage = size_t{1} << 30;  // PostgreSQL's MaxAllocSize, roughly

// Authentication request codes (the int32 that starts an 'R' body).
inline constexpr int32_t kAuthOk = 0;
inline constexpr int32_t kAuthCleartext = 3;
inline constexpr int32_t kAuthMd5 = 5;
inline constexpr int32_t kAuthSasl = 10;
inline constexpr int32_t kAuthSaslContinue = 11;
inline constexpr int32_t kAuthSaslFinal = 12;

// ---------------------------------------------------------------------------
// Framing.

// One typed message; `body` is what follows the type byte and the length.
struct Message {
  char type = 0;
  std::string body;
};

// A message seen in place inside a FrameReader's buffer: `bytes` is the whole
// message (type, length, body) ready to forward, `body` its tail. Both views
// are valid until the next call on the FrameReader that produced them.
struct RawMessage {
  char type = 0;
  std::string_view bytes;
  std::string_view body;
};

// The 5-byte header of the next typed message; `length` counts itself and the
// body, not the type byte (so the whole message is 1 + length bytes).
struct MessageHeader {
  char type = 0;
  uint32_t length = 0;
};

// Incremental parser of a byte stream into messages. Bytes go in with Append
// (or PrepareWrite/CommitWrite to read a socket straight into the buffer);
// messages come out with Next/NextRaw/NextStartup, which return nullopt until a
// whole message is buffered. Consumed bytes are dropped by moving an offset;
// the buffer is compacted only when space is needed and the move pays for
// itself, so the cost per byte is constant however messages are split.
//
// After an error the stream cannot be resynchronised: close the connection.
// Not thread-safe; one reader per direction of one connection.
class FrameReader {
 public:
  explicit FrameReader(size_t max_message = kDefaultMaxMessage) : max_message_(max_message) {}

  void Append(const char* data, size_t n);
  void Append(std::string_view bytes) { Append(bytes.data(), bytes.size()); }

  // Returns space for at least `n` bytes after the buffered data; CommitWrite(k)
  // then adds the first k (k <= n) of them. The pointer is valid until the next
  // call on the reader.
  char* PrepareWrite(size_t n);
  void CommitWrite(size_t n);

  // The next typed message, nullopt if not all of it is buffered yet, or an
  // OperatorError such as "invalid message length 3 for message type 'Q'" when
  // the length field is below 4 or above max_message (the buffer is left as is).
  Result<std::optional<Message>> Next();
  Result<std::optional<RawMessage>> NextRaw();

  // The header of the next typed message without consuming it (for streaming a
  // message too large to buffer: forward data()/size() and Consume). Same errors.
  Result<std::optional<MessageHeader>> PeekHeader() const;

  // The next untyped startup-phase packet's body (after its length: it starts
  // with the int32 code), for ParseStartup. OperatorError when the length is
  // below 8 or above kMaxStartupPacket.
  Result<std::optional<std::string>> NextStartup();

  // The unparsed remainder, for zero-copy forwarding; Consume drops its first
  // n bytes (n <= size()). Valid until the next call that adds bytes.
  const char* data() const { return buf_.data() + begin_; }
  size_t size() const { return end_ - begin_; }
  size_t buffered() const { return end_ - begin_; }
  void Consume(size_t n);

 private:
  std::string buf_;  // [begin_, end_) unparsed bytes; [end_, buf_.size()) free space
  size_t begin_ = 0;
  size_t end_ = 0;
  size_t max_message_;
};

// "'Q'" for a printable type byte, "0x00" otherwise: how messages are named in errors.
std::string DescribeType(char type);

// ---------------------------------------------------------------------------
// Startup phase.

struct StartupPacket {
  enum class Kind { kStartup, kSslRequest, kGssEncRequest, kCancel };
  Kind kind = Kind::kStartup;
  int32_t protocol = 0;                                     // kStartup: major << 16 | minor; otherwise the request code
  std::vector<std::pair<std::string, std::string>> params;  // kStartup: in the client's order
  int32_t cancel_pid = 0;                                   // kCancel
  int32_t cancel_secret = 0;                                // kCancel

  // The value of a startup parameter ("user", "database", ...), nullptr if absent.
  const std::string* Find(std::string_view name) const;
};

// Parses a startup-phase packet body (after the length). Protocol 3.x is
// accepted (a minor version above 0 is what a newer client asks for; answer
// with NegotiateProtocolVersion); anything else is an OperatorError naming the
// version, e.g. "unsupported protocol 2.0". Parameters must be non-empty
// names, each name and value NUL-terminated, the list ending with a NUL.
Result<StartupPacket> ParseStartup(std::string_view body);

// ---------------------------------------------------------------------------
// Builders. Each returns the complete message bytes, ready to write.

std::string Build(char type, std::string_view body);

// Frontend, startup phase (untyped).
std::string StartupMessage(const std::vector<std::pair<std::string, std::string>>& params);
std::string CancelRequest(int32_t pid, int32_t secret);
std::string SslRequest();
std::string GssEncRequest();

// Frontend, typed.
std::string Query(std::string_view sql);
std::string Parse(std::string_view statement, std::string_view query, const std::vector<uint32_t>& param_types = {});
std::string Bind(std::string_view portal, std::string_view statement, const std::vector<int16_t>& param_formats,
                 const std::vector<std::optional<std::string>>& params, const std::vector<int16_t>& result_formats);
std::string Describe(char kind, std::string_view name);  // kind 'S' statement, 'P' portal
std::string Execute(std::string_view portal, int32_t max_rows = 0);
std::string Close(char kind, std::string_view name);  // kind 'S' statement, 'P' portal
std::string Sync();
std::string Flush();
std::string Terminate();
std::string PasswordMessage(std::string_view password);  // cleartext or "md5..." response
std::string SaslInitialResponse(std::string_view mechanism, std::string_view data);
std::string SaslResponse(std::string_view data);

// Backend.
std::string AuthOk();
std::string AuthCleartext();
std::string AuthMd5(const uint8_t salt[4]);
std::string AuthSasl(const std::vector<std::string>& mechanisms);
std::string AuthSaslContinue(std::string_view data);
std::string AuthSaslFinal(std::string_view data);
std::string ParameterStatus(std::string_view name, std::string_view value);
std::string BackendKeyData(int32_t pid, int32_t secret);
std::string ReadyForQuery(char status);  // 'I' idle, 'T' in a transaction, 'E' in a failed one
std::string CommandComplete(std::string_view tag);
std::string EmptyQueryResponse();
std::string NegotiateProtocolVersion(int32_t newest_minor, const std::vector<std::string>& unrecognized_options);
// ErrorResponse/NoticeResponse with fields S and V (severity), C (SQLSTATE), M (message).
std::string ErrorResponse(std::string_view severity, std::string_view sqlstate, std::string_view message);
std::string NoticeResponse(std::string_view severity, std::string_view sqlstate, std::string_view message);
// Any set of fields, in order, for 'E' or 'N' (add 'D' detail, 'H' hint, ...).
std::string FieldsMessage(char type, const std::vector<std::pair<char, std::string>>& fields);

// ---------------------------------------------------------------------------
// Parsers of message bodies (what follows type and length). Each checks the
// whole body: truncation, missing terminators and trailing bytes are errors.

// 'E' ErrorResponse / 'N' NoticeResponse: field code → value.
Result<std::map<char, std::string>> ParseErrorFields(std::string_view body);
// "message (SQLSTATE xxxxx)" from parsed fields, for Status messages.
std::string DescribeErrorFields(const std::map<char, std::string>& fields);

// True when an 'E' ErrorResponse body has severity FATAL or PANIC: the
// server closes the connection after it, and a relay must pass it on as the
// last word (no error of its own after it: a client would report that one).
// A body that does not parse is not fatal.
bool IsFatalError(std::string_view body);

// 'S' ParameterStatus: name, value.
Result<std::pair<std::string, std::string>> ParseParameterStatus(std::string_view body);
// 'K' BackendKeyData (protocol 3.0: 4-byte key): pid, secret.
Result<std::pair<int32_t, int32_t>> ParseBackendKeyData(std::string_view body);
// 'Z' ReadyForQuery: 'I', 'T' or 'E'.
Result<char> ParseReadyForQuery(std::string_view body);
// 'C' CommandComplete: the command tag.
Result<std::string> ParseCommandComplete(std::string_view body);
// 'A' NotificationResponse: the notifying backend's pid, then channel and
// payload (not decoded here).
Result<int32_t> ParseNotificationPid(std::string_view body);
// The same NotificationResponse (whole message, from the type byte) with its
// pid replaced: a proxy that reports another pid to its client (the session's
// first server connection) rewrites notifications the session itself sent
// from a later server connection, so the client recognises them as its own.
std::string WithNotificationPid(std::string_view message, int32_t pid);

// 'R' Authentication*: the request code; the rest depends on it.
Result<int32_t> ParseAuthCode(std::string_view body);
// 'R' code 5: the 4-byte salt.
Result<std::array<uint8_t, 4>> ParseAuthMd5Salt(std::string_view body);
// 'R' code 10: the SASL mechanisms offered.
Result<std::vector<std::string>> ParseAuthSaslMechanisms(std::string_view body);
// 'R' code 11 or 12: the SASL data after the code.
Result<std::string> ParseAuthSaslData(std::string_view body);

// 'Q' Query: the SQL text.
Result<std::string> ParseQuery(std::string_view body);

struct ParseMsg {         // 'P' Parse
  std::string statement;  // "" is the unnamed statement
  std::string query;
  std::vector<uint32_t> param_types;  // 0 = unspecified
};
Result<ParseMsg> ParseParse(std::string_view body);

struct BindMsg {  // 'B' Bind
  std::string portal;
  std::string statement;
  std::vector<int16_t> param_formats;
  std::vector<std::optional<std::string>> params;  // nullopt = NULL
  std::vector<int16_t> result_formats;
};
Result<BindMsg> ParseBind(std::string_view body);

struct CloseMsg {   // 'C' Close and 'D' Describe (same layout)
  char kind = 'S';  // 'S' statement, 'P' portal
  std::string name;
};
Result<CloseMsg> ParseClose(std::string_view body);
Result<CloseMsg> ParseDescribe(std::string_view body);

struct ExecuteMsg {  // 'E' Execute
  std::string portal;
  int32_t max_rows = 0;  // 0 = no limit
};
Result<ExecuteMsg> ParseExecute(std::string_view body);

// 'p' in answer to AuthCleartext/AuthMd5: the password or "md5..." response.
Result<std::string> ParsePasswordMessage(std::string_view body);

struct SaslInitialResponseMsg {  // 'p' in answer to AuthSasl
  std::string mechanism;
  std::optional<std::string> data;  // nullopt when the client sent length -1
};
Result<SaslInitialResponseMsg> ParseSaslInitialResponse(std::string_view body);

}  // namespace midflight::pgwire
