#include "common/migrations.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace guestlist {
namespace {

bool IsValidSchemaName(const std::string& schema) {
  if (schema.empty() || schema.size() > 63) return false;
  return std::all_of(schema.begin(), schema.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || c == '_' || (c >= '0' && c <= '9');
  });
}

}  // namespace

absl::Status RunMigrations(pg::Pool& pool, const std::string& schema,
                           std::vector<Migration> migrations, int* applied) {
  if (!IsValidSchemaName(schema)) {
    return absl::InvalidArgumentError(
        absl::StrCat("schema name \"", schema, "\" must match [a-z0-9_]+"));
  }
  std::sort(migrations.begin(), migrations.end(),
            [](const Migration& a, const Migration& b) {
              return a.version < b.version;
            });
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool.Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  // One lock per schema: a second replica waits here, then finds nothing
  // left to apply.
  RETURN_IF_ERROR(tx.Exec("SELECT pg_advisory_xact_lock(hashtext($1))",
                          {absl::StrCat("guestlist.migrate.", schema)})
                      .status());
  RETURN_IF_ERROR(
      tx.Exec(absl::StrCat("CREATE SCHEMA IF NOT EXISTS ", schema)).status());
  RETURN_IF_ERROR(tx.Exec(absl::StrCat("CREATE TABLE IF NOT EXISTS ", schema,
                                       ".schema_migrations (version text "
                                       "PRIMARY KEY, applied_at timestamptz "
                                       "NOT NULL DEFAULT now())"))
                      .status());
  ASSIGN_OR_RETURN(pg::Result done,
                   tx.Exec(absl::StrCat("SELECT version FROM ", schema,
                                        ".schema_migrations")));
  std::vector<std::string> versions;
  for (int i = 0; i < done.rows(); ++i) versions.push_back(done.Get(i, 0));
  int count = 0;
  for (const Migration& m : migrations) {
    if (std::find(versions.begin(), versions.end(), m.version) !=
        versions.end()) {
      continue;
    }
    absl::Status s = tx.connection().ExecScript(m.sql);
    if (!s.ok()) {
      return absl::InternalError(absl::StrCat(
          "migration ", schema, "/", m.version, " failed: ", s.message()));
    }
    RETURN_IF_ERROR(tx.Exec(absl::StrCat("INSERT INTO ", schema,
                                         ".schema_migrations (version) "
                                         "VALUES ($1)"),
                            {m.version})
                        .status());
    LogInfo("applied migration", {{"schema", schema}, {"version", m.version}});
    ++count;
  }
  RETURN_IF_ERROR(tx.Commit());
  if (applied != nullptr) *applied = count;
  return absl::OkStatus();
}

}  // namespace guestlist
