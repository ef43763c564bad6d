// SASLprep (RFC 4013) of a SCRAM password, as PostgreSQL applies it
// (src/common/saslprep.c) on both sides of SCRAM-SHA-256: a client and a
// server must derive the keys from the same bytes, and PostgreSQL's own
// clients (libpq) and server prepare the password first.
//
// PostgreSQL's rules, kept here:
//  - pure ASCII passes unchanged (even control characters, which SASLprep
//    would prohibit);
//  - a password that is not valid UTF-8, that holds a prohibited or
//    unassigned (Unicode 3.2) code point, fails the bidirectional check, or
//    maps to nothing at all, is used as its raw bytes;
//  - otherwise the mapped (non-ASCII spaces to U+0020, "commonly mapped to
//    nothing" removed), NFKC-normalised result is used.
//
// Implemented with GNU libidn's stringprep "SASLprep" profile with unassigned
// code points refused (STRINGPREP_NO_UNASSIGNED: the RFC's "stored strings",
// as PostgreSQL does). libidn2 has no stringprep; own tables would mean
// generating and keeping the RFC 3454 and NFKC tables in this repository.
// Thread-safe; no state.
#pragma once

#include <string>
#include <string_view>

namespace midflight::pgwire {

std::string SaslPrep(std::string_view password);

}  // namespace midflight::pgwire
