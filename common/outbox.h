// Transactional outbox: side effects that must survive a crash (emails,
// cross-service syncs) are written as rows in the same transaction as the
// change, then delivered by a relay that retries with backoff. Any number of
// replicas may relay at once: rows are claimed with FOR UPDATE SKIP LOCKED.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/migrations.h"
#include "common/pg.h"

namespace guestlist {

// The tables every service schema has: <schema>.outbox and
// <schema>.idempotency_keys. Add it to the service's migrations.
Migration CommonTablesMigration(const std::string& schema);

// Adds a message for `topic` inside `tx`; it is delivered after commit.
absl::Status EnqueueOutbox(pg::Transaction& tx, const std::string& schema,
                           const std::string& topic,
                           const std::string& payload);

class OutboxRelay final {
 public:
  // Delivers one payload. OK deletes the row; an error retries it later
  // (after max_attempts it is parked with dead = true and logged).
  using Handler = std::function<absl::Status(const std::string& payload)>;
  // Delivers every due payload of one topic in one go (e.g. one batch RPC
  // instead of one call per row); returns one status per payload, in order.
  using BatchHandler = std::function<std::vector<absl::Status>(
      const std::vector<std::string>& payloads)>;

  struct Options {
    absl::Duration poll_interval = absl::Milliseconds(200);
    int batch_size = 100;
    int max_attempts = 25;
    absl::Duration max_backoff = absl::Minutes(5);
    // After a Wake(), how long to let further commits gather before
    // claiming, so under load they share one claim (and one batch call).
    absl::Duration wake_gather = absl::ZeroDuration();
  };

  OutboxRelay(pg::Pool* pool, std::string schema, Options options);
  OutboxRelay(pg::Pool* pool, std::string schema)
      : OutboxRelay(pool, std::move(schema), Options()) {}
  ~OutboxRelay();

  void Register(const std::string& topic, Handler handler);
  // For topics whose order relative to other topics does not matter.
  void RegisterBatch(const std::string& topic, BatchHandler handler);
  // Starts the background thread; Stop() joins it.
  void Start();
  void Stop();
  // Asks the thread to look now (after a commit that enqueued something).
  void Wake();
  // Delivers one batch of due rows. Returns how many were delivered.
  absl::StatusOr<int> RunOnce();

 private:
  pg::Pool* pool_;
  const std::string schema_;
  const Options options_;
  std::map<std::string, Handler> handlers_;
  std::map<std::string, BatchHandler> batch_handlers_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace guestlist
