// Idempotency keys for creating RPCs (API.md): a repeat with the same key
// and the same request returns the first response; the same key with a
// different request is INVALID_ARGUMENT. Rows live in the service's own
// <schema>.idempotency_keys (see CommonTablesMigration).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/pg.h"

namespace guestlist {

class IdempotencyStore final {
 public:
  // `secret` (may be empty) encrypts stored responses (libsodium
  // secretbox), so responses that carry a secret are never stored in clear.
  IdempotencyStore(std::string schema, std::string secret,
                   absl::Duration retention = absl::Hours(24));

  // Returns the stored response for (scope, key) if the request hash
  // matches, nullopt if the key is new, InvalidArgument if it was used with
  // a different request. `scope` separates callers and methods
  // (e.g. "InviteUser/<workspace_id>").
  absl::StatusOr<std::optional<std::string>> Lookup(
      pg::Transaction& tx, const std::string& scope, const std::string& key,
      const std::string& request_hash);
  absl::StatusOr<std::optional<std::string>> Lookup(
      pg::Pool& pool, const std::string& scope, const std::string& key,
      const std::string& request_hash);

  // Records the response inside the transaction that made the change, so a
  // crash cannot separate the two. AlreadyExists if a concurrent call won.
  absl::Status Save(pg::Transaction& tx, const std::string& scope,
                    const std::string& key, const std::string& request_hash,
                    const std::string& response);

  // Deletes rows older than the retention period; returns how many.
  absl::StatusOr<int64_t> Purge(pg::Pool& pool);

 private:
  std::string Seal(const std::string& plain) const;
  absl::StatusOr<std::string> Open(const std::string& sealed) const;
  absl::StatusOr<std::optional<std::string>> FromResult(
      const pg::Result& r, const std::string& key,
      const std::string& request_hash) const;

  const std::string schema_;
  std::string key_;  // 32 bytes, or empty (no encryption)
  const absl::Duration retention_;
};

// Hash of a request message's deterministic serialization, for Lookup/Save.
std::string RequestHash(const std::string& serialized_request);

}  // namespace guestlist
