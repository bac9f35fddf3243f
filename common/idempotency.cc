#include "common/idempotency.h"

#include <sodium.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/random.h"
#include "common/status_macros.h"

namespace guestlist {

IdempotencyStore::IdempotencyStore(std::string schema, std::string secret,
                                   absl::Duration retention)
    : schema_(std::move(schema)), retention_(retention) {
  if (!secret.empty()) {
    if (sodium_init() < 0) std::abort();
    key_ = absl::HexStringToBytes(
        HmacSha256Hex(secret, "guestlist idempotency responses v1"));
  }
}

std::string IdempotencyStore::Seal(const std::string& plain) const {
  if (key_.empty()) return plain;
  std::string nonce(crypto_secretbox_NONCEBYTES, '\0');
  randombytes_buf(nonce.data(), nonce.size());
  std::string out(crypto_secretbox_MACBYTES + plain.size(), '\0');
  crypto_secretbox_easy(reinterpret_cast<unsigned char*>(out.data()),
                        reinterpret_cast<const unsigned char*>(plain.data()),
                        plain.size(),
                        reinterpret_cast<const unsigned char*>(nonce.data()),
                        reinterpret_cast<const unsigned char*>(key_.data()));
  return nonce + out;
}

absl::StatusOr<std::string> IdempotencyStore::Open(
    const std::string& sealed) const {
  if (key_.empty()) return sealed;
  if (sealed.size() < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)
    return absl::InternalError("stored idempotent response is corrupt");
  const size_t body = sealed.size() - crypto_secretbox_NONCEBYTES;
  std::string out(body - crypto_secretbox_MACBYTES, '\0');
  if (crypto_secretbox_open_easy(
          reinterpret_cast<unsigned char*>(out.data()),
          reinterpret_cast<const unsigned char*>(sealed.data()) +
              crypto_secretbox_NONCEBYTES,
          body, reinterpret_cast<const unsigned char*>(sealed.data()),
          reinterpret_cast<const unsigned char*>(key_.data())) != 0) {
    return absl::InternalError(
        "stored idempotent response cannot be decrypted (secret changed?)");
  }
  return out;
}

absl::StatusOr<std::optional<std::string>> IdempotencyStore::FromResult(
    const pg::Result& r, const std::string& key,
    const std::string& request_hash) const {
  if (r.rows() == 0) return std::optional<std::string>();
  if (r.Get(0, 0) != request_hash) {
    return absl::InvalidArgumentError(absl::StrCat(
        "idempotency_key \"", key,
        "\" was already used with a different request; use a new key for a "
        "new request"));
  }
  ASSIGN_OR_RETURN(std::string plain,
                   Open(absl::HexStringToBytes(r.Get(0, 1))));
  return std::optional<std::string>(std::move(plain));
}

namespace {
std::string LookupSql(const std::string& schema) {
  return absl::StrCat("SELECT request_hash, encode(response, 'hex') FROM ",
                      schema,
                      ".idempotency_keys WHERE scope = $1 AND key = $2");
}
}  // namespace

absl::StatusOr<std::optional<std::string>> IdempotencyStore::Lookup(
    pg::Transaction& tx, const std::string& scope, const std::string& key,
    const std::string& request_hash) {
  ASSIGN_OR_RETURN(pg::Result r,
                   tx.ExecPrepared(LookupSql(schema_), {scope, key}));
  return FromResult(r, key, request_hash);
}

absl::StatusOr<std::optional<std::string>> IdempotencyStore::Lookup(
    pg::Pool& pool, const std::string& scope, const std::string& key,
    const std::string& request_hash) {
  ASSIGN_OR_RETURN(pg::Result r,
                   pool.ExecPrepared(LookupSql(schema_), {scope, key}));
  return FromResult(r, key, request_hash);
}

absl::Status IdempotencyStore::Save(pg::Transaction& tx,
                                    const std::string& scope,
                                    const std::string& key,
                                    const std::string& request_hash,
                                    const std::string& response) {
  return tx
      .ExecPrepared(
          absl::StrCat("INSERT INTO ", schema_,
                       ".idempotency_keys (scope, key, request_hash, "
                       "response) VALUES ($1, $2, $3, decode($4, 'hex'))"),
          {scope, key, request_hash, absl::BytesToHexString(Seal(response))})
      .status();
}

absl::StatusOr<int64_t> IdempotencyStore::Purge(pg::Pool& pool) {
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool.Exec(absl::StrCat("DELETE FROM ", schema_,
                             ".idempotency_keys WHERE created_at < now() - "
                             "make_interval(secs => $1)"),
                {pg::Int(absl::ToInt64Seconds(retention_))}));
  return r.AffectedRows();
}

std::string RequestHash(const std::string& serialized_request) {
  return Sha256Hex(serialized_request);
}

}  // namespace guestlist
