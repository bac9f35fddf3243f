#include "common/random.h"

#include <sodium.h>

#include <cstdio>

#include "absl/strings/escaping.h"

namespace guestlist {
namespace {

// libsodium must be initialised once before use; it is thread-safe after.
void EnsureSodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) std::abort();
}

std::string Hex(const unsigned char* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

}  // namespace

std::string SecureRandom::Bytes(size_t n) {
  EnsureSodium();
  std::string out(n, '\0');
  randombytes_buf(out.data(), n);
  return out;
}

std::string FakeRandom::Bytes(size_t n) {
  absl::MutexLock lock(&mu_);
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<char>((counter_ * 131 + i * 7) & 0xff);
  }
  ++counter_;
  return out;
}

std::string NewUuid(RandomSource& random) {
  std::string b = random.Bytes(16);
  b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);
  std::string hex = Hex(reinterpret_cast<const unsigned char*>(b.data()), 16);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) +
         "-" + hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

std::string NewToken(RandomSource& random, size_t bytes,
                     const std::string& prefix) {
  return prefix + absl::WebSafeBase64Escape(random.Bytes(bytes));
}

std::string Sha256Hex(const std::string& data) {
  EnsureSodium();
  unsigned char out[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(out, reinterpret_cast<const unsigned char*>(data.data()),
                     data.size());
  return Hex(out, sizeof(out));
}

std::string HmacSha256Hex(const std::string& key, const std::string& data) {
  EnsureSodium();
  unsigned char out[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(
      &state, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(
      &state, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  crypto_auth_hmacsha256_final(&state, out);
  return Hex(out, sizeof(out));
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace guestlist
