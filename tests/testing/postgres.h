// A throwaway PostgreSQL cluster for tests: initdb into a fresh directory
// under /tmp (owned by the `postgres` OS user when run as root), started on
// a free port, removed on destruction. Tests using it need
// tags = ["no-sandbox"] (see ../shared/notes/bazel-offline.md).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace guestlist::testing {

class TestPostgres final {
 public:
  // Creates and starts the cluster. Aborts the test binary on failure.
  TestPostgres();
  ~TestPostgres();
  TestPostgres(const TestPostgres&) = delete;
  TestPostgres& operator=(const TestPostgres&) = delete;

  // libpq connection string for database `db` (created on demand).
  std::string ConnInfo(const std::string& db = "postgres") const;
  // Creates a database; returns its connection string.
  std::string CreateDatabase(const std::string& db);
  int port() const { return port_; }
  // `pg_ctl stop -m immediate` / start: fault injection.
  void Stop();
  void Start();
  // Runs SQL through psql; returns its stdout.
  std::string Psql(const std::string& sql, const std::string& db = "postgres");

 private:
  std::string dir_;
  int port_ = 0;
};

// Returns a TCP port that was free a moment ago.
int FreePort();

// Runs a shell command; returns its stdout, aborting if it fails.
std::string Run(const std::string& command);

}  // namespace guestlist::testing
