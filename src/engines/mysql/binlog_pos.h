// A binlog position as one ordered 64-bit number: the file's sequence number
// (binlog.000012 -> 12) in the high 32 bits, the byte offset in the low 32
// (a binlog file never reaches 4 GB: max_binlog_size is at most 1 GB). Stored
// in ChangePosition::commit_lsn for MySQL sources, where it is the position
// of the transaction's first event (its GTID event), so that "committed
// before a snapshot at S" is "position < S", as for PostgreSQL.
#pragma once

#include <charconv>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "base/thread_annotations.h"

namespace midflight::mysql {

constexpr uint64_t EncodeBinlogPos(uint32_t file_number, uint32_t offset) {
  return (static_cast<uint64_t>(file_number) << 32) | offset;
}
constexpr uint32_t BinlogFileNumber(uint64_t pos) { return static_cast<uint32_t>(pos >> 32); }
constexpr uint32_t BinlogOffset(uint64_t pos) { return static_cast<uint32_t>(pos & 0xffffffffu); }

// "binlog.000012" -> 12; nullopt when the name has no numeric extension.
inline std::optional<uint32_t> ParseBinlogFileNumber(std::string_view file) {
  auto dot = file.rfind('.');
  if (dot == std::string_view::npos || dot + 1 == file.size()) return std::nullopt;
  uint32_t n = 0;
  auto [p, ec] = std::from_chars(file.data() + dot + 1, file.data() + file.size(), n);
  if (ec != std::errc() || p != file.data() + file.size()) return std::nullopt;
  return n;
}

// The base of a binlog file name: "binlog.000012" -> "binlog".
inline std::string BinlogBaseName(std::string_view file) {
  auto dot = file.rfind('.');
  return std::string(file.substr(0, dot));
}

// The file name for `pos` given the base name, with MySQL's six-digit numbering.
inline std::string BinlogFileName(const std::string& base, uint64_t pos) {
  return fmt::format("{}.{:06d}", base, BinlogFileNumber(pos));
}

// Bytes of binlog from `applied` to `current`: the rest of the applied
// position's file, the whole of every file between, and the current file up
// to the position. `size_of(n)` is file n's size (0 when unknown: the result
// is then a lower bound, never more than the truth).
template <typename SizeOf>
uint64_t BinlogBytesBetween(uint64_t applied, uint64_t current, const SizeOf& size_of) {
  if (current <= applied) return 0;
  const uint32_t from = BinlogFileNumber(applied), to = BinlogFileNumber(current);
  if (from == to) return current - applied;
  const uint64_t first = size_of(from);
  uint64_t bytes = first > BinlogOffset(applied) ? first - BinlogOffset(applied) : 0;
  for (uint32_t n = from + 1; n < to; ++n) bytes += size_of(n);
  return bytes + BinlogOffset(current);
}

// The sizes of one server's binlog files (SHOW BINARY LOGS), for a lag in
// bytes across files: BytesBetween is BinlogBytesBetween over them (a file
// not listed counts 0 bytes). A file the server no longer writes keeps its
// size, so they need reading again only once the server moved to another
// file (NeedsRead), and the size of the file that was current at the read
// is never used for a file before the current one. Self-synchronised: the
// monitor thread reads and Sets them, the status loop asks BytesBetween.
class BinlogSizes {
 public:
  // True when `current` is in another file than the one current at the last Set.
  bool NeedsRead(uint64_t current) const {
    MutexLock lock(&mu_);
    return BinlogFileNumber(current) != read_in_;
  }
  // The sizes listed (file number -> bytes) while the server wrote `current`.
  void Set(uint64_t current, std::map<uint32_t, uint64_t> sizes) {
    MutexLock lock(&mu_);
    read_in_ = BinlogFileNumber(current);
    sizes_ = std::move(sizes);
  }
  uint64_t BytesBetween(uint64_t applied, uint64_t current) const {
    MutexLock lock(&mu_);
    return BinlogBytesBetween(applied, current, [this](uint32_t n) -> uint64_t {
      mu_.AssertHeld();  // called by BinlogBytesBetween, under the lock above
      auto it = sizes_.find(n);
      return it == sizes_.end() ? 0 : it->second;
    });
  }

 private:
  mutable Mutex mu_;
  uint32_t read_in_ GUARDED_BY(mu_) = 0;  // the file that was current at the last Set (0: never read)
  std::map<uint32_t, uint64_t> sizes_ GUARDED_BY(mu_);
};

// For messages and status: "binlog.000012:4711".
inline std::string FormatBinlogPos(const std::string& base, uint64_t pos) {
  return fmt::format("{}:{}", BinlogFileName(base, pos), BinlogOffset(pos));
}

}  // namespace midflight::mysql
