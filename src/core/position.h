// Source positions.
//
// Position: an ordered, engine-tagged place in a source's change log, carried
// as one 64-bit value whose order is the log's order:
//   PostgreSQL  a WAL position (LSN), written "16/B374D848" (PgLsn below)
//   MySQL       a binlog position: file sequence number << 32 | byte offset
//               (engines/mysql/binlog_pos.h), written "binlog 000012:4711"
// A zero Position ("nothing yet", e.g. a checkpoint never written) carries no
// engine and orders below every other. Positions are compared by value: the
// positions of one flow all come from one source, so they share an engine.
// (A GTID set is not part of it: MariaDB's GTID event gives the transaction's
// binlog position, which is what ordering and restarts need.)
//
// ChangePosition: one change in the stream, the position of its transaction
// plus its ordinal inside that transaction. Changes are totally ordered by
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

enum class PositionKind : uint8_t { kNone, kPgLsn, kBinlog };

class Position {
 public:
  constexpr Position() = default;
  constexpr Position(PgLsn lsn) : v_(lsn.value()), kind_(PositionKind::kPgLsn) {}  // NOLINT: implicit on purpose
  static constexpr Position Pg(uint64_t lsn) { return Position(lsn, PositionKind::kPgLsn); }
  // `encoded`: file number << 32 | offset (engines/mysql/binlog_pos.h).
  static constexpr Position Binlog(uint64_t encoded) { return Position(encoded, PositionKind::kBinlog); }
  static constexpr Position Of(PositionKind kind, uint64_t v) { return Position(v, kind); }

  constexpr uint64_t value() const { return v_; }
  constexpr PositionKind kind() const { return kind_; }
  constexpr bool is_zero() const { return v_ == 0; }
  // The engine's own form; a zero position is "0".
  std::string ToString() const;

  constexpr bool operator==(const Position& o) const { return v_ == o.v_; }
  constexpr auto operator<=>(const Position& o) const { return v_ <=> o.v_; }

 private:
  constexpr Position(uint64_t v, PositionKind kind) : v_(v), kind_(v == 0 ? PositionKind::kNone : kind) {}
  uint64_t v_ = 0;
  PositionKind kind_ = PositionKind::kNone;
};

struct ChangePosition {
  // The position of the change's transaction: PostgreSQL, its commit record's
  // LSN; MySQL, its first binlog event (the GTID event).
  Position commit_lsn;
  uint32_t seq = 0;   // 1-based ordinal of the change inside the transaction

  constexpr auto operator<=>(const ChangePosition&) const = default;
  std::string ToString() const;
};

}  // namespace midflight
