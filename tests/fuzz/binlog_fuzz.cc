// Fuzzes the binlog event decoder (engines/mysql/binlog_event.h): bytes a
// MariaDB or MySQL server sends in a binlog dump.
//
// The input is read as a binlog file (its 4-byte magic optional): events one
// after another, each as long as its header says (the last one gets whatever
// is left). Each event is parsed with the last FORMAT_DESCRIPTION seen, as
// the change stream does, and each rows event's images are decoded with the
// TABLE_MAP of its table id (or the last TABLE_MAP, so that mutated ids still
// reach the row decoder), once without column hints and once with every
// column unsigned and temporal precision guessed from the column index.
//
// Binlogs with checksums would stop nearly every mutation at the CRC check,
// so when the format has CRC32 each event is also parsed without its trailer
// and a format that says it has none.
//
// Properties: no crash, no sanitizer report, no exception (none is caught);
// every decoded row image has one Datum per column of its TABLE_MAP.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "engines/mysql/binlog_event.h"

namespace {

using namespace midflight::mysql;

void Check(bool ok) {
  if (!ok) std::abort();
}

struct Stream {
  std::optional<FormatDescription> format;
  std::map<uint64_t, TableMapEvent> maps;
  std::optional<TableMapEvent> last_map;
};

void DecodeRowsWith(const RowsEvent& rows, const TableMapEvent& map, const ColumnHints& hints) {
  midflight::Result<std::vector<RowImage>> images = DecodeRows(rows, map, hints);
  if (!images.ok()) return;
  for (const RowImage& image : *images) {
    Check(image.before.empty() || image.before.size() == map.types.size());
    Check(image.after.empty() || image.after.size() == map.types.size());
  }
}

void Handle(Stream& s, std::string_view bytes, const FormatDescription* format) {
  midflight::Result<Event> e = ParseEvent(bytes, format);
  if (!e.ok()) return;
  if (e->format) s.format = *e->format;
  if (e->table_map) {
    s.maps[e->table_map->table_id] = *e->table_map;
    s.last_map = *e->table_map;
  }
  if (e->rows) {
    auto it = s.maps.find(e->rows->table_id);
    const TableMapEvent* map = it != s.maps.end() ? &it->second : (s.last_map ? &*s.last_map : nullptr);
    if (map == nullptr) return;
    DecodeRowsWith(*e->rows, *map, ColumnHints{});
    ColumnHints hints;
    for (size_t i = 0; i < map->types.size(); ++i) {
      hints.is_unsigned.push_back(true);
      hints.temporal_precision.push_back(static_cast<uint8_t>(i % 7));
    }
    DecodeRowsWith(*e->rows, *map, hints);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (in.starts_with("\xfe" "bin")) in.remove_prefix(4);
  Stream s;
  while (!in.empty()) {
    size_t event_size = in.size();
    if (in.size() >= 13) {
      const auto* p = reinterpret_cast<const uint8_t*>(in.data()) + 9;
      const uint32_t declared = p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24;
      if (declared > 0 && declared < in.size()) event_size = declared;
    }
    const std::string_view event = in.substr(0, event_size);
    in.remove_prefix(event_size);

    // A copy: the event may replace s.format.
    const std::optional<FormatDescription> format = s.format;
    Handle(s, event, format ? &*format : nullptr);
    if (format && format->checksum_crc32 && event.size() >= 4) {
      FormatDescription unchecked = *format;
      unchecked.checksum_crc32 = false;
      Handle(s, event.substr(0, event.size() - 4), &unchecked);
    }
  }
  return 0;
}
