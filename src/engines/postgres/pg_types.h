// PostgreSQL's types in the engine-neutral model (core/value.h): the column
// type descriptor, and the conversion of a value's text form (what pgoutput
// and COPY text send) to the typed Value and back. The pipeline carries the
// text form unchanged between two PostgreSQL servers; these conversions are
// the typed model produced on demand (for heterogeneous targets, verification
// and tests), and they round-trip exactly.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"
#include "core/value.h"

namespace midflight::pg {

// Builds the column type from the catalog: type oid, its formatted name
// (format_type), typtype ('b' base, 'e' enum, 'd' domain, ...), and for arrays
// the element's oid and formatted name (0 / "" otherwise).
ColumnType PgColumnType(uint32_t oid, const std::string& native, char typtype, uint32_t elem_oid,
                        const std::string& elem_native);

// Text form -> typed value. Fails with InvalidArgument naming the type and the
// offending text when it is not valid for the type.
Result<Value> PgTextToValue(const ColumnType& type, std::string_view text);
// Typed value -> the text form PostgreSQL accepts as input for `type`.
Result<std::string> ValueToPgText(const ColumnType& type, const Value& value);

// The type a text value is cast to explicitly before it is assigned to a
// column of type `native` (format_type's text), so that the assignment, not
// the cast, applies the length: an explicit cast to character varying(n) or
// character(n) cuts a longer value silently, an assignment refuses it
// (SQLSTATE 22001). "character varying(40)" -> "character varying",
// "character(5)" -> "bpchar" (a bare "character" is character(1)), arrays
// alike; every other type as it is (bit(n), numeric(p,s) need their
// modifiers: an explicit cast rounds or refuses as an assignment would).
std::string AssignedFromTextAs(const std::string& native);

}  // namespace midflight::pg
