#include "proxy/wire/pg/scram.h"

#include "proxy/wire/pg/saslprep.h"

#include "base/thread_annotations.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <utility>

namespace midflight::pgwire {

namespace {

constexpr size_t kScramKeyLen = 32;       // SHA-256 output
constexpr size_t kScramSaltLen = 16;      // PostgreSQL's SCRAM_DEFAULT_SALT_LEN
constexpr size_t kScramRawNonceLen = 18;  // PostgreSQL's SCRAM_RAW_NONCE_LEN

// ---------------------------------------------------------------------------
// Primitives. OpenSSL failures here are not expected outside a broken build
// (or a FIPS provider without the algorithm); they become Internal errors.

Result<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return Internal("OpenSSL RAND_bytes failed");
  }
  return out;
}

Result<std::string> HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
           data.size(), out, &len) == nullptr) {
    return Internal("OpenSSL HMAC-SHA-256 failed");
  }
  return std::string(reinterpret_cast<const char*>(out), len);
}

Result<std::string> Digest(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (md == nullptr || EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1) {
    return Internal("OpenSSL digest failed");
  }
  return std::string(reinterpret_cast<const char*>(out), len);
}

Result<std::string> SaltedPassword(std::string_view password, std::string_view salt, int iterations) {
  std::string out(kScramKeyLen, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()), iterations,
                        EVP_sha256(), static_cast<int>(out.size()),
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    return Internal("OpenSSL PBKDF2 failed");
  }
  return out;
}

struct ScramKeys {
  std::string client_key;
  std::string stored_key;
  std::string server_key;
};

// SaltedPassword → ClientKey, StoredKey = H(ClientKey), ServerKey (RFC 5802 §3).
// The password is SASLprep'ed first, as PostgreSQL does (saslprep.h).
Result<ScramKeys> DeriveKeys(std::string_view password, std::string_view salt, int iterations) {
  ScramKeys k;
  std::string prepared = SaslPrep(password);
  auto salted_or = SaltedPassword(prepared, salt, iterations);
  OPENSSL_cleanse(prepared.data(), prepared.size());
  ASSIGN_OR_RETURN(std::string salted, std::move(salted_or));
  ASSIGN_OR_RETURN(k.client_key, HmacSha256(salted, "Client Key"));
  ASSIGN_OR_RETURN(k.stored_key, Digest(EVP_sha256(), k.client_key));
  ASSIGN_OR_RETURN(k.server_key, HmacSha256(salted, "Server Key"));
  OPENSSL_cleanse(salted.data(), salted.size());
  return k;
}

// The client's keys for a password, salt and iteration count, remembered:
// a server keeps one salt per user, so a proxy logging in to it many times
// (one login per client session) derives them once instead of running 4096
// PBKDF2 rounds on an event loop for every login. Keyed by a hash of the
// prepared password, never the password itself; bounded.
Result<ScramKeys> DeriveKeysCached(std::string_view password, std::string_view salt, int iterations) {
  static Mutex mu;
  static std::map<std::string, ScramKeys>* cache = new std::map<std::string, ScramKeys>();
  constexpr size_t kMaxEntries = 256;
  std::string prepared = SaslPrep(password);
  auto hash = Digest(EVP_sha256(), prepared);
  OPENSSL_cleanse(prepared.data(), prepared.size());
  if (!hash.ok()) return DeriveKeys(password, salt, iterations);
  const std::string key = fmt::format("{}:{}:{}", Base64Encode(*hash), Base64Encode(salt), iterations);
  {
    MutexLock lock(&mu);
    if (auto it = cache->find(key); it != cache->end()) return it->second;
  }
  ASSIGN_OR_RETURN(ScramKeys keys, DeriveKeys(password, salt, iterations));
  MutexLock lock(&mu);
  if (cache->size() >= kMaxEntries) cache->clear();
  (*cache)[key] = keys;
  return keys;
}

std::string Xor(std::string_view a, std::string_view b) {
  std::string out(a);
  for (size_t i = 0; i < out.size() && i < b.size(); ++i) out[i] = static_cast<char>(out[i] ^ b[i]);
  return out;
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// A nonce is printable ASCII except ',' (RFC 5802 §7).
bool ValidNonce(std::string_view nonce) {
  if (nonce.empty()) return false;
  for (char c : nonce) {
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return true;
}

Result<std::string> MakeNonce(const std::string& injected) {
  if (!injected.empty()) return injected;
  ASSIGN_OR_RETURN(std::string raw, RandomBytes(kScramRawNonceLen));
  return Base64Encode(raw);
}

// saslname escaping of a user name (RFC 5802 §5.1).
std::string EscapeSaslName(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == ',') {
      out += "=2C";
    } else if (c == '=') {
      out += "=3D";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<int> ParseIterations(std::string_view text) {
  int n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n <= 0) return std::nullopt;
  return n;
}

// A cursor over "a=value,b=value,..." that reads one attribute at a time.
// Values run to the next ',' (they never contain one).
class AttrReader {
 public:
  AttrReader(std::string_view msg, const char* what) : msg_(msg), what_(what) {}

  bool AtEnd() const { return pos_ == msg_.size(); }
  // Where the next attribute starts, including its ',' separator.
  size_t pos() const { return pos_; }
  char Peek() const { return AtEnd() ? '\0' : msg_[pos_]; }

  // The next attribute, whichever it is.
  Result<std::pair<char, std::string_view>> Any() {
    if (!first_) {
      if (AtEnd() || msg_[pos_] != ',') return Malformed("expected ',' between attributes");
      ++pos_;
    }
    first_ = false;
    if (msg_.size() - pos_ < 2) return Malformed("attribute missing at the end");
    const char attr = msg_[pos_];
    if (!((attr >= 'a' && attr <= 'z') || (attr >= 'A' && attr <= 'Z')) || msg_[pos_ + 1] != '=') {
      return Malformed(fmt::format("expected an attribute at byte {}", pos_));
    }
    pos_ += 2;
    const size_t comma = std::min(msg_.find(',', pos_), msg_.size());
    std::string_view value = msg_.substr(pos_, comma - pos_);
    pos_ = comma;
    return std::make_pair(attr, value);
  }

  // The next attribute, which must be `attr`.
  Result<std::string_view> Expect(char attr) {
    if (AtEnd()) return Malformed(fmt::format("attribute '{}' missing", attr));
    ASSIGN_OR_RETURN(auto got, Any());
    if (got.first != attr) {
      return Malformed(fmt::format("expected attribute '{}', found '{}'", attr, got.first));
    }
    return got.second;
  }

  Status Malformed(const std::string& why) const {
    return OperatorError(fmt::format("malformed SCRAM {}: {}", what_, why));
  }

 private:
  std::string_view msg_;
  const char* what_;
  size_t pos_ = 0;
  bool first_ = true;
};

}  // namespace

// ---------------------------------------------------------------------------
// Base64

std::string Base64Encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{static_cast<uint8_t>(bytes[i])} << 16) |
                       (uint32_t{static_cast<uint8_t>(bytes[i + 1])} << 8) | static_cast<uint8_t>(bytes[i + 2]);
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t{static_cast<uint8_t>(bytes[i])} << 16;
    if (rest == 2) v |= uint32_t{static_cast<uint8_t>(bytes[i + 1])} << 8;
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    uint32_t v = 0;
    for (int j = 0; j < 4; ++j) {
      const int d = j >= 4 - pad ? 0 : value(text[i + j]);
      if (d < 0) return std::nullopt;
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    out.push_back(static_cast<char>(v >> 16));
    if (pad < 2) out.push_back(static_cast<char>(v >> 8));
    if (pad < 1) out.push_back(static_cast<char>(v));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Channel binding

Result<std::string> TlsServerEndPoint(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509* cert = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (cert == nullptr) return OperatorError("tls-server-end-point: the certificate does not parse");
  int algo = NID_undef;
  const bool known = OBJ_find_sigid_algs(X509_get_signature_nid(cert), &algo, nullptr) == 1;
  // RFC 5929 §4.1: MD5 and SHA-1 are replaced by SHA-256.
  const EVP_MD* md = !known ? nullptr : (algo == NID_md5 || algo == NID_sha1) ? EVP_sha256() : EVP_get_digestbynid(algo);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const bool ok = md != nullptr && X509_digest(cert, md, out, &len) == 1;
  X509_free(cert);
  if (!ok) return OperatorError("tls-server-end-point: the certificate's signature algorithm has no known hash");
  return std::string(reinterpret_cast<const char*>(out), len);
}

// ---------------------------------------------------------------------------
// Verifier

Result<std::string> MakeScramVerifier(std::string_view password, std::string_view salt, int iterations) {
  if (iterations <= 0) return InvalidArgument(fmt::format("SCRAM iteration count {} is not positive", iterations));
  std::string salt_bytes(salt);
  if (salt_bytes.empty()) {
    ASSIGN_OR_RETURN(salt_bytes, RandomBytes(kScramSaltLen));
  }
  ASSIGN_OR_RETURN(ScramKeys keys, DeriveKeys(password, salt_bytes, iterations));
  return fmt::format("SCRAM-SHA-256${}:{}${}:{}", iterations, Base64Encode(salt_bytes), Base64Encode(keys.stored_key),
                     Base64Encode(keys.server_key));
}

// ---------------------------------------------------------------------------
// ScramServer

ScramServer::ScramServer(std::string password, ScramServerOptions options)
    : password_(std::move(password)), options_(std::move(options)) {}

Result<ScramServer> ScramServer::FromVerifier(std::string_view verifier, ScramServerOptions options) {
  // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
  auto bad = [](const char* what) { return OperatorError(fmt::format("malformed SCRAM verifier: {}", what)); };
  constexpr std::string_view kPrefix = "SCRAM-SHA-256$";
  if (!verifier.starts_with(kPrefix)) return bad("it does not start with \"SCRAM-SHA-256$\"");
  std::string_view rest = verifier.substr(kPrefix.size());
  const size_t dollar = rest.find('$');
  if (dollar == std::string_view::npos) return bad("'$' between salt and keys missing");
  std::string_view iter_salt = rest.substr(0, dollar);
  std::string_view keys = rest.substr(dollar + 1);
  const size_t colon1 = iter_salt.find(':');
  const size_t colon2 = keys.find(':');
  if (colon1 == std::string_view::npos || colon2 == std::string_view::npos) return bad("':' missing");

  ScramServer s;
  s.options_ = std::move(options);
  auto iterations = ParseIterations(iter_salt.substr(0, colon1));
  if (!iterations) return bad("iteration count is not a positive integer");
  s.iterations_ = *iterations;
  auto salt = Base64Decode(iter_salt.substr(colon1 + 1));
  if (!salt || salt->empty()) return bad("salt is not base64");
  s.salt_ = std::move(*salt);
  auto stored = Base64Decode(keys.substr(0, colon2));
  auto server = Base64Decode(keys.substr(colon2 + 1));
  if (!stored || stored->size() != kScramKeyLen) return bad("StoredKey is not 32 bytes of base64");
  if (!server || server->size() != kScramKeyLen) return bad("ServerKey is not 32 bytes of base64");
  s.stored_key_ = std::move(*stored);
  s.server_key_ = std::move(*server);
  s.have_keys_ = true;
  return s;
}

Status ScramServer::Fail(Status s) {
  state_ = State::kFailed;
  return s;
}

std::vector<std::string> ScramServer::Mechanisms() const {
  if (options_.tls_server_end_point.empty()) return {std::string(kScramSha256)};
  return {std::string(kScramSha256Plus), std::string(kScramSha256)};
}

Status ScramServer::ChooseMechanism(std::string_view mechanism) {
  if (state_ != State::kExpectClientFirst) return Fail(Internal("SCRAM mechanism chosen out of order"));
  if (mechanism == kScramSha256) {
    plus_ = false;
    return Status::Ok();
  }
  if (mechanism == kScramSha256Plus && !options_.tls_server_end_point.empty()) {
    plus_ = true;
    return Status::Ok();
  }
  return Fail(OperatorError(fmt::format("SASL mechanism {} is not supported (offered: {})", mechanism,
                                        fmt::join(Mechanisms(), ", "))));
}

Result<std::string> ScramServer::ClientFirst(std::string_view msg) {
  if (state_ != State::kExpectClientFirst) return Fail(Internal("SCRAM client-first-message out of order"));
  auto malformed = [&](const std::string& why) {
    return Fail(OperatorError(fmt::format("malformed SCRAM client-first-message: {}", why)));
  };

  // gs2-header: gs2-cbind-flag "," [authzid] ","
  if (msg.empty()) return malformed("empty message");
  size_t flag_end = 1;  // the ',' after the flag
  if (msg[0] == 'p') {
    // Texts as PostgreSQL's (auth-scram.c), which drivers and users know.
    if (!plus_)
      return Fail(OperatorError("The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message "
                                "includes channel binding data."));
    flag_end = msg.find(',');
    if (flag_end == std::string_view::npos || msg.substr(0, 2) != "p=") return malformed("gs2-cbind-flag \"p=\" without a name");
    if (msg.substr(2, flag_end - 2) != "tls-server-end-point")
      return Fail(OperatorError(fmt::format("unsupported SCRAM channel-binding type \"{}\"", msg.substr(2, flag_end - 2))));
  } else if (msg[0] == 'n' || msg[0] == 'y') {
    if (plus_)
      return Fail(OperatorError("The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include "
                                "channel binding data."));
    // 'y': the client can bind but thinks this server cannot; it can, so
    // someone in between took SCRAM-SHA-256-PLUS off the offer.
    if (msg[0] == 'y' && !options_.tls_server_end_point.empty())
      return Fail(OperatorError("SCRAM channel binding negotiation error: the client supports SCRAM channel binding "
                                "but thinks the server does not; however, this server does support channel binding"));
    if (msg.size() < 2 || msg[1] != ',') return malformed("gs2-cbind-flag is not 'n' or 'y'");
  } else {
    return malformed("gs2-cbind-flag is not 'n', 'y' or 'p'");
  }
  const size_t after = flag_end + 1;
  if (msg.size() > after && msg[after] == 'a') {
    return Fail(OperatorError("SCRAM authorization identity (attribute 'a') is not supported"));
  }
  if (msg.size() <= after || msg[after] != ',') return malformed("',' after the gs2 header missing");
  gs2_header_ = std::string(msg.substr(0, after + 1));
  client_first_bare_ = std::string(msg.substr(after + 1));

  AttrReader r(client_first_bare_, "client-first-message");
  if (r.Peek() == 'm') return Fail(OperatorError("unsupported SCRAM extension (attribute 'm')"));
  auto user = r.Expect('n');  // ignored: PostgreSQL authenticates the startup packet's user
  if (!user.ok()) return Fail(user.status());
  auto nonce = r.Expect('r');
  if (!nonce.ok()) return Fail(nonce.status());
  if (!ValidNonce(*nonce)) return malformed("nonce (attribute 'r') is empty or not printable");
  while (!r.AtEnd()) {  // extensions: read and ignored, as PostgreSQL does
    auto ext = r.Any();
    if (!ext.ok()) return Fail(ext.status());
  }

  auto server_nonce = MakeNonce(options_.nonce);
  if (!server_nonce.ok()) return Fail(server_nonce.status());
  if (!ValidNonce(*server_nonce)) return Fail(InvalidArgument("injected SCRAM server nonce is not printable"));
  nonce_ = std::string(*nonce) + *server_nonce;

  if (!have_keys_) {
    salt_ = options_.salt;
    if (salt_.empty()) {
      auto salt = RandomBytes(kScramSaltLen);
      if (!salt.ok()) return Fail(salt.status());
      salt_ = std::move(*salt);
    }
    iterations_ = options_.iterations;
    if (iterations_ <= 0) return Fail(InvalidArgument("SCRAM iteration count is not positive"));
    auto keys = DeriveKeys(password_, salt_, iterations_);
    if (!keys.ok()) return Fail(keys.status());
    stored_key_ = std::move(keys->stored_key);
    server_key_ = std::move(keys->server_key);
    OPENSSL_cleanse(password_.data(), password_.size());
    password_.clear();
    have_keys_ = true;
  }

  server_first_ = fmt::format("r={},s={},i={}", nonce_, Base64Encode(salt_), iterations_);
  state_ = State::kExpectClientFinal;
  return server_first_;
}

Result<std::string> ScramServer::ClientFinal(std::string_view msg) {
  if (state_ != State::kExpectClientFinal) return Fail(Internal("SCRAM client-final-message out of order"));
  AttrReader r(msg, "client-final-message");

  auto cbind = r.Expect('c');
  if (!cbind.ok()) return Fail(cbind.status());
  auto cbind_data = Base64Decode(*cbind);
  if (!cbind_data) return Fail(r.Malformed("channel binding (attribute 'c') is not base64"));
  if (*cbind_data != (plus_ ? gs2_header_ + options_.tls_server_end_point : gs2_header_)) {
    return Fail(r.Malformed("channel binding (attribute 'c') does not match the gs2 header"));
  }

  auto nonce = r.Expect('r');
  if (!nonce.ok()) return Fail(nonce.status());
  if (*nonce != nonce_) return Fail(r.Malformed("nonce (attribute 'r') does not match"));

  // Extensions, then the proof, which must come last.
  size_t proof_start = 0;
  std::string_view proof_b64;
  for (;;) {
    proof_start = r.pos();
    if (r.AtEnd()) return Fail(r.Malformed("proof (attribute 'p') missing"));
    auto attr = r.Any();
    if (!attr.ok()) return Fail(attr.status());
    if (attr->first == 'p') {
      proof_b64 = attr->second;
      break;
    }
  }
  if (!r.AtEnd()) return Fail(r.Malformed("proof (attribute 'p') is not the last attribute"));
  auto proof = Base64Decode(proof_b64);
  if (!proof || proof->size() != kScramKeyLen) {
    return Fail(r.Malformed("proof (attribute 'p') is not 32 bytes of base64"));
  }

  const std::string auth_message =
      fmt::format("{},{},{}", client_first_bare_, server_first_, msg.substr(0, proof_start));
  auto client_signature = HmacSha256(stored_key_, auth_message);
  if (!client_signature.ok()) return Fail(client_signature.status());
  auto stored = Digest(EVP_sha256(), Xor(*proof, *client_signature));
  if (!stored.ok()) return Fail(stored.status());
  if (!ConstantTimeEqual(*stored, stored_key_)) return Fail(OperatorError("password authentication failed"));

  auto server_signature = HmacSha256(server_key_, auth_message);
  if (!server_signature.ok()) return Fail(server_signature.status());
  state_ = State::kDone;
  return "v=" + Base64Encode(*server_signature);
}

// ---------------------------------------------------------------------------
// ScramClient

ScramClient::ScramClient(std::string password, ScramClientOptions options)
    : password_(std::move(password)), username_(std::move(options.username)) {
  auto nonce = MakeNonce(options.nonce);
  if (!nonce.ok()) {
    init_error_ = nonce.status();
  } else if (!ValidNonce(*nonce)) {
    init_error_ = InvalidArgument("injected SCRAM client nonce is not printable");
  } else {
    nonce_ = std::move(*nonce);
  }
}

Status ScramClient::Fail(Status s) {
  state_ = State::kFailed;
  return s;
}

std::string ScramClient::ClientFirst() {
  client_first_bare_ = fmt::format("n={},r={}", EscapeSaslName(username_), nonce_);
  if (state_ == State::kStart) state_ = State::kSentClientFirst;
  return "n,," + client_first_bare_;
}

Status ScramClient::ServerFirst(std::string_view msg) {
  if (!init_error_.ok()) return Fail(init_error_);
  if (state_ != State::kSentClientFirst) return Fail(Internal("SCRAM server-first-message out of order"));
  AttrReader r(msg, "server-first-message");
  if (r.Peek() == 'm') return Fail(OperatorError("unsupported SCRAM extension (attribute 'm')"));
  auto nonce = r.Expect('r');
  if (!nonce.ok()) return Fail(nonce.status());
  if (!nonce->starts_with(nonce_) || nonce->size() == nonce_.size() || !ValidNonce(*nonce)) {
    return Fail(r.Malformed("nonce (attribute 'r') does not extend the client nonce"));
  }
  auto salt_b64 = r.Expect('s');
  if (!salt_b64.ok()) return Fail(salt_b64.status());
  auto salt = Base64Decode(*salt_b64);
  if (!salt || salt->empty()) return Fail(r.Malformed("salt (attribute 's') is not base64"));
  auto iter_text = r.Expect('i');
  if (!iter_text.ok()) return Fail(iter_text.status());
  auto iterations = ParseIterations(*iter_text);
  if (!iterations) return Fail(r.Malformed("iteration count (attribute 'i') is not a positive integer"));
  while (!r.AtEnd()) {
    auto ext = r.Any();
    if (!ext.ok()) return Fail(ext.status());
  }

  auto keys = DeriveKeysCached(password_, *salt, *iterations);
  if (!keys.ok()) return Fail(keys.status());
  // No channel binding: c = base64("n,,") = "biws".
  const std::string without_proof = fmt::format("c=biws,r={}", *nonce);
  const std::string auth_message = fmt::format("{},{},{}", client_first_bare_, msg, without_proof);
  auto client_signature = HmacSha256(keys->stored_key, auth_message);
  if (!client_signature.ok()) return Fail(client_signature.status());
  auto server_signature = HmacSha256(keys->server_key, auth_message);
  if (!server_signature.ok()) return Fail(server_signature.status());
  client_final_ = without_proof + ",p=" + Base64Encode(Xor(keys->client_key, *client_signature));
  server_signature_ = std::move(*server_signature);
  state_ = State::kHaveProof;
  return Status::Ok();
}

std::string ScramClient::ClientFinal() {
  return state_ == State::kHaveProof ? client_final_ : std::string();
}

Status ScramClient::ServerFinal(std::string_view msg) {
  if (state_ != State::kHaveProof) return Fail(Internal("SCRAM server-final-message out of order"));
  AttrReader r(msg, "server-final-message");
  if (r.Peek() == 'e') {
    auto err = r.Any();
    if (!err.ok()) return Fail(err.status());
    return Fail(OperatorError(fmt::format("SCRAM authentication failed: the server reported \"{}\"", err->second)));
  }
  auto verifier = r.Expect('v');
  if (!verifier.ok()) return Fail(verifier.status());
  auto signature = Base64Decode(*verifier);
  if (!signature) return Fail(r.Malformed("server signature (attribute 'v') is not base64"));
  if (!ConstantTimeEqual(*signature, server_signature_)) {
    return Fail(OperatorError("SCRAM server signature mismatch: the server does not know the password"));
  }
  state_ = State::kDone;
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// MD5. These cannot report an error; if OpenSSL has no MD5 (a FIPS-only
// provider) they return "" and Md5Verify returns false.

namespace {
std::string Md5Hex(std::string_view data) {
  auto d = Digest(EVP_md5(), data);
  return d.ok() ? Hex(*d) : std::string();
}
}  // namespace

std::string Md5PasswordHash(std::string_view user, std::string_view password) {
  std::string input(password);
  input.append(user);
  const std::string hex = Md5Hex(input);
  OPENSSL_cleanse(input.data(), input.size());
  return hex.empty() ? std::string() : "md5" + hex;
}

std::string Md5ResponseFromHash(std::string_view md5_hash, const uint8_t salt[4]) {
  if (md5_hash.size() != 35 || !md5_hash.starts_with("md5")) return std::string();
  std::string input(md5_hash.substr(3));
  input.append(reinterpret_cast<const char*>(salt), 4);
  const std::string hex = Md5Hex(input);
  return hex.empty() ? std::string() : "md5" + hex;
}

std::string Md5Response(std::string_view user, std::string_view password, const uint8_t salt[4]) {
  return Md5ResponseFromHash(Md5PasswordHash(user, password), salt);
}

bool Md5Verify(std::string_view user, std::string_view password, const uint8_t salt[4], std::string_view response) {
  const std::string expected = Md5Response(user, password, salt);
  return !expected.empty() && ConstantTimeEqual(expected, response);
}

}  // namespace midflight::pgwire
