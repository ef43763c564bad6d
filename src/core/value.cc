#include "core/value.h"

namespace midflight {

bool Array::operator==(const Array& other) const { return elements == other.elements; }

}  // namespace midflight
