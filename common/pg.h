// PostgreSQL access over libpq: a bounded connection pool that replaces
// broken connections (so a service survives a database restart), results,
// transactions that roll back unless committed, and the one SQLSTATE ->
// absl::Status translation.
#pragma once

#include <postgresql/libpq-fe.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace guestlist::pg {

// A bound query parameter in text format; nullopt is SQL NULL.
using Param = std::optional<std::string>;
using Params = std::vector<Param>;

// Owns a PGresult. Values are read as text.
class Result final {
 public:
  Result() = default;
  explicit Result(PGresult* res) : res_(res, &PQclear) {}

  int rows() const { return res_ ? PQntuples(res_.get()) : 0; }
  int columns() const { return res_ ? PQnfields(res_.get()) : 0; }
  bool IsNull(int row, int col) const;
  // Returns the text value ("" for NULL).
  std::string Get(int row, int col) const;
  std::optional<std::string> GetOptional(int row, int col) const;
  int64_t GetInt(int row, int col) const;
  bool GetBool(int row, int col) const;
  // Returns the affected row count of an INSERT/UPDATE/DELETE.
  int64_t AffectedRows() const;
  // Returns the index of the named column or -1.
  int Column(const char* name) const;

 private:
  std::shared_ptr<PGresult> res_;
};

// Translates a failed result (or connection state) to a Status:
// 23505 AlreadyExists, 23503 FailedPrecondition, 22xxx/23514 InvalidArgument,
// 40001/40P01 Aborted, 57014 DeadlineExceeded, 08xxx/57P0x/lost Unavailable.
absl::Status StatusFromResult(PGconn* conn, const PGresult* res);

// One statement of a pipeline (Connection::ExecPipeline).
struct Statement {
  std::string sql;
  Params params;
  // false: planned for its values each time (as Exec), for searches
  // whose best plan depends on them.
  bool prepared = true;
};

// One connection. Not thread-safe; owned by the pool between uses.
class Connection final {
 public:
  explicit Connection(PGconn* conn) : conn_(conn) {}
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one parameterised statement. Returns its result or the error.
  absl::StatusOr<Result> Exec(const std::string& sql,
                              const Params& params = {});
  // Like Exec, but the statement is parsed and planned once per connection
  // (a server-side prepared statement). For hot, simple statements whose
  // best plan does not depend on the parameters' values (lookups by key);
  // not for searches, where a generic plan can be far worse.
  absl::StatusOr<Result> ExecPrepared(const std::string& sql,
                                      const Params& params = {});
  // Statements (prepared as ExecPrepared unless said otherwise), optionally
  // followed by COMMIT, sent together (libpq pipeline mode): one round
  // trip, and no wait for this client between them (locks a statement
  // takes are held only while the server runs the rest). Returns their results
  // in order, or the first error (the later statements are skipped; the
  // transaction is then aborted, not ended: roll it back), or the COMMIT's
  // error (the transaction is over). `committed` says whether the COMMIT ran.
  absl::StatusOr<std::vector<Result>> ExecPipeline(
      const std::vector<Statement>& statements, bool commit, bool* committed);
  // Runs one or more statements without parameters (DDL, BEGIN, ...).
  absl::Status ExecScript(const std::string& sql);
  bool healthy() const {
    return PQstatus(conn_) == CONNECTION_OK &&
           PQpipelineStatus(conn_) == PQ_PIPELINE_OFF;
  }
  PGconn* raw() { return conn_; }

 private:
  // The name for a statement prepared after `pending` others that are not
  // in prepared_ yet.
  std::string NewPreparedName(size_t pending = 0) const {
    return absl::StrCat("gl_", prepared_.size() + pending + 1);
  }
  // Values as libpq takes them; InvalidArgument on a NUL byte.
  static absl::StatusOr<std::vector<const char*>> Values(const Params& params);
  absl::StatusOr<Result> Finish(PGresult* res);

  PGconn* conn_;
  // SQL text -> name of its prepared statement on this connection.
  absl::flat_hash_map<std::string, std::string> prepared_;
};

class Pool;

// A connection borrowed from a pool; returned to it on destruction.
class PooledConnection final {
 public:
  PooledConnection(Pool* pool, std::unique_ptr<Connection> conn)
      : pool_(pool), conn_(std::move(conn)) {}
  PooledConnection(PooledConnection&& other) noexcept = default;
  PooledConnection& operator=(PooledConnection&&) = delete;
  ~PooledConnection();
  Connection* operator->() { return conn_.get(); }
  Connection& operator*() { return *conn_; }

 private:
  Pool* pool_;
  std::unique_ptr<Connection> conn_;
};

struct PoolOptions {
  std::string conninfo;  // libpq connection string or URL
  int max_size = 8;
  absl::Duration acquire_timeout = absl::Seconds(5);
  absl::Duration connect_timeout = absl::Seconds(5);
  // Session setting applied to every new connection (0 = none).
  absl::Duration statement_timeout = absl::Seconds(30);
};

// A bounded pool. Acquire waits up to acquire_timeout for a free slot,
// then fails with Unavailable. Broken connections are dropped on release.
class Pool final {
 public:
  explicit Pool(PoolOptions options);
  ~Pool();

  // Returns a healthy connection or Unavailable.
  absl::StatusOr<PooledConnection> Acquire();
  // Acquire + Exec + release.
  absl::StatusOr<Result> Exec(const std::string& sql,
                              const Params& params = {});
  // Acquire + ExecPrepared + release.
  absl::StatusOr<Result> ExecPrepared(const std::string& sql,
                                      const Params& params = {});
  // Returns OK when the database answers `SELECT 1`.
  absl::Status Ping();
  const PoolOptions& options() const { return options_; }

 private:
  friend class PooledConnection;
  void Release(std::unique_ptr<Connection> conn);
  absl::StatusOr<std::unique_ptr<Connection>> Connect();

  const PoolOptions options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle + borrowed + connecting
};

// BEGIN on construction; ROLLBACK on destruction unless Commit() succeeded.
class Transaction final {
 public:
  // Starts a transaction; check ok() / status() before use.
  explicit Transaction(PooledConnection& conn,
                       const std::string& begin = "BEGIN");
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  const absl::Status& status() const { return status_; }
  absl::StatusOr<Result> Exec(const std::string& sql,
                              const Params& params = {});
  // As Connection::ExecPrepared (key lookups only).
  absl::StatusOr<Result> ExecPrepared(const std::string& sql,
                                      const Params& params = {});
  // Statements in one round trip (Connection::ExecPipeline), with the
  // COMMIT if `commit`. On a statement's error the transaction is rolled
  // back as usual (destructor).
  absl::StatusOr<std::vector<Result>> ExecPipeline(
      const std::vector<Statement>& statements, bool commit = false);
  absl::Status Commit();
  Connection& connection() { return *conn_; }

 private:
  PooledConnection& conn_;
  absl::Status status_;
  bool done_ = false;
};

// Helpers to format parameters.
Param Text(std::string value);
Param NullIfEmpty(const std::string& value);
Param Int(int64_t value);
Param Bool(bool value);
// RFC 3339 UTC timestamp accepted by timestamptz, or NULL for InfinitePast.
Param Time(absl::Time t);
// Parses a timestamptz text value as returned by the server (ISO, UTC).
absl::Time ParseTime(const std::string& text);
// Postgres array literal of text values: {"a","b"}.
std::string TextArray(const std::vector<std::string>& values);

}  // namespace guestlist::pg
