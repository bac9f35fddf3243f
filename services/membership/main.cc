// membership binary: wires flags, database, identity-backed authentication
// and the MembershipService into a ServiceRunner. No logic lives here.
#include <memory>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/auth.h"
#include "common/bootstrap.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/outbox.h"
#include "common/server.h"
#include "common/service_flags.h"
#include "common/status_macros.h"
#include "services/membership/api/service.h"
#include "services/membership/migrations.h"

int main(int argc, char** argv) {
  guestlist::BlockTerminationSignals();
  guestlist::ParseFlagsAndEnvironment("membership", argc, argv);
  guestlist::SetLogService("membership");

  std::vector<guestlist::Migration> migrations =
      guestlist::membership::Migrations();
  migrations.push_back(guestlist::CommonTablesMigration("membership"));
  std::unique_ptr<guestlist::pg::Pool> pool = guestlist::OpenDatabaseOrExit(
      "membership", "membership", std::move(migrations));

  auto channel = guestlist::PeerChannel(absl::GetFlag(FLAGS_identity_addr));
  if (!channel.ok()) {
    guestlist::ExitWithError(
        "membership",
        absl::StrCat("--identity_addr: ", channel.status().message()));
  }
  guestlist::SystemClock clock;
  guestlist::RemoteAuthenticator auth(
      guestlist::identity::v1::IdentityService::NewStub(*channel),
      guestlist::OperatorToken(), guestlist::InternalToken(), &clock);
  guestlist::membership::CheckCache cache(pool.get(), {});
  guestlist::membership::MembershipServiceImpl service(&auth, pool.get(),
                                                       &clock, &cache);

  auto credentials = guestlist::ServerCredentials();
  if (!credentials.ok()) {
    guestlist::ExitWithError("membership",
                             std::string(credentials.status().message()));
  }
  guestlist::ServiceRunner runner(guestlist::ServerOptions{
      .service_name = "membership",
      .listen_address = guestlist::ListenAddress("membership"),
      .grace = absl::GetFlag(FLAGS_grace_period),
      .max_threads = absl::GetFlag(FLAGS_max_threads),
      .health_names = {"guestlist.membership.v1.MembershipService"},
      .credentials = *credentials,
  });
  runner.AddService(&service);
  guestlist::pg::Pool* db = pool.get();
  // Ready once the Check cache has warmed up the first time, so a new
  // replica does not take traffic while every lookup is a miss.
  auto* check_cache = &cache;
  runner.SetReadinessProbe([db, check_cache, warm = false]() mutable {
    RETURN_IF_ERROR(db->Ping());
    if (!warm) warm = check_cache->AwaitWarm(absl::ZeroDuration());
    if (!warm) return absl::UnavailableError("check cache warming up");
    return absl::OkStatus();
  });
  auto port = runner.Start();
  if (!port.ok()) {
    guestlist::ExitWithError("membership",
                             std::string(port.status().message()));
  }
  guestlist::LogInfo("membership serving", {{"port", absl::StrCat(*port)}});
  return runner.WaitForShutdown();
}
