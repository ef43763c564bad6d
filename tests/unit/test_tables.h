// Small table schemas for the pipeline unit tests.
#pragma once

#include <memory>

#include "core/change.h"

namespace midflight::testing {

inline ColumnType Type(TypeKind kind, const char* native, int width = 0) {
  ColumnType t;
  t.kind = kind;
  t.native = native;
  t.width = width;
  return t;
}

inline ColumnSchema Col(const char* name, ColumnType type) {
  ColumnSchema c;
  c.name = name;
  c.type = std::move(type);
  return c;
}

// public.accounts (id int8 key, balance int4, note text)
inline std::shared_ptr<const TableSchema> Accounts(bool secondary_unique = false) {
  auto t = std::make_shared<TableSchema>();
  t->id = {"public", "accounts"};
  t->columns = {Col("id", Type(TypeKind::kInt, "bigint", 8)), Col("balance", Type(TypeKind::kInt, "integer", 4)),
                Col("note", Type(TypeKind::kText, "text"))};
  t->key = {0};
  t->key_kind = KeyKind::kPrimaryKey;
  t->has_secondary_unique = secondary_unique;
  t->Finalize();
  return t;
}

// public.history (a int, b text), REPLICA IDENTITY FULL, no key.
inline std::shared_ptr<const TableSchema> History() {
  auto t = std::make_shared<TableSchema>();
  t->id = {"public", "history"};
  t->columns = {Col("a", Type(TypeKind::kInt, "integer", 4)), Col("b", Type(TypeKind::kText, "text"))};
  t->key_kind = KeyKind::kFullRow;
  t->Finalize();
  return t;
}

inline Change Make(ChangeKind kind, std::shared_ptr<const TableSchema> t, uint64_t lsn, uint32_t seq,
                   std::vector<Datum> values, std::vector<Datum> old = {}) {
  Change c;
  c.kind = kind;
  c.table = std::move(t);
  c.pos = {PgLsn::FromU64(lsn), seq};
  c.values = std::move(values);
  c.old = std::move(old);
  return c;
}

inline Datum T(const char* s) { return Datum::Text(s); }

}  // namespace midflight::testing
