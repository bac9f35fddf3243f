// Delivery workers: each claims a batch of due messages (FOR UPDATE SKIP
// LOCKED + lease, so replicas never send the same message twice unless one
// crashed), renders the MIME, sends it over its own kept-open connection
// and records the outcome: SENT, a retry with exponential backoff and
// jitter (connection errors, 4xx) or FAILED (5xx, or out of attempts).
// A per-recipient-domain rate limit pushes messages back instead of
// blocking. Stop() lets each worker finish its current message and hands
// the rest of its batch back.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "services/notification/delivery/mail_sender.h"
#include "services/notification/storage/message_store.h"

namespace guestlist::notification {

// Token bucket per recipient domain; rate <= 0 means unlimited.
class DomainRateLimiter final {
 public:
  explicit DomainRateLimiter(double rate_per_second) : rate_(rate_per_second) {}
  // Takes a token for `domain` and returns zero, or returns how long until
  // one is available (taking nothing).
  absl::Duration Reserve(const std::string& domain, absl::Time now);

 private:
  struct Bucket {
    double tokens;
    absl::Time last;
  };
  const double rate_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

struct DispatcherOptions {
  int workers = 4;
  int batch_size = 50;
  // Nice value of the worker threads (Linux, per thread): delivery is
  // background work that should not slow API calls on a shared machine.
  int nice = 0;
  int max_attempts = 8;
  absl::Duration lease = absl::Seconds(60);
  absl::Duration poll_interval = absl::Milliseconds(200);
  // After a Notify(), how long a worker lets further messages arrive
  // before claiming, so a stream of single emails is claimed (and its
  // rows written) in groups instead of one claim per arrival.
  absl::Duration wake_gather = absl::ZeroDuration();
  absl::Duration retry_base = absl::Seconds(1);
  absl::Duration retry_max = absl::Minutes(10);
  double domain_rate_per_second = 0;
  std::string from_name = "guestlist";
  std::string from_address = "no-reply@guestlist.local";
  // Distinguishes this process's leases (e.g. a random id).
  std::string owner_prefix;
};

class Dispatcher final {
 public:
  Dispatcher(MessageStore* store, const Clock* clock,
             std::function<std::unique_ptr<MailSender>()> sender_factory,
             DispatcherOptions options);
  ~Dispatcher();

  void Start();
  // Wakes idle workers (new messages were queued).
  void Notify();
  // Stops and joins the workers. Idempotent.
  void Stop();

  // The backoff before attempt `attempts + 1`, without jitter.
  static absl::Duration Backoff(int attempts, absl::Duration base,
                                absl::Duration max);

 private:
  void Run(int index);
  void DeliverBatch(MailSender& sender, const std::string& owner,
                    std::vector<StoredMessage> batch);
  absl::Duration Jittered(absl::Duration d);

  MessageStore* store_;
  const Clock* clock_;
  std::function<std::unique_ptr<MailSender>()> sender_factory_;
  const DispatcherOptions options_;
  DomainRateLimiter limiter_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};

  absl::Mutex wake_mu_;
  // Notifications not yet taken by an idle worker (at most `workers`).
  int wakes_ ABSL_GUARDED_BY(wake_mu_) = 0;
  // When the next idle poll is due (real time), taken by one worker.
  absl::Time next_poll_ ABSL_GUARDED_BY(wake_mu_) = absl::InfinitePast();

  // Held from just before the relay may accept a message until its SENT
  // row is written, so a kill -9 of this process can duplicate at most one
  // message (the one inside this window), whatever the worker count. The
  // price: a relay that stalls after the final "." holds up the other
  // workers' final step too (bounded by the SMTP timeout, lease / 3).
  absl::Mutex commit_gate_;

  absl::Mutex attachment_mu_;
  absl::flat_hash_map<std::string, MimeAttachment> attachment_cache_
      ABSL_GUARDED_BY(attachment_mu_);
};

}  // namespace guestlist::notification
