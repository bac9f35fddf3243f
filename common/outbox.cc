#include "common/outbox.h"

#include <algorithm>
#include <cmath>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace guestlist {

Migration CommonTablesMigration(const std::string& schema) {
  return Migration{
      "V000__common_tables",
      absl::StrCat(
          "CREATE TABLE IF NOT EXISTS ", schema, ".outbox (\n",
          "  id bigserial PRIMARY KEY,\n", "  topic text NOT NULL,\n",
          "  payload bytea NOT NULL,\n", "  attempts int NOT NULL DEFAULT 0,\n",
          "  next_attempt_at timestamptz NOT NULL DEFAULT now(),\n",
          "  last_error text,\n", "  dead boolean NOT NULL DEFAULT false,\n",
          "  created_at timestamptz NOT NULL DEFAULT now());\n",
          "CREATE INDEX IF NOT EXISTS outbox_due ON ", schema,
          ".outbox (next_attempt_at) WHERE NOT dead;\n",
          "CREATE TABLE IF NOT EXISTS ", schema, ".idempotency_keys (\n",
          "  scope text NOT NULL,\n",
          "  key text NOT NULL CHECK (length(key) <= 200),\n",
          "  request_hash text NOT NULL,\n", "  response bytea NOT NULL,\n",
          "  created_at timestamptz NOT NULL DEFAULT now(),\n",
          "  PRIMARY KEY (scope, key));\n")};
}

absl::Status EnqueueOutbox(pg::Transaction& tx, const std::string& schema,
                           const std::string& topic,
                           const std::string& payload) {
  return tx
      .Exec(absl::StrCat("INSERT INTO ", schema,
                         ".outbox (topic, payload) VALUES ($1, "
                         "decode($2, 'hex'))"),
            {topic, absl::BytesToHexString(payload)})
      .status();
}

OutboxRelay::OutboxRelay(pg::Pool* pool, std::string schema, Options options)
    : pool_(pool), schema_(std::move(schema)), options_(options) {}

OutboxRelay::~OutboxRelay() { Stop(); }

void OutboxRelay::Register(const std::string& topic, Handler handler) {
  handlers_[topic] = std::move(handler);
}

void OutboxRelay::RegisterBatch(const std::string& topic,
                                BatchHandler handler) {
  batch_handlers_[topic] = std::move(handler);
}

void OutboxRelay::Start() {
  thread_ = std::thread([this] {
    while (!stopping_) {
      absl::StatusOr<int> n = RunOnce();
      if (!n.ok()) {
        LogWarning("outbox relay failed",
                   {{"schema", schema_}, {"error", n.status().ToString()}});
      }
      if (n.ok() && *n >= options_.batch_size) continue;  // more waiting
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return woken_ || stopping_.load();
      };
      mu_.AwaitWithTimeout(absl::Condition(&woken), options_.poll_interval);
      if (woken_ && options_.wake_gather > absl::ZeroDuration()) {
        auto stopping = [this] { return stopping_.load(); };
        mu_.AwaitWithTimeout(absl::Condition(&stopping), options_.wake_gather);
      }
      woken_ = false;
    }
  });
}

void OutboxRelay::Stop() {
  stopping_ = true;
  Wake();
  if (thread_.joinable()) thread_.join();
}

void OutboxRelay::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

absl::StatusOr<int> OutboxRelay::RunOnce() {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  ASSIGN_OR_RETURN(
      pg::Result rows,
      tx.Exec(absl::StrCat("SELECT id, topic, encode(payload, 'hex'), "
                           "attempts FROM ",
                           schema_,
                           ".outbox WHERE NOT dead AND next_attempt_at <= "
                           "now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"),
              {pg::Int(options_.batch_size)}));
  // Outcome of each claimed row: batch topics are delivered together, the
  // others one by one in id order.
  std::vector<absl::Status> outcome(rows.rows());
  std::map<std::string, std::vector<int>> batched;
  for (int i = 0; i < rows.rows(); ++i) {
    if (batch_handlers_.count(rows.Get(i, 1))) {
      batched[rows.Get(i, 1)].push_back(i);
    }
  }
  for (const auto& [topic, indexes] : batched) {
    std::vector<std::string> payloads;
    for (int i : indexes) {
      payloads.push_back(absl::HexStringToBytes(rows.Get(i, 2)));
    }
    std::vector<absl::Status> results = batch_handlers_.at(topic)(payloads);
    for (size_t k = 0; k < indexes.size(); ++k) {
      outcome[indexes[k]] = k < results.size()
                                ? results[k]
                                : absl::InternalError("no result for this row");
    }
  }
  for (int i = 0; i < rows.rows(); ++i) {
    const std::string topic = rows.Get(i, 1);
    if (batched.count(topic)) continue;
    auto handler = handlers_.find(topic);
    outcome[i] =
        handler == handlers_.end()
            ? absl::UnimplementedError(absl::StrCat("no handler for ", topic))
            : handler->second(absl::HexStringToBytes(rows.Get(i, 2)));
  }
  std::vector<std::string> done;
  absl::BitGen gen;
  for (int i = 0; i < rows.rows(); ++i) {
    const std::string id = rows.Get(i, 0);
    const std::string topic = rows.Get(i, 1);
    const int attempts = static_cast<int>(rows.GetInt(i, 3)) + 1;
    const absl::Status& s = outcome[i];
    if (s.ok()) {
      done.push_back(id);
      continue;
    }
    // Exponential backoff with full jitter, capped.
    const double cap = absl::ToDoubleSeconds(options_.max_backoff);
    const double backoff =
        std::min(cap, 0.1 * std::pow(2.0, std::min(attempts, 30)));
    const double delay = absl::Uniform(gen, backoff / 2, backoff);
    const bool dead = attempts >= options_.max_attempts;
    if (dead) {
      LogError("outbox message parked after too many attempts",
               {{"schema", schema_},
                {"topic", topic},
                {"id", id},
                {"error", s.ToString()}});
    }
    RETURN_IF_ERROR(
        tx.Exec(absl::StrCat("UPDATE ", schema_,
                             ".outbox SET attempts = $2, last_error = $3, "
                             "dead = $4, next_attempt_at = now() + "
                             "make_interval(secs => $5) WHERE id = $1"),
                {id, pg::Int(attempts), s.ToString(), pg::Bool(dead),
                 absl::StrCat(delay)})
            .status());
  }
  if (!done.empty()) {
    RETURN_IF_ERROR(
        tx.Exec(absl::StrCat("DELETE FROM ", schema_,
                             ".outbox WHERE id = ANY($1::bigint[])"),
                {pg::TextArray(done)})
            .status());
  }
  const int delivered = static_cast<int>(done.size());
  RETURN_IF_ERROR(tx.Commit());
  return delivered;
}

}  // namespace guestlist
