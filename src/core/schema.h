// Engine-neutral description of the tables a migration moves. Routing, apply
// and verification read it; each engine's catalog reader fills it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/value.h"

namespace midflight {

// A table's qualified name. Not quoted: quoting is the engine's job.
struct TableId {
  std::string schema;
  std::string name;

  std::string ToString() const { return schema + "." + name; }
  auto operator<=>(const TableId&) const = default;
};

struct ColumnSchema {
  std::string name;
  ColumnType type;
  bool not_null = false;
  bool generated = false;        // computed by the server: never written by midflight
  bool identity_always = false;  // GENERATED ALWAYS AS IDENTITY: written with OVERRIDING SYSTEM VALUE
};

// How the rows of a table are told apart on the target.
enum class KeyKind : uint8_t {
  kPrimaryKey,     // primary key
  kUniqueIndex,    // REPLICA IDENTITY USING INDEX on a unique, not-null index
  kFullRow,        // REPLICA IDENTITY FULL, no key: updates and deletes match the whole row
  kNone,           // no key: refused by preflight
};

// How a table's changes are spread over partitions.
enum class RoutingMode : uint8_t {
  kByKey,    // hash of the key: several appliers, changes collapsed per key in a batch
  kByTable,  // the whole table on one partition, every change in source order, never collapsed.
             // Used for keyless tables and for tables with a secondary unique or exclusion
             // constraint, where keys applied out of order across partitions could
             // collide on the secondary constraint (see pipeline/README.md).
};

struct TableSchema {
  TableId id;
  uint32_t source_oid = 0;
  // Every column in the source's order, generated ones included.
  std::vector<ColumnSchema> columns;
  // Indexes into `columns` of the key columns (empty for kFullRow / kNone).
  std::vector<int> key;
  KeyKind key_kind = KeyKind::kNone;
  bool has_secondary_unique = false;  // a unique/exclusion constraint or unique index besides the key
  // MySQL: a key column compares under a collation where different bytes are
  // equal ('a' = 'A' under utf8mb4_general_ci). A key change 'a' -> 'A' is a
  // delete of 'a' and an insert of 'A' that hash to different partitions, yet
  // name one row on the server: applied out of order the delete removes the
  // inserted row. Such a table is routed whole (RoutingMode::kByTable).
  bool key_collation_folds = false;
  bool partitioned = false;           // a partitioned (parent) table: copied and replicated as a whole
  int64_t estimated_rows = 0;
  int64_t estimated_bytes = 0;
  // Column layout version: 0 as read from the source's catalog; the change
  // stream makes a new version whenever the source sends another layout.
  int version = 0;

  // MySQL: the binlog's row images carry generated columns too, and a key may
  // include them, so `writable` lists every column the images carry and the
  // applier leaves generated ones out of what it writes. PostgreSQL: false.
  bool images_carry_generated = false;
  // Derived by Finalize(): the columns a change image carries (the writable,
  // not generated, columns; see images_carry_generated) in source order, and
  // the positions of the key columns inside that layout.
  std::vector<int> writable;
  std::vector<int> key_writable;
  void Finalize();

  RoutingMode routing() const {
    return (key_kind == KeyKind::kPrimaryKey || key_kind == KeyKind::kUniqueIndex) &&
                   !has_secondary_unique && !key_collation_folds
               ? RoutingMode::kByKey
               : RoutingMode::kByTable;
  }
  // Index of the column named `name`, or -1.
  int ColumnIndex(const std::string& name) const;
  // "(aid)" or "(id, region)" for messages.
  std::string KeyDescription() const;
  // The single integer column the table's copy can be split on (first key
  // column when it is an integer), or nullopt.
  std::optional<int> IntegerChunkColumn() const;
};

// Glob match of "schema.table" against a pattern with * and ? ("public.*", "*.orders").
// A pattern without a dot matches tables of that name in any schema (for
// MySQL, the schema is the database).
bool TablePatternMatches(const std::string& pattern, const TableId& id);
// Matched by some `include` pattern (every table when empty) and by no `exclude` pattern.
bool TableSelected(const std::vector<std::string>& include, const std::vector<std::string>& exclude,
                   const TableId& id);

}  // namespace midflight
