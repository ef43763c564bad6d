// Fuzzes the PostgreSQL wire codec the proxy speaks (proxy/wire/pg/pg_wire.h)
// and the statement classifier it runs on client queries (proxy/pg_statement.h).
//
// The input is a byte stream as a peer sends it: startup-phase packets
// (SSLRequest and GSSENCRequest are followed by another one, as after the
// proxy's 'N'), then typed messages. Each message body goes through every
// parser for its type byte, client and server side alike, and the SQL of
// Query and Parse messages through the classifier.
//
// Properties: no crash, no sanitizer report, no exception (none is caught);
// - the FrameReader yields the same packets, messages and error whether the
//   stream arrives at once or in pieces (cut where the input's own bytes say);
// - what a parser accepts, its builder writes back byte for byte;
// - a statement MayChangeState rules out classifies as StateEffect::kNone.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/pg_statement.h"
#include "proxy/wire/pg/pg_wire.h"

namespace {

using namespace midflight::pgwire;

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckSql(std::string_view sql) {
  std::string name;
  const midflight::proxy::StateEffect effect = midflight::proxy::Classify(sql, &name);
  if (!midflight::proxy::MayChangeState(sql)) Check(effect == midflight::proxy::StateEffect::kNone);
  (void)midflight::proxy::Leading(sql, 3);
  (void)midflight::proxy::SingleStatement(sql);
}

void ParseStartupPacket(const std::string& body, bool* more) {
  *more = false;
  midflight::Result<StartupPacket> p = ParseStartup(body);
  if (!p.ok()) return;
  std::string packet;
  PutInt32(packet, static_cast<int32_t>(body.size() + 4));
  packet += body;
  switch (p->kind) {
    case StartupPacket::Kind::kStartup:
      if (p->protocol == kProtocol30) Check(StartupMessage(p->params) == packet);
      (void)p->Find("user");
      break;
    case StartupPacket::Kind::kCancel:
      Check(CancelRequest(p->cancel_pid, p->cancel_secret) == packet);
      break;
    case StartupPacket::Kind::kSslRequest:
      Check(SslRequest() == packet);
      *more = true;
      break;
    case StartupPacket::Kind::kGssEncRequest:
      Check(GssEncRequest() == packet);
      *more = true;
      break;
  }
}

void ParseMessage(const Message& m) {
  const std::string whole = Build(m.type, m.body);
  switch (m.type) {
    case 'Q':
      if (auto q = ParseQuery(m.body); q.ok()) {
        Check(Query(*q) == whole);
        CheckSql(*q);
      }
      break;
    case 'P':
      if (auto p = ParseParse(m.body); p.ok()) {
        Check(Parse(p->statement, p->query, p->param_types) == whole);
        CheckSql(p->query);
      }
      break;
    case 'B':
      if (auto b = ParseBind(m.body); b.ok()) {
        Check(Bind(b->portal, b->statement, b->param_formats, b->params, b->result_formats) == whole);
      }
      break;
    case 'C':
      if (auto c = ParseClose(m.body); c.ok()) Check(Close(c->kind, c->name) == whole);
      if (auto t = ParseCommandComplete(m.body); t.ok()) Check(CommandComplete(*t) == whole);
      break;
    case 'D':
      if (auto d = ParseDescribe(m.body); d.ok()) Check(Describe(d->kind, d->name) == whole);
      break;
    case 'E':
    case 'N':
      if (m.type == 'E') {
        if (auto e = ParseExecute(m.body); e.ok()) Check(Execute(e->portal, e->max_rows) == whole);
      }
      if (auto f = ParseErrorFields(m.body); f.ok()) {
        (void)DescribeErrorFields(*f);
        std::vector<std::pair<char, std::string>> fields(f->begin(), f->end());
        Check(ParseErrorFields(FieldsMessage(m.type, fields).substr(5)).value() == *f);
      }
      break;
    case 'p':
      if (auto pw = ParsePasswordMessage(m.body); pw.ok()) Check(PasswordMessage(*pw) == whole);
      if (auto s = ParseSaslInitialResponse(m.body); s.ok() && s->data) {
        Check(SaslInitialResponse(s->mechanism, *s->data) == whole);
      }
      break;
    case 'S':
      if (auto s = ParseParameterStatus(m.body); s.ok()) Check(ParameterStatus(s->first, s->second) == whole);
      break;
    case 'K':
      if (auto k = ParseBackendKeyData(m.body); k.ok()) Check(BackendKeyData(k->first, k->second) == whole);
      break;
    case 'Z':
      if (auto z = ParseReadyForQuery(m.body); z.ok()) Check(ReadyForQuery(*z) == whole);
      break;
    case 'R': {
      auto code = ParseAuthCode(m.body);
      if (!code.ok()) break;
      if (auto salt = ParseAuthMd5Salt(m.body); salt.ok()) Check(AuthMd5(salt->data()) == whole);
      if (auto mech = ParseAuthSaslMechanisms(m.body); mech.ok()) Check(AuthSasl(*mech) == whole);
      if (auto sasl = ParseAuthSaslData(m.body); sasl.ok()) {
        Check((*code == kAuthSaslContinue ? AuthSaslContinue(*sasl) : AuthSaslFinal(*sasl)) == whole);
      }
      break;
    }
    default:
      break;
  }
}

// What a reader produced: the bodies of the startup packets and the typed
// messages in order, and the error that ended the stream, if any.
struct Outcome {
  std::vector<std::string> startup;
  std::vector<Message> messages;
  std::string error;
  size_t left = 0;
};

bool Same(const Outcome& a, const Outcome& b) {
  if (a.startup != b.startup || a.error != b.error || a.left != b.left) return false;
  if (a.messages.size() != b.messages.size()) return false;
  for (size_t i = 0; i < a.messages.size(); ++i) {
    if (a.messages[i].type != b.messages[i].type || a.messages[i].body != b.messages[i].body) return false;
  }
  return true;
}

// Drains `reader`: startup packets while in the startup phase, then messages.
// Returns false when the stream ended in an error.
bool Drain(FrameReader& reader, bool* startup_phase, Outcome* out) {
  while (*startup_phase) {
    auto packet = reader.NextStartup();
    if (!packet.ok()) {
      out->error = packet.status().message();
      return false;
    }
    if (!*packet) return true;
    bool more = false;
    ParseStartupPacket(**packet, &more);
    out->startup.push_back(std::move(**packet));
    *startup_phase = more;
  }
  while (true) {
    auto m = reader.Next();
    if (!m.ok()) {
      out->error = m.status().message();
      return false;
    }
    if (!*m) return true;
    out->messages.push_back(std::move(**m));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  // Small messages limit so that the limit check is reached too.
  constexpr size_t kMaxMessage = 4096;

  Outcome whole;
  {
    FrameReader reader(kMaxMessage);
    reader.Append(in);
    bool startup_phase = true;
    Drain(reader, &startup_phase, &whole);
    whole.left = reader.size();
  }
  for (const Message& m : whole.messages) ParseMessage(m);

  // Once more in pieces, through PrepareWrite/CommitWrite like a socket read.
  Outcome pieces;
  {
    FrameReader reader(kMaxMessage);
    bool startup_phase = true;
    bool ok = true;
    size_t pos = 0;
    while (pos < in.size() && ok) {
      const size_t n = std::min<size_t>(in.size() - pos, 1 + static_cast<uint8_t>(in[pos]) % 64);
      char* dst = reader.PrepareWrite(n + 8);
      std::copy_n(in.data() + pos, n, dst);
      reader.CommitWrite(n);
      pos += n;
      ok = Drain(reader, &startup_phase, &pieces);
    }
    pieces.left = ok ? reader.size() : 0;
    if (!ok) whole.left = 0;  // after an error, what is left depends on when it was seen
  }
  Check(Same(whole, pieces));
  return 0;
}
