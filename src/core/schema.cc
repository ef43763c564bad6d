#include "core/schema.h"

namespace midflight {

void TableSchema::Finalize() {
  writable.clear();
  key_writable.clear();
  for (int i = 0; i < static_cast<int>(columns.size()); ++i)
    if (!columns[i].generated) writable.push_back(i);
  for (int k : key)
    for (int i = 0; i < static_cast<int>(writable.size()); ++i)
      if (writable[i] == k) key_writable.push_back(i);
}

int TableSchema::ColumnIndex(const std::string& name) const {
  for (int i = 0; i < static_cast<int>(columns.size()); ++i)
    if (columns[i].name == name) return i;
  return -1;
}

std::string TableSchema::KeyDescription() const {
  if (key.empty()) return key_kind == KeyKind::kFullRow ? "(whole row)" : "(no key)";
  std::string out = "(";
  for (size_t i = 0; i < key.size(); ++i) {
    if (i) out += ", ";
    out += columns[key[i]].name;
  }
  return out + ")";
}

std::optional<int> TableSchema::IntegerChunkColumn() const {
  if (key.empty()) return std::nullopt;
  const ColumnType& t = columns[key[0]].type;
  if (t.kind == TypeKind::kInt) return key[0];
  return std::nullopt;
}

}  // namespace midflight
