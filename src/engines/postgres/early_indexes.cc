#include "engines/postgres/early_indexes.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "base/log.h"
#include "control/run_util.h"
#include "engines/postgres/pg_conn.h"
#include "engines/postgres/schema_loader.h"

namespace midflight::pg {

std::string IndexSessionName(const std::string& migration) {
  // application_name keeps 63 bytes; a longer name is cut, which only makes
  // the match in EndOrphanIndexSessions wider among this target's migrations
  // sharing that prefix.
  return ("midflight-index:" + migration).substr(0, 63);
}

Status EndOrphanIndexSessions(PgConn& target, const std::string& migration) {
  constexpr const char* kEndSql = R"sql(
    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
     WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid())sql";
  constexpr const char* kLeftSql = R"sql(
    SELECT count(*) FROM pg_stat_activity
     WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid())sql";
  const std::string name = IndexSessionName(migration);
  ASSIGN_OR_RETURN(std::string ended, target.QueryValue(kEndSql, {name}));
  if (ended == "0") return Status::Ok();
  LOG_INFO("schema: ended {} index-building session(s) a killed run left on the target", ended);
  for (int i = 0; i < 300; ++i) {
    ASSIGN_OR_RETURN(std::string left, target.QueryValue(kLeftSql, {name}));
    if (left == "0") return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return RetryCall(fmt::format("the target still runs index-building sessions ({}) of a killed run after 30 s", name));
}

Result<std::unique_ptr<EarlyIndexBuilder>> EarlyIndexBuilder::Start(
    PgConn& source, PgConn& target, const std::vector<std::shared_ptr<const TableSchema>>& tables,
    EarlyIndexOptions options) {
  RETURN_IF_ERROR(EndOrphanIndexSessions(target, options.migration));
  ASSIGN_OR_RETURN(auto entries, TableLocalPostData(source, target, options.dump_path, options.work_dir, tables));
  int total = 0;
  for (const auto& [t, lines] : entries) total += static_cast<int>(lines.size());
  std::unique_ptr<EarlyIndexBuilder> b(new EarlyIndexBuilder(std::move(options), std::move(entries), total));
  if (total > 0)
    for (int i = 0; i < std::max(1, b->options_.jobs); ++i)
      b->threads_.emplace_back([p = b.get(), i, context = CurrentLogContext()] {
        ScopedLogContext log_context(context);
        p->Work(i);
      });
  return b;
}

EarlyIndexBuilder::EarlyIndexBuilder(EarlyIndexOptions options, std::map<TableId, std::vector<std::string>> entries,
                                     int total)
    : options_(std::move(options)), entries_(std::move(entries)), total_(total) {}

EarlyIndexBuilder::~EarlyIndexBuilder() {
  Cancel();
  (void)Finish();
}

void EarlyIndexBuilder::TableCopied(const TableId& table) {
  auto it = entries_.find(table);
  if (it == entries_.end()) return;
  {
    MutexLock lock(&mu_);
    if (cancelled_) return;
    queue_.push_back(it->second);
  }
  changed_.NotifyAll();
}

void EarlyIndexBuilder::Cancel() {
  {
    MutexLock lock(&mu_);
    cancelled_ = true;
    queue_.clear();
  }
  changed_.NotifyAll();
}

Status EarlyIndexBuilder::Finish() {
  {
    MutexLock lock(&mu_);
    finishing_ = true;
  }
  changed_.NotifyAll();
  for (auto& t : threads_) t.join();
  threads_.clear();
  MutexLock lock(&mu_);
  return first_error_;
}

void EarlyIndexBuilder::Work(int id) {
  while (true) {
    std::vector<std::string> lines;
    {
      MutexLock lock(&mu_);
      changed_.Wait(&mu_, [&]() REQUIRES(mu_) { return !queue_.empty() || finishing_ || cancelled_; });
      if (queue_.empty() || !first_error_.ok()) return;
      lines = std::move(queue_.front());
      queue_.pop_front();
    }
    Status st = Build(lines, id);
    int built = 0;
    {
      MutexLock lock(&mu_);
      if (!st.ok()) {
        if (first_error_.ok()) first_error_ = st;
        cancelled_ = true;
        queue_.clear();
      } else {
        built = built_ += static_cast<int>(lines.size());
      }
    }
    if (!st.ok()) {
      changed_.NotifyAll();
      return;
    }
    CrashPoint("early-index", built);
  }
}

Status EarlyIndexBuilder::Build(const std::vector<std::string>& toc_lines, int id) {
  const std::string list = fmt::format("{}/early-index-{}.list", options_.work_dir, id);
  auto started = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(RestoreTocLines(options_.target_uri, options_.dump_path, list, toc_lines, 1,
                                  options_.index_memory_mb, IndexSessionName(options_.migration)));
  LOG_DEBUG("schema: built {} in {:.2f} s", fmt::join(toc_lines, " | "),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return Status::Ok();
}

}  // namespace midflight::pg
