// Minimal leveled logging to stderr, built on fmt. Thread-safe (one write per line).
// Never pass a connection string with a password: use RedactUri (base/uri.h).
//
// Each line carries the time (ISO 8601 UTC with milliseconds) and, when the
// calling thread has one, its log context: the name of the migration it
// works for (ScopedLogContext). Two formats (SetLogFormat, chosen once at
// startup by `--log-format`):
//
//   text: 2026-12-06T03:41:07.123Z info  [shop] streaming changes
//   json: {"ts":"2026-12-06T03:41:07.123Z","level":"info","migration":"shop","msg":"streaming changes"}
//
// In json, "migration" is null when the thread has no context, and every
// line is one JSON object (valid UTF-8: bytes that are not are written as
// U+FFFD).
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <string>
#include <string_view>

namespace midflight {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
enum class LogFormat { kText, kJson };

// Set once at startup, before threads start; read by every LogLine.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
void SetLogFormat(LogFormat format);
LogFormat GetLogFormat();

// The log context of the calling thread: set for the life of the object,
// restoring the previous one after (so they nest). Thread-local: a thread
// started by the holder does not inherit it; capture CurrentLogContext()
// and open a ScopedLogContext at the top of the new thread's body.
class ScopedLogContext {
 public:
  explicit ScopedLogContext(std::string migration);
  ~ScopedLogContext();
  ScopedLogContext(const ScopedLogContext&) = delete;
  ScopedLogContext& operator=(const ScopedLogContext&) = delete;

 private:
  std::string previous_;
};
// The calling thread's migration name, or "" when it has none.
const std::string& CurrentLogContext();

// One line as LogLine writes it, with its '\n'. Pure: for tests.
std::string FormatLogLine(LogFormat format, std::chrono::system_clock::time_point time, LogLevel level,
                          std::string_view migration, std::string_view message);
// `text` as the contents of a JSON string (without the quotes).
std::string JsonEscape(std::string_view text);

void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void Log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (level < GetLogLevel()) return;
  LogLine(level, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace midflight

#define LOG_DEBUG(...) ::midflight::Log(::midflight::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) ::midflight::Log(::midflight::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) ::midflight::Log(::midflight::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) ::midflight::Log(::midflight::LogLevel::kError, __VA_ARGS__)
