#include "proxy/wire/pg/pg_wire.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace midflight::pgwire {

// ---------------------------------------------------------------------------
// FrameReader

namespace {

constexpr size_t kMinBuffer = 16 * 1024;
// An empty buffer larger than this is released rather than kept, so one huge
// message does not pin its memory for the life of the connection.
constexpr size_t kKeepBuffer = 1024 * 1024;

}  // namespace

std::string DescribeType(char type) {
  const auto u = static_cast<unsigned char>(type);
  if (u >= 0x21 && u <= 0x7e) return fmt::format("'{}'", type);
  return fmt::format("0x{:02x}", u);
}

char* FrameReader::PrepareWrite(size_t n) {
  if (begin_ == end_) {
    begin_ = end_ = 0;
    if (buf_.size() > kKeepBuffer && n <= kKeepBuffer) buf_ = std::string();
  }
  const size_t cap = buf_.size();
  if (cap - end_ >= n) return buf_.data() + end_;
  const size_t live = end_ - begin_;
  // Compact in place when that frees at least a quarter of the buffer: each
  // move of at most `cap` bytes is then paid for by cap/4 appended bytes.
  if (cap - live >= std::max(n, cap / 4)) {
    std::memmove(buf_.data(), buf_.data() + begin_, live);
  } else {
    std::string grown(std::max({cap * 2, live + n, kMinBuffer}), '\0');
    std::memcpy(grown.data(), buf_.data() + begin_, live);
    buf_.swap(grown);
  }
  begin_ = 0;
  end_ = live;
  return buf_.data() + end_;
}

void FrameReader::CommitWrite(size_t n) {
  end_ = std::min(end_ + n, buf_.size());
}

void FrameReader::Append(const char* data, size_t n) {
  if (n == 0) return;
  std::memcpy(PrepareWrite(n), data, n);
  CommitWrite(n);
}

void FrameReader::Consume(size_t n) {
  begin_ += std::min(n, size());
  if (begin_ == end_) begin_ = end_ = 0;
}

Result<std::optional<MessageHeader>> FrameReader::PeekHeader() const {
  if (size() < 5) return std::optional<MessageHeader>();
  const MessageHeader h{data()[0], GetUint32(data() + 1)};
  if (h.length < 4 || h.length > max_message_) {
    return OperatorError(fmt::format("invalid message length {} for message type {}", h.length, DescribeType(h.type)));
  }
  return std::optional<MessageHeader>(h);
}

Result<std::optional<RawMessage>> FrameReader::NextRaw() {
  ASSIGN_OR_RETURN(std::optional<MessageHeader> h, PeekHeader());
  if (!h || size() - 1 < h->length) return std::optional<RawMessage>();
  RawMessage m;
  m.type = h->type;
  m.bytes = std::string_view(data(), size_t{h->length} + 1);
  m.body = m.bytes.substr(5);
  // Only the offset moves: the views stay valid until bytes are added again.
  begin_ += m.bytes.size();
  return std::optional<RawMessage>(m);
}

Result<std::optional<Message>> FrameReader::Next() {
  ASSIGN_OR_RETURN(std::optional<RawMessage> raw, NextRaw());
  if (!raw) return std::optional<Message>();
  Message m{raw->type, std::string(raw->body)};
  if (begin_ == end_) begin_ = end_ = 0;
  return std::optional<Message>(std::move(m));
}

Result<std::optional<std::string>> FrameReader::NextStartup() {
  if (size() < 4) return std::optional<std::string>();
  const uint32_t len = GetUint32(data());
  if (len < 8 || len > kMaxStartupPacket) {
    return OperatorError(fmt::format("invalid startup packet length {}", len));
  }
  if (size() < len) return std::optional<std::string>();
  std::string body(data() + 4, len - 4);
  Consume(len);
  return std::optional<std::string>(std::move(body));
}

// ---------------------------------------------------------------------------
// Body reader: a cursor over one message body that never reads past its end.

namespace {

class BodyReader {
 public:
  // `what` names the message in errors, e.g. "Parse ('P')".
  BodyReader(std::string_view body, const char* what) : body_(body), what_(what) {}

  Result<std::string> CString(const char* field) {
    const size_t nul = body_.find('\0', pos_);
    if (nul == std::string_view::npos) {
      return Malformed(fmt::format("{} at byte {} is not NUL-terminated", field, pos_));
    }
    std::string s(body_.substr(pos_, nul - pos_));
    pos_ = nul + 1;
    return s;
  }
  Result<int32_t> Int32(const char* field) {
    if (left() < 4) return Truncated(field);
    const int32_t v = GetInt32(body_.data() + pos_);
    pos_ += 4;
    return v;
  }
  Result<uint16_t> Uint16(const char* field) {
    if (left() < 2) return Truncated(field);
    const uint16_t v = GetUint16(body_.data() + pos_);
    pos_ += 2;
    return v;
  }
  Result<char> Byte(const char* field) {
    if (left() < 1) return Truncated(field);
    return body_[pos_++];
  }
  Result<std::string> Bytes(size_t n, const char* field) {
    if (left() < n) return Truncated(field);
    std::string s(body_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  std::string Rest() {
    std::string s(body_.substr(pos_));
    pos_ = body_.size();
    return s;
  }
  Status End() {
    if (pos_ == body_.size()) return Status::Ok();
    return Malformed(fmt::format("{} unexpected bytes after byte {}", body_.size() - pos_, pos_));
  }
  bool AtEnd() const { return pos_ == body_.size(); }
  size_t left() const { return body_.size() - pos_; }
  size_t pos() const { return pos_; }

  Status Malformed(const std::string& why) const {
    return OperatorError(fmt::format("malformed {} message: {}", what_, why));
  }
  Status Truncated(const char* field) const {
    return OperatorError(fmt::format("truncated {} message: {} missing at byte {}", what_, field, pos_));
  }

 private:
  std::string_view body_;
  const char* what_;
  size_t pos_ = 0;
};

// Writes s up to its first NUL, then the terminator.
void PutCString(std::string& out, std::string_view s) {
  out.append(s.substr(0, s.find('\0')));
  out.push_back('\0');
}

// Starts a typed message: type and a length placeholder that Finish fills in.
std::string Begin(char type, size_t body_hint = 0) {
  std::string out;
  out.reserve(5 + body_hint);
  out.push_back(type);
  out.append(4, '\0');
  return out;
}
std::string Finish(std::string out) {
  const auto len = static_cast<uint32_t>(out.size() - 1);
  for (int i = 0; i < 4; ++i) out[1 + i] = static_cast<char>(len >> (24 - 8 * i));
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Startup

const std::string* StartupPacket::Find(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return &v;
  }
  return nullptr;
}

Result<StartupPacket> ParseStartup(std::string_view body) {
  BodyReader r(body, "startup packet");
  StartupPacket p;
  ASSIGN_OR_RETURN(p.protocol, r.Int32("protocol code"));
  switch (p.protocol) {
    case kSslRequestCode:
      p.kind = StartupPacket::Kind::kSslRequest;
      RETURN_IF_ERROR(r.End());
      return p;
    case kGssEncRequestCode:
      p.kind = StartupPacket::Kind::kGssEncRequest;
      RETURN_IF_ERROR(r.End());
      return p;
    case kCancelRequestCode: {
      p.kind = StartupPacket::Kind::kCancel;
      ASSIGN_OR_RETURN(p.cancel_pid, r.Int32("backend pid"));
      ASSIGN_OR_RETURN(p.cancel_secret, r.Int32("secret key"));
      RETURN_IF_ERROR(r.End());
      return p;
    }
    default: break;
  }
  const auto major = static_cast<uint32_t>(p.protocol) >> 16;
  const auto minor = static_cast<uint32_t>(p.protocol) & 0xffff;
  if (major != 3) return OperatorError(fmt::format("unsupported protocol {}.{}", major, minor));
  p.kind = StartupPacket::Kind::kStartup;
  for (;;) {
    ASSIGN_OR_RETURN(std::string name, r.CString("parameter name"));
    if (name.empty()) break;  // the list's terminator
    ASSIGN_OR_RETURN(std::string value, r.CString("parameter value"));
    p.params.emplace_back(std::move(name), std::move(value));
  }
  RETURN_IF_ERROR(r.End());
  return p;
}

// ---------------------------------------------------------------------------
// Builders

std::string Build(char type, std::string_view body) {
  std::string out = Begin(type, body.size());
  out.append(body);
  return Finish(std::move(out));
}

namespace {
// An untyped startup-phase packet: length, then the body.
std::string BuildUntyped(const std::string& body) {
  std::string out;
  PutInt32(out, static_cast<int32_t>(body.size() + 4));
  out.append(body);
  return out;
}
}  // namespace

std::string StartupMessage(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string body;
  PutInt32(body, kProtocol30);
  for (const auto& [name, value] : params) {
    if (name.empty()) continue;  // an empty name would end the list early
    PutCString(body, name);
    PutCString(body, value);
  }
  body.push_back('\0');
  return BuildUntyped(body);
}

std::string CancelRequest(int32_t pid, int32_t secret) {
  std::string body;
  PutInt32(body, kCancelRequestCode);
  PutInt32(body, pid);
  PutInt32(body, secret);
  return BuildUntyped(body);
}

std::string SslRequest() {
  std::string body;
  PutInt32(body, kSslRequestCode);
  return BuildUntyped(body);
}

std::string GssEncRequest() {
  std::string body;
  PutInt32(body, kGssEncRequestCode);
  return BuildUntyped(body);
}

std::string Query(std::string_view sql) {
  std::string out = Begin('Q', sql.size() + 1);
  PutCString(out, sql);
  return Finish(std::move(out));
}

std::string Parse(std::string_view statement, std::string_view query, const std::vector<uint32_t>& param_types) {
  std::string out = Begin('P', statement.size() + query.size() + 4 + 4 * param_types.size());
  PutCString(out, statement);
  PutCString(out, query);
  PutInt16(out, static_cast<int16_t>(param_types.size()));
  for (uint32_t oid : param_types) PutInt32(out, static_cast<int32_t>(oid));
  return Finish(std::move(out));
}

std::string Bind(std::string_view portal, std::string_view statement, const std::vector<int16_t>& param_formats,
                 const std::vector<std::optional<std::string>>& params, const std::vector<int16_t>& result_formats) {
  std::string out = Begin('B');
  PutCString(out, portal);
  PutCString(out, statement);
  PutInt16(out, static_cast<int16_t>(param_formats.size()));
  for (int16_t f : param_formats) PutInt16(out, f);
  PutInt16(out, static_cast<int16_t>(params.size()));
  for (const auto& p : params) {
    if (!p) {
      PutInt32(out, -1);
      continue;
    }
    PutInt32(out, static_cast<int32_t>(p->size()));
    out.append(*p);
  }
  PutInt16(out, static_cast<int16_t>(result_formats.size()));
  for (int16_t f : result_formats) PutInt16(out, f);
  return Finish(std::move(out));
}

std::string Describe(char kind, std::string_view name) {
  std::string out = Begin('D', name.size() + 2);
  out.push_back(kind);
  PutCString(out, name);
  return Finish(std::move(out));
}

std::string Execute(std::string_view portal, int32_t max_rows) {
  std::string out = Begin('E', portal.size() + 5);
  PutCString(out, portal);
  PutInt32(out, max_rows);
  return Finish(std::move(out));
}

std::string Close(char kind, std::string_view name) {
  std::string out = Begin('C', name.size() + 2);
  out.push_back(kind);
  PutCString(out, name);
  return Finish(std::move(out));
}

std::string Sync() {
  return Build('S', {});
}
std::string Flush() {
  return Build('H', {});
}
std::string Terminate() {
  return Build('X', {});
}

std::string PasswordMessage(std::string_view password) {
  std::string out = Begin('p', password.size() + 1);
  PutCString(out, password);
  return Finish(std::move(out));
}

std::string SaslInitialResponse(std::string_view mechanism, std::string_view data) {
  std::string out = Begin('p', mechanism.size() + 5 + data.size());
  PutCString(out, mechanism);
  PutInt32(out, static_cast<int32_t>(data.size()));
  out.append(data);
  return Finish(std::move(out));
}

std::string SaslResponse(std::string_view data) {
  return Build('p', data);
}

namespace {
std::string Auth(int32_t code, std::string_view rest = {}) {
  std::string out = Begin('R', 4 + rest.size());
  PutInt32(out, code);
  out.append(rest);
  return Finish(std::move(out));
}
}  // namespace

std::string AuthOk() {
  return Auth(kAuthOk);
}
std::string AuthCleartext() {
  return Auth(kAuthCleartext);
}
std::string AuthMd5(const uint8_t salt[4]) {
  return Auth(kAuthMd5, std::string_view(reinterpret_cast<const char*>(salt), 4));
}
std::string AuthSasl(const std::vector<std::string>& mechanisms) {
  std::string rest;
  for (const auto& m : mechanisms) {
    if (!m.empty()) PutCString(rest, m);
  }
  rest.push_back('\0');
  return Auth(kAuthSasl, rest);
}
std::string AuthSaslContinue(std::string_view data) {
  return Auth(kAuthSaslContinue, data);
}
std::string AuthSaslFinal(std::string_view data) {
  return Auth(kAuthSaslFinal, data);
}

std::string ParameterStatus(std::string_view name, std::string_view value) {
  std::string out = Begin('S', name.size() + value.size() + 2);
  PutCString(out, name);
  PutCString(out, value);
  return Finish(std::move(out));
}

std::string BackendKeyData(int32_t pid, int32_t secret) {
  std::string out = Begin('K', 8);
  PutInt32(out, pid);
  PutInt32(out, secret);
  return Finish(std::move(out));
}

std::string ReadyForQuery(char status) {
  return Build('Z', std::string_view(&status, 1));
}

std::string CommandComplete(std::string_view tag) {
  std::string out = Begin('C', tag.size() + 1);
  PutCString(out, tag);
  return Finish(std::move(out));
}

std::string EmptyQueryResponse() {
  return Build('I', {});
}

std::string NegotiateProtocolVersion(int32_t newest_minor, const std::vector<std::string>& unrecognized_options) {
  std::string out = Begin('v');
  PutInt32(out, (3 << 16) | (newest_minor & 0xffff));
  PutInt32(out, static_cast<int32_t>(unrecognized_options.size()));
  for (const auto& o : unrecognized_options) PutCString(out, o);
  return Finish(std::move(out));
}

std::string FieldsMessage(char type, const std::vector<std::pair<char, std::string>>& fields) {
  std::string out = Begin(type);
  for (const auto& [code, value] : fields) {
    if (code == '\0') continue;  // would end the list
    out.push_back(code);
    PutCString(out, value);
  }
  out.push_back('\0');
  return Finish(std::move(out));
}

namespace {
std::string SeverityMessage(char type, std::string_view severity, std::string_view sqlstate, std::string_view message) {
  std::string out = Begin(type, 2 * severity.size() + sqlstate.size() + message.size() + 9);
  out.push_back('S');
  PutCString(out, severity);
  out.push_back('V');
  PutCString(out, severity);
  out.push_back('C');
  PutCString(out, sqlstate);
  out.push_back('M');
  PutCString(out, message);
  out.push_back('\0');
  return Finish(std::move(out));
}
}  // namespace

std::string ErrorResponse(std::string_view severity, std::string_view sqlstate, std::string_view message) {
  return SeverityMessage('E', severity, sqlstate, message);
}
std::string NoticeResponse(std::string_view severity, std::string_view sqlstate, std::string_view message) {
  return SeverityMessage('N', severity, sqlstate, message);
}

// ---------------------------------------------------------------------------
// Parsers

Result<std::map<char, std::string>> ParseErrorFields(std::string_view body) {
  BodyReader r(body, "ErrorResponse/NoticeResponse");
  std::map<char, std::string> fields;
  for (;;) {
    ASSIGN_OR_RETURN(char code, r.Byte("field code"));
    if (code == '\0') break;
    ASSIGN_OR_RETURN(std::string value, r.CString("field value"));
    fields[code] = std::move(value);
  }
  RETURN_IF_ERROR(r.End());
  return fields;
}

bool IsFatalError(std::string_view body) {
  auto fields = ParseErrorFields(body);
  if (!fields.ok()) return false;
  // 'V' (never localised, from 9.6 on) when present, else 'S'.
  auto it = fields->find('V');
  if (it == fields->end()) it = fields->find('S');
  return it != fields->end() && (it->second == "FATAL" || it->second == "PANIC");
}

Result<int32_t> ParseNotificationPid(std::string_view body) {
  BodyReader r(body, "NotificationResponse ('A')");
  ASSIGN_OR_RETURN(int32_t pid, r.Int32("process id"));
  ASSIGN_OR_RETURN(std::string channel, r.CString("channel"));
  ASSIGN_OR_RETURN(std::string payload, r.CString("payload"));
  RETURN_IF_ERROR(r.End());
  return pid;
}

std::string WithNotificationPid(std::string_view message, int32_t pid) {
  std::string out(message);
  if (out.size() < 9) return out;
  std::string p;
  PutInt32(p, pid);
  out.replace(5, 4, p);
  return out;
}

std::string DescribeErrorFields(const std::map<char, std::string>& fields) {
  auto get = [&](char c) -> std::string_view {
    auto it = fields.find(c);
    return it == fields.end() ? std::string_view() : std::string_view(it->second);
  };
  std::string out(get('M').empty() ? std::string_view("(no message)") : get('M'));
  if (!get('D').empty()) out += fmt::format(" (DETAIL: {})", get('D'));
  if (!get('C').empty()) out += fmt::format(" (SQLSTATE {})", get('C'));
  return out;
}

Result<std::pair<std::string, std::string>> ParseParameterStatus(std::string_view body) {
  BodyReader r(body, "ParameterStatus ('S')");
  ASSIGN_OR_RETURN(std::string name, r.CString("parameter name"));
  ASSIGN_OR_RETURN(std::string value, r.CString("parameter value"));
  RETURN_IF_ERROR(r.End());
  return std::make_pair(std::move(name), std::move(value));
}

Result<std::pair<int32_t, int32_t>> ParseBackendKeyData(std::string_view body) {
  BodyReader r(body, "BackendKeyData ('K')");
  ASSIGN_OR_RETURN(int32_t pid, r.Int32("process id"));
  ASSIGN_OR_RETURN(int32_t secret, r.Int32("secret key"));
  RETURN_IF_ERROR(r.End());
  return std::make_pair(pid, secret);
}

Result<char> ParseReadyForQuery(std::string_view body) {
  BodyReader r(body, "ReadyForQuery ('Z')");
  ASSIGN_OR_RETURN(char status, r.Byte("transaction status"));
  RETURN_IF_ERROR(r.End());
  if (status != 'I' && status != 'T' && status != 'E') {
    return r.Malformed(fmt::format("unknown transaction status {}", DescribeType(status)));
  }
  return status;
}

Result<std::string> ParseCommandComplete(std::string_view body) {
  BodyReader r(body, "CommandComplete ('C')");
  ASSIGN_OR_RETURN(std::string tag, r.CString("command tag"));
  RETURN_IF_ERROR(r.End());
  return tag;
}

Result<int32_t> ParseAuthCode(std::string_view body) {
  BodyReader r(body, "Authentication ('R')");
  return r.Int32("request code");
}

Result<std::array<uint8_t, 4>> ParseAuthMd5Salt(std::string_view body) {
  BodyReader r(body, "AuthenticationMD5Password ('R')");
  ASSIGN_OR_RETURN(int32_t code, r.Int32("request code"));
  if (code != kAuthMd5) return r.Malformed(fmt::format("request code {} is not {}", code, kAuthMd5));
  ASSIGN_OR_RETURN(std::string salt, r.Bytes(4, "salt"));
  RETURN_IF_ERROR(r.End());
  std::array<uint8_t, 4> out;
  std::memcpy(out.data(), salt.data(), 4);
  return out;
}

Result<std::vector<std::string>> ParseAuthSaslMechanisms(std::string_view body) {
  BodyReader r(body, "AuthenticationSASL ('R')");
  ASSIGN_OR_RETURN(int32_t code, r.Int32("request code"));
  if (code != kAuthSasl) return r.Malformed(fmt::format("request code {} is not {}", code, kAuthSasl));
  std::vector<std::string> mechanisms;
  for (;;) {
    ASSIGN_OR_RETURN(std::string m, r.CString("mechanism name"));
    if (m.empty()) break;
    mechanisms.push_back(std::move(m));
  }
  RETURN_IF_ERROR(r.End());
  return mechanisms;
}

Result<std::string> ParseAuthSaslData(std::string_view body) {
  BodyReader r(body, "AuthenticationSASLContinue/Final ('R')");
  ASSIGN_OR_RETURN(int32_t code, r.Int32("request code"));
  if (code != kAuthSaslContinue && code != kAuthSaslFinal) {
    return r.Malformed(fmt::format("request code {} is not {} or {}", code, kAuthSaslContinue, kAuthSaslFinal));
  }
  return r.Rest();
}

Result<std::string> ParseQuery(std::string_view body) {
  BodyReader r(body, "Query ('Q')");
  ASSIGN_OR_RETURN(std::string sql, r.CString("query text"));
  RETURN_IF_ERROR(r.End());
  return sql;
}

Result<ParseMsg> ParseParse(std::string_view body) {
  BodyReader r(body, "Parse ('P')");
  ParseMsg m;
  ASSIGN_OR_RETURN(m.statement, r.CString("statement name"));
  ASSIGN_OR_RETURN(m.query, r.CString("query text"));
  ASSIGN_OR_RETURN(uint16_t n, r.Uint16("parameter type count"));
  if (r.left() < size_t{n} * 4) return r.Truncated("parameter types");
  m.param_types.reserve(n);
  for (uint16_t i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(int32_t oid, r.Int32("parameter type"));
    m.param_types.push_back(static_cast<uint32_t>(oid));
  }
  RETURN_IF_ERROR(r.End());
  return m;
}

namespace {
Result<std::vector<int16_t>> FormatCodes(BodyReader& r, const char* count_field, const char* field) {
  ASSIGN_OR_RETURN(uint16_t n, r.Uint16(count_field));
  if (r.left() < size_t{n} * 2) return r.Truncated(field);
  std::vector<int16_t> codes;
  codes.reserve(n);
  for (uint16_t i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(uint16_t c, r.Uint16(field));
    codes.push_back(static_cast<int16_t>(c));
  }
  return codes;
}
}  // namespace

Result<BindMsg> ParseBind(std::string_view body) {
  BodyReader r(body, "Bind ('B')");
  BindMsg m;
  ASSIGN_OR_RETURN(m.portal, r.CString("portal name"));
  ASSIGN_OR_RETURN(m.statement, r.CString("statement name"));
  ASSIGN_OR_RETURN(m.param_formats, FormatCodes(r, "parameter format count", "parameter format"));
  ASSIGN_OR_RETURN(uint16_t n, r.Uint16("parameter count"));
  // Each parameter needs at least its 4-byte length: bounds the reservation.
  if (r.left() < size_t{n} * 4) return r.Truncated("parameter values");
  m.params.reserve(n);
  for (uint16_t i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(int32_t len, r.Int32("parameter length"));
    if (len == -1) {
      m.params.emplace_back(std::nullopt);
      continue;
    }
    if (len < 0) return r.Malformed(fmt::format("parameter {} has length {}", i + 1, len));
    ASSIGN_OR_RETURN(std::string value, r.Bytes(static_cast<size_t>(len), "parameter value"));
    m.params.emplace_back(std::move(value));
  }
  ASSIGN_OR_RETURN(m.result_formats, FormatCodes(r, "result format count", "result format"));
  RETURN_IF_ERROR(r.End());
  return m;
}

namespace {
Result<CloseMsg> ParseKindAndName(std::string_view body, const char* what) {
  BodyReader r(body, what);
  CloseMsg m;
  ASSIGN_OR_RETURN(m.kind, r.Byte("kind"));
  if (m.kind != 'S' && m.kind != 'P') {
    return r.Malformed(fmt::format("kind {} is neither 'S' nor 'P'", DescribeType(m.kind)));
  }
  ASSIGN_OR_RETURN(m.name, r.CString("name"));
  RETURN_IF_ERROR(r.End());
  return m;
}
}  // namespace

Result<CloseMsg> ParseClose(std::string_view body) {
  return ParseKindAndName(body, "Close ('C')");
}
Result<CloseMsg> ParseDescribe(std::string_view body) {
  return ParseKindAndName(body, "Describe ('D')");
}

Result<ExecuteMsg> ParseExecute(std::string_view body) {
  BodyReader r(body, "Execute ('E')");
  ExecuteMsg m;
  ASSIGN_OR_RETURN(m.portal, r.CString("portal name"));
  ASSIGN_OR_RETURN(m.max_rows, r.Int32("row limit"));
  RETURN_IF_ERROR(r.End());
  return m;
}

Result<std::string> ParsePasswordMessage(std::string_view body) {
  BodyReader r(body, "PasswordMessage ('p')");
  ASSIGN_OR_RETURN(std::string password, r.CString("password"));
  RETURN_IF_ERROR(r.End());
  return password;
}

Result<SaslInitialResponseMsg> ParseSaslInitialResponse(std::string_view body) {
  BodyReader r(body, "SASLInitialResponse ('p')");
  SaslInitialResponseMsg m;
  ASSIGN_OR_RETURN(m.mechanism, r.CString("mechanism name"));
  ASSIGN_OR_RETURN(int32_t len, r.Int32("data length"));
  if (len < -1) return r.Malformed(fmt::format("data length {}", len));
  if (len >= 0) {
    ASSIGN_OR_RETURN(std::string data, r.Bytes(static_cast<size_t>(len), "data"));
    m.data = std::move(data);
  }
  RETURN_IF_ERROR(r.End());
  return m;
}

}  // namespace midflight::pgwire
