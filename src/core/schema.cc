#include "core/schema.h"

namespace midflight {

namespace {

bool GlobMatch(const char* p, const char* s) {
  for (; *p; ++p, ++s) {
    if (*p == '*') {
      while (p[1] == '*') ++p;
      if (!p[1]) return true;
      for (; *s; ++s)
        if (GlobMatch(p + 1, s)) return true;
      return GlobMatch(p + 1, s);
    }
    if (!*s) return false;
    if (*p != '?' && *p != *s) return false;
  }
  return *s == 0;
}

}  // namespace

bool TablePatternMatches(const std::string& pattern, const TableId& id) {
  if (pattern.find('.') == std::string::npos) return GlobMatch(pattern.c_str(), id.name.c_str());
  return GlobMatch(pattern.c_str(), id.ToString().c_str());
}

bool TableSelected(const std::vector<std::string>& include, const std::vector<std::string>& exclude,
                   const TableId& id) {
  bool included = include.empty();
  for (const auto& p : include) included = included || TablePatternMatches(p, id);
  for (const auto& p : exclude) included = included && !TablePatternMatches(p, id);
  return included;
}

void TableSchema::Finalize() {
  writable.clear();
  key_writable.clear();
  for (int i = 0; i < static_cast<int>(columns.size()); ++i)
    if (!columns[i].generated || images_carry_generated) writable.push_back(i);
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
  // An unsigned 64-bit key can exceed int64_t: such a table is copied whole.
  if (t.kind == TypeKind::kInt && !(t.width >= 8 && !t.is_signed)) return key[0];
  return std::nullopt;
}

}  // namespace midflight
