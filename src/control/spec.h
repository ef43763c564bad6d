// The migration spec: what the operator writes in SPEC.yaml, parsed once at
// the edge into a typed struct. Unknown or malformed fields are errors that
// name the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace midflight {

struct MigrationSpec {
  std::string name;    // [a-z0-9_], names the slot, publication and state directory
  std::string source;  // postgres://user:pass@host:port/db or mysql://user:pass@host:port/db
  std::string target;
  std::vector<std::string> tables;   // include patterns ("public.*"); empty = every user table
  std::vector<std::string> exclude;  // exclude patterns
  std::string state_dir;             // default ./.midflight/<name>
  int copy_workers = 4;              // parallel COPY connections
  int partitions = 0;                // apply partitions (fixed for the life of the migration); 0 = default
  int batch_size = 2000;             // changes per apply transaction
  int64_t chunk_rows = 250000;       // rows per copy chunk
  int64_t partition_log_mb = 64;     // memory bound of each partition's queue
  int index_memory_mb = 512;         // maintenance_work_mem of each index-building session on the target
  bool allow_nonempty_target = false;
  // MySQL/MariaDB: a replica of `source` (log_slave_updates on) that every
  // snapshot read and the binlog stream come from; midflight then never
  // connects to the primary.
  std::string source_replica;
  int64_t max_row_bytes = 0;  // MySQL: a larger row stops the copy, naming it; 0 = the target's max_allowed_packet

  std::string slot_name() const { return "midflight_" + name; }
  std::string publication_name() const { return "midflight_" + name; }
};

// Apply partitions when the spec does not say: the machine's cores, 2 to 8.
int DefaultPartitions();

// Parses YAML text. `origin` names the file in messages.
Result<MigrationSpec> ParseSpec(const std::string& yaml_text, const std::string& origin);
Result<MigrationSpec> LoadSpec(const std::string& path);

}  // namespace midflight
