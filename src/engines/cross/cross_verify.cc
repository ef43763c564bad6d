// Live verification across engines (see cross_verify.h for the contract).
//
// How a table is verified:
//   1. Chunks by the FIRST key column: a chunk is every row whose first key
//      column lies in (lower, upper], `upper` read on the reference as the
//      value chunk_rows rows above `lower`. Ranges on that one column select
//      the same rows on both engines as long as both order its values alike,
//      so the comparison is made in an order both share:
//        - numbers, dates, timestamps, times, bytes, bits: each engine's own
//          ordering agrees (the column's index serves the range);
//        - text (and ENUM/SET, which MySQL orders by member index and
//          PostgreSQL, as text, by label): each side compares the canonical
//          UTF-8 bytes (MySQL: a binary string, PostgreSQL: COLLATE "C"), so
//          a case-insensitive MySQL collation, or PostgreSQL's locale, does
//          not decide which keys a chunk holds. The cost: no index serves
//          that comparison, each chunk scans the table, so such tables are
//          read in chunks 10 times larger.
//      Later key columns never bound a chunk, so their collations cannot
//      split a key set (a chunk may hold more than chunk_rows rows when many
//      share the first column's value). Float and JSON keys are not verified.
//   2. On the reference, in one read-only snapshot whose change-stream
//      position P is read with it: the boundary, then each row of the chunk
//      as (key's canonical values, MD5 of the canonical forms of the columns
//      SQL can render, the raw text of those midflight canonicalises: floats,
//      JSON). midflight folds the latter into the row's digest (canonical.h
//      RowDigest).
//   3. Once the flow has applied the reference through P, the same on the
//      other side. Rows are matched by canonical key (byte for byte, in
//      midflight): equal digests everywhere, the chunk is fine.
//   4. The keys that differ are only candidates (most are rows in flight):
//      each gets the exact per-key check of the same-engine verifier
//      (engines/mysql/verify.cc): reference snapshot S1 at P1, the other side
//      once it has applied P1, reference snapshot S2; a key is reported only
//      after two conclusive looks in which S1 and S2 agree and the other side
//      differs, and one agreeing look clears it. A key that keeps moving is
//      "not settled", never a difference.
//   5. For the keys that differ, each column's canonical form is read on both
//      sides to name the columns.
//
// A table a spec transform reshapes (CanonTable::reshape) follows the same
// steps, its reference rows read otherwise (RowReader): the chunk's
// boundaries and key conditions are on the source table's key (the target
// key is the same columns, renamed, never cast), the rows come raw in the
// reference's stream form, midflight applies the pairing's casting and the
// transform to each as the flow does (a row the filter drops is left out),
// and the other side's SQL hashes the results over a derived table of them
// (CanonSide::Shadow), typed as its target table: both digests come from one
// engine's canonical SQL. Only the reference's read changes, so the rechecks
// of step 4 and the repairs (built for the source table, applied through the
// flow's transform) are those of any table.

#include "engines/cross/cross_verify.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <xxhash.h>

#include "base/parse.h"
#include "pipeline/flow.h"

namespace midflight::cross {
namespace {

using Clock = std::chrono::steady_clock;
using verify::Difference;
using verify::Report;
using verify::TableResult;
using Row = CanonSide::Row;

constexpr size_t kKeysPerLookup = 200;
constexpr int64_t kTextChunkFactor = 10;

// The SQL of one table on one side.
class TableSql {
 public:
  // `from`: what the SQL reads (default: the table on this side).
  // `source_cast`: `t` is the source table of a transform that casts its
  // leading key column, read in chunks bounded on the target's key (after
  // the write switch): the bounds are the target's values, mapped here.
  TableSql(const CanonTable& t, const CanonSide& side, std::optional<std::string> from = std::nullopt,
           const Reshape::KeyCast* source_cast = nullptr)
      : t_(t), side_(side), source_cast_(source_cast) {
    // The target of a transform that casts its leading key column: the
    // chunk bounds are the source's values, mapped here (Reshape::KeyCast).
    if (t.reshape && !t.reversed && !t.reshape->key_casts.empty() && !t.reshape->key_casts[0].cast.empty())
      lead_cast_ = &t.reshape->key_casts[0];
    std::vector<std::string> pieces;
    for (size_t i = 0; i < t.columns.size(); ++i) {
      const CanonColumn& c = t.columns[i];
      if (CanonInMidflight(c.kind)) midflight_.push_back(static_cast<int>(i));
      else pieces.push_back(side.PieceExpr(Expr(c)));
    }
    std::vector<std::string> sel;
    for (int k : t.key) sel.push_back(side.CanonExpr(t.columns[k]));
    key_list_ = fmt::format("{}", fmt::join(sel, ", "));
    sel.push_back(side.RowMd5(pieces));
    for (int m : midflight_) sel.push_back(Expr(t.columns[m]));
    row_list_ = fmt::format("{}", fmt::join(sel, ", "));
    from_ = from ? *from : side.From(t);
  }

  // A column's canonical expression; NULL for one not compared.
  std::string Expr(const CanonColumn& c) const { return c.compared ? side_.CanonExpr(c) : std::string("NULL"); }
  const CanonColumn& lead() const { return t_.columns[t_.key[0]]; }
  const CanonSide& side() const { return side_; }
  size_t key_size() const { return t_.key.size(); }
  const std::vector<int>& midflight() const { return midflight_; }

  // Read without an index: each chunk scans the table (chunks are made larger).
  bool unordered_lead() const { return lead_cast_ && lead_cast_->cast == "int_to_text"; }

  Result<std::string> Range(const std::optional<std::string>& lower, const std::optional<std::string>& upper) const {
    if (source_cast_) return SourceRange(lower, upper);
    if (unordered_lead()) return IntOfTextRange(lower, upper);
    if (lead_cast_) {
      std::optional<std::string> l, u;
      if (lower) l = TargetBoundOf(*lead_cast_, *lower);
      if (upper) u = TargetBoundOf(*lead_cast_, *upper);
      return Bounded(l, u);
    }
    return Bounded(lower, upper);
  }
  Result<std::string> Bounded(const std::optional<std::string>& lower, const std::optional<std::string>& upper) const {
    std::string where;
    const std::string e = side_.RangeExpr(lead());
    if (lower) {
      ASSIGN_OR_RETURN(std::string l, side_.RangeLiteral(lead(), *lower));
      where = fmt::format("{} > {}", e, l);
    }
    if (upper) {
      ASSIGN_OR_RETURN(std::string u, side_.RangeLiteral(lead(), *upper));
      where += fmt::format("{}{} <= {}", where.empty() ? "" : " AND ", e, u);
    }
    return where.empty() ? std::string("1 = 1") : where;
  }
  // int_to_text: the text keys whose integer lies in the source's range
  // (text orders otherwise); a key that holds no integer cannot be in any
  // source range and is read with the first chunk, so an extra row is found.
  Result<std::string> IntOfTextRange(const std::optional<std::string>& lower,
                                     const std::optional<std::string>& upper) const {
    const std::string e = side_.IntOfTextExpr(lead());
    auto number = [&](const std::string& v) -> Result<std::string> {
      if (v.empty() || v.find_first_not_of("-0123456789") != std::string::npos || v.find('-', 1) != std::string::npos)
        return InvalidArgument(
            fmt::format("table {}: chunk bound '{}' of a key cast int_to_text is not an integer", t_.id.ToString(), v));
      return v;
    };
    std::string where;
    if (lower) {
      ASSIGN_OR_RETURN(std::string l, number(*lower));
      where = fmt::format("{} > {}", e, l);
    }
    if (upper) {
      ASSIGN_OR_RETURN(std::string u, number(*upper));
      where += where.empty() ? fmt::format("({0} IS NULL OR {0} <= {1})", e, u) : fmt::format(" AND {} <= {}", e, u);
    }
    return where.empty() ? std::string("1 = 1") : where;
  }
  // Bounds on the target's key read on the source: timestamp_to_timestamptz
  // shifted back by the zone; int_to_text compared as the text of the
  // source's integer, byte for byte as the target's text key is ranged.
  Result<std::string> SourceRange(const std::optional<std::string>& lower,
                                  const std::optional<std::string>& upper) const {
    if (source_cast_->cast != "int_to_text") {
      std::optional<std::string> l, u;
      if (lower) l = SourceBoundOf(*source_cast_, *lower);
      if (upper) u = SourceBoundOf(*source_cast_, *upper);
      return Bounded(l, u);
    }
    CanonColumn text = lead();
    text.kind = Canon::kText;
    const std::string e = side_.TextOfIntExpr(lead());
    std::string where;
    if (lower) {
      ASSIGN_OR_RETURN(std::string l, side_.RangeLiteral(text, *lower));
      where = fmt::format("{} > {}", e, l);
    }
    if (upper) {
      ASSIGN_OR_RETURN(std::string u, side_.RangeLiteral(text, *upper));
      where += fmt::format("{}{} <= {}", where.empty() ? "" : " AND ", e, u);
    }
    return where.empty() ? std::string("1 = 1") : where;
  }
  Result<std::string> Boundary(const std::optional<std::string>& lower, int64_t rows) const {
    ASSIGN_OR_RETURN(std::string where, Range(lower, std::nullopt));
    return fmt::format("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT 1 OFFSET {}", side_.CanonExpr(lead()), from_,
                       where, side_.RangeExpr(lead()), std::max<int64_t>(rows - 1, 0));
  }
  Result<std::string> Rows(const std::optional<std::string>& lower, const std::optional<std::string>& upper) const {
    ASSIGN_OR_RETURN(std::string where, Range(lower, upper));
    return fmt::format("SELECT {} FROM {} WHERE {}", row_list_, from_, where);
  }
  Result<std::string> Where(const std::vector<const CanonKey*>& keys) const {
    std::vector<std::string> terms;
    for (const CanonKey* k : keys) {
      std::vector<std::string> eq;
      for (size_t i = 0; i < t_.key.size(); ++i) {
        const CanonColumn& c = t_.columns[t_.key[i]];
        ASSIGN_OR_RETURN(std::string lit, side_.KeyLiteral(c, (*k)[i]));
        // The column itself, so its index serves (a collation may match more
        // than the key: the caller keeps only byte-exact matches).
        eq.push_back(fmt::format("{} = {}", side_.Ident(c), lit));
      }
      terms.push_back(fmt::format("({})", fmt::join(eq, " AND ")));
    }
    return fmt::format("({})", fmt::join(terms, " OR "));
  }
  Result<std::string> Lookup(const std::vector<const CanonKey*>& keys) const {
    ASSIGN_OR_RETURN(std::string where, Where(keys));
    return fmt::format("SELECT {} FROM {} WHERE {}", row_list_, from_, where);
  }
  Result<std::string> Columns(const std::vector<const CanonKey*>& keys) const {
    ASSIGN_OR_RETURN(std::string where, Where(keys));
    std::vector<std::string> cols;
    for (const auto& c : t_.columns) cols.push_back(Expr(c));
    return fmt::format("SELECT {}, {} FROM {} WHERE {}", key_list_, fmt::join(cols, ", "), from_, where);
  }
  // Every row (a Shadow holds only the rows asked for).
  std::string All() const { return fmt::format("SELECT {} FROM {}", row_list_, from_); }
  std::string AllColumns() const {
    std::vector<std::string> cols;
    for (const auto& c : t_.columns) cols.push_back(Expr(c));
    return fmt::format("SELECT {}, {} FROM {}", key_list_, fmt::join(cols, ", "), from_);
  }
  // The table's rows in its stream form (Reshape's input), by range or by keys.
  Result<std::string> StreamRows(const std::optional<std::string>& lower,
                                 const std::optional<std::string>& upper) const {
    ASSIGN_OR_RETURN(std::string list, side_.StreamList(t_));
    ASSIGN_OR_RETURN(std::string where, Range(lower, upper));
    return fmt::format("SELECT {} FROM {} WHERE {}", list, from_, where);
  }
  Result<std::string> StreamRows(const std::vector<const CanonKey*>& keys) const {
    ASSIGN_OR_RETURN(std::string list, side_.StreamList(t_));
    ASSIGN_OR_RETURN(std::string where, Where(keys));
    return fmt::format("SELECT {} FROM {} WHERE {}", list, from_, where);
  }

 private:
  const CanonTable& t_;
  const CanonSide& side_;
  const Reshape::KeyCast* source_cast_ = nullptr;
  const Reshape::KeyCast* lead_cast_ = nullptr;
  std::vector<int> midflight_;
  std::string key_list_, row_list_, from_;
};

// key -> digest of the rows of one read.
using Digests = std::map<CanonKey, std::string>;

Status AddRows(const CanonTable& t, const TableSql& sql, const std::vector<Row>& rows, Digests* out) {
  const size_t n = sql.key_size();
  for (const Row& r : rows) {
    CanonKey key;
    for (size_t i = 0; i < n; ++i) key.push_back(r[i].value_or(""));
    std::vector<std::optional<std::string>> mid;
    for (size_t m = 0; m < sql.midflight().size(); ++m) {
      const CanonColumn& c = t.columns[sql.midflight()[m]];
      auto v = sql.side().Canonical(c, r[n + 1 + m]);
      if (!v.ok()) return v.status().WithContext(fmt::format("table {} column {}", t.id.ToString(), c.my.name));
      mid.push_back(std::move(*v));
    }
    (*out)[std::move(key)] = RowDigest(r[n].value_or(""), mid);
  }
  return Status::Ok();
}

// How one side's rows of a table are read for the comparison. A table both
// sides hold alike: that side's SQL over it. A transformed table on the
// reference (CanonTable::reshape): its source rows, read raw in the chunk's
// range or by key (the source's key columns carry the target key's values),
// reshaped in midflight, then hashed by the other side's SQL over a Shadow
// of them, so the result reads as the other side's (sql()).
class RowReader {
 public:
  // `shadow_on`: for the reference, the other side (a transformed table is
  // reshaped); null for the other side, which holds the table as it is.
  RowReader(const CanonTable& t, CanonSide& side, CanonSide* shadow_on)
      : t_(t),
        side_(side),
        other_(shadow_on ? *shadow_on : side),
        shaping_(shadow_on && t.reshape),
        own_(shaping_ ? t.reshape->source : t, side, std::nullopt, shaping_ && t.reversed ? LeadCast(t) : nullptr),
        shaped_(t, other_) {}

  const TableSql& bounds() const { return own_; }  // chunk boundaries, key conditions
  const TableSql& sql() const { return shaping_ ? shaped_ : own_; }  // how its rows read (AddRows)

  Result<std::vector<Row>> Rows(const std::optional<std::string>& lower, const std::optional<std::string>& upper) {
    if (!shaping_) return Select(side_, own_.Rows(lower, upper));
    return Shaped(own_.StreamRows(lower, upper), false);
  }
  Result<std::vector<Row>> Lookup(const std::vector<const CanonKey*>& keys) {
    if (!shaping_) return Select(side_, own_.Lookup(keys));
    return ShapedByKeys(keys, false);
  }
  Result<std::vector<Row>> Columns(const std::vector<const CanonKey*>& keys) {
    if (!shaping_) return Select(side_, own_.Columns(keys));
    return ShapedByKeys(keys, true);
  }
  // Chunks scan the other side's table (no index serves its ranges).
  bool unordered() const { return own_.unordered_lead(); }

 private:
  static Result<std::vector<Row>> Select(CanonSide& side, const Result<std::string>& sql) {
    if (!sql.ok()) return sql.status();
    auto r = side.Select(*sql);
    if (!r.ok()) return r.status().WithContext(std::string(side.label()));
    return r;
  }

  static const Reshape::KeyCast* LeadCast(const CanonTable& t) {
    const auto& casts = t.reshape->key_casts;
    return casts.empty() || casts[0].cast.empty() ? nullptr : &casts[0];
  }

  // `keys` are the target's: the source rows are read by the source keys
  // they map back to (a key no source key casts to has no row here).
  Result<std::vector<Row>> ShapedByKeys(const std::vector<const CanonKey*>& keys, bool columns) {
    if (t_.reshape->key_casts.empty()) return Shaped(own_.StreamRows(keys), columns);
    std::vector<CanonKey> mapped;
    for (const CanonKey* k : keys)
      if (auto s = SourceKeyOf(*t_.reshape, *k)) mapped.push_back(std::move(*s));
    if (mapped.empty()) return std::vector<Row>{};
    std::vector<const CanonKey*> ptrs;
    for (const CanonKey& k : mapped) ptrs.push_back(&k);
    return Shaped(own_.StreamRows(ptrs), columns);
  }

  Result<std::vector<Row>> Shaped(const Result<std::string>& raw_sql, bool columns) {
    ASSIGN_OR_RETURN(std::vector<Row> raw, Select(side_, raw_sql));
    std::vector<std::vector<Datum>> rows;
    for (const Row& r : raw) {
      auto shaped = t_.reshape->row(r);
      if (!shaped.ok()) return shaped.status().WithContext(std::string(side_.label()));
      if (*shaped) rows.push_back(std::move(**shaped));
    }
    if (rows.empty()) return std::vector<Row>{};
    auto from = other_.Shadow(t_, rows);
    if (!from.ok()) return from.status();
    const TableSql over(t_, other_, *from);
    return Select(other_, columns ? over.AllColumns() : over.All());
  }

  const CanonTable& t_;
  CanonSide& side_;
  CanonSide& other_;
  const bool shaping_;
  const TableSql own_, shaped_;
};

std::string Display(const CanonTable& t, const CanonKey& key) {
  std::vector<std::string> names, values;
  for (size_t i = 0; i < t.key.size() && i < key.size(); ++i) {
    const CanonColumn& c = t.columns[t.key[i]];
    names.push_back(c.my.name);
    std::string v = key[i];
    if (c.kind == Canon::kTimestamp) {
      int64_t us = 0;
      if (ParseI64(v, &us)) v = MicrosToTimestampText(us);
    }
    if (c.kind == Canon::kBytes) v = "0x" + v;
    values.push_back(v);
  }
  return fmt::format("({})=({})", fmt::join(names, ", "), fmt::join(values, ", "));
}

class Verifier {
 public:
  explicit Verifier(const CrossVerifyJob& job) : job_(job) {}

  bool behind() const { return !behind_.empty(); }
  const std::string& behind_reason() const { return behind_; }

  // Verifies `t` from `lower`; calls `after_chunk` after each chunk.
  Status VerifyTable(const CanonTable& t, std::optional<std::string> lower, TableResult* out,
                     const std::function<void(const std::optional<std::string>&)>& after_chunk) {
    // Whose rows are reshaped: the reference's (the source before the
    // switch), or the other side's (the source after it: CanonTable::reversed).
    RowReader ref_sql(t, *job_.reference, t.reversed ? nullptr : job_.other),
        other_sql(t, *job_.other, t.reversed ? job_.reference : nullptr);
    const int64_t rows = CanonNativeOrder(ref_sql.bounds().lead().kind) && !other_sql.unordered()
                             ? job_.chunk_rows
                             : job_.chunk_rows * kTextChunkFactor;
    for (;;) {
      if (Stopped()) return Cancelled("verify stopped");
      const Clock::time_point start = Clock::now();
      verify::ChunkFindings chunk;
      std::optional<std::string> upper;
      const bool list_keys = out->differences.size() < static_cast<size_t>(job_.max_keys_per_table);
      Status st = Chunk(t, ref_sql, other_sql, lower, rows, list_keys, &upper, &chunk);
      if (!st.ok())
        return st.WithContext(fmt::format("verify {} chunk above {}", t.id.ToString(), lower.value_or("the start")));
      verify::AddChunk(chunk, static_cast<size_t>(job_.max_keys_per_table), out);
      if (behind()) return Status::Ok();
      after_chunk(upper);
      RETURN_IF_ERROR(Pace(chunk.rows_read, start));
      if (!upper) return Status::Ok();
      lower = std::move(upper);
    }
  }

 private:
  bool Stopped() const { return job_.stop && job_.stop->load(); }

  bool WaitOrStopped(Clock::duration d) const {
    const Clock::time_point until = Clock::now() + d;
    for (;;) {
      if (Stopped()) return true;
      const Clock::time_point now = Clock::now();
      if (now >= until) return false;
      std::this_thread::sleep_for(std::min<Clock::duration>(until - now, std::chrono::milliseconds(50)));
    }
  }

  template <typename Fn>
  Status InSnapshot(const Fn& fn) {
    ASSIGN_OR_RETURN(uint64_t pos, job_.reference->BeginSnapshot());
    Status st = fn(pos);
    Status end = job_.reference->EndSnapshot(st.ok());
    return st.ok() ? end : st;
  }

  Status WaitForOther(uint64_t position, bool* reached) {
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
                              job_.reference->FormatPosition(applied), job_.reference->FormatPosition(position),
                              job_.wait_timeout_s);
        return Status::Ok();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  Result<std::vector<Row>> On(CanonSide& side, const Result<std::string>& sql) {
    if (!sql.ok()) return sql.status();
    auto r = side.Select(*sql);
    if (!r.ok()) return r.status().WithContext(std::string(side.label()));
    return r;
  }

  // Steps 1-4 for the chunk above `lower`; sets *upper (none: the last chunk).
  Status Chunk(const CanonTable& t, RowReader& ref_sql, RowReader& other_sql,
               const std::optional<std::string>& lower, int64_t rows, bool list_keys, std::optional<std::string>* upper,
               verify::ChunkFindings* out) {
    uint64_t position = 0;
    std::vector<Row> ref_rows;
    RETURN_IF_ERROR(InSnapshot([&](uint64_t at) -> Status {
      position = at;
      ASSIGN_OR_RETURN(std::vector<Row> b, On(*job_.reference, ref_sql.bounds().Boundary(lower, rows)));
      if (!b.empty() && b[0][0]) *upper = *b[0][0];
      ASSIGN_OR_RETURN(ref_rows, ref_sql.Rows(lower, *upper));
      return Status::Ok();
    }));
    out->rows = static_cast<int64_t>(ref_rows.size());
    out->rows_read = out->rows;
    bool reached = false;
    RETURN_IF_ERROR(WaitForOther(position, &reached));
    const std::string range = fmt::format("chunk {} .. {}", lower.value_or("(start)"), upper->value_or("(end)"));
    if (!reached) {
      out->unsettled.push_back(fmt::format("{}: not settled: {}", range, behind_));
      return Status::Ok();
    }
    ASSIGN_OR_RETURN(std::vector<Row> other_rows, other_sql.Rows(lower, *upper));
    Digests ref, other;
    RETURN_IF_ERROR(AddRows(t, ref_sql.sql(), ref_rows, &ref));
    RETURN_IF_ERROR(AddRows(t, other_sql.sql(), other_rows, &other));
    std::vector<CanonKey> candidates;
    for (const auto& [k, d] : ref) {
      auto it = other.find(k);
      if (it == other.end() || it->second != d) candidates.push_back(k);
    }
    for (const auto& [k, d] : other)
      if (!ref.count(k)) candidates.push_back(k);
    if (candidates.empty()) return Status::Ok();
    out->differed = true;
    if (!list_keys) {
      out->not_listed = true;
      return Status::Ok();
    }
    out->keys_rechecked = static_cast<int64_t>(candidates.size());
    return CheckKeys(t, ref_sql, other_sql, candidates, out);
  }

  // The digest of each key on `side` (nullopt: absent), in `keys` order.
  Status Look(const CanonTable& t, RowReader& sql, const std::vector<const CanonKey*>& keys,
              std::vector<std::optional<std::string>>* out) {
    out->assign(keys.size(), std::nullopt);
    for (size_t begin = 0; begin < keys.size(); begin += kKeysPerLookup) {
      const size_t end = std::min(keys.size(), begin + kKeysPerLookup);
      std::vector<const CanonKey*> part(keys.begin() + static_cast<std::ptrdiff_t>(begin),
                                        keys.begin() + static_cast<std::ptrdiff_t>(end));
      ASSIGN_OR_RETURN(std::vector<Row> rows, sql.Lookup(part));
      Digests found;
      RETURN_IF_ERROR(AddRows(t, sql.sql(), rows, &found));
      for (size_t i = begin; i < end; ++i) {
        auto it = found.find(*keys[i]);  // byte-exact: a collation's match of another key does not count
        if (it != found.end()) (*out)[i] = it->second;
      }
    }
    return Status::Ok();
  }

  static std::string KindOf(const std::optional<std::string>& ref, const std::optional<std::string>& other) {
    if (!other) return "missing on target";
    if (!ref) return "extra on target";
    return "differs";
  }

  Status CheckKeys(const CanonTable& t, RowReader& ref_sql, RowReader& other_sql,
                   const std::vector<CanonKey>& keys, verify::ChunkFindings* out) {
    struct Pending {
      const CanonKey* key;
      int differing = 0;
    };
    std::vector<Pending> pending;
    for (const CanonKey& k : keys) pending.push_back({&k});
    std::vector<const CanonKey*> differs;
    auto pause = std::chrono::milliseconds(10);
    for (int attempt = 0; attempt < job_.max_key_checks && !pending.empty() && !behind(); ++attempt) {
      if (attempt > 0) {
        if (WaitOrStopped(pause)) return Cancelled("verify stopped");
        pause = std::min(pause * 2, std::chrono::milliseconds(200));
      }
      std::vector<const CanonKey*> look;
      for (const Pending& k : pending) look.push_back(k.key);
      std::vector<std::optional<std::string>> first, other, second;
      uint64_t position = 0;
      RETURN_IF_ERROR(InSnapshot([&](uint64_t at) -> Status {
        position = at;
        return Look(t, ref_sql, look, &first);
      }));
      bool reached = false;
      RETURN_IF_ERROR(WaitForOther(position, &reached));
      if (!reached) break;
      RETURN_IF_ERROR(Look(t, other_sql, look, &other));
      const uint64_t received = job_.received ? job_.received() : 0;
      uint64_t position2 = 0;
      RETURN_IF_ERROR(InSnapshot([&](uint64_t at) -> Status {
        position2 = at;
        return Look(t, ref_sql, look, &second);
      }));
      out->rows_read += 2 * static_cast<int64_t>(look.size());
      // Received past S2: a transaction the other side may hold was logged
      // but not yet visible on the reference; this look proves nothing.
      const bool conclusive = received <= position2;
      std::vector<Pending> again;
      for (size_t i = 0; i < pending.size(); ++i) {
        if (first[i] != second[i] || !conclusive) {
          again.push_back(pending[i]);
          continue;
        }
        if (first[i] == other[i]) continue;
        if (++pending[i].differing < 2) {
          again.push_back(pending[i]);
          continue;
        }
        const CanonKey& key = *pending[i].key;
        Difference d{t.id, {}, Display(t, key), KindOf(first[i], other[i])};
        for (const auto& v : key) d.key.push_back(v);
        out->differences.push_back(std::move(d));
        if (first[i] && other[i]) differs.push_back(&key);
      }
      pending = std::move(again);
    }
    for (const Pending& k : pending)
      out->unsettled.push_back(Display(t, *k.key) + (behind() ? ": not settled: " + behind_
                                                               : ": changed on every look, not settled"));
    if (!differs.empty()) RETURN_IF_ERROR(NameColumns(t, ref_sql, other_sql, differs, out));
    return Status::Ok();
  }

  Status NameColumns(const CanonTable& t, RowReader& ref_sql, RowReader& other_sql,
                     const std::vector<const CanonKey*>& keys, verify::ChunkFindings* out) {
    const size_t n = t.key.size();
    using Cols = std::map<CanonKey, std::vector<std::optional<std::string>>>;
    auto read = [&](RowReader& sql, Cols* into) -> Status {
      for (size_t begin = 0; begin < keys.size(); begin += kKeysPerLookup) {
        std::vector<const CanonKey*> part(
            keys.begin() + static_cast<std::ptrdiff_t>(begin),
            keys.begin() + static_cast<std::ptrdiff_t>(std::min(keys.size(), begin + kKeysPerLookup)));
        ASSIGN_OR_RETURN(std::vector<Row> rows, sql.Columns(part));
        for (const Row& r : rows) {
          CanonKey key;
          for (size_t i = 0; i < n; ++i) key.push_back(r[i].value_or(""));
          std::vector<std::optional<std::string>> vals;
          for (size_t c = 0; c < t.columns.size(); ++c) {
            auto v = sql.sql().side().Canonical(t.columns[c], r[n + c]);
            vals.push_back(v.ok() ? *v : std::optional<std::string>("invalid: " + v.status().message()));
          }
          (*into)[std::move(key)] = std::move(vals);
        }
      }
      return Status::Ok();
    };
    Cols ref, other;
    RETURN_IF_ERROR(read(ref_sql, &ref));
    RETURN_IF_ERROR(read(other_sql, &other));
    for (auto& d : out->differences) {
      if (d.kind != "differs") continue;
      CanonKey key;
      for (const auto& v : d.key) key.push_back(v.value_or(""));
      auto a = ref.find(key), b = other.find(key);
      if (a == ref.end() || b == other.end()) continue;
      d.columns.clear();
      for (size_t c = 0; c < t.columns.size(); ++c)
        if (a->second[c] != b->second[c]) d.columns.push_back(t.columns[c].my.name);
    }
    return Status::Ok();
  }

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

  const CrossVerifyJob& job_;
  std::string behind_;
};

std::string Line(const TableResult& tr, const Difference& d) {
  std::string what = d.kind;
  if (!d.columns.empty()) what += fmt::format(" (columns {})", fmt::join(d.columns, ", "));
  return fmt::format("{} {}: {}", tr.table.ToString(), d.key_display, what);
}

}  // namespace

namespace {
// Whether `v` is the canonical decimal text of an integer the column `c`
// holds (its type's width and sign; 8 bytes signed when unknown).
bool CanonIntFits(const ColumnType& c, const std::string& v) {
  const bool neg = !v.empty() && v[0] == '-';
  const std::string digits = neg ? v.substr(1) : v;
  if (digits.empty() || digits.size() > 20 || digits.find_first_not_of("0123456789") != std::string::npos) return false;
  if ((digits.size() > 1 && digits[0] == '0') || (neg && digits == "0")) return false;
  unsigned __int128 x = 0;
  for (char ch : digits) x = x * 10 + static_cast<unsigned>(ch - '0');
  const int width = c.kind == TypeKind::kInt && c.width > 0 && c.width <= 8 ? c.width : 8;
  const bool is_signed = c.kind != TypeKind::kInt || c.is_signed;
  const unsigned __int128 span = static_cast<unsigned __int128>(1) << (8 * width - (is_signed ? 1 : 0));
  if (neg) return is_signed && x <= span;
  return x < span;
}
}  // namespace

std::optional<CanonKey> SourceKeyOf(const Reshape& r, const CanonKey& target_key) {
  CanonKey out = target_key;
  for (size_t i = 0; i < r.key_casts.size() && i < out.size(); ++i) {
    const Reshape::KeyCast& kc = r.key_casts[i];
    if (kc.cast == "int_to_text") {
      const CanonColumn& c = r.source.columns[static_cast<size_t>(r.source.key[i])];
      if (!CanonIntFits(c.pg.type.kind == TypeKind::kInt ? c.pg.type : c.my.type, out[i])) return std::nullopt;
    } else if (kc.cast == "timestamp_to_timestamptz") {
      int64_t us = 0;
      if (out[i] == "infinity" || out[i] == "-infinity") continue;
      if (!ParseI64(out[i], &us)) return std::nullopt;
      out[i] = std::to_string(us + int64_t{kc.zone_minutes} * 60 * 1000000);
    } else if (!kc.cast.empty()) {
      return std::nullopt;
    }
  }
  return out;
}

std::string SourceBoundOf(const Reshape::KeyCast& cast, const std::string& target_canon) {
  int64_t us = 0;
  if (cast.cast == "timestamp_to_timestamptz" && ParseI64(target_canon, &us))
    return std::to_string(us + int64_t{cast.zone_minutes} * 60 * 1000000);
  return target_canon;
}

std::string TargetBoundOf(const Reshape::KeyCast& cast, const std::string& source_canon) {
  int64_t us = 0;
  if (cast.cast == "timestamp_to_timestamptz" && ParseI64(source_canon, &us))
    return std::to_string(us - int64_t{cast.zone_minutes} * 60 * 1000000);
  return source_canon;
}

Result<CrossVerified> CrossVerifyReport(const CrossVerifyJob& job) {
  if (!job.reference || !job.other || !job.applied_through)
    return InvalidArgument("verify: reference, other side and applied_through are required");
  if (job.chunk_rows < 1 || job.max_key_checks < 1 || job.max_keys_per_table < 1 || job.wait_timeout_s < 1)
    return InvalidArgument("verify: chunk_rows, max_key_checks, max_keys_per_table and wait_timeout_s must be at least 1");
  const Clock::time_point start = Clock::now();
  RETURN_IF_ERROR(job.reference->Connect().WithContext("verify"));
  RETURN_IF_ERROR(job.other->Connect().WithContext("verify"));
  Verifier verifier(job);
  Report report;
  const ReplicationOps::VerifyCursor& from = job.run.start_after;
  bool started = from.table.empty();
  for (const auto& t : job.tables) {
    if (job.stop && job.stop->load()) return Cancelled("verify stopped");
    const std::string name = t.id.ToString();
    std::optional<std::string> lower;
    if (!started) {
      if (name != from.table) continue;  // verified before the resume point
      started = true;
      if (from.key.empty()) continue;  // that table was done
      if (from.key[0]) lower = *from.key[0];
    }
    TableResult result;
    result.table = t.id;
    result.skipped = t.skipped;
    if (result.skipped.empty() && verifier.behind()) result.skipped = "not reached: " + verifier.behind_reason();
    auto progress = [&](bool done, const std::optional<std::string>& through) {
      if (!job.run.on_progress) return;
      ReplicationOps::VerifyProgress p;
      p.table = name;
      p.table_done = done;
      p.done_through.table = name;
      if (!done && through) p.done_through.key = {*through};
      p.table_rows = result.rows;
      p.table_rows_estimate = std::max(t.table ? t.table->estimated_rows : 0, result.rows);
      for (const auto& d : result.differences) p.lines.push_back(Line(result, d));
      for (const auto& u : result.unsettled) p.lines.push_back(fmt::format("{} {}", name, u));
      // A table that cannot be verified (no key, a cast key) is named in the
      // report and not counted as a difference, as the foreground verify
      // and the PostgreSQL verifier do; one not reached (replication behind) is.
      if (t.skipped.empty() && !result.skipped.empty())
        p.lines.push_back(fmt::format("{}: not verified: {}", name, result.skipped));
      job.run.on_progress(p);
    };
    if (result.skipped.empty())
      RETURN_IF_ERROR(verifier.VerifyTable(t, lower, &result, [&](const std::optional<std::string>& upper) {
        if (upper) progress(false, upper);
      }));
    progress(true, std::nullopt);
    report.rows += result.rows;
    report.tables.push_back(std::move(result));
  }
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();

  CrossVerified out;
  for (const auto& tr : report.tables) {
    std::vector<CanonKey> repair_keys;
    for (const auto& d : tr.differences) {
      CanonKey k;
      for (const auto& v : d.key) k.push_back(v.value_or(""));
      repair_keys.push_back(std::move(k));
    }
    if (!job.repair || repair_keys.empty()) continue;
    for (const auto& t : job.tables) {
      if (t.id != tr.table) continue;
      // A transformed table is repaired as its source table: the change goes
      // through the flow's transform (a row its filter drops becomes a delete),
      // by the source key its target key maps back to (a cast key column). A
      // key no source key casts to cannot be reached through the transform.
      if (t.reshape && !t.reversed && !t.reshape->key_casts.empty()) {
        std::vector<CanonKey> mapped;
        for (const CanonKey& k : repair_keys) {
          if (auto s = SourceKeyOf(*t.reshape, k)) {
            mapped.push_back(std::move(*s));
            continue;
          }
          out.not_repaired.push_back(fmt::format(
              "{} {}: not repaired: no source key casts to it ({}), so the flow cannot delete it; delete it on the "
              "target",
              tr.table.ToString(), Display(t, k), t.reshape->where));
        }
        repair_keys = std::move(mapped);
        if (repair_keys.empty()) continue;
      }
      ASSIGN_OR_RETURN(std::vector<Change> repairs,
                       job.reference->Repairs(t.reshape && !t.reversed ? t.reshape->source : t, repair_keys));
      for (auto& c : repairs) out.repairs.push_back(std::move(c));
    }
  }
  out.report = std::move(report);
  return out;
}

std::vector<std::string> CrossLines(const TableResult& tr) {
  std::vector<std::string> lines;
  if (!tr.skipped.empty()) lines.push_back(fmt::format("{}: not verified: {}", tr.table.ToString(), tr.skipped));
  for (const auto& d : tr.differences) lines.push_back(Line(tr, d));
  for (const auto& u : tr.unsettled) lines.push_back(fmt::format("{} {}", tr.table.ToString(), u));
  if (tr.truncated) lines.push_back(fmt::format("{}: more differences not listed", tr.table.ToString()));
  return lines;
}

Result<ReplicationOps::VerifyOutcome> CrossVerify(const CrossVerifyJob& job) {
  ASSIGN_OR_RETURN(CrossVerified verified, CrossVerifyReport(job));
  ReplicationOps::VerifyOutcome out;
  out.clean = verified.report.clean();
  out.summary = verified.report.Summary();
  out.json = verified.report.ToJson();
  for (const auto& tr : verified.report.tables)
    for (auto& line : CrossLines(tr)) out.lines.push_back(std::move(line));
  for (auto& line : verified.not_repaired) out.lines.push_back(std::move(line));
  out.repairs = std::move(verified.repairs);
  return out;
}

Result<std::vector<TableComparison>> CrossCompare(CanonSide& source, CanonSide& target,
                                                  const std::vector<CanonTable>& tables, int64_t chunk_rows) {
  RETURN_IF_ERROR(source.Connect());
  RETURN_IF_ERROR(target.Connect());
  std::vector<TableComparison> out;
  for (const auto& t : tables) {
    TableComparison c;
    c.table = t.id.ToString();
    if (t.transformed && !t.reshape) {
      // Another shape on each side by design: named, not counted.
      c.skipped = "not compared: " + t.skipped;
      out.push_back(std::move(c));
      continue;
    }
    if (!t.skipped.empty()) {
      // Not equal: compare proves nothing of it (the line says why).
      c.source_hash = "(not compared: " + t.skipped + ")";
      c.target_hash = "(not compared)";
      out.push_back(std::move(c));
      continue;
    }
    RowReader ssql(t, source, &target), tsql(t, target, nullptr);
    const int64_t rows =
        CanonNativeOrder(ssql.bounds().lead().kind) && !tsql.unordered() ? chunk_rows : chunk_rows * kTextChunkFactor;
    // Order-independent: the sum and the XOR of each row's (key, digest) hash.
    uint64_t sum[2] = {0, 0}, xr[2] = {0, 0};
    auto fold = [](const Digests& d, uint64_t* s, uint64_t* x) {
      for (const auto& [k, v] : d) {
        std::string in;
        for (const auto& part : k) in += fmt::format("{}:{}", part.size(), part);
        in += v;
        const uint64_t h = XXH3_64bits(in.data(), in.size());
        *s += h;
        *x ^= h;
      }
    };
    std::optional<std::string> lower;
    for (;;) {
      std::optional<std::string> upper;
      ASSIGN_OR_RETURN(std::string bq, ssql.bounds().Boundary(lower, rows));
      auto b = source.Select(bq);
      if (!b.ok()) return b.status().WithContext("source " + c.table);
      if (!b->empty() && (*b)[0][0]) upper = *(*b)[0][0];
      auto sr = ssql.Rows(lower, upper);
      if (!sr.ok()) return sr.status().WithContext("source " + c.table);
      auto tr = tsql.Rows(lower, upper);
      if (!tr.ok()) return tr.status().WithContext("target " + c.table);
      Digests sd, td;
      RETURN_IF_ERROR(AddRows(t, ssql.sql(), *sr, &sd).WithContext("source"));
      RETURN_IF_ERROR(AddRows(t, tsql.sql(), *tr, &td).WithContext("target"));
      c.source_rows += static_cast<int64_t>(sr->size());
      c.target_rows += static_cast<int64_t>(tr->size());
      fold(sd, &sum[0], &xr[0]);
      fold(td, &sum[1], &xr[1]);
      if (!upper) break;
      lower = std::move(upper);
    }
    c.source_hash = fmt::format("{:016x}{:016x}", sum[0], xr[0]);
    c.target_hash = fmt::format("{:016x}{:016x}", sum[1], xr[1]);
    out.push_back(std::move(c));
  }
  return out;
}

CrossVerifyJob JobAlong(Flow& flow, CanonSide& reference, CanonSide& other, std::vector<CanonTable> tables,
                        bool repair, std::function<int64_t()> rows_per_s, const std::atomic<bool>* stop,
                        int64_t chunk_rows, const ReplicationOps::VerifyRun& run) {
  CrossVerifyJob job;
  job.reference = &reference;
  job.other = &other;
  job.tables = std::move(tables);
  job.applied_through = [&flow] {
    flow.Poke();
    return flow.AppliedThrough();
  };
  job.received = [&flow] { return flow.metrics().received; };
  job.rows_per_s = std::move(rows_per_s);
  job.stop = stop;
  job.repair = repair;
  job.chunk_rows = chunk_rows;
  job.run = run;
  return job;
}

Result<ReplicationOps::VerifyOutcome> CrossVerifyAlong(Flow& flow, CanonSide& reference, CanonSide& other,
                                                       std::vector<CanonTable> tables, bool repair,
                                                       std::function<int64_t()> rows_per_s,
                                                       const std::atomic<bool>* stop, int64_t chunk_rows,
                                                       const ReplicationOps::VerifyRun& run) {
  return CrossVerify(
      JobAlong(flow, reference, other, std::move(tables), repair, std::move(rows_per_s), stop, chunk_rows, run));
}

}  // namespace midflight::cross
