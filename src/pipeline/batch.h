// Batch collapsing: within one applier batch only the last image of a key
// matters. Collapsing is done for RoutingMode::kByKey tables only; changes of
// kByTable tables (keyless, or with a secondary unique constraint) keep every
// change in stream order, because their intermediate states matter.
//
// Rules for one key, earlier change e then later change c:
//   c insert            -> insert c (applied as an upsert)
//   c update            -> e insert: insert with c's values, e's for columns c left unchanged
//                          e update: update likewise (still partial if e was)
//                          e delete: update c (cannot happen on a well-formed stream)
//   c delete            -> delete c
// The collapsed change keeps the ConflictCheck of the key's first change: a
// delete then an insert of one key becomes an upsert of a row that must exist;
// an insert then a delete, a delete of a row that must not.
// Key-moving updates never reach the batch: the change stream splits them into
// a delete of the old key and an insert of the new one (a move that carries
// unchanged TOAST values is applied at a barrier instead).
#pragma once

#include <span>
#include <utility>
#include <vector>

#include "core/change.h"

namespace midflight {

// Returns the changes to apply, in an order that keeps every key's and every
// kByTable table's stream order.
std::vector<Change> CollapseBatch(std::vector<Change> changes);

// A batch's changes grouped by table, tables in the order of their first
// change, each table's changes in batch order: what a sink turns into one
// set of statements per table.
using TableChanges = std::pair<const TableSchema*, std::vector<const Change*>>;
std::vector<TableChanges> GroupByTable(std::span<const Change> changes);

}  // namespace midflight
