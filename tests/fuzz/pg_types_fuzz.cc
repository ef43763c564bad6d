// Fuzzes the conversion of PostgreSQL's text forms to typed values
// (engines/postgres/pg_types.h): the column values pgoutput and COPY deliver
// as text, from the source server.
//
// The first input byte picks a column type (built-in scalars, an enum and
// arrays of a few of them), the rest is the value's text.
//
// Properties: no crash, no sanitizer report, no exception (none is caught);
// a value PgTextToValue accepts has a text form, and that text form reads back
// to a value with the same text form (the conversions round-trip).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "engines/postgres/pg_types.h"

namespace {

using midflight::ColumnType;
using midflight::pg::PgColumnType;

void Check(bool ok) {
  if (!ok) std::abort();
}

std::vector<ColumnType> Types() {
  struct T {
    uint32_t oid;
    const char* native;
    char typtype;
    uint32_t elem_oid;
    const char* elem_native;
  };
  const T types[] = {
      {16, "boolean", 'b', 0, ""},
      {21, "smallint", 'b', 0, ""},
      {23, "integer", 'b', 0, ""},
      {20, "bigint", 'b', 0, ""},
      {26, "oid", 'b', 0, ""},
      {1700, "numeric", 'b', 0, ""},
      {1700, "numeric(10,2)", 'b', 0, ""},
      {700, "real", 'b', 0, ""},
      {701, "double precision", 'b', 0, ""},
      {25, "text", 'b', 0, ""},
      {1043, "character varying(20)", 'b', 0, ""},
      {17, "bytea", 'b', 0, ""},
      {114, "json", 'b', 0, ""},
      {3802, "jsonb", 'b', 0, ""},
      {1082, "date", 'b', 0, ""},
      {1083, "time without time zone", 'b', 0, ""},
      {1266, "time(3) with time zone", 'b', 0, ""},
      {1114, "timestamp without time zone", 'b', 0, ""},
      {1114, "timestamp(3) without time zone", 'b', 0, ""},
      {1184, "timestamp with time zone", 'b', 0, ""},
      {1186, "interval", 'b', 0, ""},
      {2950, "uuid", 'b', 0, ""},
      {16385, "mood", 'e', 0, ""},
      {1007, "integer[]", 'b', 23, "integer"},
      {1009, "text[]", 'b', 25, "text"},
      {1231, "numeric[]", 'b', 1700, "numeric"},
      {1182, "date[]", 'b', 1082, "date"},
      {1185, "timestamp with time zone[]", 'b', 1184, "timestamp with time zone"},
      {1001, "bytea[]", 'b', 17, "bytea"},
      {2951, "uuid[]", 'b', 2950, "uuid"},
      {1021, "real[]", 'b', 700, "real"},
      {600, "point", 'b', 0, ""},
  };
  std::vector<ColumnType> out;
  for (const T& t : types) out.push_back(PgColumnType(t.oid, t.native, t.typtype, t.elem_oid, t.elem_native));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<ColumnType> types = Types();
  if (size == 0) return 0;
  const ColumnType& type = types[data[0] % types.size()];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  midflight::Result<midflight::Value> value = midflight::pg::PgTextToValue(type, text);
  if (!value.ok()) return 0;
  midflight::Result<std::string> text2 = midflight::pg::ValueToPgText(type, *value);
  Check(text2.ok());
  midflight::Result<midflight::Value> value2 = midflight::pg::PgTextToValue(type, *text2);
  Check(value2.ok());
  midflight::Result<std::string> text3 = midflight::pg::ValueToPgText(type, *value2);
  Check(text3.ok() && *text3 == *text2);
  return 0;
}
