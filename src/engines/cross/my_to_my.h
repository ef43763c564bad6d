// MySQL/MariaDB -> MySQL/MariaDB with the checks of its transformed tables:
// the MySQL engine (engines/mysql/engine.h) with ReshapedChecks made from
// the cross-engine verifier (cross_verify.h), both sides MariaDB. A table a
// spec transform reshapes is verified and compared through its transform:
// the source's rows (the replica's, when one is read) in the binlog's text
// forms, through the transform as the flow applies it, hashed by the
// target's SQL over a scratch table like the target table (MyReshaped); the
// other tables by the same-engine verifier and compare.
//
//   verify   mysql::Verify (untransformed) + CrossVerifyReport (transformed), one report
//   compare  CompareMyTables (untransformed) + CrossCompare (transformed)
//
// `--repair` re-reads a differing key's source row and sends it through the
// flow (its transform applies; a row the filter now drops is deleted). After
// the write switch the target is the reference and the source primary's rows
// are transformed forward (cross::Reversed), without repair. Tables with a
// BIT, SET, UUID or INET column or a cast key are named as not verified.
#pragma once

#include "engines/engine.h"
#include "engines/mysql/engine.h"

namespace midflight {

// The engine the registry gives mysql:// -> mysql:// specs.
const EngineKind& MySqlEngineWithReshapedChecks();

namespace cross {
ReshapedChecks MyToMyReshapedChecks();
}  // namespace cross

}  // namespace midflight
