#include <atomic>
#include <deque>

#include "base/thread_annotations.h"
#include "pipeline/partition_log.h"

namespace midflight {
namespace {

class MemoryPartitionLog final : public PartitionLog {
 public:
  MemoryPartitionLog(uint32_t n, size_t max_bytes) : parts_(n), max_bytes_(max_bytes) {}

  uint32_t partitions() const override { return static_cast<uint32_t>(parts_.size()); }

  Status Append(PartitionId p, Change change) override {
    Part& part = parts_.at(p.value);
    size_t size = change.ByteSize();
    MutexLock lock(&part.mu);
    // A change larger than the whole budget still goes through, alone.
    part.not_full.Wait(&part.mu, [&]() REQUIRES(part.mu) {
      return closed_ || part.bytes == 0 || part.bytes + size <= max_bytes_;
    });
    if (closed_) return Cancelled("partition log closed");
    part.bytes += size;
    part.queue.push_back(std::move(change));
    // Wake the applier only when what it waits for is there: one wake-up per
    // batch, not per change.
    if (part.queue.size() >= part.want) part.not_empty.NotifyOne();
    return Status::Ok();
  }

  Status Poll(PartitionId p, size_t min, size_t max, std::chrono::milliseconds wait,
              std::vector<Change>* out) override {
    Part& part = parts_.at(p.value);
    MutexLock lock(&part.mu);
    part.want = std::max<size_t>(1, std::min(min, max));
    part.not_empty.WaitFor(&part.mu, wait, [&]() REQUIRES(part.mu) { return closed_ || part.queue.size() >= part.want; });
    part.want = 1;
    if (part.queue.empty()) return closed_ ? Cancelled("partition log closed") : Status::Ok();
    size_t n = 0;
    while (n < max && !part.queue.empty()) {
      part.bytes -= part.queue.front().ByteSize();
      out->push_back(std::move(part.queue.front()));
      part.queue.pop_front();
      ++n;
    }
    part.not_full.NotifyAll();
    return Status::Ok();
  }

  void Close() override {
    for (auto& part : parts_) {
      MutexLock lock(&part.mu);
      closed_ = true;
      part.not_empty.NotifyAll();
      part.not_full.NotifyAll();
    }
  }

 private:
  // One per partition: one producer (the stream) and one consumer (its applier).
  struct Part {
    Mutex mu;
    CondVar not_empty, not_full;
    std::deque<Change> queue GUARDED_BY(mu);
    size_t bytes GUARDED_BY(mu) = 0;
    size_t want GUARDED_BY(mu) = 1;  // queue length at which Append wakes the applier
  };
  std::vector<Part> parts_;
  const size_t max_bytes_;
  std::atomic<bool> closed_{false};
};

}  // namespace

std::unique_ptr<PartitionLog> NewMemoryPartitionLog(uint32_t partitions, size_t max_bytes_per_partition) {
  return std::make_unique<MemoryPartitionLog>(partitions, max_bytes_per_partition);
}

}  // namespace midflight
