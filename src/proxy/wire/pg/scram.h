// SCRAM-SHA-256 (RFC 5802, RFC 7677) and MD5 password authentication, as
// PostgreSQL does them. Pure computations over strings: the messages are the
// SASL payloads carried by AuthenticationSASLContinue/Final and
// SASLInitialResponse/SASLResponse (pg_wire.h), not whole protocol messages.
//
// PostgreSQL's dialect of SCRAM:
//  - the user name in client-first-message is ignored (libpq sends "n=,"); the
//    startup packet's user is the one authenticated;
//  - channel binding: SCRAM-SHA-256-PLUS with tls-server-end-point only
//    (RFC 5929), offered by ScramServer when given the certificate hash of
//    its TLS connection; otherwise the GS2 header is "n,," or "y,,". An
//    authorization identity is refused;
//  - passwords are normalised with SASLprep, falling back to the raw bytes
//    when that fails, exactly as PostgreSQL does (saslprep.h), on every path
//    (ScramServer, ScramClient, MakeScramVerifier).
//
// Failures are OperatorError. A wrong password (or proof) is exactly
// "password authentication failed" (send SQLSTATE 28P01); a malformed message
// names the attribute at fault (send 08P01). No message contains a password,
// a key or a proof. After any failure the exchange is over: start a new object.
//
// Randomness (salt, nonces) comes from OpenSSL RAND_bytes unless the options
// inject fixed values (tests). Objects are not thread-safe; one per exchange.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace midflight::pgwire {

inline constexpr std::string_view kScramSha256 = "SCRAM-SHA-256";
inline constexpr std::string_view kScramSha256Plus = "SCRAM-SHA-256-PLUS";

// The tls-server-end-point channel binding data (RFC 5929 §4.1) of a
// certificate given in DER: its hash with the certificate's signature hash
// algorithm, SHA-256 where that is MD5 or SHA-1. An error when the DER does
// not parse or the algorithm is unknown (then offer no channel binding).
Result<std::string> TlsServerEndPoint(std::string_view der_certificate);
inline constexpr int kScramDefaultIterations = 4096;

// Standard base64 with padding. Decode is strict (no whitespace, padding
// required) and returns nullopt on anything else.
std::string Base64Encode(std::string_view bytes);
std::optional<std::string> Base64Decode(std::string_view text);

// A PostgreSQL SCRAM verifier (the pg_authid.rolpassword form):
// "SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>".
// An empty salt means 16 random bytes.
Result<std::string> MakeScramVerifier(std::string_view password, std::string_view salt = {},
                                      int iterations = kScramDefaultIterations);

struct ScramServerOptions {
  std::string salt;   // raw bytes; empty = 16 random bytes (password mode only)
  std::string nonce;  // server nonce, printable ASCII without ','; empty = 18 random bytes, base64
  int iterations = kScramDefaultIterations;  // password mode only
  // The connection is TLS and this is its tls-server-end-point data
  // (TlsServerEndPoint of the certificate the server presented): the server
  // offers SCRAM-SHA-256-PLUS too. Empty: no channel binding.
  std::string tls_server_end_point;
};

// The server side: answers a client that proves it knows the password.
//
//   ScramServer s("secret");
//   ASSIGN_OR_RETURN(std::string server_first, s.ClientFirst(client_first));  // → AuthSaslContinue
//   ASSIGN_OR_RETURN(std::string server_final, s.ClientFinal(client_final));  // → AuthSaslFinal, then AuthOk
class ScramServer {
 public:
  explicit ScramServer(std::string password, ScramServerOptions options = {});
  // From a stored verifier (see MakeScramVerifier); options.salt and
  // options.iterations are ignored (the verifier has them).
  static Result<ScramServer> FromVerifier(std::string_view verifier, ScramServerOptions options = {});

  // The mechanisms to offer in AuthenticationSASL, preferred first.
  std::vector<std::string> Mechanisms() const;
  // The mechanism the client chose (SASLInitialResponse); before ClientFirst.
  // Without a call, SCRAM-SHA-256. An error names a mechanism not offered.
  Status ChooseMechanism(std::string_view mechanism);

  // client-first-message → server-first-message ("r=...,s=...,i=...").
  Result<std::string> ClientFirst(std::string_view client_first_message);
  // client-final-message → server-final-message ("v=..."), once the proof is right.
  Result<std::string> ClientFinal(std::string_view client_final_message);

 private:
  enum class State { kExpectClientFirst, kExpectClientFinal, kDone, kFailed };
  ScramServer() = default;
  Status Fail(Status s);

  State state_ = State::kExpectClientFirst;
  std::string password_;  // password mode: keys are derived in ClientFirst
  bool have_keys_ = false;
  ScramServerOptions options_;
  std::string salt_;
  int iterations_ = kScramDefaultIterations;
  std::string stored_key_;
  std::string server_key_;
  bool plus_ = false;              // SCRAM-SHA-256-PLUS chosen
  std::string gs2_header_;         // "n,,", "y,," or "p=tls-server-end-point,,"
  std::string client_first_bare_;  // "n=...,r=..."
  std::string server_first_;
  std::string nonce_;  // client nonce + server nonce
};

struct ScramClientOptions {
  std::string username;  // sent in client-first-message; PostgreSQL ignores it, libpq leaves it empty
  std::string nonce;     // client nonce, printable ASCII without ','; empty = 18 random bytes, base64
};

// The client side, which also checks that the server knows the password.
//
//   ScramClient c("secret");
//   send SaslInitialResponse("SCRAM-SHA-256", c.ClientFirst());
//   RETURN_IF_ERROR(c.ServerFirst(continue_data));  send SaslResponse(c.ClientFinal());
//   RETURN_IF_ERROR(c.ServerFinal(final_data));     // the server proved itself
class ScramClient {
 public:
  explicit ScramClient(std::string password, ScramClientOptions options = {});

  // client-first-message: "n,,n=<user>,r=<nonce>".
  std::string ClientFirst();
  // Checks server-first-message and computes the proof.
  Status ServerFirst(std::string_view server_first_message);
  // client-final-message with the proof; empty unless ServerFirst succeeded.
  std::string ClientFinal();
  // Checks the server's signature ("v=...") or reports its "e=..." error.
  Status ServerFinal(std::string_view server_final_message);

 private:
  enum class State { kStart, kSentClientFirst, kHaveProof, kDone, kFailed };
  Status Fail(Status s);

  State state_ = State::kStart;
  Status init_error_;  // a failure to draw the random nonce, reported by ServerFirst
  std::string password_;
  std::string nonce_;
  std::string username_;
  std::string client_first_bare_;
  std::string client_final_;
  std::string server_signature_;
};

// MD5 authentication.
// The stored form: "md5" + hex(md5(password + user)).
std::string Md5PasswordHash(std::string_view user, std::string_view password);
// What the client answers to AuthenticationMD5Password:
// "md5" + hex(md5(hex(md5(password + user)) + salt)).
std::string Md5Response(std::string_view user, std::string_view password, const uint8_t salt[4]);
// The same from the stored form ("md5" + 32 hex digits), for a server that has no plaintext.
std::string Md5ResponseFromHash(std::string_view md5_hash, const uint8_t salt[4]);
// Constant-time check of a client's response.
bool Md5Verify(std::string_view user, std::string_view password, const uint8_t salt[4], std::string_view response);

}  // namespace midflight::pgwire
