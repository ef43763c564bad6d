#include "base/log.h"

#include <gtest/gtest.h>

#include <thread>

namespace midflight {
namespace {

using std::chrono::milliseconds;
using std::chrono::system_clock;

// 2026-12-06T03:41:07.123Z
const system_clock::time_point kTime = system_clock::time_point(milliseconds(1796528467123));

TEST(LogTest, TextLineHasTheDateInUtcWithMillisecondsAndTheMigration) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, kTime, LogLevel::kInfo, "shop", "streaming changes"),
            "2026-12-06T03:41:07.123Z info  [shop] streaming changes\n");
  EXPECT_EQ(FormatLogLine(LogFormat::kText, kTime, LogLevel::kError, "", "no context"),
            "2026-12-06T03:41:07.123Z error no context\n");
  EXPECT_EQ(FormatLogLine(LogFormat::kText, system_clock::time_point(milliseconds(5)), LogLevel::kWarn, "", "x"),
            "1970-01-01T00:00:00.005Z warn  x\n");
}

TEST(LogTest, JsonLineIsOneObjectWithNullMigrationWhenUnknown) {
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, kTime, LogLevel::kWarn, "shop", "lag 3 s"),
            R"({"ts":"2026-12-06T03:41:07.123Z","level":"warn","migration":"shop","msg":"lag 3 s"})" "\n");
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, kTime, LogLevel::kDebug, "", "x"),
            R"({"ts":"2026-12-06T03:41:07.123Z","level":"debug","migration":null,"msg":"x"})" "\n");
}

TEST(LogTest, JsonEscapesQuotesBackslashesControlsAndInvalidUtf8) {
  EXPECT_EQ(JsonEscape("say \"hi\" C:\\dir"), R"(say \"hi\" C:\\dir)");
  EXPECT_EQ(JsonEscape("a\nb\tc\rd\x01\x1f\x7f"), R"(a\nb\tc\rd\u0001\u001f\u007f)");
  EXPECT_EQ(JsonEscape("ü€😀"), "ü€😀");  // valid UTF-8 passes as is
  EXPECT_EQ(JsonEscape("bad \xff\xc3 end"), R"(bad \ufffd\ufffd end)");
  EXPECT_EQ(JsonEscape("\xc0\xaf"), R"(\ufffd\ufffd)");      // overlong '/'
  EXPECT_EQ(JsonEscape("\xed\xa0\x80"), R"(\ufffd\ufffd\ufffd)");  // a surrogate
  // A message with a newline stays one line.
  std::string line = FormatLogLine(LogFormat::kJson, kTime, LogLevel::kInfo, "a\"b", "two\nlines");
  EXPECT_EQ(line, R"({"ts":"2026-12-06T03:41:07.123Z","level":"info","migration":"a\"b","msg":"two\nlines"})" "\n");
}

TEST(LogTest, ScopedLogContextNestsAndRestores) {
  EXPECT_EQ(CurrentLogContext(), "");
  {
    ScopedLogContext outer("shop");
    EXPECT_EQ(CurrentLogContext(), "shop");
    {
      ScopedLogContext inner("orders");
      EXPECT_EQ(CurrentLogContext(), "orders");
    }
    EXPECT_EQ(CurrentLogContext(), "shop");
    std::string other = "unset";
    std::thread([&other] { other = CurrentLogContext(); }).join();
    EXPECT_EQ(other, "");  // thread-local: a new thread starts without one
  }
  EXPECT_EQ(CurrentLogContext(), "");
}

}  // namespace
}  // namespace midflight
