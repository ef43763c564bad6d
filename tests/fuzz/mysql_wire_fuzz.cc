// Fuzzes the MySQL/MariaDB wire codec the MySQL proxy will speak
// (proxy/wire/mysql/mysql_wire.h).
//
// Input: byte 0 picks the negotiated capabilities (CLIENT_DEPRECATE_EOF,
// CLIENT_SESSION_TRACK, MariaDB extended type info / metadata cache, ...),
// byte 1 the chunk size the stream arrives in; the rest is a packet stream.
// Its first message goes to the ResponseTracker as a command, every later one
// as a server message; every message also goes through every parser.
//
// Properties: no crash, no sanitizer report, no exception (none is caught);
// - the PacketReader yields the same messages and error whether the stream
//   arrives at once or in chunks;
// - what a parser accepts, its encoder writes in a form that parses back to
//   the same encoding (byte for byte for the packets with one form: EOF,
//   LOCAL INFILE, ERR);
// - the tracker either accepts a message or returns an error, never both
//   complete and still awaiting.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/wire/mysql/mysql_wire.h"

namespace {

using namespace midflight::mywire;

// Names the property that failed before aborting.
#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "check failed at line %d: %s\n", __LINE__, #cond); \
      std::abort();                                                           \
    }                                                                         \
  } while (0)

template <typename T, typename Enc, typename Par>
void Idempotent(const midflight::Result<T>& parsed, Enc enc, Par par) {
  if (!parsed.ok()) return;
  const std::string once = enc(*parsed);
  auto again = par(once);
  CHECK(again.ok());
  CHECK(enc(*again) == once);
}

void ParseAll(std::string_view p, uint64_t caps) {
  Idempotent(
      ParseOk(p, caps), [&](const OkPacket& o) { return EncodeOk(o, caps); },
      [&](std::string_view s) { return ParseOk(s, caps); });
  if (auto e = ParseErr(p); e.ok()) CHECK(EncodeErr(*e) == p || e->sql_state.empty() || e->progress());
  if (auto e = ParseEof(p); e.ok()) CHECK(EncodeEof(*e) == p);
  Idempotent(
      ParseStmtPrepareOk(p), [](const StmtPrepareOk& s) { return EncodeStmtPrepareOk(s); },
      [](std::string_view s) { return ParseStmtPrepareOk(s); });
  if (auto f = ParseLocalInfileRequest(p); f.ok()) CHECK(EncodeLocalInfileRequest(*f) == p);
  Idempotent(
      ParseAuthSwitchRequest(p), [](const AuthSwitchRequest& a) { return EncodeAuthSwitchRequest(a); },
      [](std::string_view s) { return ParseAuthSwitchRequest(s); });
  (void)ParseAuthMoreData(p);
  Idempotent(
      ParseColumnDefinition(p, caps), [&](const ColumnDefinition& c) { return EncodeColumnDefinition(c, caps); },
      [&](std::string_view s) { return ParseColumnDefinition(s, caps); });
  Idempotent(
      ParseHandshake(p), [](const Handshake& h) { return EncodeHandshake(h); },
      [](std::string_view s) { return ParseHandshake(s); });
  Idempotent(
      ParseHandshakeResponse(p), [](const HandshakeResponse& h) { return EncodeHandshakeResponse(h); },
      [](std::string_view s) { return ParseHandshakeResponse(s); });
  if (IsSslRequest(p)) {
    if (auto s = ParseSslRequest(p); s.ok()) CHECK(EncodeSslRequest(*s).size() == 32);
  }
  Idempotent(
      ParseResultSetHeader(p, caps), [&](const ResultSetHeader& h) { return EncodeResultSetHeader(h, caps); },
      [&](std::string_view s) { return ParseResultSetHeader(s, caps); });
  const size_t columns = p.empty() ? 0 : static_cast<uint8_t>(p[0]) % 8;
  Idempotent(
      ParseTextRow(p, columns), [](const Row& r) { return EncodeTextRow(r); },
      [&](std::string_view s) { return ParseTextRow(s, columns); });
  std::vector<uint8_t> types;
  for (size_t i = 0; i < columns && i + 1 < p.size(); ++i) types.push_back(static_cast<uint8_t>(p[i + 1]));
  Idempotent(
      ParseBinaryRow(p, types), [&](const Row& r) { return EncodeBinaryRow(r, types); },
      [&](std::string_view s) { return ParseBinaryRow(s, types); });
  const uint16_t params = static_cast<uint16_t>(columns);
  Idempotent(
      ParseStmtExecute(p, params), [&](const StmtExecute& e) { return EncodeStmtExecute(e, params); },
      [&](std::string_view s) { return ParseStmtExecute(s, params); });
  (void)ParseChangeUser(p, caps);
  (void)ParseStmtId(p);
  (void)NativePasswordVerify(p.substr(0, 20), p, p.substr(0, 20));
}

struct Outcome {
  std::vector<std::string> messages;
  std::optional<std::string> error;
  bool operator==(const Outcome& o) const { return messages == o.messages && error == o.error; }
};

Outcome Read(std::string_view stream, size_t chunk) {
  Outcome out;
  PacketReader r(1 << 16);
  for (size_t off = 0;; off += chunk) {
    if (off < stream.size()) r.Append(stream.substr(off, chunk));
    for (;;) {
      auto m = r.Next();
      if (!m.ok()) {
        out.error = m.status().message();
        return out;
      }
      if (!m->has_value()) break;
      out.messages.push_back(std::move((*m)->payload));
    }
    if (off >= stream.size()) return out;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static const uint64_t kCaps[] = {
      cap::kProtocol41 | cap::kSecureConnection | cap::kPluginAuth,
      cap::kProtocol41 | cap::kDeprecateEof | cap::kSessionTrack,
      cap::kProtocol41 | cap::kMariaDbExtendedTypeInfo | cap::kMariaDbCacheMetadata,
      cap::kProtocol41 | cap::kDeprecateEof | cap::kMariaDbProgress | cap::kConnectAttrs | cap::kPluginAuth,
  };
  const uint64_t caps = kCaps[data[0] % 4];
  const size_t chunk = 1 + data[1] % 64;
  const std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);

  const Outcome whole = Read(stream, stream.size() + 1);
  CHECK(Read(stream, chunk) == whole);

  ResponseTracker t(caps);
  bool tracking = true;
  for (size_t i = 0; i < whole.messages.size(); ++i) {
    const std::string& p = whole.messages[i];
    ParseAll(p, caps);
    if (!tracking) continue;
    if (i == 0 || t.Idle()) {
      tracking = t.OnCommand(p).ok();
      continue;
    }
    auto r = t.OnServerMessage(p);
    if (!r.ok()) {
      tracking = false;
      continue;
    }
    CHECK(!r->response_complete || t.Idle());
    (void)t.AtTransactionBoundary();
  }
  return 0;
}
