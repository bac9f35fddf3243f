// Start-up steps every service main() shares: open the database named by
// --database_url, apply the service's migrations, and fail with one line
// naming the setting (never a crash) when that is impossible.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/migrations.h"
#include "common/pg.h"

namespace guestlist {

// Connects (retrying for up to --db_connect_wait so a database that starts
// a moment later is fine), migrates `schema`, returns the pool. On failure
// prints "<service>: ..." naming --database_url and its environment
// variable, and exits with status 2.
std::unique_ptr<pg::Pool> OpenDatabaseOrExit(const std::string& service,
                                             const std::string& schema,
                                             std::vector<Migration> migrations);

}  // namespace guestlist
