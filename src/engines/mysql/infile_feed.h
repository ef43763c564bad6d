// LOAD DATA LOCAL INFILE fed from memory: a chunk's rows, appended one line
// at a time in LOAD DATA's text form by a subclass's Fill(), handed to the
// client library in the pieces it asks for. Shared by the MySQL copy
// (snapshot_copier.cc) and the PostgreSQL -> MySQL copy (cross/pg_to_my.cc),
// which differ only in where a row comes from and how it is written.
#pragma once

#include <mysql.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/status.h"
#include "core/copy.h"
#include "engines/mysql/my_conn.h"
#include "pipeline/throttle.h"

namespace midflight::mysql {

struct InfileFeed {
  const std::atomic<bool>* stop = nullptr;
  int64_t max_row_bytes = 0;
  TableProgress* progress = nullptr;        // rows and bytes added every kProgressRows rows
  RateLimiter* rate = nullptr;              // the copy_rows_per_s knob, or null
  int64_t shown_rows = 0, shown_bytes = 0;  // what was added to `progress` so far
  std::string buf;
  size_t off = 0;
  bool eof = false;
  int64_t row_count = 0, byte_count = 0;
  Status error;

  static constexpr int64_t kProgressRows = 1024;

  virtual ~InfileFeed() = default;

  // Appends the next row to buf; false at the end (eof) or on error (error).
  virtual bool Fill() = 0;

  // Fill appended a row of `row_bytes` source bytes. Progress shows while a
  // chunk is read, not only when it commits.
  void Counted(int64_t row_bytes) {
    ++row_count;
    byte_count += row_bytes;
    if (row_count % kProgressRows == 0) {
      progress->rows += row_count - shown_rows;
      progress->bytes += byte_count - shown_bytes;
      shown_rows = row_count;
      shown_bytes = byte_count;
      if (rate) rate->Acquire(kProgressRows, *stop);
    }
  }

  // The chunk committed: the rest of its rows count. Or it failed: none does.
  void Settle(bool committed) {
    progress->rows += committed ? row_count - shown_rows : -shown_rows;
    progress->bytes += committed ? byte_count - shown_bytes : -shown_bytes;
    shown_rows = shown_bytes = 0;
  }

  // Runs `load` (a LOAD DATA LOCAL INFILE statement) on `conn` with this feed
  // as the file. The feed's own error, when it has one, is the cause.
  Status Load(MyConn& conn, const std::string& load) {
    mysql_set_local_infile_handler(conn.raw(), InfileInit, InfileRead, InfileEnd, InfileError, this);
    Status st = conn.Exec(load);
    mysql_set_local_infile_default(conn.raw());
    return error.ok() ? st : error;
  }

  // The client library's read callback: up to `len` bytes of the file into
  // `out`; 0 at the end, -1 on error. The buffer holds at most about
  // max(len, 64 KB) plus one row, whatever the chunk's size.
  int Read(char* out, unsigned int len) {
    // What the client library has taken goes before more rows come in: the
    // buffer is seldom read to its exact end (it is topped up as soon as
    // less than `len` is left), and kept whole it grew to the whole chunk
    // (250,000 rows: about 50 MB per worker).
    if (off > 0 && buf.size() - off < len) {
      buf.erase(0, off);
      off = 0;
    }
    while (buf.size() - off < len && !eof && error.ok()) {
      if (!Fill()) break;
      if (buf.size() - off >= 1 << 16) break;
    }
    if (!error.ok()) return -1;
    size_t n = std::min<size_t>(len, buf.size() - off);
    std::memcpy(out, buf.data() + off, n);
    off += n;
    if (off == buf.size()) {
      buf.clear();
      off = 0;
    }
    return static_cast<int>(n);
  }

 private:
  static int InfileInit(void** ptr, const char*, void* userdata) {
    *ptr = userdata;
    return 0;
  }
  static int InfileRead(void* ptr, char* buf, unsigned int len) { return static_cast<InfileFeed*>(ptr)->Read(buf, len); }
  static void InfileEnd(void*) {}
  static int InfileError(void* ptr, char* msg, unsigned int len) {
    std::snprintf(msg, len, "%s", static_cast<InfileFeed*>(ptr)->error.message().c_str());
    return 2000;
  }
};

}  // namespace midflight::mysql
