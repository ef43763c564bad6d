#include "core/change.h"

namespace midflight {

const char* ChangeKindName(ChangeKind kind) {
  switch (kind) {
    case ChangeKind::kInsert: return "insert";
    case ChangeKind::kUpdate: return "update";
    case ChangeKind::kDelete: return "delete";
    case ChangeKind::kTruncate: return "truncate";
  }
  return "?";
}

size_t Change::ByteSize() const {
  size_t n = sizeof(Change);
  for (const auto& d : values) n += sizeof(Datum) + d.text.size();
  for (const auto& d : old) n += sizeof(Datum) + d.text.size();
  return n;
}

std::string Change::KeyText() const {
  if (!table) return {};
  const std::vector<Datum>& src =
      (kind == ChangeKind::kDelete || (kind == ChangeKind::kUpdate && !old.empty())) ? old : values;
  std::string key;
  bool first = true;
  for (int pos : table->key_writable) {
    if (!first) key.push_back('\x1f');
    first = false;
    if (pos < static_cast<int>(src.size())) key += src[pos].text;
  }
  return key;
}

bool Change::HasUnchangedValues() const {
  for (const auto& d : values)
    if (d.is_unchanged()) return true;
  return false;
}

bool Change::MovesKey() const {
  if (kind != ChangeKind::kUpdate || old.empty() || !table || table->key.empty()) return false;
  for (int pos : table->key_writable) {
    if (pos >= static_cast<int>(old.size()) || pos >= static_cast<int>(values.size())) return true;
    if (!values[pos].is_unchanged() && old[pos] != values[pos]) return true;
  }
  return false;
}

}  // namespace midflight
