// Temporary access: marks users past access_expire_time EXPIRED (and tells
// membership), and queues one access_expiry reminder email per guest three
// days before its access ends. Time is injected, so tests drive RunOnce.
#pragma once

#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "services/identity/storage/repository.h"

namespace guestlist::identity {

class ExpirySweeper final {
 public:
  // `housekeeping` (optional) runs after each background pass, e.g. to
  // purge old idempotency keys.
  ExpirySweeper(Repository* repository, const Clock* clock,
                std::function<void()> kick_outbox,
                std::function<void()> housekeeping = nullptr,
                absl::Duration reminder_lead = absl::Hours(72))
      : repository_(repository),
        clock_(clock),
        kick_outbox_(std::move(kick_outbox)),
        housekeeping_(std::move(housekeeping)),
        reminder_lead_(reminder_lead) {}
  ~ExpirySweeper() { Stop(); }

  struct Result {
    int expired = 0;
    int reminded = 0;
  };
  // One pass at clock->Now().
  absl::StatusOr<Result> RunOnce();
  void Start(absl::Duration interval = absl::Seconds(30));
  void Stop();

 private:
  Repository* repository_;
  const Clock* clock_;
  std::function<void()> kick_outbox_;
  std::function<void()> housekeeping_;
  const absl::Duration reminder_lead_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace guestlist::identity
