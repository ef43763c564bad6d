// The MySQL migration's traffic plane: the MySQL proxy (proxy/mysql/) built
// from the spec's proxy section, routed as the stored phase says.
#pragma once

#include <memory>

#include "base/status.h"
#include "proxy/traffic_switch.h"

namespace midflight {

struct MigrationSpec;
class StateStore;

Result<std::unique_ptr<proxy::TrafficSwitch>> StartMySqlProxy(const MigrationSpec& spec, StateStore& store);

}  // namespace midflight
