#include "engines/mysql/infile_feed.h"

#include <gtest/gtest.h>

#include <string>

namespace midflight::mysql {
namespace {

// Rows "<n>\t<100 x's>\n", n = 0 .. rows-1.
struct CountingFeed final : InfileFeed {
  int rows = 0, next = 0;
  size_t max_capacity = 0;
  bool Fill() override {
    if (next == rows) {
      eof = true;
      return false;
    }
    buf += std::to_string(next++);
    buf += '\t';
    buf.append(100, 'x');
    buf += '\n';
    max_capacity = std::max(max_capacity, buf.capacity());
    return true;
  }
};

std::string Expected(int rows) {
  std::string s;
  for (int i = 0; i < rows; ++i) s += std::to_string(i) + "\t" + std::string(100, 'x') + "\n";
  return s;
}

// The client library reads the file in pieces of its own size; whatever the
// size, the feed gives every byte once, in order, and its buffer stays near
// one piece: it used to keep everything until it happened to be read to its
// exact end, i.e. the whole chunk (a 200,000-row feed here is 21 MB).
TEST(InfileFeedTest, BufferStaysBoundedWhateverTheReadSize) {
  for (unsigned len : {1u, 4096u, 10000u, 65536u, 1u << 20}) {
    CountingFeed feed;
    feed.rows = 200000;
    std::string got;
    std::string piece(len, '\0');
    int n;
    while ((n = feed.Read(piece.data(), len)) > 0) got.append(piece.data(), n);
    ASSERT_EQ(n, 0) << "len " << len;
    EXPECT_TRUE(got == Expected(feed.rows)) << "len " << len << ": " << got.size() << " bytes read";
    EXPECT_LT(feed.max_capacity, std::max<size_t>(len, 1 << 16) * 2 + 4096) << "len " << len;
  }
}

TEST(InfileFeedTest, ErrorEndsTheRead) {
  struct Failing final : InfileFeed {
    bool Fill() override {
      error = Internal("source went away");
      return false;
    }
  } feed;
  char out[16];
  EXPECT_EQ(feed.Read(out, sizeof out), -1);
}

}  // namespace
}  // namespace midflight::mysql
