#include "proxy/wire/mysql/mysql_wire.h"

#include <fmt/format.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace midflight::mywire {

// ---------------------------------------------------------------------------
// Integers.

void PutInt(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

size_t LenencSize(uint64_t v) {
  if (v < 0xfb) return 1;
  if (v <= 0xffff) return 3;
  if (v <= 0xffffff) return 4;
  return 9;
}

void PutLenenc(std::string& out, uint64_t v) {
  if (v < 0xfb) {
    out.push_back(static_cast<char>(v));
  } else if (v <= 0xffff) {
    out.push_back(static_cast<char>(0xfc));
    PutInt(out, v, 2);
  } else if (v <= 0xffffff) {
    out.push_back(static_cast<char>(0xfd));
    PutInt(out, v, 3);
  } else {
    out.push_back(static_cast<char>(0xfe));
    PutInt(out, v, 8);
  }
}

void PutLenencString(std::string& out, std::string_view s) {
  PutLenenc(out, s.size());
  out.append(s);
}

namespace {

uint64_t GetInt(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

// A cursor over one payload that never reads past its end; errors name the packet.
class Reader {
 public:
  Reader(std::string_view p, const char* what) : p_(p), what_(what) {}

  size_t left() const { return p_.size() - pos_; }
  bool done() const { return pos_ == p_.size(); }
  size_t pos() const { return pos_; }
  uint8_t PeekByte() const { return static_cast<uint8_t>(p_[pos_]); }

  Result<uint64_t> Int(int bytes, const char* field) {
    if (left() < static_cast<size_t>(bytes)) return Truncated(field);
    const uint64_t v = GetInt(p_.data() + pos_, bytes);
    pos_ += bytes;
    return v;
  }
  Result<uint64_t> Lenenc(const char* field) {
    if (left() < 1) return Truncated(field);
    const auto b = static_cast<uint8_t>(p_[pos_]);
    int n = 0;
    if (b < 0xfb) {
      ++pos_;
      return uint64_t{b};
    }
    if (b == 0xfc)
      n = 2;
    else if (b == 0xfd)
      n = 3;
    else if (b == 0xfe)
      n = 8;
    else
      return Malformed(fmt::format("{} at byte {} is not a length-encoded integer (0x{:02x})", field, pos_, b));
    if (left() < static_cast<size_t>(n) + 1) return Truncated(field);
    const uint64_t v = GetInt(p_.data() + pos_ + 1, n);
    pos_ += n + 1;
    return v;
  }
  Result<std::string> Bytes(uint64_t n, const char* field) {
    if (left() < n) return Truncated(field);
    std::string s(p_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  Result<std::string> LenencString(const char* field) {
    ASSIGN_OR_RETURN(uint64_t n, Lenenc(field));
    return Bytes(n, field);
  }
  Result<std::string> NulString(const char* field) {
    const size_t nul = p_.find('\0', pos_);
    if (nul == std::string_view::npos) {
      return Malformed(fmt::format("{} at byte {} is not NUL-terminated", field, pos_));
    }
    std::string s(p_.substr(pos_, nul - pos_));
    pos_ = nul + 1;
    return s;
  }
  std::string Rest() {
    std::string s(p_.substr(pos_));
    pos_ = p_.size();
    return s;
  }
  Status End() const {
    if (!done()) return Malformed(fmt::format("{} trailing bytes", left()));
    return Status::Ok();
  }
  Status Malformed(const std::string& detail) const {
    return OperatorError(fmt::format("malformed {} packet: {}", what_, detail));
  }
  Status Truncated(const char* field) const {
    return OperatorError(
        fmt::format("malformed {} packet: truncated at {} (byte {} of {})", what_, field, pos_, p_.size()));
  }

 private:
  std::string_view p_;
  const char* what_;
  size_t pos_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------
// Framing.

void PacketReader::Compact() {
  if (begin_ == buf_.size()) {
    buf_.clear();
    begin_ = 0;
    if (buf_.capacity() > (size_t{1} << 20)) buf_.shrink_to_fit();
  } else if (begin_ > buf_.size() / 2) {
    buf_.erase(0, begin_);
    begin_ = 0;
  }
}

void PacketReader::Append(std::string_view bytes) {
  Compact();
  buf_.append(bytes);
}

Result<std::optional<RawPacket>> PacketReader::NextPacket() {
  const size_t avail = buffered();
  if (avail < 4) return std::optional<RawPacket>();
  const char* p = buf_.data() + begin_;
  const size_t len = GetInt(p, 3);
  if (len > max_message_) {
    return OperatorError(fmt::format("message of at least {} bytes exceeds the maximum of {}", len, max_message_));
  }
  if (avail < 4 + len) return std::optional<RawPacket>();
  RawPacket r;
  r.seq = static_cast<uint8_t>(p[3]);
  r.bytes = std::string_view(p, 4 + len);
  r.payload = r.bytes.substr(4);
  begin_ += 4 + len;
  return std::optional<RawPacket>(r);
}

Result<std::optional<Message>> PacketReader::Next() {
  // Walk the headers of the buffered parts without consuming anything until
  // the whole message is here; the bound is checked against declared lengths.
  const size_t avail = buffered();
  const char* base = buf_.data() + begin_;
  size_t off = 0;
  size_t total = 0;
  size_t parts = 0;
  uint8_t first_seq = 0;
  uint8_t seq = 0;
  for (;;) {
    if (avail - off < 4) return std::optional<Message>();
    const size_t len = GetInt(base + off, 3);
    const auto s = static_cast<uint8_t>(base[off + 3]);
    if (parts == 0) {
      first_seq = s;
    } else if (s != static_cast<uint8_t>(seq + 1)) {
      return OperatorError(
          fmt::format("packet sequence id {} follows {} inside a split message (part {})", s, seq, parts + 1));
    }
    seq = s;
    if (len > max_message_ - std::min(total, max_message_)) {
      return OperatorError(
          fmt::format("message of at least {} bytes exceeds the maximum of {}", total + len, max_message_));
    }
    total += len;
    ++parts;
    if (avail - off - 4 < len) return std::optional<Message>();
    off += 4 + len;
    if (len < kMaxPacketPayload) break;
  }
  Message m;
  m.seq = first_seq;
  m.last_seq = seq;
  m.packets = parts;
  m.payload.reserve(total);
  size_t o = 0;
  while (o < off) {
    const size_t len = GetInt(base + o, 3);
    m.payload.append(base + o + 4, len);
    o += 4 + len;
  }
  begin_ += off;
  return std::optional<Message>(std::move(m));
}

std::string EncodePacket(uint8_t seq, std::string_view payload, uint8_t* next_seq) {
  std::string out;
  out.reserve(payload.size() + 4 * (payload.size() / kMaxPacketPayload + 1));
  size_t off = 0;
  for (;;) {
    const size_t n = std::min(payload.size() - off, kMaxPacketPayload);
    PutInt(out, n, 3);
    out.push_back(static_cast<char>(seq++));
    out.append(payload.substr(off, n));
    off += n;
    if (n < kMaxPacketPayload) break;
  }
  if (next_seq != nullptr) *next_seq = seq;
  return out;
}

// ---------------------------------------------------------------------------
// Connection phase.

Result<Handshake> ParseHandshake(std::string_view payload) {
  Reader r(payload, "Handshake");
  Handshake h;
  ASSIGN_OR_RETURN(uint64_t version, r.Int(1, "protocol version"));
  if (version != kProtocolVersion10) {
    if (version == 0xff) return r.Malformed("the server sent an error instead of a handshake");
    return r.Malformed(fmt::format("unsupported protocol version {}", version));
  }
  ASSIGN_OR_RETURN(h.server_version, r.NulString("server version"));
  ASSIGN_OR_RETURN(uint64_t id, r.Int(4, "connection id"));
  h.connection_id = static_cast<uint32_t>(id);
  ASSIGN_OR_RETURN(h.scramble, r.Bytes(8, "scramble part 1"));
  ASSIGN_OR_RETURN(uint64_t filler, r.Int(1, "filler"));
  (void)filler;
  ASSIGN_OR_RETURN(uint64_t caps_lo, r.Int(2, "capabilities"));
  ASSIGN_OR_RETURN(uint64_t coll, r.Int(1, "collation"));
  ASSIGN_OR_RETURN(uint64_t st, r.Int(2, "status"));
  ASSIGN_OR_RETURN(uint64_t caps_hi, r.Int(2, "capabilities (upper)"));
  h.collation = static_cast<uint8_t>(coll);
  h.status = static_cast<uint16_t>(st);
  h.capabilities = caps_lo | (caps_hi << 16);
  ASSIGN_OR_RETURN(uint64_t data_len, r.Int(1, "auth data length"));
  h.auth_data_len = static_cast<uint8_t>(data_len);
  ASSIGN_OR_RETURN(std::string reserved, r.Bytes(6, "reserved"));
  ASSIGN_OR_RETURN(uint64_t ext, r.Int(4, "MariaDB capabilities"));
  if (!h.mariadb()) {
    ext = 0;
  }
  h.capabilities |= ext << 32;
  if (h.capabilities & cap::kSecureConnection) {
    const size_t n2 = std::max<int>(13, static_cast<int>(data_len) - 8);
    ASSIGN_OR_RETURN(std::string part2, r.Bytes(n2, "scramble part 2"));
    // The last byte is a NUL terminator, not part of the scramble.
    if (!part2.empty() && part2.back() == '\0') part2.pop_back();
    h.scramble += part2;
  }
  if (h.capabilities & cap::kPluginAuth) {
    if (r.done()) return r.Truncated("auth plugin name");
    // MySQL 5.5.7-5.5.9 omit the terminator; take the rest either way.
    std::string rest = r.Rest();
    if (!rest.empty() && rest.back() == '\0') rest.pop_back();
    if (rest.find('\0') != std::string::npos) return r.Malformed("auth plugin name contains a NUL byte");
    h.auth_plugin = std::move(rest);
  }
  RETURN_IF_ERROR(r.End());
  return h;
}

std::string EncodeHandshake(const Handshake& h) {
  std::string out;
  out.push_back(static_cast<char>(kProtocolVersion10));
  out.append(h.server_version.c_str());
  out.push_back('\0');
  PutInt(out, h.connection_id, 4);
  std::string s = h.scramble;
  s.resize(std::max<size_t>(s.size(), 8), '\0');
  out.append(s, 0, 8);
  out.push_back('\0');
  PutInt(out, h.capabilities & 0xffff, 2);
  out.push_back(static_cast<char>(h.collation));
  PutInt(out, h.status, 2);
  PutInt(out, (h.capabilities >> 16) & 0xffff, 2);
  // Written as given even without CLIENT_PLUGIN_AUTH: the parser sizes
  // scramble part 2 from it either way, so the two stay each other's inverse.
  out.push_back(static_cast<char>(h.auth_data_len));
  out.append(6, '\0');
  PutInt(out, h.mariadb() ? (h.capabilities >> 32) & 0xffffffff : 0, 4);
  if (h.capabilities & cap::kSecureConnection) {
    const size_t n2 = std::max<int>(13, static_cast<int>(h.auth_data_len) - 8);
    std::string part2 = s.substr(8);
    part2.resize(n2 - 1, '\0');
    out.append(part2);
    out.push_back('\0');
  }
  if (h.capabilities & cap::kPluginAuth) {
    out.append(h.auth_plugin.c_str());
    out.push_back('\0');
  }
  return out;
}

bool IsSslRequest(std::string_view payload) {
  return payload.size() == 32 && (GetInt(payload.data(), 4) & cap::kSsl) != 0;
}

namespace {

Status ParseResponsePrefix(Reader& r, HandshakeResponse& h) {
  ASSIGN_OR_RETURN(uint64_t caps, r.Int(4, "capabilities"));
  if ((caps & cap::kProtocol41) == 0) {
    return OperatorError("pre-4.1 HandshakeResponse is not supported");
  }
  ASSIGN_OR_RETURN(uint64_t maxp, r.Int(4, "max packet size"));
  ASSIGN_OR_RETURN(uint64_t coll, r.Int(1, "collation"));
  ASSIGN_OR_RETURN(std::string filler, r.Bytes(19, "reserved"));
  ASSIGN_OR_RETURN(uint64_t ext, r.Int(4, "MariaDB capabilities"));
  if (caps & cap::kMysql) ext = 0;
  h.capabilities = caps | (ext << 32);
  h.max_packet = static_cast<uint32_t>(maxp);
  h.collation = static_cast<uint8_t>(coll);
  return Status::Ok();
}

void EncodeResponsePrefix(std::string& out, const HandshakeResponse& h) {
  PutInt(out, h.capabilities & 0xffffffff, 4);
  PutInt(out, h.max_packet, 4);
  out.push_back(static_cast<char>(h.collation));
  out.append(19, '\0');
  PutInt(out, (h.capabilities & cap::kMysql) ? 0 : (h.capabilities >> 32) & 0xffffffff, 4);
}

Result<std::vector<std::pair<std::string, std::string>>> ParseAttrs(Reader& r) {
  std::vector<std::pair<std::string, std::string>> attrs;
  ASSIGN_OR_RETURN(uint64_t total, r.Lenenc("connect attributes length"));
  ASSIGN_OR_RETURN(std::string block, r.Bytes(total, "connect attributes"));
  Reader a(block, "connect attributes");
  while (!a.done()) {
    ASSIGN_OR_RETURN(std::string k, a.LenencString("attribute name"));
    ASSIGN_OR_RETURN(std::string v, a.LenencString("attribute value"));
    attrs.emplace_back(std::move(k), std::move(v));
  }
  return attrs;
}

void EncodeAttrs(std::string& out, const std::vector<std::pair<std::string, std::string>>& attrs) {
  std::string block;
  for (const auto& [k, v] : attrs) {
    PutLenencString(block, k);
    PutLenencString(block, v);
  }
  PutLenencString(out, block);
}

}  // namespace

Result<HandshakeResponse> ParseSslRequest(std::string_view payload) {
  Reader r(payload, "SSLRequest");
  HandshakeResponse h;
  RETURN_IF_ERROR(ParseResponsePrefix(r, h));
  if ((h.capabilities & cap::kSsl) == 0) return r.Malformed("CLIENT_SSL is not set");
  RETURN_IF_ERROR(r.End());
  return h;
}

std::string EncodeSslRequest(const HandshakeResponse& r) {
  std::string out;
  HandshakeResponse h = r;
  h.capabilities |= cap::kSsl;
  EncodeResponsePrefix(out, h);
  return out;
}

Result<HandshakeResponse> ParseHandshakeResponse(std::string_view payload) {
  Reader r(payload, "HandshakeResponse41");
  HandshakeResponse h;
  RETURN_IF_ERROR(ParseResponsePrefix(r, h));
  ASSIGN_OR_RETURN(h.user, r.NulString("user"));
  if (h.capabilities & cap::kPluginAuthLenencData) {
    ASSIGN_OR_RETURN(h.auth_response, r.LenencString("auth response"));
  } else if (h.capabilities & cap::kSecureConnection) {
    ASSIGN_OR_RETURN(uint64_t n, r.Int(1, "auth response length"));
    ASSIGN_OR_RETURN(h.auth_response, r.Bytes(n, "auth response"));
  } else {
    ASSIGN_OR_RETURN(h.auth_response, r.NulString("auth response"));
  }
  // Clients may stop after any optional field (libmariadb omits the database
  // when none is given even with CLIENT_CONNECT_WITH_DB set in some versions).
  if ((h.capabilities & cap::kConnectWithDb) && !r.done()) {
    ASSIGN_OR_RETURN(std::string db, r.NulString("database"));
    h.database = std::move(db);
  }
  if ((h.capabilities & cap::kPluginAuth) && !r.done()) {
    ASSIGN_OR_RETURN(std::string plugin, r.NulString("auth plugin"));
    h.auth_plugin = std::move(plugin);
  }
  if ((h.capabilities & cap::kConnectAttrs) && !r.done()) {
    ASSIGN_OR_RETURN(h.attrs, ParseAttrs(r));
  }
  if ((h.capabilities & cap::kZstd) && !r.done()) {
    ASSIGN_OR_RETURN(uint64_t level, r.Int(1, "zstd level"));
    h.zstd_level = static_cast<uint8_t>(level);
  }
  RETURN_IF_ERROR(r.End());
  return h;
}

std::string EncodeHandshakeResponse(const HandshakeResponse& h) {
  std::string out;
  EncodeResponsePrefix(out, h);
  out.append(h.user.c_str());
  out.push_back('\0');
  if (h.capabilities & cap::kPluginAuthLenencData) {
    PutLenencString(out, h.auth_response);
  } else if (h.capabilities & cap::kSecureConnection) {
    const size_t n = std::min<size_t>(h.auth_response.size(), 255);
    out.push_back(static_cast<char>(n));
    out.append(h.auth_response, 0, n);
  } else {
    out.append(h.auth_response.c_str());
    out.push_back('\0');
  }
  const bool attrs = (h.capabilities & cap::kConnectAttrs) && (!h.attrs.empty() || h.zstd_level);
  const bool plugin = (h.capabilities & cap::kPluginAuth) && (h.auth_plugin || attrs);
  const bool db = (h.capabilities & cap::kConnectWithDb) && (h.database || plugin);
  if (db) {
    out.append(h.database.value_or("").c_str());
    out.push_back('\0');
  }
  if (plugin) {
    out.append(h.auth_plugin.value_or("").c_str());
    out.push_back('\0');
  }
  if (attrs) EncodeAttrs(out, h.attrs);
  if ((h.capabilities & cap::kZstd) && h.zstd_level) out.push_back(static_cast<char>(*h.zstd_level));
  return out;
}

Result<AuthSwitchRequest> ParseAuthSwitchRequest(std::string_view payload) {
  Reader r(payload, "AuthSwitchRequest");
  ASSIGN_OR_RETURN(uint64_t header, r.Int(1, "header"));
  if (header != 0xfe) return r.Malformed(fmt::format("header 0x{:02x} is not 0xfe", header));
  AuthSwitchRequest a;
  if (r.done()) return a;  // old_password switch
  ASSIGN_OR_RETURN(a.plugin, r.NulString("plugin name"));
  a.data = r.Rest();
  return a;
}

std::string EncodeAuthSwitchRequest(const AuthSwitchRequest& a) {
  std::string out(1, static_cast<char>(0xfe));
  if (a.plugin.empty() && a.data.empty()) return out;
  out.append(a.plugin.c_str());
  out.push_back('\0');
  out.append(a.data);
  return out;
}

Result<std::string> ParseAuthMoreData(std::string_view payload) {
  Reader r(payload, "AuthMoreData");
  ASSIGN_OR_RETURN(uint64_t header, r.Int(1, "header"));
  if (header != 0x01) return r.Malformed(fmt::format("header 0x{:02x} is not 0x01", header));
  return r.Rest();
}

std::string EncodeAuthMoreData(std::string_view data) {
  std::string out(1, '\x01');
  out.append(data);
  return out;
}

AuthPlugin ClassifyAuthPlugin(std::string_view name) {
  if (name == "mysql_native_password") return AuthPlugin::kNativePassword;
  if (name == "caching_sha2_password") return AuthPlugin::kCachingSha2Password;
  if (name == "client_ed25519") return AuthPlugin::kClientEd25519;
  if (name == "mysql_clear_password") return AuthPlugin::kClearPassword;
  if (name == "mysql_old_password") return AuthPlugin::kOldPassword;
  return AuthPlugin::kUnknown;
}

namespace {

std::string Digest(const EVP_MD* md, std::string_view a, std::string_view b = {}) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, md, nullptr);
  EVP_DigestUpdate(ctx, a.data(), a.size());
  EVP_DigestUpdate(ctx, b.data(), b.size());
  EVP_DigestFinal_ex(ctx, out, &len);
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string Xor(std::string a, std::string_view b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) a[i] = static_cast<char>(a[i] ^ b[i]);
  return a;
}

std::string_view Scramble20(std::string_view s) {
  if (s.size() == 21 && s.back() == '\0') s.remove_suffix(1);
  return s;
}

}  // namespace

std::string NativePasswordStage2(std::string_view password) {
  return Digest(EVP_sha1(), Digest(EVP_sha1(), password));
}

std::string NativePasswordResponse(std::string_view password, std::string_view scramble) {
  if (password.empty()) return "";
  const std::string stage1 = Digest(EVP_sha1(), password);
  const std::string stage2 = Digest(EVP_sha1(), stage1);
  return Xor(stage1, Digest(EVP_sha1(), Scramble20(scramble), stage2));
}

std::optional<std::string> ParseNativePasswordHash(std::string_view hex) {
  if (hex.size() != 41 || hex[0] != '*') return std::nullopt;
  std::string out;
  for (size_t i = 1; i < 41; i += 2) {
    int v = 0;
    for (size_t j = i; j < i + 2; ++j) {
      const char c = hex[j];
      int d = -1;
      if (c >= '0' && c <= '9')
        d = c - '0';
      else if (c >= 'A' && c <= 'F')
        d = c - 'A' + 10;
      else if (c >= 'a' && c <= 'f')
        d = c - 'a' + 10;
      if (d < 0) return std::nullopt;
      v = v * 16 + d;
    }
    out.push_back(static_cast<char>(v));
  }
  return out;
}

bool NativePasswordVerify(std::string_view response, std::string_view scramble, std::string_view stage2) {
  if (stage2.size() != 20) return false;
  if (response.size() != 20) return false;
  const std::string stage1 = Xor(std::string(response), Digest(EVP_sha1(), Scramble20(scramble), stage2));
  const std::string check = Digest(EVP_sha1(), stage1);
  return CRYPTO_memcmp(check.data(), stage2.data(), 20) == 0;
}

std::string CachingSha2Response(std::string_view password, std::string_view scramble) {
  if (password.empty()) return "";
  const std::string h1 = Digest(EVP_sha256(), password);
  const std::string h2 = Digest(EVP_sha256(), h1);
  return Xor(h1, Digest(EVP_sha256(), h2, Scramble20(scramble)));
}

bool CachingSha2Verify(std::string_view response, std::string_view scramble, std::string_view password) {
  const std::string want = CachingSha2Response(password, scramble);
  return response.size() == want.size() && CRYPTO_memcmp(response.data(), want.data(), want.size()) == 0;
}

std::optional<std::string> CachingSha2UnxorPassword(std::string_view decrypted, std::string_view scramble) {
  scramble = Scramble20(scramble);
  if (decrypted.empty() || scramble.empty()) return std::nullopt;
  std::string out(decrypted);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(out[i] ^ scramble[i % scramble.size()]);
  if (out.back() != '\0') return std::nullopt;
  out.pop_back();
  return out;
}

std::array<std::string, 2> Ed25519PublicKeyCandidates(std::string_view password) {
  std::array<std::string, 2> out;
  const std::string az = Digest(EVP_sha512(), password);
  EVP_PKEY* x = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, reinterpret_cast<const unsigned char*>(az.data()), 32);
  unsigned char u_bytes[32];
  size_t u_len = sizeof u_bytes;
  const bool have_u = x != nullptr && EVP_PKEY_get_raw_public_key(x, u_bytes, &u_len) == 1 && u_len == 32;
  EVP_PKEY_free(x);
  if (!have_u) return out;
  BN_CTX* ctx = BN_CTX_new();
  BIGNUM* p = BN_new();
  BIGNUM* u = BN_lebin2bn(u_bytes, 32, nullptr);
  BIGNUM* num = BN_new();
  BIGNUM* den = BN_new();
  BIGNUM* y = BN_new();
  // p = 2^255 - 19
  bool ok = ctx && p && u && num && den && y && BN_set_bit(p, 255) && BN_sub_word(p, 19) && BN_copy(num, u) &&
            BN_mod_sub(num, u, BN_value_one(), p, ctx) && BN_mod_add(den, u, BN_value_one(), p, ctx) &&
            BN_mod_inverse(den, den, p, ctx) != nullptr && BN_mod_mul(y, num, den, p, ctx);
  unsigned char y_bytes[32];
  if (ok && BN_bn2lebinpad(y, y_bytes, 32) == 32) {
    out[0].assign(reinterpret_cast<char*>(y_bytes), 32);
    out[1] = out[0];
    out[1][31] = static_cast<char>(out[1][31] | 0x80);
  }
  BN_free(y);
  BN_free(den);
  BN_free(num);
  BN_free(u);
  BN_free(p);
  BN_CTX_free(ctx);
  return out;
}

bool Ed25519Verify(std::string_view signature, std::string_view nonce, std::string_view password) {
  if (signature.size() != 64) return false;
  for (const std::string& pk : Ed25519PublicKeyCandidates(password)) {
    if (pk.size() != 32) return false;
    EVP_PKEY* key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(pk.data()), 32);
    if (key == nullptr) continue;
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    const bool good = md != nullptr && EVP_DigestVerifyInit(md, nullptr, nullptr, nullptr, key) == 1 &&
                      EVP_DigestVerify(md, reinterpret_cast<const unsigned char*>(signature.data()), 64,
                                       reinterpret_cast<const unsigned char*>(nonce.data()), nonce.size()) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    if (good) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Commands.

CommandInfo Classify(uint8_t command) {
  switch (static_cast<Command>(command)) {
    case Command::kQuit: return {"COM_QUIT", ResponseKind::kNone};
    case Command::kInitDb: return {"COM_INIT_DB", ResponseKind::kStatus};
    case Command::kQuery: return {"COM_QUERY", ResponseKind::kResultSets};
    case Command::kFieldList: return {"COM_FIELD_LIST", ResponseKind::kFieldList};
    case Command::kCreateDb: return {"COM_CREATE_DB", ResponseKind::kStatus};
    case Command::kDropDb: return {"COM_DROP_DB", ResponseKind::kStatus};
    case Command::kRefresh: return {"COM_REFRESH", ResponseKind::kStatus};
    case Command::kShutdown: return {"COM_SHUTDOWN", ResponseKind::kStatus};
    case Command::kStatistics: return {"COM_STATISTICS", ResponseKind::kString};
    case Command::kProcessInfo: return {"COM_PROCESS_INFO", ResponseKind::kResultSets};
    case Command::kProcessKill: return {"COM_PROCESS_KILL", ResponseKind::kStatus};
    case Command::kDebug: return {"COM_DEBUG", ResponseKind::kStatus};
    case Command::kPing: return {"COM_PING", ResponseKind::kStatus};
    case Command::kChangeUser: return {"COM_CHANGE_USER", ResponseKind::kAuth};
    case Command::kStmtPrepare: return {"COM_STMT_PREPARE", ResponseKind::kPrepare};
    case Command::kStmtExecute: return {"COM_STMT_EXECUTE", ResponseKind::kExecute};
    case Command::kStmtSendLongData: return {"COM_STMT_SEND_LONG_DATA", ResponseKind::kNone};
    case Command::kStmtClose: return {"COM_STMT_CLOSE", ResponseKind::kNone};
    case Command::kStmtReset: return {"COM_STMT_RESET", ResponseKind::kStatus};
    case Command::kSetOption: return {"COM_SET_OPTION", ResponseKind::kStatus};
    case Command::kStmtFetch: return {"COM_STMT_FETCH", ResponseKind::kFetch};
    case Command::kResetConnection: return {"COM_RESET_CONNECTION", ResponseKind::kStatus};
    case Command::kStmtBulkExecute: return {"COM_STMT_BULK_EXECUTE", ResponseKind::kExecute};
    case Command::kSleep: return {"COM_SLEEP", ResponseKind::kUnsupported};
    case Command::kConnect: return {"COM_CONNECT", ResponseKind::kUnsupported};
    case Command::kTime: return {"COM_TIME", ResponseKind::kUnsupported};
    case Command::kDelayedInsert: return {"COM_DELAYED_INSERT", ResponseKind::kUnsupported};
    case Command::kBinlogDump: return {"COM_BINLOG_DUMP", ResponseKind::kUnsupported};
    case Command::kTableDump: return {"COM_TABLE_DUMP", ResponseKind::kUnsupported};
    case Command::kConnectOut: return {"COM_CONNECT_OUT", ResponseKind::kUnsupported};
    case Command::kRegisterSlave: return {"COM_REGISTER_SLAVE", ResponseKind::kUnsupported};
    case Command::kDaemon: return {"COM_DAEMON", ResponseKind::kUnsupported};
    case Command::kBinlogDumpGtid: return {"COM_BINLOG_DUMP_GTID", ResponseKind::kUnsupported};
  }
  return {"COM_UNKNOWN", ResponseKind::kUnsupported};
}

bool PassesWriteGate(uint8_t command) {
  switch (static_cast<Command>(command)) {
    case Command::kStmtPrepare:
    case Command::kStmtReset:
    case Command::kStmtClose:
    case Command::kPing:
    case Command::kInitDb: return true;
    default: return false;
  }
}

namespace {

// The tokens of SessionOnlyStatement's small grammar.
struct SqlToken {
  enum class Kind { kWord, kSysVar, kNumber, kString, kPunct, kEnd, kBad };
  Kind kind = Kind::kEnd;
  std::string text;  // kWord lower-cased; kSysVar: "scope.name" or ".name", lower-cased; kPunct: the character
};

class SqlTokens {
 public:
  explicit SqlTokens(std::string_view sql) : s_(sql) {}
  SqlToken Next() {
    SkipSpaceAndComments();
    SqlToken t;
    if (bad_) return Bad();
    if (p_ >= s_.size()) return t;
    const char c = s_[p_];
    auto word_char = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '$'; };
    auto lower = [](std::string_view v) {
      std::string out(v);
      for (auto& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return out;
    };
    if (c == '@') {
      if (p_ + 1 >= s_.size() || s_[p_ + 1] != '@') return Bad();  // a user variable
      p_ += 2;
      size_t start = p_;
      while (p_ < s_.size() && (word_char(s_[p_]) || s_[p_] == '.')) ++p_;
      std::string name = lower(s_.substr(start, p_ - start));
      const size_t dot = name.find('.');
      if (name.empty() || name.find('.', dot == std::string::npos ? 0 : dot + 1) != std::string::npos) return Bad();
      t.kind = SqlToken::Kind::kSysVar;
      t.text = dot == std::string::npos ? "." + name : name;
      return t;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t start = p_;
      while (p_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[p_])) || s_[p_] == '.')) ++p_;
      t.kind = SqlToken::Kind::kNumber;
      t.text = std::string(s_.substr(start, p_ - start));
      return t;
    }
    if (word_char(c)) {
      size_t start = p_;
      while (p_ < s_.size() && word_char(s_[p_])) ++p_;
      t.kind = SqlToken::Kind::kWord;
      t.text = lower(s_.substr(start, p_ - start));
      return t;
    }
    if (c == '\'' || c == '"' || c == '`') {
      // A string ('...' or "...", backslash escapes, doubled quotes) or a quoted name (an alias).
      ++p_;
      while (p_ < s_.size()) {
        if (s_[p_] == '\\' && c != '`') {
          p_ += 2;
        } else if (s_[p_] == c) {
          if (p_ + 1 < s_.size() && s_[p_ + 1] == c) {
            p_ += 2;
          } else {
            break;
          }
        } else {
          ++p_;
        }
      }
      if (p_ >= s_.size()) return Bad();
      ++p_;
      t.kind = c == '`' ? SqlToken::Kind::kWord : SqlToken::Kind::kString;
      t.text = c == '`' ? "`" : "'";  // never a keyword
      return t;
    }
    if (c == ',' || c == '=' || c == '(' || c == ')' || c == ';' || c == '-') {
      ++p_;
      t.kind = SqlToken::Kind::kPunct;
      t.text = std::string(1, c);
      return t;
    }
    return Bad();
  }

 private:
  SqlToken Bad() {
    bad_ = true;
    SqlToken t;
    t.kind = SqlToken::Kind::kBad;
    return t;
  }
  void SkipSpaceAndComments() {
    while (p_ < s_.size()) {
      const char c = s_[p_];
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++p_;
      } else if (s_.compare(p_, 2, "/*") == 0) {
        // /*! and /*M! run their text on the server: not skipped.
        if (p_ + 2 < s_.size() && (s_[p_ + 2] == '!' || s_[p_ + 2] == 'M')) {
          bad_ = true;
          return;
        }
        size_t end = s_.find("*/", p_ + 2);
        if (end == std::string_view::npos) {
          bad_ = true;
          return;
        }
        p_ = end + 2;
      } else if (c == '#' || (s_.compare(p_, 2, "--") == 0 && p_ + 2 < s_.size() && std::isspace(static_cast<unsigned char>(s_[p_ + 2])))) {
        size_t end = s_.find('\n', p_);
        p_ = end == std::string_view::npos ? s_.size() : end + 1;
      } else {
        return;
      }
    }
  }
  std::string_view s_;
  size_t p_ = 0;
  bool bad_ = false;
};

bool IsPunct(const SqlToken& t, char c) { return t.kind == SqlToken::Kind::kPunct && t.text[0] == c; }
bool IsWord(const SqlToken& t, std::string_view w) { return t.kind == SqlToken::Kind::kWord && t.text == w; }
// The end of the statement: nothing, or one ';' and nothing after it.
bool AtEnd(SqlTokens& in, const SqlToken& t) {
  if (t.kind == SqlToken::Kind::kEnd) return true;
  return IsPunct(t, ';') && in.Next().kind == SqlToken::Kind::kEnd;
}

// SELECT item [, item ...] [LIMIT n]; `t` is the token after SELECT.
bool SessionOnlySelect(SqlTokens& in, SqlToken t) {
  static const char* const kFunctions[] = {"database", "schema", "version", "user", "current_user"};
  while (true) {
    if (IsPunct(t, '-')) t = in.Next();
    if (t.kind == SqlToken::Kind::kWord) {
      if (std::find(std::begin(kFunctions), std::end(kFunctions), t.text) == std::end(kFunctions)) return false;
      if (!IsPunct(in.Next(), '(') || !IsPunct(in.Next(), ')')) return false;
    } else if (t.kind != SqlToken::Kind::kSysVar && t.kind != SqlToken::Kind::kNumber && t.kind != SqlToken::Kind::kString) {
      return false;
    }
    t = in.Next();
    if (IsWord(t, "as")) t = in.Next();
    if ((t.kind == SqlToken::Kind::kWord && t.text != "limit") || t.kind == SqlToken::Kind::kString) t = in.Next();  // an alias
    if (!IsPunct(t, ',')) break;
    t = in.Next();
  }
  if (IsWord(t, "limit")) {
    if (in.Next().kind != SqlToken::Kind::kNumber) return false;
    t = in.Next();
  }
  return AtEnd(in, t);
}

// SET NAMES x [COLLATE y] | SET CHARACTER SET x | SET CHARSET x |
// SET [SESSION|LOCAL] name = value [, ...]; `t` is the token after SET.
bool SessionOnlySet(SqlTokens& in, SqlToken t) {
  auto charset = [](const SqlToken& v) { return v.kind == SqlToken::Kind::kWord || v.kind == SqlToken::Kind::kString; };
  if (IsWord(t, "names")) {
    if (!charset(in.Next())) return false;
    t = in.Next();
    if (IsWord(t, "collate")) {
      if (!charset(in.Next())) return false;
      t = in.Next();
    }
    return AtEnd(in, t);
  }
  if (IsWord(t, "character") && !IsWord(in.Next(), "set")) return false;
  if (IsWord(t, "character") || IsWord(t, "charset")) return charset(in.Next()) && AtEnd(in, in.Next());
  // Words that make SET something else than a session variable's assignment.
  static const char* const kNotVariables[] = {"global", "password", "role", "default", "statement", "transaction",
                                              "names", "character", "charset"};
  while (true) {
    if (IsWord(t, "session") || IsWord(t, "local")) t = in.Next();
    if (t.kind == SqlToken::Kind::kSysVar) {
      const std::string scope = t.text.substr(0, t.text.find('.'));
      if (!scope.empty() && scope != "session" && scope != "local") return false;
    } else if (t.kind != SqlToken::Kind::kWord || t.text == "`" ||
               std::find(std::begin(kNotVariables), std::end(kNotVariables), t.text) != std::end(kNotVariables)) {
      return false;
    }
    if (!IsPunct(in.Next(), '=')) return false;
    SqlToken v = in.Next();
    if (IsPunct(v, '-')) v = in.Next();
    if (v.kind != SqlToken::Kind::kWord && v.kind != SqlToken::Kind::kNumber && v.kind != SqlToken::Kind::kString &&
        v.kind != SqlToken::Kind::kSysVar)
      return false;
    t = in.Next();
    if (!IsPunct(t, ',')) break;
    t = in.Next();
  }
  return AtEnd(in, t);
}

}  // namespace

bool SessionOnlyStatement(std::string_view sql) {
  if (sql.size() > 4096) return false;
  SqlTokens in(sql);
  SqlToken first = in.Next();
  if (IsWord(first, "select")) return SessionOnlySelect(in, in.Next());
  if (IsWord(first, "set")) return SessionOnlySet(in, in.Next());
  if (IsWord(first, "commit") || IsWord(first, "rollback")) {
    SqlToken t = in.Next();
    if (IsWord(t, "work")) t = in.Next();
    return AtEnd(in, t);  // not AND CHAIN (a new transaction), RELEASE or TO SAVEPOINT
  }
  return false;
}

namespace {
std::string CommandWith(Command c, std::string_view arg) {
  std::string out(1, static_cast<char>(c));
  out.append(arg);
  return out;
}
std::string CommandWithId(Command c, uint32_t id) {
  std::string out(1, static_cast<char>(c));
  PutInt(out, id, 4);
  return out;
}
}  // namespace

std::string ComQuery(std::string_view sql) {
  return CommandWith(Command::kQuery, sql);
}
std::string ComInitDb(std::string_view schema) {
  return CommandWith(Command::kInitDb, schema);
}
std::string ComSimple(Command c) {
  return std::string(1, static_cast<char>(c));
}
std::string ComStmtPrepare(std::string_view sql) {
  return CommandWith(Command::kStmtPrepare, sql);
}
std::string ComStmtClose(uint32_t id) {
  return CommandWithId(Command::kStmtClose, id);
}
std::string ComStmtReset(uint32_t id) {
  return CommandWithId(Command::kStmtReset, id);
}
std::string ComStmtFetch(uint32_t id, uint32_t rows) {
  std::string out = CommandWithId(Command::kStmtFetch, id);
  PutInt(out, rows, 4);
  return out;
}
std::string ComStmtSendLongData(uint32_t id, uint16_t param, std::string_view data) {
  std::string out = CommandWithId(Command::kStmtSendLongData, id);
  PutInt(out, param, 2);
  out.append(data);
  return out;
}

Result<uint32_t> ParseStmtId(std::string_view payload) {
  Reader r(payload, "statement command");
  ASSIGN_OR_RETURN(uint64_t c, r.Int(1, "command"));
  (void)c;
  ASSIGN_OR_RETURN(uint64_t id, r.Int(4, "statement id"));
  return static_cast<uint32_t>(id);
}

Result<StmtExecute> ParseStmtExecute(std::string_view payload, uint16_t params) {
  Reader r(payload, "COM_STMT_EXECUTE");
  StmtExecute e;
  ASSIGN_OR_RETURN(uint64_t c, r.Int(1, "command"));
  if (c != static_cast<uint8_t>(Command::kStmtExecute)) return r.Malformed("not COM_STMT_EXECUTE");
  ASSIGN_OR_RETURN(uint64_t id, r.Int(4, "statement id"));
  ASSIGN_OR_RETURN(uint64_t flags, r.Int(1, "flags"));
  ASSIGN_OR_RETURN(uint64_t it, r.Int(4, "iteration count"));
  e.stmt_id = static_cast<uint32_t>(id);
  e.flags = static_cast<uint8_t>(flags);
  e.iterations = static_cast<uint32_t>(it);
  if (params > 0) {
    ASSIGN_OR_RETURN(e.null_bitmap, r.Bytes((params + 7) / 8, "NULL bitmap"));
    ASSIGN_OR_RETURN(uint64_t bound, r.Int(1, "new params bound flag"));
    if (bound > 1) return r.Malformed(fmt::format("new params bound flag {}", bound));
    e.new_params_bound = bound == 1;
    if (e.new_params_bound) {
      for (uint16_t i = 0; i < params; ++i) {
        ASSIGN_OR_RETURN(uint64_t t, r.Int(2, "parameter type"));
        e.types.push_back(static_cast<uint16_t>(t));
      }
    }
    e.values = r.Rest();
  }
  RETURN_IF_ERROR(r.End());
  return e;
}

std::string EncodeStmtExecute(const StmtExecute& e, uint16_t params) {
  std::string out = CommandWithId(Command::kStmtExecute, e.stmt_id);
  out.push_back(static_cast<char>(e.flags));
  PutInt(out, e.iterations, 4);
  if (params > 0) {
    std::string bitmap = e.null_bitmap;
    bitmap.resize((params + 7) / 8, '\0');
    out.append(bitmap);
    out.push_back(e.new_params_bound ? '\x01' : '\x00');
    if (e.new_params_bound) {
      for (uint16_t i = 0; i < params; ++i) PutInt(out, i < e.types.size() ? e.types[i] : 0, 2);
    }
    out.append(e.values);
  }
  return out;
}

Result<ChangeUser> ParseChangeUser(std::string_view payload, uint64_t capabilities) {
  Reader r(payload, "COM_CHANGE_USER");
  ChangeUser c;
  ASSIGN_OR_RETURN(uint64_t cmd, r.Int(1, "command"));
  if (cmd != static_cast<uint8_t>(Command::kChangeUser)) return r.Malformed("not COM_CHANGE_USER");
  ASSIGN_OR_RETURN(c.user, r.NulString("user"));
  if (capabilities & cap::kSecureConnection) {
    ASSIGN_OR_RETURN(uint64_t n, r.Int(1, "auth response length"));
    ASSIGN_OR_RETURN(c.auth_response, r.Bytes(n, "auth response"));
  } else {
    ASSIGN_OR_RETURN(c.auth_response, r.NulString("auth response"));
  }
  ASSIGN_OR_RETURN(c.database, r.NulString("database"));
  if (!r.done()) {
    ASSIGN_OR_RETURN(uint64_t coll, r.Int(2, "collation"));
    c.collation = static_cast<uint16_t>(coll);
  }
  if ((capabilities & cap::kPluginAuth) && !r.done()) {
    ASSIGN_OR_RETURN(std::string p, r.NulString("auth plugin"));
    c.auth_plugin = std::move(p);
  }
  if ((capabilities & cap::kConnectAttrs) && !r.done()) {
    ASSIGN_OR_RETURN(c.attrs, ParseAttrs(r));
  }
  RETURN_IF_ERROR(r.End());
  return c;
}

// ---------------------------------------------------------------------------
// Responses.

Result<OkPacket> ParseOk(std::string_view payload, uint64_t capabilities) {
  Reader r(payload, "OK");
  OkPacket ok;
  ASSIGN_OR_RETURN(uint64_t header, r.Int(1, "header"));
  if (header != 0x00 && header != 0xfe) return r.Malformed(fmt::format("header 0x{:02x}", header));
  ok.header = static_cast<uint8_t>(header);
  ASSIGN_OR_RETURN(ok.affected_rows, r.Lenenc("affected rows"));
  ASSIGN_OR_RETURN(ok.last_insert_id, r.Lenenc("last insert id"));
  ASSIGN_OR_RETURN(uint64_t st, r.Int(2, "status"));
  ASSIGN_OR_RETURN(uint64_t warn, r.Int(2, "warnings"));
  ok.status = static_cast<uint16_t>(st);
  ok.warnings = static_cast<uint16_t>(warn);
  if (r.done()) return ok;
  ok.has_info = true;
  ASSIGN_OR_RETURN(ok.info, r.LenencString("info"));
  if ((capabilities & cap::kSessionTrack) && (ok.status & status::kSessionStateChanged) && !r.done()) {
    ASSIGN_OR_RETURN(std::string block, r.LenencString("session state"));
    Reader s(block, "OK session state");
    while (!s.done()) {
      SessionStateChange c;
      ASSIGN_OR_RETURN(uint64_t t, s.Int(1, "session state type"));
      c.type = static_cast<uint8_t>(t);
      ASSIGN_OR_RETURN(c.data, s.LenencString("session state data"));
      Reader d(c.data, "OK session state entry");
      if (c.type == kTrackSystemVariables) {
        ASSIGN_OR_RETURN(c.name, d.LenencString("variable name"));
        ASSIGN_OR_RETURN(c.value, d.LenencString("variable value"));
        RETURN_IF_ERROR(d.End());
      } else if (c.type == kTrackSchema) {
        ASSIGN_OR_RETURN(c.name, d.LenencString("schema"));
        RETURN_IF_ERROR(d.End());
      }
      ok.session_state.push_back(std::move(c));
    }
  }
  RETURN_IF_ERROR(r.End());
  return ok;
}

std::string EncodeOk(const OkPacket& ok, uint64_t capabilities) {
  std::string out(1, static_cast<char>(ok.header));
  PutLenenc(out, ok.affected_rows);
  PutLenenc(out, ok.last_insert_id);
  PutInt(out, ok.status, 2);
  PutInt(out, ok.warnings, 2);
  const bool state =
      (capabilities & cap::kSessionTrack) && (ok.status & status::kSessionStateChanged) && !ok.session_state.empty();
  if (ok.has_info || !ok.info.empty() || state) PutLenencString(out, ok.info);
  if (state) {
    std::string block;
    for (const SessionStateChange& c : ok.session_state) {
      block.push_back(static_cast<char>(c.type));
      PutLenencString(block, c.data);
    }
    PutLenencString(out, block);
  }
  return out;
}

Result<ErrPacket> ParseErr(std::string_view payload) {
  Reader r(payload, "ERR");
  ErrPacket e;
  ASSIGN_OR_RETURN(uint64_t header, r.Int(1, "header"));
  if (header != 0xff) return r.Malformed(fmt::format("header 0x{:02x}", header));
  ASSIGN_OR_RETURN(uint64_t code, r.Int(2, "error code"));
  e.code = static_cast<uint16_t>(code);
  if (e.progress()) {
    e.message = r.Rest();  // stage, max stage, progress, lenenc stage name: kept raw
    return e;
  }
  if (!r.done() && r.PeekByte() == '#') {
    ASSIGN_OR_RETURN(std::string marker, r.Bytes(1, "SQL state marker"));
    ASSIGN_OR_RETURN(e.sql_state, r.Bytes(5, "SQL state"));
  }
  e.message = r.Rest();
  return e;
}

std::string EncodeErr(const ErrPacket& e) {
  std::string out(1, static_cast<char>(0xff));
  PutInt(out, e.code, 2);
  if (!e.progress() && !e.sql_state.empty()) {
    out.push_back('#');
    std::string s = e.sql_state;
    s.resize(5, '0');
    out.append(s);
  }
  out.append(e.message);
  return out;
}

bool IsEof(std::string_view payload) {
  return !payload.empty() && static_cast<uint8_t>(payload[0]) == 0xfe && payload.size() < 9;
}

Result<EofPacket> ParseEof(std::string_view payload) {
  Reader r(payload, "EOF");
  EofPacket e;
  ASSIGN_OR_RETURN(uint64_t header, r.Int(1, "header"));
  if (header != 0xfe) return r.Malformed(fmt::format("header 0x{:02x}", header));
  ASSIGN_OR_RETURN(uint64_t w, r.Int(2, "warnings"));
  ASSIGN_OR_RETURN(uint64_t s, r.Int(2, "status"));
  e.warnings = static_cast<uint16_t>(w);
  e.status = static_cast<uint16_t>(s);
  RETURN_IF_ERROR(r.End());
  return e;
}

std::string EncodeEof(const EofPacket& e) {
  std::string out(1, static_cast<char>(0xfe));
  PutInt(out, e.warnings, 2);
  PutInt(out, e.status, 2);
  return out;
}

bool IsTerminator(std::string_view payload, uint64_t capabilities) {
  if (payload.empty() || static_cast<uint8_t>(payload[0]) != 0xfe) return false;
  if (capabilities & cap::kDeprecateEof) return payload.size() < kMaxPacketPayload;
  return payload.size() < 9;
}

Result<ColumnDefinition> ParseColumnDefinition(std::string_view payload, uint64_t capabilities) {
  Reader r(payload, "ColumnDefinition");
  ColumnDefinition c;
  ASSIGN_OR_RETURN(c.catalog, r.LenencString("catalog"));
  ASSIGN_OR_RETURN(c.schema, r.LenencString("schema"));
  ASSIGN_OR_RETURN(c.table, r.LenencString("table"));
  ASSIGN_OR_RETURN(c.org_table, r.LenencString("org_table"));
  ASSIGN_OR_RETURN(c.name, r.LenencString("name"));
  ASSIGN_OR_RETURN(c.org_name, r.LenencString("org_name"));
  if (capabilities & cap::kMariaDbExtendedTypeInfo) {
    ASSIGN_OR_RETURN(std::string block, r.LenencString("extended type info"));
    Reader b(block, "ColumnDefinition extended type info");
    while (!b.done()) {
      ASSIGN_OR_RETURN(uint64_t k, b.Int(1, "type info key"));
      ASSIGN_OR_RETURN(std::string v, b.LenencString("type info value"));
      c.extended_type_info.emplace_back(static_cast<uint8_t>(k), std::move(v));
    }
  }
  ASSIGN_OR_RETURN(uint64_t fixed, r.Lenenc("fixed fields length"));
  if (fixed != 0x0c) return r.Malformed(fmt::format("fixed fields length {} is not 12", fixed));
  ASSIGN_OR_RETURN(uint64_t cs, r.Int(2, "character set"));
  ASSIGN_OR_RETURN(uint64_t len, r.Int(4, "column length"));
  ASSIGN_OR_RETURN(uint64_t t, r.Int(1, "type"));
  ASSIGN_OR_RETURN(uint64_t flags, r.Int(2, "flags"));
  ASSIGN_OR_RETURN(uint64_t dec, r.Int(1, "decimals"));
  ASSIGN_OR_RETURN(uint64_t filler, r.Int(2, "filler"));
  (void)filler;
  c.charset = static_cast<uint16_t>(cs);
  c.length = static_cast<uint32_t>(len);
  c.type = static_cast<uint8_t>(t);
  c.flags = static_cast<uint16_t>(flags);
  c.decimals = static_cast<uint8_t>(dec);
  if (!r.done()) {
    c.has_default = true;
    if (r.PeekByte() == 0xfb) {
      c.default_null = true;
      ASSIGN_OR_RETURN(uint64_t null, r.Int(1, "default value"));
      (void)null;
    } else {
      ASSIGN_OR_RETURN(c.default_value, r.LenencString("default value"));
    }
  }
  RETURN_IF_ERROR(r.End());
  return c;
}

std::string EncodeColumnDefinition(const ColumnDefinition& c, uint64_t capabilities) {
  std::string out;
  PutLenencString(out, c.catalog);
  PutLenencString(out, c.schema);
  PutLenencString(out, c.table);
  PutLenencString(out, c.org_table);
  PutLenencString(out, c.name);
  PutLenencString(out, c.org_name);
  if (capabilities & cap::kMariaDbExtendedTypeInfo) {
    std::string block;
    for (const auto& [k, v] : c.extended_type_info) {
      block.push_back(static_cast<char>(k));
      PutLenencString(block, v);
    }
    PutLenencString(out, block);
  }
  out.push_back(0x0c);
  PutInt(out, c.charset, 2);
  PutInt(out, c.length, 4);
  out.push_back(static_cast<char>(c.type));
  PutInt(out, c.flags, 2);
  out.push_back(static_cast<char>(c.decimals));
  out.append(2, '\0');
  if (c.has_default && c.default_null)
    out.push_back(static_cast<char>(0xfb));
  else if (c.has_default)
    PutLenencString(out, c.default_value);
  return out;
}

Result<ResultSetHeader> ParseResultSetHeader(std::string_view payload, uint64_t capabilities) {
  Reader r(payload, "result set header");
  ResultSetHeader h;
  ASSIGN_OR_RETURN(h.columns, r.Lenenc("column count"));
  if (h.columns == 0) return r.Malformed("column count 0");
  if (capabilities & cap::kMariaDbCacheMetadata) {
    ASSIGN_OR_RETURN(uint64_t follows, r.Int(1, "metadata follows"));
    if (follows > 1) return r.Malformed(fmt::format("metadata follows flag {}", follows));
    h.metadata_follows = follows == 1;
  }
  RETURN_IF_ERROR(r.End());
  return h;
}

std::string EncodeResultSetHeader(const ResultSetHeader& h, uint64_t capabilities) {
  std::string out;
  PutLenenc(out, h.columns);
  if (capabilities & cap::kMariaDbCacheMetadata) out.push_back(h.metadata_follows ? '\x01' : '\x00');
  return out;
}

Result<Row> ParseTextRow(std::string_view payload, size_t columns) {
  Reader r(payload, "text row");
  Row row;
  row.reserve(std::min(columns, payload.size()));
  for (size_t i = 0; i < columns; ++i) {
    if (r.done()) return r.Truncated("column value");
    if (r.PeekByte() == 0xfb) {
      ASSIGN_OR_RETURN(uint64_t null, r.Int(1, "NULL"));
      (void)null;
      row.emplace_back(std::nullopt);
      continue;
    }
    ASSIGN_OR_RETURN(std::string v, r.LenencString("column value"));
    row.emplace_back(std::move(v));
  }
  RETURN_IF_ERROR(r.End());
  return row;
}

std::string EncodeTextRow(const Row& row) {
  std::string out;
  for (const auto& v : row) {
    if (!v)
      out.push_back(static_cast<char>(0xfb));
    else
      PutLenencString(out, *v);
  }
  return out;
}

namespace {
// Fixed size of a binary-protocol value, 0 for "1-byte length prefix" (temporal
// types), -1 for lenenc strings.
int BinarySize(uint8_t t) {
  switch (t) {
    case type::kNull: return -2;
    case type::kTiny: return 1;
    case type::kShort:
    case type::kYear: return 2;
    case type::kInt24:
    case type::kLong:
    case type::kFloat: return 4;
    case type::kLongLong:
    case type::kDouble: return 8;
    case type::kDate:
    case type::kNewDate:
    case type::kTime:
    case type::kDateTime:
    case type::kTimestamp: return 0;
    default: return -1;
  }
}
}  // namespace

Result<Row> ParseBinaryRow(std::string_view payload, const std::vector<uint8_t>& column_types) {
  Reader r(payload, "binary row");
  ASSIGN_OR_RETURN(uint64_t header, r.Int(1, "header"));
  if (header != 0x00) return r.Malformed(fmt::format("header 0x{:02x}", header));
  const size_t n = column_types.size();
  ASSIGN_OR_RETURN(std::string bitmap, r.Bytes((n + 7 + 2) / 8, "NULL bitmap"));
  Row row;
  row.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t bit = i + 2;
    if (static_cast<uint8_t>(bitmap[bit / 8]) & (1u << (bit % 8))) {
      row.emplace_back(std::nullopt);
      continue;
    }
    const int size = BinarySize(column_types[i]);
    if (size == -2) {
      row.emplace_back(std::nullopt);
    } else if (size > 0) {
      ASSIGN_OR_RETURN(std::string v, r.Bytes(size, "column value"));
      row.emplace_back(std::move(v));
    } else if (size == 0) {
      ASSIGN_OR_RETURN(uint64_t len, r.Int(1, "temporal length"));
      ASSIGN_OR_RETURN(std::string v, r.Bytes(len, "temporal value"));
      row.emplace_back(std::move(v));
    } else {
      ASSIGN_OR_RETURN(std::string v, r.LenencString("column value"));
      row.emplace_back(std::move(v));
    }
  }
  RETURN_IF_ERROR(r.End());
  return row;
}

std::string EncodeBinaryRow(const Row& row, const std::vector<uint8_t>& column_types) {
  std::string out(1, '\0');
  const size_t n = column_types.size();
  std::string bitmap((n + 7 + 2) / 8, '\0');
  std::string values;
  for (size_t i = 0; i < n; ++i) {
    const int size = BinarySize(column_types[i]);
    if (i >= row.size() || !row[i] || size == -2) {
      if (size != -2) bitmap[(i + 2) / 8] = static_cast<char>(bitmap[(i + 2) / 8] | (1 << ((i + 2) % 8)));
      continue;
    }
    const std::string& v = *row[i];
    if (size > 0) {
      std::string fixed = v;
      fixed.resize(size, '\0');
      values.append(fixed);
    } else if (size == 0) {
      const size_t len = std::min<size_t>(v.size(), 255);
      values.push_back(static_cast<char>(len));
      values.append(v, 0, len);
    } else {
      PutLenencString(values, v);
    }
  }
  out.append(bitmap);
  out.append(values);
  return out;
}

Result<StmtPrepareOk> ParseStmtPrepareOk(std::string_view payload) {
  Reader r(payload, "COM_STMT_PREPARE_OK");
  StmtPrepareOk p;
  ASSIGN_OR_RETURN(uint64_t header, r.Int(1, "header"));
  if (header != 0x00) return r.Malformed(fmt::format("header 0x{:02x}", header));
  ASSIGN_OR_RETURN(uint64_t id, r.Int(4, "statement id"));
  ASSIGN_OR_RETURN(uint64_t cols, r.Int(2, "column count"));
  ASSIGN_OR_RETURN(uint64_t params, r.Int(2, "parameter count"));
  ASSIGN_OR_RETURN(uint64_t filler, r.Int(1, "filler"));
  (void)filler;
  ASSIGN_OR_RETURN(uint64_t warn, r.Int(2, "warnings"));
  p.stmt_id = static_cast<uint32_t>(id);
  p.columns = static_cast<uint16_t>(cols);
  p.params = static_cast<uint16_t>(params);
  p.warnings = static_cast<uint16_t>(warn);
  RETURN_IF_ERROR(r.End());
  return p;
}

std::string EncodeStmtPrepareOk(const StmtPrepareOk& p) {
  std::string out(1, '\0');
  PutInt(out, p.stmt_id, 4);
  PutInt(out, p.columns, 2);
  PutInt(out, p.params, 2);
  out.push_back('\0');
  PutInt(out, p.warnings, 2);
  return out;
}

Result<std::string> ParseLocalInfileRequest(std::string_view payload) {
  Reader r(payload, "LOCAL INFILE request");
  ASSIGN_OR_RETURN(uint64_t header, r.Int(1, "header"));
  if (header != 0xfb) return r.Malformed(fmt::format("header 0x{:02x}", header));
  return r.Rest();
}

std::string EncodeLocalInfileRequest(std::string_view filename) {
  std::string out(1, static_cast<char>(0xfb));
  out.append(filename);
  return out;
}

// ---------------------------------------------------------------------------
// Response tracker.

const char* PacketKindName(PacketKind k) {
  switch (k) {
    case PacketKind::kOk: return "OK";
    case PacketKind::kErr: return "ERR";
    case PacketKind::kEof: return "EOF";
    case PacketKind::kProgress: return "progress";
    case PacketKind::kResultSetHeader: return "result set header";
    case PacketKind::kColumnDefinition: return "column definition";
    case PacketKind::kParamDefinition: return "parameter definition";
    case PacketKind::kRow: return "row";
    case PacketKind::kPrepareOk: return "PREPARE_OK";
    case PacketKind::kLocalInfile: return "LOCAL INFILE request";
    case PacketKind::kAuthSwitch: return "AuthSwitchRequest";
    case PacketKind::kAuthMoreData: return "AuthMoreData";
    case PacketKind::kString: return "string";
  }
  return "?";
}

const char* ResponseTracker::StateName() const {
  switch (state_) {
    case State::kIdle: return "idle";
    case State::kFirst: return "awaiting a result";
    case State::kColumns: return "reading column definitions";
    case State::kColumnsEof: return "awaiting the EOF after column definitions";
    case State::kRows: return "reading rows";
    case State::kPrepareParams: return "reading parameter definitions";
    case State::kPrepareParamsEof: return "awaiting the EOF after parameter definitions";
    case State::kPrepareColumns: return "reading prepared column definitions";
    case State::kPrepareColumnsEof: return "awaiting the EOF after prepared column definitions";
    case State::kLocalInfileData: return "awaiting LOCAL INFILE data from the client";
    case State::kStatus: return "awaiting OK/ERR";
    case State::kAuth: return "authenticating";
    case State::kString: return "awaiting a string";
  }
  return "?";
}

Status ResponseTracker::Unexpected(std::string_view p) const {
  return OperatorError(fmt::format("unexpected server packet (header 0x{:02x}, {} bytes) while {} for {}",
                                   p.empty() ? 0 : static_cast<uint8_t>(p[0]), p.size(), StateName(),
                                   Classify(static_cast<uint8_t>(command_)).name));
}

Status ResponseTracker::OnCommand(std::string_view payload) {
  if (payload.empty()) return OperatorError("empty command packet");
  if (state_ == State::kLocalInfileData || (state_ == State::kAuth && client_turn_)) {
    return OperatorError(fmt::format("client sent a command while {}", StateName()));
  }
  if (state_ != State::kIdle || !pending_.empty()) {
    if (pending_.size() >= kMaxPipelined) {
      return OperatorError(fmt::format("client pipelined more than {} commands", kMaxPipelined));
    }
    pending_.emplace_back(payload);
    return Status::Ok();
  }
  return Start(payload);
}

Status ResponseTracker::Start(std::string_view payload) {
  client_turn_ = false;
  const auto c = static_cast<uint8_t>(payload[0]);
  const CommandInfo info = Classify(c);
  command_ = static_cast<Command>(c);
  result_sets_ = 0;
  column_types_.clear();
  last_err_.reset();
  const auto close_cursor = [&](uint32_t id) { open_cursors_.erase(id); };
  switch (info.response) {
    case ResponseKind::kUnsupported: return OperatorError(fmt::format("{} (0x{:02x}) is not supported", info.name, c));
    case ResponseKind::kNone:
      if (command_ == Command::kStmtClose) {
        ASSIGN_OR_RETURN(uint32_t id, ParseStmtId(payload));
        close_cursor(id);
      } else if (command_ == Command::kStmtSendLongData) {
        ASSIGN_OR_RETURN(uint32_t id, ParseStmtId(payload));
        (void)id;
      }
      return Status::Ok();
    case ResponseKind::kStatus:
      if (command_ == Command::kStmtReset) {
        ASSIGN_OR_RETURN(uint32_t id, ParseStmtId(payload));
        close_cursor(id);
      } else if (command_ == Command::kResetConnection) {
        open_cursors_.clear();
      }
      state_ = State::kStatus;
      return Status::Ok();
    case ResponseKind::kResultSets: state_ = State::kFirst; return Status::Ok();
    case ResponseKind::kExecute: {
      if (payload.size() < 6) return OperatorError("malformed COM_STMT_EXECUTE packet: truncated");
      ASSIGN_OR_RETURN(stmt_id_, ParseStmtId(payload));
      cursor_requested_ = command_ == Command::kStmtExecute && (static_cast<uint8_t>(payload[5]) & 0x07) != 0;
      // Executing again closes the statement's open cursor.
      close_cursor(stmt_id_);
      state_ = State::kFirst;
      return Status::Ok();
    }
    case ResponseKind::kPrepare: state_ = State::kFirst; return Status::Ok();
    case ResponseKind::kFetch: {
      ASSIGN_OR_RETURN(stmt_id_, ParseStmtId(payload));
      // The rows are those of the cursor's result set, described when it opened.
      if (auto it = open_cursors_.find(stmt_id_); it != open_cursors_.end()) column_types_ = it->second;
      state_ = State::kRows;
      return Status::Ok();
    }
    case ResponseKind::kFieldList:
      state_ = State::kColumns;
      remaining_ = UINT64_MAX;  // until the EOF
      return Status::Ok();
    case ResponseKind::kAuth:
      open_cursors_.clear();
      state_ = State::kAuth;
      return Status::Ok();
    case ResponseKind::kString: state_ = State::kString; return Status::Ok();
  }
  return Status::Ok();
}

Status ResponseTracker::OnClientMessage(std::string_view payload) {
  if (state_ == State::kLocalInfileData) {
    // The empty packet ends the file; the statement's OK / ERR follows, and
    // with MORE_RESULTS_EXIST the next statement's result after it.
    if (payload.empty()) state_ = State::kFirst;
    return Status::Ok();
  }
  if (state_ == State::kAuth && client_turn_) {
    client_turn_ = false;
    return Status::Ok();
  }
  return OperatorError(fmt::format("client sent data while {}", StateName()));
}

Result<TrackedPacket> ResponseTracker::Done(PacketKind k) {
  state_ = State::kIdle;
  return TrackedPacket{k, true};
}

Result<TrackedPacket> ResponseTracker::OnErr(std::string_view p) {
  ASSIGN_OR_RETURN(ErrPacket e, ParseErr(p));
  if (e.progress()) return Next(PacketKind::kProgress);
  last_err_ = std::move(e);
  status_known_ = false;
  return Done(PacketKind::kErr);
}

Result<TrackedPacket> ResponseTracker::OnOk(std::string_view p, bool chain) {
  ASSIGN_OR_RETURN(OkPacket ok, ParseOk(p, caps_));
  status_ = ok.status;
  status_known_ = true;
  last_ok_ = std::move(ok);
  if (chain && (status_ & status::kMoreResultsExist)) {
    ++result_sets_;
    state_ = State::kFirst;
    return Next(PacketKind::kOk);
  }
  if (chain) ++result_sets_;
  return Done(PacketKind::kOk);
}

// The packet after rows (or after a cursor's column definitions).
Result<TrackedPacket> ResponseTracker::OnTerminator(std::string_view p, bool after_columns) {
  uint16_t st = 0;
  if (caps_ & cap::kDeprecateEof) {
    ASSIGN_OR_RETURN(OkPacket ok, ParseOk(p, caps_));
    st = ok.status;
    last_ok_ = std::move(ok);
  } else {
    ASSIGN_OR_RETURN(EofPacket e, ParseEof(p));
    st = e.status;
  }
  status_ = st;
  status_known_ = true;
  if (after_columns) {
    // Without CLIENT_DEPRECATE_EOF: the EOF between columns and rows. For a
    // cursor the server sends no rows: its flag ends the response here.
    if ((st & status::kCursorExists) && command_ == Command::kStmtExecute) {
      open_cursors_[stmt_id_] = column_types_;
      ++result_sets_;
      return Done(PacketKind::kEof);
    }
    state_ = State::kRows;
    return Next(PacketKind::kEof);
  }
  if (command_ == Command::kStmtFetch) {
    if (st & status::kLastRowSent) open_cursors_.erase(stmt_id_);
    return Done(PacketKind::kEof);
  }
  ++result_sets_;
  if (st & status::kMoreResultsExist) {
    state_ = State::kFirst;
    return Next(PacketKind::kEof);
  }
  return Done(PacketKind::kEof);
}

Result<TrackedPacket> ResponseTracker::OnServerMessage(std::string_view p) {
  // Pipelined commands start when the server begins answering them (commands
  // without a response start and finish at once).
  while (state_ == State::kIdle && !pending_.empty()) {
    const std::string next = std::move(pending_.front());
    pending_.pop_front();
    RETURN_IF_ERROR(Start(next));
  }
  if (p.empty()) return Unexpected(p);
  const auto h = static_cast<uint8_t>(p[0]);
  const bool deprecate_eof = (caps_ & cap::kDeprecateEof) != 0;
  switch (state_) {
    case State::kIdle:
      // A server may send an ERR on its own before closing (killed, timed out).
      if (h == 0xff) return OnErr(p);
      return Unexpected(p);
    case State::kStatus:
      if (h == 0xff) return OnErr(p);
      // COM_SET_OPTION and COM_DEBUG answer with an EOF, which is an OK with
      // header 0xfe under CLIENT_DEPRECATE_EOF.
      if (h == 0x00 || (h == 0xfe && deprecate_eof)) return OnOk(p, false);
      if (IsEof(p)) {
        ASSIGN_OR_RETURN(EofPacket e, ParseEof(p));
        status_ = e.status;
        status_known_ = true;
        return Done(PacketKind::kEof);
      }
      return Unexpected(p);
    case State::kString:
      if (h == 0xff) return OnErr(p);
      return Done(PacketKind::kString);
    case State::kAuth:
      if (h == 0xff) return OnErr(p);
      if (h == 0x00) return OnOk(p, false);
      if (h == 0xfe) {
        ASSIGN_OR_RETURN(AuthSwitchRequest a, ParseAuthSwitchRequest(p));
        (void)a;
        client_turn_ = true;
        return Next(PacketKind::kAuthSwitch);
      }
      if (h == 0x01) {
        // caching_sha2_password's 0x03 (fast auth succeeded) needs no answer.
        client_turn_ = !(p.size() == 2 && p[1] == '\x03');
        return Next(PacketKind::kAuthMoreData);
      }
      return Unexpected(p);
    case State::kFirst:
      if (h == 0xff) return OnErr(p);
      if (command_ == Command::kStmtPrepare) {
        if (h != 0x00) return Unexpected(p);
        ASSIGN_OR_RETURN(StmtPrepareOk ok, ParseStmtPrepareOk(p));
        last_prepare_ = ok;
        prepare_columns_ = ok.columns;
        if (ok.params > 0) {
          remaining_ = ok.params;
          state_ = State::kPrepareParams;
          return Next(PacketKind::kPrepareOk);
        }
        if (ok.columns > 0) {
          remaining_ = ok.columns;
          state_ = State::kPrepareColumns;
          return Next(PacketKind::kPrepareOk);
        }
        return Done(PacketKind::kPrepareOk);
      }
      if (h == 0x00) return OnOk(p, true);
      if (h == 0xfb && command_ == Command::kQuery) {
        ASSIGN_OR_RETURN(std::string file, ParseLocalInfileRequest(p));
        (void)file;
        state_ = State::kLocalInfileData;
        return Next(PacketKind::kLocalInfile);
      }
      {
        ASSIGN_OR_RETURN(ResultSetHeader rs, ParseResultSetHeader(p, caps_));
        column_types_.clear();
        if (!rs.metadata_follows) {
          state_ = deprecate_eof ? State::kRows : State::kColumnsEof;
          return Next(PacketKind::kResultSetHeader);
        }
        remaining_ = rs.columns;
        state_ = State::kColumns;
        return Next(PacketKind::kResultSetHeader);
      }
    case State::kColumns:
      if (command_ == Command::kFieldList) {
        if (h == 0xff) return OnErr(p);
        if (IsTerminator(p, caps_)) {
          ASSIGN_OR_RETURN(TrackedPacket t, OnTerminator(p, false));
          (void)t;
          return Done(PacketKind::kEof);
        }
      }
      {
        ASSIGN_OR_RETURN(ColumnDefinition c, ParseColumnDefinition(p, caps_));
        column_types_.push_back(c.type);
      }
      if (--remaining_ == 0) {
        if (!deprecate_eof) {
          state_ = State::kColumnsEof;
        } else if (command_ == Command::kStmtExecute && cursor_requested_) {
          // With CLIENT_DEPRECATE_EOF MariaDB still sends an EOF after a
          // cursor's columns: it carries SERVER_STATUS_CURSOR_EXISTS.
          state_ = State::kColumnsEof;
        } else {
          state_ = State::kRows;
        }
      }
      return Next(PacketKind::kColumnDefinition);
    case State::kColumnsEof:
      if (!deprecate_eof) {
        if (!IsEof(p)) return Unexpected(p);
        return OnTerminator(p, true);
      }
      // CLIENT_DEPRECATE_EOF and a cursor was asked for: a terminator with
      // SERVER_STATUS_CURSOR_EXISTS says the cursor is open; anything else is
      // an ordinary result set (rows, then its terminator).
      if (IsTerminator(p, caps_)) {
        ASSIGN_OR_RETURN(OkPacket ok, ParseOk(p, caps_));
        if (ok.status & status::kCursorExists) return OnTerminator(p, true);
      }
      state_ = State::kRows;
      return OnServerMessage(p);
    case State::kRows:
      if (h == 0xff) return OnErr(p);
      if (IsTerminator(p, caps_)) return OnTerminator(p, false);
      if (command_ == Command::kStmtExecute || command_ == Command::kStmtFetch ||
          command_ == Command::kStmtBulkExecute) {
        if (h != 0x00) return Unexpected(p);
        // A FETCH for a cursor this tracker did not see open has no column
        // types; the server refuses it with an ERR anyway.
        if (command_ != Command::kStmtFetch || open_cursors_.count(stmt_id_) != 0) {
          ASSIGN_OR_RETURN(Row r, ParseBinaryRow(p, column_types_));
          (void)r;
        }
      }
      return Next(PacketKind::kRow);
    case State::kPrepareParams: {
      ASSIGN_OR_RETURN(ColumnDefinition c, ParseColumnDefinition(p, caps_));
      (void)c;
      if (--remaining_ == 0) {
        if (!deprecate_eof) {
          state_ = State::kPrepareParamsEof;
        } else if (prepare_columns_ > 0) {
          remaining_ = prepare_columns_;
          state_ = State::kPrepareColumns;
        } else {
          return Done(PacketKind::kParamDefinition);
        }
      }
      return Next(PacketKind::kParamDefinition);
    }
    case State::kPrepareParamsEof:
      if (!IsEof(p)) return Unexpected(p);
      {
        ASSIGN_OR_RETURN(EofPacket e, ParseEof(p));
        status_ = e.status;
      }
      if (prepare_columns_ > 0) {
        remaining_ = prepare_columns_;
        state_ = State::kPrepareColumns;
        return Next(PacketKind::kEof);
      }
      return Done(PacketKind::kEof);
    case State::kPrepareColumns: {
      ASSIGN_OR_RETURN(ColumnDefinition c, ParseColumnDefinition(p, caps_));
      (void)c;
      if (--remaining_ == 0) {
        if (!deprecate_eof) {
          state_ = State::kPrepareColumnsEof;
        } else {
          return Done(PacketKind::kColumnDefinition);
        }
      }
      return Next(PacketKind::kColumnDefinition);
    }
    case State::kPrepareColumnsEof:
      if (!IsEof(p)) return Unexpected(p);
      {
        ASSIGN_OR_RETURN(EofPacket e, ParseEof(p));
        status_ = e.status;
      }
      return Done(PacketKind::kEof);
    case State::kLocalInfileData: return Unexpected(p);
  }
  return Unexpected(p);
}

}  // namespace midflight::mywire
