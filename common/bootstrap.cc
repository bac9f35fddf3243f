#include "common/bootstrap.h"

#include <cstdlib>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/service_flags.h"

ABSL_FLAG(bool, migrate_only, false,
          "apply this service's migrations, then exit 0 (for a Kubernetes "
          "Job or init container)");
ABSL_FLAG(absl::Duration, db_connect_wait, absl::Seconds(15),
          "how long to keep trying to reach the database at start");

namespace guestlist {

std::unique_ptr<pg::Pool> OpenDatabaseOrExit(
    const std::string& service, const std::string& schema,
    std::vector<Migration> migrations) {
  const std::string setting =
      absl::StrCat("--database_url / GUESTLIST_",
                   absl::AsciiStrToUpper(service), "_DATABASE_URL");
  const std::string url = absl::GetFlag(FLAGS_database_url);
  if (url.empty()) {
    ExitWithError(service, absl::StrCat(setting,
                                        " is not set; give a libpq connection "
                                        "string such as "
                                        "postgresql://user@host:5432/db"));
  }
  auto pool = std::make_unique<pg::Pool>(pg::PoolOptions{
      .conninfo = url, .max_size = absl::GetFlag(FLAGS_db_pool_size)});
  const absl::Time deadline =
      absl::Now() + absl::GetFlag(FLAGS_db_connect_wait);
  absl::Status ping = pool->Ping();
  while (!ping.ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(250));
    ping = pool->Ping();
  }
  if (!ping.ok()) {
    ExitWithError(service, absl::StrCat("cannot reach the database given by ",
                                        setting, ": ", ping.message()));
  }
  int applied = 0;
  absl::Status migrated =
      RunMigrations(*pool, schema, std::move(migrations), &applied);
  if (!migrated.ok()) {
    ExitWithError(service, absl::StrCat("migrating schema ", schema, " (",
                                        setting, "): ", migrated.message()));
  }
  LogInfo("database ready",
          {{"schema", schema}, {"migrations_applied", absl::StrCat(applied)}});
  if (absl::GetFlag(FLAGS_migrate_only)) {
    LogInfo("--migrate_only: migrations applied, exiting");
    std::exit(0);
  }
  return pool;
}

}  // namespace guestlist
