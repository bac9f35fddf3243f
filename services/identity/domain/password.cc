#include "services/identity/domain/password.h"

#include <sodium.h>

#include <thread>

namespace guestlist::identity {

PasswordHasher::PasswordHasher(int max_concurrent, size_t memlimit_bytes,
                               unsigned long long opslimit)
    : max_concurrent_(max_concurrent > 0
                          ? max_concurrent
                          : std::max(1u, std::thread::hardware_concurrency())),
      memlimit_(memlimit_bytes),
      opslimit_(opslimit) {
  if (sodium_init() < 0) abort();
}

void PasswordHasher::Acquire() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &PasswordHasher::HasFreeSlot));
  ++running_;
  peak_ = std::max(peak_, running_);
}

void PasswordHasher::Release() {
  absl::MutexLock lock(&mu_);
  --running_;
}

absl::StatusOr<std::string> PasswordHasher::Hash(absl::string_view password) {
  char out[crypto_pwhash_STRBYTES];
  Acquire();
  const int rc =
      crypto_pwhash_str_alg(out, password.data(), password.size(), opslimit_,
                            memlimit_, crypto_pwhash_ALG_ARGON2ID13);
  Release();
  if (rc != 0) {
    return absl::ResourceExhaustedError(
        "password hashing ran out of memory; retry shortly");
  }
  return std::string(out);
}

bool PasswordHasher::Verify(absl::string_view password,
                            const std::string& encoded) {
  if (encoded.empty()) return false;
  Acquire();
  const int rc = crypto_pwhash_str_verify(encoded.c_str(), password.data(),
                                          password.size());
  Release();
  return rc == 0;
}

const std::string& PasswordHasher::DummyHash() {
  {
    absl::MutexLock lock(&mu_);
    if (!dummy_.empty()) return dummy_;
  }
  absl::StatusOr<std::string> hash = Hash("guestlist-dummy-password");
  absl::MutexLock lock(&mu_);
  if (dummy_.empty() && hash.ok()) dummy_ = *hash;
  return dummy_;
}

int PasswordHasher::peak_concurrency() {
  absl::MutexLock lock(&mu_);
  return peak_;
}

}  // namespace guestlist::identity
