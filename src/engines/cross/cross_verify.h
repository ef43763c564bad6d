// Verification across engines (`midflight verify`, its background job and
// continuous passes, and `midflight compare`) with the guarantees of the
// same-engine verifiers (engines/mysql/verify.h): chunked by key range, every
// row hashed by each server in SQL over a canonical form of its values
// (canonical.h), only rows that really differ reported (never one in flight),
// `--repair` through the apply path. A table a spec transform reshapes is
// verified too: the reference's rows are reshaped by midflight and hashed by
// the other side's SQL (Reshape, CanonSide::Shadow).
//
// Engine-neutral: a pair engine supplies one CanonSide per engine (its
// connection, its dialect of the canonical SQL, and, for the reference, a
// snapshot with its change-stream position and the repair rows in the form
// its change stream gives) and the CanonTables (each column's canonical kind
// from its casting table). MySQL -> PostgreSQL supplies MySQL as the
// reference and PostgreSQL as the other side (my_to_pg.cc); PostgreSQL ->
// MySQL supplies the same two sides the other way round (pg_to_my.cc), the
// PostgreSQL side's repairs in pgoutput's text forms.
//
// Threads: one verification at a time per CanonSide pair, on the caller's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/status.h"
#include "control/compare.h"
#include "engines/cross/canonical.h"
#include "engines/engine.h"
#include "engines/verify_report.h"

namespace midflight::cross {

// A key's canonical values, in key order (key columns are NOT NULL).
using CanonKey = std::vector<std::string>;

struct Reshape;

// One table as both sides hold it.
struct CanonTable {
  TablePtr table;                    // the reference's schema (repairs are built for it)
  TableId id;                        // as reported (the reference's name)
  TableId my_id, pg_id;              // its name on each side
  std::vector<CanonColumn> columns;  // every column, the same order on both sides
  std::vector<int> key;              // indexes into columns
  std::string skipped;               // why it cannot be verified ("" when it can)
  // Skipped because a spec transform reshapes its rows on the way: `compare`
  // names it without counting it either way (as PostgreSQL -> PostgreSQL
  // does); a table skipped for any other reason makes compare not equal.
  bool transformed = false;
  // Set for a transformed table that is verified (core/transform.h): then
  // `columns` and `key` are the target's table (renamed, cast, computed
  // columns), which only the other side holds. The reference's rows are read
  // in its stream form from `reshape->source` (its key bounds the chunks and
  // selects keys: the target key's columns are the source's, renamed, so
  // their canonical values and order are the same), reshaped in midflight as
  // the flow reshapes them, and hashed by the other side's SQL over those
  // rows (CanonSide::Shadow), so both hashes come from one engine's SQL.
  std::shared_ptr<const Reshape> reshape;
  // After the write switch (the target the reference, reverse replication
  // carrying its changes back through the inverse transform): `reshape`
  // reads the OTHER side's rows, the source's, which midflight transforms
  // forward as the migration did and the reference's SQL hashes over a
  // Shadow, against the target's own rows (`columns`, `key`, and `table`, its
  // layout as the reverse stream reads it: repairs are built for it and
  // applied through the inverse). Forward, not inverse: a source value the
  // inverse would write otherwise (' 42' copied as 42) still compares equal,
  // as it did before the switch. The columns the transform computes are not
  // compared (CanonColumn::compared): the reverse flow drops them.
  bool reversed = false;
};

// How a transformed table's reference rows become the target's rows.
struct Reshape {
  CanonTable source;  // the table as the reference holds it, untransformed (repairs are built for it)
  // One row of CanonSide::StreamList(source) -> the target's row, nullopt
  // when the transform's filter drops it; an error names the table and key.
  std::function<Result<std::optional<std::vector<Datum>>>(const std::vector<std::optional<std::string>>&)> row;
  // A key column the transform casts (core/transform.h allows int_to_text
  // and timestamp_to_timestamptz on key columns, both one-to-one): the
  // chunks stay on the source's key, and the keys are mapped through the
  // cast (SourceKeyOf, TargetBoundOf). Empty when no key column is cast.
  struct KeyCast {
    std::string cast;      // "" when that key column holds the source's values
    int zone_minutes = 0;  // timestamp_to_timestamptz: the zone's offset east of UTC
  };
  std::vector<KeyCast> key_casts;  // by key position
  std::string where;               // the transform, for messages ("transforms.public.codes")
  std::vector<int> computed;       // the target's columns the transform computes (indexes into columns)
};

// The source's canonical key whose cast is the target's canonical key
// `target_key` of `r` (r.key_casts), or nullopt when no source key casts to
// it: int_to_text is the source number's decimal text, so a text that is
// not a canonical integer the source column can hold ('007', 'abc') has no
// source key; timestamp_to_timestamptz shifts the instant back by the zone.
std::optional<CanonKey> SourceKeyOf(const Reshape& r, const CanonKey& target_key);
// A chunk bound on the source's leading key column (canonical) as a bound
// on the target's: timestamp_to_timestamptz shifts it by the zone (a fixed
// offset keeps the order, so the same rows fall in the range). Other casts
// keep it.
std::string TargetBoundOf(const Reshape::KeyCast& cast, const std::string& source_canon);
// The inverse: a bound on the target's leading key column (after the write
// switch, the reference's) as a bound on the source's.
std::string SourceBoundOf(const Reshape::KeyCast& cast, const std::string& target_canon);

// Marks `t` as not verified (not compared) because the spec's transform
// `where` ("transforms.public.orders") reshapes its rows on the way.
inline void SkipTransformed(CanonTable* t, const std::string& where) {
  t->skipped = fmt::format("its rows are transformed on the way ({})", where);
  t->transformed = true;
}

// One engine's part. Select and the snapshot calls run on the side's one
// connection; the SQL builders are pure.
class CanonSide {
 public:
  using Row = std::vector<std::optional<std::string>>;
  virtual ~CanonSide() = default;
  virtual std::string_view label() const = 0;  // "source (MySQL)", for messages
  virtual Status Connect() = 0;
  virtual Result<std::vector<Row>> Select(const std::string& sql) = 0;
  // Reference: opens a read-only consistent snapshot and returns the side's
  // change-stream position P such that every transaction it sees is before P
  // (the flow having applied through P holds at least what the snapshot saw).
  virtual Result<uint64_t> BeginSnapshot() = 0;
  virtual Status EndSnapshot(bool commit) = 0;
  // Formats a position for messages.
  virtual std::string FormatPosition(uint64_t pos) const { return std::to_string(pos); }

  // Dialect.
  virtual std::string From(const CanonTable& t) const = 0;
  virtual std::string Ident(const CanonColumn& c) const = 0;  // the quoted column
  virtual std::string CanonExpr(const CanonColumn& c) const = 0;
  virtual std::string PieceExpr(const std::string& canon) const = 0;
  virtual std::string RowMd5(const std::vector<std::string>& pieces) const = 0;
  virtual Result<std::string> KeyLiteral(const CanonColumn& c, const std::string& canon) const = 0;
  virtual std::string RangeExpr(const CanonColumn& c) const = 0;
  // The integer a text key column holds, NULL when it holds none (a key
  // column int_to_text made): a range condition on it selects the rows
  // whose source key lies in the range, compared with a canonical number.
  virtual std::string IntOfTextExpr(const CanonColumn& c) const = 0;
  // The other way (the source's integer key column, after the write switch):
  // its decimal text, compared byte for byte like a kText range expression.
  virtual std::string TextOfIntExpr(const CanonColumn& c) const = 0;
  virtual Result<std::string> RangeLiteral(const CanonColumn& c, const std::string& canon) const = 0;
  // The canonical form of a value this side's SQL selected raw (a kind
  // computed in midflight: canonical.h CanonRaw).
  virtual Result<std::optional<std::string>> Canonical(const CanonColumn& c,
                                                        const std::optional<std::string>& raw) const {
    return CanonRaw(c.kind, raw);
  }

  // Reference: a select list of t.table's columns in the text forms its
  // change stream gives (what a Reshape's row reads).
  virtual Result<std::string> StreamList(const CanonTable& t) const {
    return OperatorError(fmt::format("{}: table {} cannot be read for a transform here", label(), t.id.ToString()));
  }
  // Other side: a FROM item holding `rows`
  // (values in this engine's input text forms, t.columns' order) typed as
  // the columns of t on this side, so that the SQL that hashes the table
  // hashes them alike. `rows` is not empty.
  // PostgreSQL: a derived table of typed row values, read only. MySQL: a
  // temporary table (this session's, kept out of the binlog) refilled with
  // `rows` by INSERT, as the applier writes them. The FROM item is valid
  // until the next call.
  virtual Result<std::string> Shadow(const CanonTable& t, const std::vector<std::vector<Datum>>& rows) {
    (void)rows;
    return OperatorError(fmt::format("{}: transformed rows of {} cannot be hashed here", label(), t.id.ToString()));
  }

  // Reference: the repair of each key, its current row as an upsert or a
  // delete when it has none, as Changes of t.table in the form the side's
  // change stream gives (they go through the flow's apply path).
  virtual Result<std::vector<Change>> Repairs(const CanonTable& t, const std::vector<CanonKey>& keys) {
    (void)t;
    (void)keys;
    return OperatorError(fmt::format("{}: repairs across engines are not built for this side", label()));
  }
};

struct CrossVerifyJob {
  CanonSide* reference = nullptr;  // the side applications write to
  CanonSide* other = nullptr;
  std::vector<CanonTable> tables;  // in the order verified
  // The reference's position through which the flow has applied everything. Required for verify.
  std::function<uint64_t()> applied_through;
  std::function<uint64_t()> received;   // through which it has received everything (optional)
  std::function<int64_t()> rows_per_s;  // read live; <= 0 or unset: unlimited
  const std::atomic<bool>* stop = nullptr;
  bool repair = false;
  int64_t chunk_rows = 10000;
  int max_key_checks = 30;
  int max_keys_per_table = 1000;
  int wait_timeout_s = 60;
  ReplicationOps::VerifyRun run;  // resume point and progress callback
};

// The live verification (see cross_verify.cc for how).
Result<ReplicationOps::VerifyOutcome> CrossVerify(const CrossVerifyJob& job);

// CrossVerify's parts, for a verifier that checks some of its tables this way
// and merges the report with its own (PostgreSQL -> PostgreSQL's transformed
// tables): the report, the repairs of its differences (job.repair), and the
// lines one table's result prints.
struct CrossVerified {
  verify::Report report;
  std::vector<Change> repairs;
  std::vector<std::string> not_repaired;  // lines: a difference --repair cannot send through the flow, and why
};
Result<CrossVerified> CrossVerifyReport(const CrossVerifyJob& job);
std::vector<std::string> CrossLines(const verify::TableResult& tr);

// The job of verifying `tables` while `flow`, the flow from `reference`,
// applies: its positions, the rest as given.
CrossVerifyJob JobAlong(Flow& flow, CanonSide& reference, CanonSide& other, std::vector<CanonTable> tables,
                        bool repair, std::function<int64_t()> rows_per_s, const std::atomic<bool>* stop,
                        int64_t chunk_rows, const ReplicationOps::VerifyRun& run);

// CrossVerify of `tables` while `flow`, the flow from `reference`, applies:
// what a pair's ReplicationOps::Verify runs, with its arguments.
Result<ReplicationOps::VerifyOutcome> CrossVerifyAlong(Flow& flow, CanonSide& reference, CanonSide& other,
                                                       std::vector<CanonTable> tables, bool repair,
                                                       std::function<int64_t()> rows_per_s,
                                                       const std::atomic<bool>* stop, int64_t chunk_rows,
                                                       const ReplicationOps::VerifyRun& run);

// `compare`: per table, both sides' row count and an order-independent
// hash of the rows' digests, read chunk by chunk without snapshots or waits
// (for a quiet pair: an offline check).
Result<std::vector<TableComparison>> CrossCompare(CanonSide& source, CanonSide& target,
                                                  const std::vector<CanonTable>& tables, int64_t chunk_rows);

}  // namespace midflight::cross
