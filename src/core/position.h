// Source positions. A PostgreSQL WAL position (PgLsn) and the position of one
// change in the stream (ChangePosition: the commit LSN of its transaction plus
// its ordinal inside that transaction). Changes are totally ordered by
// ChangePosition, which is also what a partition's checkpoint stores.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace midflight {

class PgLsn {
 public:
  constexpr PgLsn() = default;
  static constexpr PgLsn FromU64(uint64_t v) { return PgLsn(v); }
  // Parses PostgreSQL's text form "16/B374D848".
  static Result<PgLsn> Parse(std::string_view text);

  constexpr uint64_t value() const { return v_; }
  std::string ToString() const;
  constexpr bool is_zero() const { return v_ == 0; }
  // Bytes from `earlier` to this one, 0 if `earlier` is ahead.
  constexpr uint64_t BytesSince(PgLsn earlier) const { return v_ > earlier.v_ ? v_ - earlier.v_ : 0; }

  constexpr auto operator<=>(const PgLsn&) const = default;

 private:
  constexpr explicit PgLsn(uint64_t v) : v_(v) {}
  uint64_t v_ = 0;
};

struct ChangePosition {
  PgLsn commit_lsn;   // LSN of the commit record of the change's transaction
  uint32_t seq = 0;   // 1-based ordinal of the change inside the transaction

  constexpr auto operator<=>(const ChangePosition&) const = default;
  std::string ToString() const;
};

}  // namespace midflight
