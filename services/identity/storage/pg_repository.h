// PostgreSQL implementation of identity's Repository (schema `identity`).
#pragma once

#include "common/idempotency.h"
#include "common/pg.h"
#include "services/identity/storage/repository.h"

namespace guestlist::identity {

class PgRepository final : public Repository {
 public:
  // `idempotency` stores responses in identity.idempotency_keys.
  PgRepository(pg::Pool* pool, IdempotencyStore* idempotency)
      : pool_(pool), idempotency_(idempotency) {}
  absl::Status Transact(
      const std::function<absl::Status(IdentityTx&)>& fn) override;
  absl::Status Autocommit(
      const std::function<absl::Status(IdentityTx&)>& fn) override;
  absl::StatusOr<std::optional<std::string>> LookupIdempotent(
      const std::string& scope, const std::string& key,
      const std::string& request_hash) override;
  absl::Status Ping() override { return pool_->Ping(); }

 private:
  pg::Pool* pool_;
  IdempotencyStore* idempotency_;
};

}  // namespace guestlist::identity
