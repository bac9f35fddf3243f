// Schema migrations: each service applies its own ordered SQL files to its
// own schema, records them in <schema>.schema_migrations, and serialises
// concurrent starts with an advisory lock, so two replicas migrate once.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/pg.h"

namespace guestlist {

struct Migration {
  std::string version;  // file name without .sql, e.g. V001__create_schema
  std::string sql;
};

// Applies every migration of `migrations` (sorted by version) that is not
// yet recorded. Returns the number applied through `applied` (optional).
// Errors: InvalidArgument for a bad schema name, Unavailable when the
// database is unreachable, Internal when a migration fails (rolled back).
absl::Status RunMigrations(pg::Pool& pool, const std::string& schema,
                           std::vector<Migration> migrations,
                           int* applied = nullptr);

}  // namespace guestlist
