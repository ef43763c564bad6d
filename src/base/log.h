// Minimal leveled logging to stderr, built on fmt. Thread-safe (one write per line).
// Never pass a connection string with a password: use RedactUri (base/uri.h).
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace midflight {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
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
