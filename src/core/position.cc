#include "core/position.h"

#include <fmt/format.h>

#include <charconv>

namespace midflight {

Result<PgLsn> PgLsn::Parse(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size())
    return InvalidArgument(fmt::format("bad LSN \"{}\": expected the form X/Y in hex", text));
  uint32_t hi = 0, lo = 0;
  auto r1 = std::from_chars(text.data(), text.data() + slash, hi, 16);
  auto r2 = std::from_chars(text.data() + slash + 1, text.data() + text.size(), lo, 16);
  if (r1.ec != std::errc() || r1.ptr != text.data() + slash || r2.ec != std::errc() ||
      r2.ptr != text.data() + text.size())
    return InvalidArgument(fmt::format("bad LSN \"{}\": expected the form X/Y in hex", text));
  return PgLsn((static_cast<uint64_t>(hi) << 32) | lo);
}

std::string PgLsn::ToString() const {
  return fmt::format("{:X}/{:X}", static_cast<uint32_t>(v_ >> 32), static_cast<uint32_t>(v_));
}

std::string Position::ToString() const {
  switch (kind_) {
    case PositionKind::kPgLsn: return PgLsn::FromU64(v_).ToString();
    case PositionKind::kBinlog:
      return fmt::format("binlog {:06d}:{}", static_cast<uint32_t>(v_ >> 32), static_cast<uint32_t>(v_));
    case PositionKind::kNone: break;
  }
  return std::to_string(v_);
}

std::string ChangePosition::ToString() const {
  return fmt::format("{}#{}", commit_lsn.ToString(), seq);
}

}  // namespace midflight
