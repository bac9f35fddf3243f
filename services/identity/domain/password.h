// Password hashing with argon2id (libsodium crypto_pwhash_str, OWASP
// parameters m = 19 MiB, t = 2, p = 1). At most `max_concurrent` hashes
// run at once so a burst of logins cannot exhaust memory (19 MiB each).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace guestlist::identity {

class PasswordHasher final {
 public:
  // max_concurrent <= 0: the number of cores.
  explicit PasswordHasher(int max_concurrent = 0,
                          size_t memlimit_bytes = 19u << 20,
                          unsigned long long opslimit = 2);

  // Returns the encoded argon2id hash; ResourceExhausted if out of memory.
  absl::StatusOr<std::string> Hash(absl::string_view password);
  // Whether `password` matches `encoded`. False for an empty hash.
  bool Verify(absl::string_view password, const std::string& encoded);
  // A fixed hash to verify against for unknown users, so timing does not
  // reveal whether a username exists.
  const std::string& DummyHash();

  int max_concurrent() const { return max_concurrent_; }
  // The largest number of hashes seen running at once (tests).
  int peak_concurrency();

 private:
  void Acquire();
  void Release();
  bool HasFreeSlot() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return running_ < max_concurrent_;
  }

  const int max_concurrent_;
  const size_t memlimit_;
  const unsigned long long opslimit_;
  mutable absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int peak_ ABSL_GUARDED_BY(mu_) = 0;
  std::string dummy_ ABSL_GUARDED_BY(mu_);
};

}  // namespace guestlist::identity
