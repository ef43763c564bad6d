// Live verification, MySQL/MariaDB (see verify.h for the contract).
//
// How a table is verified:
//   1. Chunks of verify.chunk_rows rows in key order, bounds found on the
//      reference by a keyset walk (composite keys compared column by column).
//   2. The chunk's COUNT(*) and BIT_XOR of a 64-bit slice of each row's MD5,
//      on the reference inside START TRANSACTION WITH CONSISTENT SNAPSHOT,
//      whose binlog position P (MariaDB's Binlog_snapshot_file/position: the
//      binlog up to P is exactly what the snapshot sees) is read with it.
//   3. Wait until the flow has applied the reference through P, hash the same
//      range on the other side. Equal: the chunk is fine.
//   4. Different: (key, row MD5) of the chunk on both sides (the reference in
//      a new snapshot at P', the other side once it has applied P'), merged
//      byte for byte by key. The keys that differ are only candidates: most
//      are rows in flight.
//   5. Each candidate gets the exact per-key check, repeated with a short
//      growing pause until it is conclusive, at most max_key_checks times; a
//      key that never is is reported "not settled", never as a difference.
//
// The exact check of key k, one attempt:
//   a. reference, snapshot S1 at P1: the MD5 of k's row, or absent;
//   b. wait until the flow has applied the reference through P1; read k there;
//   c. reference, snapshot S2 taken after (b) returned: k's MD5 again.
// Every transaction S1 sees is in the binlog before P1, so the other side
// holds k's version of S1 or a later one. Whatever it holds it got from
// transactions already in the reference's binlog when it was read; InnoDB
// makes a transaction visible just after writing it to the binlog, so apart
// from that instant they are visible in S2 too, and that instant is caught:
// when the flow had received past S2's position by the time the other side
// was read, the look is inconclusive. One key's changes go through
// one partition in binlog order, so the other side holds a version between
// S1's and S2's. When S1 and S2 agree and the other side differs, the row did
// not move while we looked, unless it moved away and back (A -> B -> A) or a
// commit was caught in that instant: both transient, so a key is reported
// only after TWO conclusive differing looks, and one agreeing look clears it.
//
// A flow that does not reach a position within wait_timeout_s leaves what
// waited for it "not settled" (nothing is concluded from a side that is
// behind), and the run ends there: the tables not reached say why.
//
// Everything read on the reference is read in short read-only snapshot
// transactions; the other side is only read with single statements.

#include "engines/mysql/verify.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "base/parse.h"
#include "engines/mysql/binlog_pos.h"
#include "engines/mysql/catalog.h"
#include "engines/mysql/my_conn.h"
#include "engines/verify_report.h"

namespace midflight::mysql {
namespace {

using Clock = std::chrono::steady_clock;
using Key = VerifyKey;

// Keys looked up per statement in the exact check.
constexpr size_t kKeysPerLookup = 200;

// The form a column is selected in: the one the binlog decoder gives, which
// is the one the applier writes back (engines/mysql/my_applier.h).
std::string ValueExpr(const ColumnSchema& c) {
  const std::string q = QuoteIdent(c.name);
  const std::string& base = c.type.native_base;
  // The binlog gives ENUM's index, SET's bitmask and BIT's number.
  if (base == "enum" || base == "set" || base == "bit") return fmt::format("({} + 0)", q);
  // FLOAT prints with 6 significant digits; its exact double reads back to the same float.
  if (base == "float") return fmt::format("CAST({} AS DOUBLE)", q);
  // These print as text, but are written (and logged) as their raw bytes.
  if (base == "uuid" || base == "inet6") return fmt::format("CAST({} AS BINARY(16))", q);
  if (base == "inet4") return fmt::format("CAST({} AS BINARY(4))", q);
  return q;
}

// The bytes of a column for the row hash: its value as a binary string, so
// the concatenation never mixes collations. Equal values print the same on
// both sides: the sessions share time_zone '+00:00' and the columns their
// types (FLOAT goes through its exact double, so two floats that print alike
// with 6 digits still differ).
std::string HashBytesExpr(const ColumnSchema& c) {
  const std::string& base = c.type.native_base;
  if (base == "float" || base == "bit") return fmt::format("CAST({} AS BINARY)", ValueExpr(c));
  return fmt::format("CAST({} AS BINARY)", QuoteIdent(c.name));
}

std::string ColumnPiece(const ColumnSchema& c) {
  const std::string x = HashBytesExpr(c);
  return fmt::format("IFNULL(CONCAT(LENGTH({0}), ':', {0}), 'N')", x);
}

bool IsNumberText(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E')) return false;
  return true;
}

bool Printable(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  // Valid UTF-8 without control characters prints as it is.
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += n;
  }
  return true;
}

std::string DisplayValue(const std::optional<std::string>& v) {
  if (!v) return "NULL";
  if (Printable(*v)) return *v;
  std::string hex = "0x";
  for (unsigned char c : *v) hex += fmt::format("{:02x}", c);
  return hex;
}

Key KeyFromRow(const MyResult& r, int row, size_t n) {
  Key key;
  key.reserve(n);
  for (size_t c = 0; c < n; ++c) {
    const int col = static_cast<int>(c);
    key.push_back(r.IsNull(row, col) ? std::nullopt : std::optional<std::string>(r.Get(row, col)));
  }
  return key;
}

}  // namespace

// --- KeyRangeSql ------------------------------------------------------------------

KeyRangeSql::KeyRangeSql(const TableSchema& t, std::string db) : t_(t) {
  from_ = QuoteQualified(db, t.id.name);
  for (size_t i = 0; i < t.key.size(); ++i) {
    const ColumnSchema& c = t.columns[t.key[i]];
    key_select_ += (i ? ", " : "") + ValueExpr(c);
    order_ += (i ? ", " : "") + QuoteIdent(c.name);
  }
}

std::string KeyRangeSql::Literal(int key_index, const std::optional<std::string>& value) const {
  if (!value) return "NULL";
  const ColumnSchema& c = t_.columns[t_.key[key_index]];
  const std::string& base = c.type.native_base;
  if (base == "uuid" || base == "inet4" || base == "inet6") return HexLiteral(*value);
  switch (LiteralKindOf(c)) {
    case LiteralKind::kNumber:
      return IsNumberText(*value) ? *value : QuoteString(*value);
    case LiteralKind::kQuoted:
      return QuoteString(*value);
    case LiteralKind::kText:
      // The column's charset; its collation decides the comparison (a column
      // outranks a literal), so the range follows the key's index.
      return "_" + c.type.charset + " " + HexLiteral(*value);
    case LiteralKind::kBinary:
      break;
  }
  return HexLiteral(*value);
}

std::string KeyRangeSql::Compare(const char* op, const Key& bound) const {
  // (k0, k1, k2) > (b0, b1, b2) is k0 > b0 OR (k0 = b0 AND k1 > b1) OR (k0 = b0
  // AND k1 = b1 AND k2 > b2): the form MariaDB's range optimizer reads.
  const bool upper = std::string_view(op) == "<=";
  const size_t n = t_.key.size();
  std::vector<std::string> terms;
  for (size_t i = 0; i < n; ++i) {
    std::string term;
    for (size_t k = 0; k < i; ++k)
      term += fmt::format("{} = {} AND ", QuoteIdent(t_.columns[t_.key[k]].name),
                          Literal(static_cast<int>(k), k < bound.size() ? bound[k] : std::nullopt));
    const char* cmp = i + 1 < n ? (upper ? "<" : ">") : op;
    term += fmt::format("{} {} {}", QuoteIdent(t_.columns[t_.key[i]].name), cmp,
                        Literal(static_cast<int>(i), i < bound.size() ? bound[i] : std::nullopt));
    terms.push_back(n > 1 ? "(" + term + ")" : term);
  }
  return n > 1 ? fmt::format("({})", fmt::join(terms, " OR ")) : terms.front();
}

std::string KeyRangeSql::Range(const std::optional<Key>& lower, const std::optional<Key>& upper) const {
  std::string where;
  if (lower) where = Compare(">", *lower);
  if (upper) where += (where.empty() ? "" : " AND ") + Compare("<=", *upper);
  return where.empty() ? "TRUE" : where;
}

std::string KeyRangeSql::RowText() const {
  std::vector<std::string> pieces;
  for (const auto& c : t_.columns) pieces.push_back(ColumnPiece(c));
  return fmt::format("CONCAT({})", fmt::join(pieces, ", "));
}

std::string KeyRangeSql::Boundary(const std::optional<Key>& lower, int64_t chunk_rows) const {
  return fmt::format("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT 1 OFFSET {}", key_select_, from_,
                     Range(lower, std::nullopt), order_, std::max<int64_t>(chunk_rows - 1, 0));
}

std::string KeyRangeSql::Hash(const std::optional<Key>& lower, const std::optional<Key>& upper) const {
  return fmt::format("SELECT COUNT(*), COALESCE(BIT_XOR(CAST(CONV(LEFT(MD5({}), 16), 16, 10) AS UNSIGNED)), 0) "
                     "FROM {} WHERE {}",
                     RowText(), from_, Range(lower, upper));
}

std::string KeyRangeSql::Rows(const std::optional<Key>& lower, const std::optional<Key>& upper) const {
  return fmt::format("SELECT {}, MD5({}) FROM {} WHERE {} ORDER BY {}", key_select_, RowText(), from_,
                     Range(lower, upper), order_);
}

std::string KeyRangeSql::Where(const std::vector<const Key*>& keys) const {
  std::vector<std::string> terms;
  if (t_.key.size() == 1) {
    for (const Key* k : keys) terms.push_back(Literal(0, k->empty() ? std::nullopt : (*k)[0]));
    return fmt::format("{} IN ({})", QuoteIdent(t_.columns[t_.key[0]].name), fmt::join(terms, ", "));
  }
  for (const Key* k : keys) {
    std::vector<std::string> eq;
    for (size_t i = 0; i < t_.key.size(); ++i)
      eq.push_back(fmt::format("{} = {}", QuoteIdent(t_.columns[t_.key[i]].name),
                               Literal(static_cast<int>(i), i < k->size() ? (*k)[i] : std::nullopt)));
    terms.push_back(fmt::format("({})", fmt::join(eq, " AND ")));
  }
  return fmt::format("({})", fmt::join(terms, " OR "));
}

std::string KeyRangeSql::Lookup(const std::vector<const Key*>& keys) const {
  return fmt::format("SELECT {}, MD5({}) FROM {} WHERE {}", key_select_, RowText(), from_, Where(keys));
}

std::string KeyRangeSql::ColumnHashes(const std::vector<const Key*>& keys) const {
  std::vector<std::string> cols;
  for (const auto& c : t_.columns) cols.push_back(fmt::format("MD5({})", ColumnPiece(c)));
  return fmt::format("SELECT {}, {} FROM {} WHERE {}", key_select_, fmt::join(cols, ", "), from_, Where(keys));
}

std::string KeyRangeSql::Image(const std::vector<const Key*>& keys) const {
  std::vector<std::string> cols;
  for (int c : t_.writable) cols.push_back(ValueExpr(t_.columns[c]));
  return fmt::format("SELECT {}, {} FROM {} WHERE {}", key_select_, fmt::join(cols, ", "), from_, Where(keys));
}

std::string KeyRangeSql::Display(const Key& key) const {
  std::vector<std::string> names, values;
  for (size_t i = 0; i < t_.key.size() && i < key.size(); ++i) {
    names.push_back(t_.columns[t_.key[i]].name);
    values.push_back(DisplayValue(key[i]));
  }
  return fmt::format("({})=({})", fmt::join(names, ", "), fmt::join(values, ", "));
}

std::string KeyRangeSql::DisplayRange(const std::optional<Key>& lower, const std::optional<Key>& upper) const {
  std::string out = "chunk";
  if (lower) out += " above " + Display(*lower);
  if (upper) out += (lower ? " and" : "") + std::string(" up to ") + Display(*upper);
  if (!lower && !upper) out += " (whole table)";
  return out;
}

// --- the verifier -------------------------------------------------------------------

namespace {

using verify::Difference;
using verify::Report;
using verify::TableResult;

struct ChunkOutcome : verify::ChunkFindings {
  std::optional<Key> upper;
};

class Verifier {
 public:
  explicit Verifier(const VerifyJob& job) : job_(job) {}

  Status Connect() {
    ASSIGN_OR_RETURN(MyUri ru, ParseMyUri(job_.reference_uri));
    ASSIGN_OR_RETURN(MyUri ou, ParseMyUri(job_.other_uri));
    ref_db_ = ru.database;
    other_db_ = ou.database;
    ConnOptions o;
    o.program_name = "midflight-verify";
    ASSIGN_OR_RETURN(ref_, MyConn::Connect(job_.reference_uri, o));
    ASSIGN_OR_RETURN(other_, MyConn::Connect(job_.other_uri, o));
    // START TRANSACTION WITH CONSISTENT SNAPSHOT needs REPEATABLE READ.
    return ref_->Exec("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ");
  }

  bool behind() const { return !behind_.empty(); }
  const std::string& behind_reason() const { return behind_; }
  MyConn& reference() { return *ref_; }
  const std::string& ref_db() const { return ref_db_; }

  Status VerifyTable(const TableSchema& t, TableResult* out) {
    const KeyRangeSql ref_sql(t, ref_db_), other_sql(t, other_db_);
    std::optional<Key> lower;
    for (;;) {
      if (Stopped()) return Cancelled("verify stopped");
      const Clock::time_point start = Clock::now();
      ChunkOutcome chunk;
      for (int attempt = 0;; ++attempt) {
        chunk = ChunkOutcome{};
        const bool list_keys = out->differences.size() < static_cast<size_t>(job_.max_keys_per_table);
        Status st = Chunk(t, ref_sql, other_sql, lower, list_keys, &chunk);
        if (st.ok()) break;
        if (st.code() == StatusCode::kRetryCall && attempt == 0) {
          RETURN_IF_ERROR(Connect());
          continue;
        }
        return st.WithContext(fmt::format("verify {}, {}", t.id.ToString(), ref_sql.DisplayRange(lower, chunk.upper)));
      }
      verify::AddChunk(chunk, static_cast<size_t>(job_.max_keys_per_table), out);
      if (behind()) return Status::Ok();
      RETURN_IF_ERROR(Pace(chunk.rows_read, start));
      if (!chunk.upper) return Status::Ok();
      lower = std::move(chunk.upper);
    }
  }

 private:
  bool Stopped() const { return job_.stop && job_.stop->load(); }

  // Waits `d`, in 50 ms slices so that a stop is seen; true when stopped.
  bool WaitOrStopped(Clock::duration d) const {
    const Clock::time_point until = Clock::now() + d;
    for (;;) {
      if (Stopped()) return true;
      const Clock::time_point now = Clock::now();
      if (now >= until) return false;
      std::this_thread::sleep_for(std::min<Clock::duration>(until - now, std::chrono::milliseconds(50)));
    }
  }

  Result<MyResult> QueryOn(MyConn& conn, const char* side, const std::string& sql) {
    auto r = conn.Query(sql);
    if (!r.ok()) return r.status().WithContext(side);
    return r;
  }

  // The binlog position of the snapshot just opened on `conn`.
  Result<uint64_t> SnapshotPosition(MyConn& conn) {
    ASSIGN_OR_RETURN(MyResult snap, QueryOn(conn, "reference", "SHOW STATUS LIKE 'binlog_snapshot_%'"));
    std::string file, offset;
    for (int i = 0; i < snap.rows(); ++i) {
      if (snap.Get(i, 0) == "Binlog_snapshot_file") file = snap.Get(i, 1);
      if (snap.Get(i, 0) == "Binlog_snapshot_position") offset = snap.Get(i, 1);
    }
    if (file.empty()) {
      // A server without Binlog_snapshot_* (MySQL): the position now, read
      // after the snapshot was taken, is past everything the snapshot sees.
      ASSIGN_OR_RETURN(MyResult ms, QueryOn(conn, "reference", "SHOW MASTER STATUS"));
      if (ms.rows() == 0) return OperatorError("reference: no binlog position (SHOW MASTER STATUS is empty); is log_bin on?");
      file = ms.Get(0, 0);
      offset = ms.Get(0, 1);
    }
    auto number = ParseBinlogFileNumber(file);
    uint64_t off = 0;
    if (!number || !ParseU64(offset, &off) || off > UINT32_MAX)
      return OperatorError(fmt::format("reference: '{}:{}' is not a binlog position", file, offset));
    base_ = BinlogBaseName(file);
    return EncodeBinlogPos(*number, static_cast<uint32_t>(off));
  }

  // Runs fn(position) inside a read-only consistent snapshot of the reference.
  template <typename Fn>
  Status InSnapshot(const Fn& fn) {
    RETURN_IF_ERROR(ref_->Exec("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").WithContext("reference"));
    Status st;
    auto pos = SnapshotPosition(*ref_);
    st = pos.ok() ? fn(*pos) : pos.status();
    if (ref_->IsBroken()) return st;
    Status end = ref_->Exec(st.ok() ? "COMMIT" : "ROLLBACK");
    return st.ok() ? end : st;
  }

  std::string Pos(uint64_t p) const { return FormatBinlogPos(base_, p); }

  // Until the flow has applied the reference through `position`. Not reached
  // within the timeout: *reached is false and the run is behind (what
  // waited is not settled, and every later wait is short).
  Status WaitForTarget(uint64_t position, bool* reached) {
    *reached = false;
    if (behind()) return Status::Ok();
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(job_.wait_timeout_s);
    for (;;) {
      const uint64_t applied = job_.applied_through();
      if (applied >= position) {
        *reached = true;
        return Status::Ok();
      }
      if (Stopped()) return Cancelled("verify stopped");
      if (Clock::now() >= deadline) {
        behind_ = fmt::format("replication had applied the reference only through {}, short of {}, after {} s",
                              Pos(applied), Pos(position), job_.wait_timeout_s);
        return Status::Ok();
      }
      // Short sleeps: the per-key check is conclusive only when the row did not
      // move on the reference meanwhile, so every millisecond counts.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // Steps 1-5 for the chunk above `lower`; sets out->upper (none: the last chunk).
  Status Chunk(const TableSchema& t, const KeyRangeSql& ref_sql, const KeyRangeSql& other_sql,
               const std::optional<Key>& lower, bool list_keys, ChunkOutcome* out) {
    uint64_t position = 0;
    std::string ref_count, ref_xor;
    RETURN_IF_ERROR(InSnapshot([&](uint64_t at) -> Status {
      position = at;
      ASSIGN_OR_RETURN(MyResult b, QueryOn(*ref_, "reference", ref_sql.Boundary(lower, job_.chunk_rows)));
      if (b.rows() > 0) out->upper = KeyFromRow(b, 0, ref_sql.key_size());
      ASSIGN_OR_RETURN(MyResult h, QueryOn(*ref_, "reference", ref_sql.Hash(lower, out->upper)));
      ref_count = h.Get(0, 0);
      ref_xor = h.Get(0, 1);
      return Status::Ok();
    }));
    if (!ParseI64(ref_count, &out->rows)) return Internal(fmt::format("reference: COUNT(*) gave '{}'", ref_count));
    out->rows_read += out->rows;
    bool reached = false;
    RETURN_IF_ERROR(WaitForTarget(position, &reached));
    if (!reached) {
      out->unsettled.push_back(fmt::format("{}: not settled: {}", ref_sql.DisplayRange(lower, out->upper), behind_));
      return Status::Ok();
    }
    ASSIGN_OR_RETURN(MyResult h, QueryOn(*other_, "other side", other_sql.Hash(lower, out->upper)));
    if (h.Get(0, 0) == ref_count && h.Get(0, 1) == ref_xor) return Status::Ok();

    out->differed = true;
    if (!list_keys) {
      out->not_listed = true;
      return Status::Ok();
    }
    std::vector<Key> candidates;
    RETURN_IF_ERROR(Candidates(ref_sql, other_sql, lower, out->upper, &candidates, out));
    out->keys_rechecked = static_cast<int64_t>(candidates.size());
    return CheckKeys(t, ref_sql, other_sql, candidates, out);
  }

  // Step 4: the keys whose row differs between the two sides' listings of the chunk.
  Status Candidates(const KeyRangeSql& ref_sql, const KeyRangeSql& other_sql, const std::optional<Key>& lower,
                    const std::optional<Key>& upper, std::vector<Key>* candidates, ChunkOutcome* out) {
    MyResult ref_rows;
    uint64_t position = 0;
    RETURN_IF_ERROR(InSnapshot([&](uint64_t at) -> Status {
      position = at;
      ASSIGN_OR_RETURN(ref_rows, QueryOn(*ref_, "reference", ref_sql.Rows(lower, upper)));
      return Status::Ok();
    }));
    out->rows_read += ref_rows.rows();
    bool reached = false;
    RETURN_IF_ERROR(WaitForTarget(position, &reached));
    if (!reached) {
      out->unsettled.push_back(fmt::format("{}: not settled: {}", ref_sql.DisplayRange(lower, upper), behind_));
      return Status::Ok();
    }
    ASSIGN_OR_RETURN(MyResult other_rows, QueryOn(*other_, "other side", other_sql.Rows(lower, upper)));
    const size_t n = ref_sql.key_size();
    const int md5_col = static_cast<int>(n);
    std::map<Key, std::string> other;
    for (int r = 0; r < other_rows.rows(); ++r) other.emplace(KeyFromRow(other_rows, r, n), other_rows.Get(r, md5_col));
    for (int r = 0; r < ref_rows.rows(); ++r) {
      Key key = KeyFromRow(ref_rows, r, n);
      auto it = other.find(key);
      if (it == other.end() || it->second != ref_rows.Get(r, md5_col)) candidates->push_back(key);
      if (it != other.end()) other.erase(it);
    }
    for (auto& [key, md5] : other) candidates->push_back(key);
    return Status::Ok();
  }

  static std::string KindOf(const std::optional<std::string>& ref, const std::optional<std::string>& other) {
    if (!other) return "missing on target";
    if (!ref) return "extra on target";
    return "differs";
  }

  // Step 5: the exact check of every candidate, all keys of the chunk at once.
  Status CheckKeys(const TableSchema& t, const KeyRangeSql& ref_sql, const KeyRangeSql& other_sql,
                   const std::vector<Key>& keys, ChunkOutcome* out) {
    struct Pending {
      const Key* key;
      int differing = 0;  // conclusive looks that found the other side different
    };
    std::vector<Pending> pending;
    pending.reserve(keys.size());
    for (const Key& k : keys) pending.push_back({&k});
    std::vector<const Key*> differs;
    auto pause = std::chrono::milliseconds(10);
    for (int attempt = 0; attempt < job_.max_key_checks && !pending.empty() && !behind(); ++attempt) {
      if (attempt > 0) {
        if (WaitOrStopped(pause)) return Cancelled("verify stopped");
        pause = std::min(pause * 2, std::chrono::milliseconds(200));
      }
      std::vector<const Key*> look;
      look.reserve(pending.size());
      for (const Pending& k : pending) look.push_back(k.key);
      std::vector<std::optional<std::string>> first, other, second;
      uint64_t position = 0;
      RETURN_IF_ERROR(InSnapshot([&](uint64_t at) -> Status {
        position = at;
        return Look(*ref_, "reference", ref_sql, look, &first);
      }));
      bool reached = false;
      RETURN_IF_ERROR(WaitForTarget(position, &reached));
      if (!reached) break;
      RETURN_IF_ERROR(Look(*other_, "other side", other_sql, look, &other));
      // Whatever the other side held came from transactions the flow had received by now.
      const uint64_t received = job_.received ? job_.received() : 0;
      uint64_t position2 = 0;
      RETURN_IF_ERROR(InSnapshot([&](uint64_t at) -> Status {
        position2 = at;
        return Look(*ref_, "reference", ref_sql, look, &second);
      }));
      out->rows_read += 2 * static_cast<int64_t>(look.size());
      // Received past S2's position: a transaction the other side may hold was
      // in the binlog but not yet visible on the reference; this look proves nothing.
      const bool conclusive = received <= position2;

      std::vector<Pending> again;
      for (size_t i = 0; i < pending.size(); ++i) {
        if (first[i] != second[i] || !conclusive) {  // the row moved on the reference while we looked
          again.push_back(pending[i]);
          continue;
        }
        if (first[i] == other[i]) continue;  // in sync
        if (++pending[i].differing < 2) {
          again.push_back(pending[i]);
          continue;
        }
        const Key& key = *pending[i].key;
        out->differences.push_back(Difference{t.id, key, ref_sql.Display(key), KindOf(first[i], other[i])});
        if (first[i] && other[i]) differs.push_back(&key);
      }
      pending = std::move(again);
    }
    for (const Pending& k : pending)
      out->unsettled.push_back(ref_sql.Display(*k.key) + (behind() ? ": not settled: " + behind_
                                                                   : ": changed on every look, not settled"));
    if (!differs.empty()) RETURN_IF_ERROR(NameColumns(t, ref_sql, other_sql, differs, out));
    return Status::Ok();
  }

  // The columns that differ, for the keys found to differ: each column's hash
  // read on both sides once more (a row that moved since shows no column, and
  // its line just says "differs").
  Status NameColumns(const TableSchema& t, const KeyRangeSql& ref_sql, const KeyRangeSql& other_sql,
                     const std::vector<const Key*>& keys, ChunkOutcome* out) {
    const size_t n = ref_sql.key_size();
    std::map<Key, std::vector<std::string>> ref_cols, other_cols;
    auto read = [&](MyConn& conn, const char* side, const KeyRangeSql& sql,
                    std::map<Key, std::vector<std::string>>* into) -> Status {
      for (size_t begin = 0; begin < keys.size(); begin += kKeysPerLookup) {
        std::vector<const Key*> part(keys.begin() + static_cast<std::ptrdiff_t>(begin),
                                     keys.begin() + static_cast<std::ptrdiff_t>(std::min(keys.size(), begin + kKeysPerLookup)));
        ASSIGN_OR_RETURN(MyResult r, QueryOn(conn, side, sql.ColumnHashes(part)));
        for (int row = 0; row < r.rows(); ++row) {
          std::vector<std::string> hashes;
          for (int c = static_cast<int>(n); c < r.cols(); ++c) hashes.push_back(r.Get(row, c));
          (*into)[KeyFromRow(r, row, n)] = std::move(hashes);
        }
      }
      return Status::Ok();
    };
    RETURN_IF_ERROR(read(*ref_, "reference", ref_sql, &ref_cols));
    RETURN_IF_ERROR(read(*other_, "other side", other_sql, &other_cols));
    for (auto& d : out->differences) {
      if (d.kind != "differs") continue;
      auto a = ref_cols.find(d.key), b = other_cols.find(d.key);
      if (a == ref_cols.end() || b == other_cols.end() || a->second.size() != b->second.size()) continue;
      d.columns.clear();
      for (size_t c = 0; c < a->second.size() && c < t.columns.size(); ++c)
        if (a->second[c] != b->second[c]) d.columns.push_back(t.columns[c].name);
    }
    return Status::Ok();
  }

  // The row MD5 of each key on `conn` (nullopt: absent), in `keys` order.
  // Rows come back matched by the key's collation; only a byte-exact key counts.
  Status Look(MyConn& conn, const char* side, const KeyRangeSql& sql, const std::vector<const Key*>& keys,
              std::vector<std::optional<std::string>>* out) {
    out->assign(keys.size(), std::nullopt);
    const size_t n = sql.key_size();
    for (size_t begin = 0; begin < keys.size(); begin += kKeysPerLookup) {
      const size_t end = std::min(keys.size(), begin + kKeysPerLookup);
      std::vector<const Key*> part(keys.begin() + static_cast<std::ptrdiff_t>(begin),
                                   keys.begin() + static_cast<std::ptrdiff_t>(end));
      std::map<Key, size_t> index;
      for (size_t i = begin; i < end; ++i) index.emplace(*keys[i], i);
      ASSIGN_OR_RETURN(MyResult r, QueryOn(conn, side, sql.Lookup(part)));
      for (int row = 0; row < r.rows(); ++row) {
        auto it = index.find(KeyFromRow(r, row, n));
        if (it != index.end()) (*out)[it->second] = r.Get(row, static_cast<int>(n));
      }
    }
    return Status::Ok();
  }

  // Keeps rows read from the reference under rows_per_s, read again on every
  // slice so a change of the knob takes effect during the wait.
  Status Pace(int64_t rows, Clock::time_point chunk_start) const {
    if (!job_.rows_per_s || rows <= 0) return Status::Ok();
    for (;;) {
      const int64_t rate = job_.rows_per_s();
      if (rate <= 0) return Status::Ok();
      const auto due = chunk_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                         static_cast<double>(rows) / static_cast<double>(rate)));
      const Clock::time_point now = Clock::now();
      if (now >= due) return Status::Ok();
      if (WaitOrStopped(std::min<Clock::duration>(due - now, std::chrono::milliseconds(50))))
        return Cancelled("verify stopped");
    }
  }

  const VerifyJob& job_;
  std::unique_ptr<MyConn> ref_, other_;
  std::string ref_db_, other_db_;
  std::string base_ = "binlog";  // the reference's binlog base name, for messages
  std::string behind_;           // set once the flow did not reach a position in time
};

std::string SkipReason(const TableSchema& t) {
  if (t.key.empty()) return "no primary key or unique index on NOT NULL columns";
  return {};
}

// What the applier writes for a value read from the reference: the stream's
// form (BINARY(n) whole: the decoder pads back the zero bytes the binlog
// drops), so a repair routes (Change::KeyText) like the stream's changes of
// the same key.
Datum RepairDatum(const std::optional<std::string>& v) { return v ? Datum::Text(*v) : Datum::Null(); }

// The repair of one differing key: the reference's current row (an upsert),
// or a delete when it has none. Nullopt when the reference holds a row whose
// key is equal by the key's collation but not byte for byte (a case-
// insensitive key 'A' where the reference has 'a'): that row's own repair,
// an upsert, replaces this one, and a delete by key would remove it.
Result<std::optional<Change>> RepairOf(MyConn& ref, const KeyRangeSql& sql, const std::shared_ptr<const TableSchema>& t,
                                       const Key& key) {
  std::vector<const Key*> keys{&key};
  auto r = ref.Query(sql.Image(keys));
  if (!r.ok())
    return r.status().WithContext(fmt::format("reading {} {} from the reference", t->id.ToString(), sql.Display(key)));
  const size_t n = sql.key_size();
  Change c;
  c.table = t;
  for (int row = 0; row < r->rows(); ++row) {
    if (KeyFromRow(*r, row, n) != key) continue;
    c.kind = ChangeKind::kInsert;
    for (size_t i = 0; i < t->writable.size(); ++i) {
      const int col = static_cast<int>(n + i);
      c.values.push_back(RepairDatum(r->IsNull(row, col) ? std::nullopt : std::optional<std::string>(r->Get(row, col))));
    }
    return std::optional<Change>(std::move(c));
  }
  if (r->rows() > 0) return std::optional<Change>();
  c.kind = ChangeKind::kDelete;
  c.old.assign(t->writable.size(), Datum::Null());
  for (size_t i = 0; i < t->key_writable.size() && i < key.size(); ++i)
    c.old[t->key_writable[i]] = RepairDatum(key[i]);
  return std::optional<Change>(std::move(c));
}

}  // namespace

Result<ReplicationOps::VerifyOutcome> Verify(const VerifyJob& job) {
  if (!job.applied_through) return InvalidArgument("verify: applied_through is required");
  if (job.chunk_rows < 1 || job.max_key_checks < 1 || job.max_keys_per_table < 1 || job.wait_timeout_s < 1)
    return InvalidArgument(fmt::format(
        "verify: chunk_rows ({}), max_key_checks ({}), max_keys_per_table ({}) and wait_timeout_s ({}) must be at "
        "least 1",
        job.chunk_rows, job.max_key_checks, job.max_keys_per_table, job.wait_timeout_s));
  const Clock::time_point start = Clock::now();
  Verifier verifier(job);
  RETURN_IF_ERROR(verifier.Connect().WithContext("verify"));
  Report report;
  bool started = job.start_table.empty();
  for (const auto& t : job.tables) {
    if (job.stop && job.stop->load()) return Cancelled("verify stopped");
    if (!started && t->id.ToString() != job.start_table) continue;  // verified before the resume point
    started = true;
    TableResult result;
    result.table = t->id;
    if (auto why = job.not_verified.find(t->id); why != job.not_verified.end()) result.skipped = why->second;
    else result.skipped = SkipReason(*t);
    if (result.skipped.empty() && verifier.behind())
      result.skipped = "not reached: " + verifier.behind_reason();
    if (result.skipped.empty()) RETURN_IF_ERROR(verifier.VerifyTable(*t, &result));
    // A table job.reshaped verifies reports its progress there.
    if (job.on_table_done && !(job.reshaped && job.not_verified.count(t->id))) job.on_table_done(result, t->estimated_rows);
    report.rows += result.rows;
    report.tables.push_back(std::move(result));
  }
  std::set<TableId> elsewhere;
  ReshapedVerified reshaped;
  if (job.reshaped) {
    ASSIGN_OR_RETURN(reshaped, job.reshaped());
    for (auto& r : reshaped.report.tables)
      for (auto& mine : report.tables)
        if (mine.table == r.table) {
          report.rows += r.rows;
          mine = r;
          elsewhere.insert(r.table);
        }
  }
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();

  ReplicationOps::VerifyOutcome out;
  out.clean = report.clean();
  out.summary = report.Summary();
  out.json = report.ToJson();
  out.lines = std::move(reshaped.lines);
  out.repairs = std::move(reshaped.repairs);
  for (const auto& tr : report.tables) {
    if (elsewhere.count(tr.table)) continue;
    if (!tr.skipped.empty()) out.lines.push_back(fmt::format("{}: not verified: {}", tr.table.ToString(), tr.skipped));
    std::shared_ptr<const TableSchema> schema;
    for (const auto& t : job.tables)
      if (t->id == tr.table) schema = t;
    if (!schema) continue;
    const KeyRangeSql sql(*schema, verifier.ref_db());
    for (const auto& d : tr.differences) {
      std::string what = d.kind;
      if (!d.columns.empty()) what += fmt::format(" (columns {})", fmt::join(d.columns, ", "));
      out.lines.push_back(fmt::format("{} {}: {}", tr.table.ToString(), d.key_display, what));
      if (!job.repair) continue;
      ASSIGN_OR_RETURN(std::optional<Change> c, RepairOf(verifier.reference(), sql, schema, d.key));
      if (c) out.repairs.push_back(std::move(*c));
    }
    for (const auto& u : tr.unsettled) out.lines.push_back(fmt::format("{} {}", tr.table.ToString(), u));
    if (tr.truncated) out.lines.push_back(fmt::format("{}: more differences not listed", tr.table.ToString()));
  }
  return out;
}

}  // namespace midflight::mysql
