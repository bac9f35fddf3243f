// identity: wires flags, the database, peers, background jobs and the gRPC
// server together. No rules live here.
#include <algorithm>
#include <memory>

#include "absl/flags/flag.h"
#include "common/bootstrap.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/idempotency.h"
#include "common/logging.h"
#include "common/outbox.h"
#include "common/random.h"
#include "common/server.h"
#include "common/service_flags.h"
#include "services/identity/api/identity_service.h"
#include "services/identity/api/import_handlers.h"
#include "services/identity/clients/expiry_sweeper.h"
#include "services/identity/clients/outbox_relay.h"
#include "services/identity/clients/peers.h"
#include "services/identity/identity_migrations.h"
#include "services/identity/import/import_flags.h"
#include "services/identity/import/peers.h"
#include "services/identity/import/store.h"
#include "services/identity/storage/pg_repository.h"

ABSL_FLAG(absl::Duration, session_ttl, absl::Hours(12),
          "how long a session token from Login / AcceptInvitation lives");
ABSL_FLAG(absl::Duration, expiry_sweep_interval, absl::Seconds(30),
          "how often temporary access is checked for expiry and reminders");
ABSL_FLAG(
    int, login_max_failures, 10,
    "failed sign-ins per account per 15 minutes before RESOURCE_EXHAUSTED");

int main(int argc, char** argv) {
  guestlist::BlockTerminationSignals();
  guestlist::ParseFlagsAndEnvironment("identity", argc, argv);
  guestlist::SetLogService("identity");
  namespace gi = guestlist::identity;

  std::vector<guestlist::Migration> migrations = gi::IdentityMigrations();
  migrations.push_back(guestlist::CommonTablesMigration("identity"));
  std::unique_ptr<guestlist::pg::Pool> pool =
      guestlist::OpenDatabaseOrExit("identity", "identity", migrations);

  const std::string operator_token = guestlist::OperatorToken();
  const std::string internal_token = guestlist::InternalToken();
  if (operator_token.empty()) {
    guestlist::ExitWithError(
        "identity",
        "--operator_token / GUESTLIST_OPERATOR_TOKEN is not set; give the "
        "operator's bearer token (or --operator_token_file)");
  }
  const absl::Duration peer_timeout = absl::GetFlag(FLAGS_peer_timeout);
  auto membership_channel =
      guestlist::PeerChannel(absl::GetFlag(FLAGS_membership_addr));
  auto notification_channel =
      guestlist::PeerChannel(absl::GetFlag(FLAGS_notification_addr));
  if (!membership_channel.ok()) {
    guestlist::ExitWithError(
        "identity", std::string(membership_channel.status().message()));
  }
  if (!notification_channel.ok()) {
    guestlist::ExitWithError(
        "identity", std::string(notification_channel.status().message()));
  }
  gi::GrpcMembershipClient membership(
      guestlist::membership::v1::MembershipService::NewStub(
          *membership_channel),
      internal_token, peer_timeout);
  gi::GrpcNotificationClient notification(
      guestlist::notification::v1::NotificationService::NewStub(
          *notification_channel),
      internal_token, peer_timeout);

  guestlist::SystemClock clock;
  guestlist::SecureRandom random;
  // Stored responses may hold secrets: sealed under the internal credential.
  guestlist::IdempotencyStore idempotency("identity", internal_token);
  gi::PgRepository repository(pool.get(), &idempotency);
  gi::PasswordHasher hasher;
  // Bulk CSV import/export: its own store and peer clients; batch RPCs
  // get a longer deadline than single calls.
  const absl::Duration import_peer_timeout =
      std::max(peer_timeout, absl::Seconds(60));
  gi::import::ImportStore import_store(pool.get());
  gi::import::GrpcMembershipPeer import_membership(
      guestlist::membership::v1::MembershipService::NewStub(
          *membership_channel),
      internal_token, import_peer_timeout);
  gi::import::GrpcMailPeer import_mail(
      guestlist::notification::v1::NotificationService::NewStub(
          *notification_channel),
      internal_token, import_peer_timeout);
  gi::import::ImportConfig import_config = gi::import::ImportConfigFromFlags();
  import_config.public_url = absl::GetFlag(FLAGS_public_url);
  gi::import::ImportService import_service(
      import_config,
      {&import_store, &import_membership, &import_mail, &clock, &random});
  gi::ImportHandlers imports(&import_service);
  // Invites under load: the emails of 10 ms of commits leave in one claim
  // and one BatchSendEmail, instead of a relay cycle per commit.
  guestlist::OutboxRelay relay(pool.get(), "identity",
                               {.wake_gather = absl::Milliseconds(10)});
  gi::RegisterOutboxHandlers(&relay, &membership, &notification, &repository);
  relay.Register(
      gi::import::kTopicRestoreUsers,
      gi::import::RestoreUsersHandler(&import_store, &import_membership));
  gi::ExpirySweeper sweeper(
      &repository, &clock, [&relay] { relay.Wake(); },
      [&idempotency, &pool] { (void)idempotency.Purge(*pool); });

  gi::IdentityOptions options;
  options.operator_token = operator_token;
  options.internal_token = internal_token;
  options.public_url = absl::GetFlag(FLAGS_public_url);
  options.session_ttl = absl::GetFlag(FLAGS_session_ttl);
  options.login_per_account.max_hits = absl::GetFlag(FLAGS_login_max_failures);
  gi::IdentityDeps deps;
  deps.repository = &repository;
  deps.membership = &membership;
  deps.notification = &notification;
  deps.hasher = &hasher;
  deps.clock = &clock;
  deps.random = &random;
  deps.imports = &imports;
  deps.kick_outbox = [&relay] { relay.Wake(); };
  gi::IdentityServiceImpl service(options, deps);
  imports.SetAuthenticator(internal_token, [&service](const std::string& t) {
    return service.AuthenticateToken(t);
  });

  auto credentials = guestlist::ServerCredentials();
  if (!credentials.ok()) {
    guestlist::ExitWithError("identity",
                             std::string(credentials.status().message()));
  }
  guestlist::ServerOptions server_options;
  server_options.service_name = "identity";
  server_options.listen_address = guestlist::ListenAddress("identity");
  server_options.grace = absl::GetFlag(FLAGS_grace_period);
  server_options.max_threads = absl::GetFlag(FLAGS_max_threads);
  server_options.health_names = {"guestlist.identity.v1.IdentityService"};
  server_options.credentials = *credentials;
  guestlist::ServiceRunner runner(server_options);
  runner.AddService(&service);
  runner.SetReadinessProbe([&pool] { return pool->Ping(); });
  // Hooks run in reverse order after the drain: sweeper, then relay.
  runner.AddShutdownHook([&relay] { relay.Stop(); });
  runner.AddShutdownHook([&sweeper] { sweeper.Stop(); });
  absl::StatusOr<int> port = runner.Start();
  if (!port.ok()) {
    guestlist::ExitWithError("identity", std::string(port.status().message()));
  }
  relay.Start();
  sweeper.Start(absl::GetFlag(FLAGS_expiry_sweep_interval));
  return runner.WaitForShutdown();
}
