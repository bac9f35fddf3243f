// A fixed set of threads for work that waits on I/O (the database, another
// service), handed over by gRPC callback handlers: gRPC's own threads must
// not block, or every call they poll for waits too.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace guestlist {

class BlockingPool final {
 public:
  // `threads` workers; at most `max_queued` items wait for one.
  BlockingPool(int threads, size_t max_queued);
  // Runs what is queued, then joins the workers.
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Queues `work`; false (and `work` is not run) when `max_queued` items
  // are already waiting, so the caller can answer RESOURCE_EXHAUSTED.
  bool Schedule(std::function<void()> work);

 private:
  void Work();

  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace guestlist
