#include "services/notification/delivery/dispatcher.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "services/notification/domain/mime.h"

namespace guestlist::notification {
namespace {

// Report PDFs are shared by many messages; keep only a few in memory.
constexpr size_t kMaxCachedAttachments = 4;

}  // namespace

absl::Duration DomainRateLimiter::Reserve(const std::string& domain,
                                          absl::Time now) {
  if (rate_ <= 0) return absl::ZeroDuration();
  const double burst = std::max(1.0, rate_);
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = buckets_.try_emplace(domain, Bucket{burst, now});
  Bucket& b = it->second;
  if (!inserted) {
    b.tokens =
        std::min(burst, b.tokens + absl::ToDoubleSeconds(now - b.last) * rate_);
    b.last = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return absl::ZeroDuration();
  }
  return absl::Seconds((1.0 - b.tokens) / rate_);
}

Dispatcher::Dispatcher(
    MessageStore* store, const Clock* clock,
    std::function<std::unique_ptr<MailSender>()> sender_factory,
    DispatcherOptions options)
    : store_(store),
      clock_(clock),
      sender_factory_(std::move(sender_factory)),
      options_(std::move(options)),
      limiter_(options_.domain_rate_per_second) {}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  for (int i = 0; i < options_.workers; ++i) {
    threads_.emplace_back([this, i] { Run(i); });
  }
}

void Dispatcher::Notify() {
  // One idle worker per notification (at most all of them): a few queued
  // messages need one claim, not one per worker.
  absl::MutexLock lock(&wake_mu_);
  wakes_ = std::min(wakes_ + 1, options_.workers);
}

void Dispatcher::Stop() {
  stopping_ = true;
  Notify();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

absl::Duration Dispatcher::Backoff(int attempts, absl::Duration base,
                                   absl::Duration max) {
  absl::Duration d = base;
  for (int i = 1; i < attempts && d < max; ++i) d *= 2;
  return std::min(d, max);
}

absl::Duration Dispatcher::Jittered(absl::Duration d) {
  // "Equal jitter": between half and all of the delay, so replicas that
  // failed together do not retry together.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> dist(0.5, 1.0);
  return d * dist(rng);
}

void Dispatcher::Run(int index) {
  if (options_.nice > 0 &&
      setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)),
                  options_.nice) != 0) {
    LogWarning("could not lower the delivery threads' priority",
               {{"error", std::strerror(errno)}});
  }
  const std::string owner = absl::StrCat(options_.owner_prefix, "/", index);
  std::unique_ptr<MailSender> sender = sender_factory_();
  absl::Time next_housekeeping = clock_->Now();
  while (!stopping_) {
    if (index == 0 && clock_->Now() >= next_housekeeping) {
      // Every replica may do this; the DELETE is idempotent and cheap.
      next_housekeeping = clock_->Now() + absl::Minutes(10);
      absl::StatusOr<int64_t> purged =
          store_->PurgeDedupeKeys(clock_->Now() - absl::Hours(1));
      if (!purged.ok()) {
        LogWarning("purging expired dedupe keys failed",
                   {{"error", std::string(purged.status().message())}});
      }
    }
    absl::StatusOr<std::vector<StoredMessage>> batch = store_->Claim(
        owner, clock_->Now(), options_.lease, options_.batch_size);
    if (!batch.ok()) {
      LogWarning("claiming messages failed",
                 {{"error", std::string(batch.status().message())}});
    } else if (!batch->empty()) {
      // A full batch: more may be waiting, let another worker look too,
      // and look again. A partial one took everything due: a message
      // queued since then has counted a Notify(), so the wait below ends
      // at once for it, and an empty claim is not spent on finding that.
      const bool full = static_cast<int>(batch->size()) >= options_.batch_size;
      if (full) Notify();
      DeliverBatch(*sender, owner, *std::move(batch));
      if (full) continue;
    }
    // Idle: wait for Notify() (one made while this claim ran is still
    // counted, so it is not lost) or for this worker's turn to poll. The
    // workers share one poll per poll_interval: each claim scans the due
    // index, and idle workers polling on their own multiplied that by the
    // worker count for nothing.
    absl::MutexLock lock(&wake_mu_);
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_) {
      return wakes_ > 0 || stopping_.load();
    };
    while (true) {
      const absl::Time now = absl::Now();
      if (next_poll_ <= now) {
        next_poll_ = now + options_.poll_interval;
        break;
      }
      if (wake_mu_.AwaitWithDeadline(absl::Condition(&woken), next_poll_)) {
        if (wakes_ > 0) --wakes_;
        // Let the messages queued in the next few milliseconds (a burst of
        // invites arrives as many small batches) share this claim.
        if (options_.wake_gather > absl::ZeroDuration()) {
          auto stop = [this] { return stopping_.load(); };
          wake_mu_.AwaitWithTimeout(absl::Condition(&stop),
                                    options_.wake_gather);
        }
        break;
      }
    }
  }
}

void Dispatcher::DeliverBatch(MailSender& sender, const std::string& owner,
                              std::vector<StoredMessage> batch) {
  const absl::Time claimed = clock_->Now();
  std::vector<std::string> ids;
  ids.reserve(batch.size());
  for (const StoredMessage& m : batch) ids.push_back(m.id);

  absl::flat_hash_map<std::string, std::vector<std::string>> attachment_ids;
  if (absl::StatusOr<std::vector<AttachmentRef>> refs =
          store_->AttachmentRefs(ids);
      refs.ok()) {
    for (const AttachmentRef& r : *refs) {
      attachment_ids[r.message_id].push_back(r.attachment_id);
    }
  } else {
    LogWarning("loading attachment refs failed",
               {{"error", std::string(refs.status().message())}});
    (void)store_->Release(ids, clock_->Now() + options_.poll_interval);
    return;
  }

  for (size_t i = 0; i < batch.size(); ++i) {
    const StoredMessage& m = batch[i];
    const absl::Time now = clock_->Now();
    // Hand back what is left when stopping or before the lease runs out, so
    // nobody else picks a message up while we still send it.
    if (stopping_ || now - claimed > options_.lease / 2) {
      std::vector<std::string> rest(ids.begin() + i, ids.end());
      (void)store_->Release(rest, now);
      return;
    }
    const absl::Duration wait = limiter_.Reserve(EmailDomain(m.recipient), now);
    if (wait > absl::ZeroDuration()) {
      (void)store_->Release({m.id}, now + wait);
      continue;
    }

    MimeMessage mime;
    mime.from_name = options_.from_name;
    mime.from_address = options_.from_address;
    mime.to_name = m.recipient_name;
    mime.to_address = m.recipient;
    mime.subject = m.subject;
    mime.text_body = m.text_body;
    mime.html_body = m.html_body;
    mime.message_id = m.message_id_header;
    mime.date = m.create_time;
    mime.unsubscribe_url = m.unsubscribe_url;
    bool attachments_ok = true;
    for (const std::string& aid : attachment_ids[m.id]) {
      absl::MutexLock lock(&attachment_mu_);
      auto it = attachment_cache_.find(aid);
      if (it == attachment_cache_.end()) {
        absl::StatusOr<MimeAttachment> a = store_->GetAttachment(aid);
        if (!a.ok()) {
          attachments_ok = false;
          break;
        }
        if (attachment_cache_.size() >= kMaxCachedAttachments) {
          attachment_cache_.clear();
        }
        it = attachment_cache_.emplace(aid, *std::move(a)).first;
      }
      mime.attachments.push_back(it->second);
    }
    if (!attachments_ok) {
      (void)store_->Release({m.id}, now + options_.poll_interval);
      continue;
    }
    const std::string body = BuildMime(mime);
    std::string message_id = m.message_id_header;
    if (message_id.size() > 2) {
      message_id = message_id.substr(1, message_id.size() - 2);
    }

    bool gate_held = false;
    const SendOutcome outcome =
        sender.Send({options_.from_address, m.recipient, message_id}, body,
                    [this, &gate_held] {
                      commit_gate_.Lock();
                      gate_held = true;
                    });
    const absl::Time done = clock_->Now();
    absl::Status recorded;
    switch (outcome.kind) {
      case SendOutcome::Kind::kSent:
        recorded = store_->MarkSent(m.id, done);
        break;
      case SendOutcome::Kind::kPermanent:
        recorded = store_->MarkFailed(m.id, done, outcome.error);
        break;
      case SendOutcome::Kind::kTransient:
        if (m.attempts + 1 >= options_.max_attempts) {
          recorded =
              store_->MarkFailed(m.id, done,
                                 absl::StrCat("gave up after ", m.attempts + 1,
                                              " attempts: ", outcome.error));
        } else {
          recorded = store_->MarkRetry(
              m.id, done,
              done + Jittered(Backoff(m.attempts + 1, options_.retry_base,
                                      options_.retry_max)),
              outcome.error);
        }
        break;
    }
    if (gate_held) commit_gate_.Unlock();
    if (!recorded.ok()) {
      // The lease expires and the message is sent again: at least once.
      LogWarning(
          "recording a delivery failed",
          {{"message", m.id}, {"error", std::string(recorded.message())}});
    }
    if (outcome.kind == SendOutcome::Kind::kSent) continue;
    LogWarning("delivery attempt failed",
               {{"message", m.id},
                {"attempt", absl::StrCat(m.attempts + 1)},
                {"error", outcome.error}});
    if (!outcome.reached_server) {
      // The relay is down: the rest of the batch would fail the same way.
      // Hand it back (no attempt counted) and pause this worker.
      const absl::Duration pause =
          Jittered(Backoff(1, options_.retry_base, options_.retry_max));
      std::vector<std::string> rest(ids.begin() + i + 1, ids.end());
      (void)store_->Release(rest, done + pause);
      absl::MutexLock lock(&wake_mu_);
      auto stop = [this] { return stopping_.load(); };
      wake_mu_.AwaitWithTimeout(absl::Condition(&stop), pause);
      return;
    }
  }
}

}  // namespace guestlist::notification
