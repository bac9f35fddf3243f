// Injected randomness: a CSPRNG for tokens and ids in production, a
// deterministic source in tests.
#pragma once

#include <cstdint>
#include <string>

#include "absl/synchronization/mutex.h"

namespace guestlist {

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // Returns `n` random bytes.
  virtual std::string Bytes(size_t n) = 0;
};

// libsodium's randombytes_buf (the OS CSPRNG).
class SecureRandom final : public RandomSource {
 public:
  std::string Bytes(size_t n) override;
};

// Deterministic counter-based bytes for tests.
class FakeRandom final : public RandomSource {
 public:
  std::string Bytes(size_t n) override;

 private:
  absl::Mutex mu_;
  uint64_t counter_ ABSL_GUARDED_BY(mu_) = 0;
};

// Returns a random (version 4) UUID string drawn from `random`.
std::string NewUuid(RandomSource& random);

// Returns an opaque URL-safe token of `bytes` random bytes (base64url, no
// padding), prefixed by `prefix` (e.g. "gls_").
std::string NewToken(RandomSource& random, size_t bytes,
                     const std::string& prefix);

// Returns the lowercase hex SHA-256 of `data` (how tokens are stored).
std::string Sha256Hex(const std::string& data);

// Returns a keyed hash (HMAC-SHA-256, hex) for signed links.
std::string HmacSha256Hex(const std::string& key, const std::string& data);

// Constant-time string equality.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

}  // namespace guestlist
