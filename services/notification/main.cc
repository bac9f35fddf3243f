// notification: wires flags, database, peers, delivery workers and the gRPC
// service together. No logic lives here.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/auth.h"
#include "common/bootstrap.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/server.h"
#include "common/service_flags.h"
#include "services/notification/api/notification_service.h"
#include "services/notification/delivery/dispatcher.h"
#include "services/notification/delivery/mail_sender.h"
#include "services/notification/migrations.h"
#include "services/notification/storage/message_store.h"

ABSL_FLAG(std::string, smtp_url, "",
          "mail relay: smtp://host:port, smtps://host:port, or file:///dir "
          "to write .eml files (default: file://$GUESTLIST_DATA_DIR/mail)");
ABSL_FLAG(std::string, smtp_username, "", "SMTP AUTH user name");
ABSL_FLAG(std::string, smtp_password, "", "SMTP AUTH password");
ABSL_FLAG(std::string, smtp_password_file, "",
          "file holding the SMTP AUTH password");
ABSL_FLAG(bool, smtp_starttls, false, "require STARTTLS on smtp://");
ABSL_FLAG(std::string, smtp_ca_file, "",
          "CA bundle that signs the relay's certificate (default: system CAs)");
ABSL_FLAG(std::string, mail_from, "no-reply@guestlist.local",
          "envelope sender and From address");
ABSL_FLAG(std::string, mail_from_name, "guestlist", "From display name");
ABSL_FLAG(int, delivery_workers, 4,
          "delivery threads (each keeps one SMTP connection open)");
ABSL_FLAG(int, delivery_batch_size, 50, "messages claimed per worker claim");
ABSL_FLAG(int, delivery_nice, 10,
          "nice value of the delivery threads (0-19): on a busy machine "
          "delivery yields the CPU to API calls; queued mail waits, none is "
          "lost");
ABSL_FLAG(int, max_attempts, 8, "delivery attempts before a message is FAILED");
ABSL_FLAG(absl::Duration, lease, absl::Seconds(60),
          "how long a claimed message is reserved for its worker; a crashed "
          "worker's messages are taken over after this");
ABSL_FLAG(absl::Duration, retry_base_delay, absl::Seconds(2),
          "first retry delay (doubles per attempt, with jitter)");
ABSL_FLAG(absl::Duration, retry_max_delay, absl::Minutes(10),
          "longest retry delay");
ABSL_FLAG(absl::Duration, delivery_poll_interval, absl::Milliseconds(200),
          "how often idle workers look for due messages");
ABSL_FLAG(double, domain_rate_per_second, 0,
          "messages per second per recipient domain (0: unlimited)");
ABSL_FLAG(std::string, unsubscribe_secret, "",
          "key signing unsubscribe links (default: derived from the "
          "internal token)");

namespace {

constexpr char kService[] = "notification";

std::string DefaultSmtpUrl() {
  const char* data_dir = std::getenv("GUESTLIST_DATA_DIR");
  std::string dir = data_dir != nullptr && *data_dir != '\0'
                        ? std::string(data_dir)
                        : std::string(".local");
  if (dir[0] != '/') {
    const char* pwd = std::getenv("PWD");
    dir = absl::StrCat(pwd != nullptr ? pwd : "/tmp", "/", dir);
  }
  return absl::StrCat("file://", dir, "/mail");
}

// Hides user:password@ in a URL before it is logged.
std::string RedactUserInfo(const std::string& url) {
  const size_t scheme = url.find("://");
  const size_t at = url.find('@');
  if (scheme == std::string::npos || at == std::string::npos) return url;
  return absl::StrCat(url.substr(0, scheme + 3), "***", url.substr(at));
}

}  // namespace

int main(int argc, char** argv) {
  using namespace guestlist;  // NOLINT(build/namespaces): main only wires.
  using namespace guestlist::notification;  // NOLINT(build/namespaces)
  BlockTerminationSignals();
  ParseFlagsAndEnvironment(kService, argc, argv);
  InitMailTransport();

  const std::string internal_token = InternalToken();
  if (internal_token.empty()) {
    ExitWithError(kService,
                  "set --internal_token (GUESTLIST_INTERNAL_TOKEN) or "
                  "--operator_token (GUESTLIST_OPERATOR_TOKEN)");
  }
  std::string unsubscribe_secret = absl::GetFlag(FLAGS_unsubscribe_secret);
  if (unsubscribe_secret.empty()) {
    unsubscribe_secret =
        HmacSha256Hex(internal_token, "guestlist.notification.unsubscribe");
  }

  SmtpOptions smtp;
  smtp.url = absl::GetFlag(FLAGS_smtp_url);
  if (smtp.url.empty()) smtp.url = DefaultSmtpUrl();
  smtp.username = absl::GetFlag(FLAGS_smtp_username);
  smtp.password = absl::GetFlag(FLAGS_smtp_password);
  if (smtp.password.empty() &&
      !absl::GetFlag(FLAGS_smtp_password_file).empty()) {
    absl::StatusOr<std::string> password =
        ReadFile(absl::GetFlag(FLAGS_smtp_password_file));
    if (!password.ok()) {
      ExitWithError(kService, absl::StrCat("--smtp_password_file: ",
                                           password.status().message()));
    }
    smtp.password = std::string(absl::StripTrailingAsciiWhitespace(*password));
  }
  smtp.starttls = absl::GetFlag(FLAGS_smtp_starttls);
  smtp.ca_file = absl::GetFlag(FLAGS_smtp_ca_file);
  // A send must end well within the lease, or another worker would take
  // the message over while it is still being sent.
  smtp.timeout = std::min(absl::Seconds(60), absl::GetFlag(FLAGS_lease) / 3);
  smtp.connect_timeout = std::min(absl::Seconds(10), smtp.timeout);
  auto sender_factory = MakeMailSenderFactory(smtp);
  if (!sender_factory.ok()) {
    ExitWithError(kService, std::string(sender_factory.status().message()));
  }

  absl::StatusOr<std::shared_ptr<grpc::Channel>> identity_channel =
      PeerChannel(absl::GetFlag(FLAGS_identity_addr));
  absl::StatusOr<std::shared_ptr<grpc::Channel>> membership_channel =
      PeerChannel(absl::GetFlag(FLAGS_membership_addr));
  if (!identity_channel.ok() || !membership_channel.ok()) {
    ExitWithError(kService,
                  absl::StrCat("peer TLS settings: ",
                               !identity_channel.ok()
                                   ? identity_channel.status().message()
                                   : membership_channel.status().message()));
  }
  std::shared_ptr<identity::v1::IdentityService::StubInterface> identity =
      identity::v1::IdentityService::NewStub(*identity_channel);
  std::shared_ptr<membership::v1::MembershipService::StubInterface> membership =
      membership::v1::MembershipService::NewStub(*membership_channel);

  std::unique_ptr<pg::Pool> pool =
      OpenDatabaseOrExit(kService, kService, NotificationMigrations());
  SystemClock clock;
  SecureRandom random;
  MessageStore store(pool.get());
  RemoteAuthenticator authenticator(identity, OperatorToken(), internal_token,
                                    &clock);

  DispatcherOptions dispatch;
  dispatch.workers = std::max(1, absl::GetFlag(FLAGS_delivery_workers));
  dispatch.batch_size = std::max(1, absl::GetFlag(FLAGS_delivery_batch_size));
  dispatch.nice = std::clamp(absl::GetFlag(FLAGS_delivery_nice), 0, 19);
  dispatch.max_attempts = std::max(1, absl::GetFlag(FLAGS_max_attempts));
  dispatch.lease = absl::GetFlag(FLAGS_lease);
  dispatch.poll_interval = absl::GetFlag(FLAGS_delivery_poll_interval);
  // As identity's outbox relay: emails queued within 10 ms share a claim.
  dispatch.wake_gather = absl::Milliseconds(10);
  dispatch.retry_base = absl::GetFlag(FLAGS_retry_base_delay);
  dispatch.retry_max = absl::GetFlag(FLAGS_retry_max_delay);
  dispatch.domain_rate_per_second = absl::GetFlag(FLAGS_domain_rate_per_second);
  dispatch.from_address = absl::GetFlag(FLAGS_mail_from);
  dispatch.from_name = absl::GetFlag(FLAGS_mail_from_name);
  dispatch.owner_prefix = NewUuid(random);
  Dispatcher dispatcher(&store, &clock, *sender_factory, dispatch);

  ServiceOptions options;
  options.internal_token = internal_token;
  options.unsubscribe_secret = unsubscribe_secret;
  options.public_url = absl::GetFlag(FLAGS_public_url);
  options.peer_timeout = absl::GetFlag(FLAGS_peer_timeout);
  options.on_queued = [&dispatcher] { dispatcher.Notify(); };
  NotificationService service(&store, &authenticator, &clock, &random, identity,
                              membership, options);

  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ServerCredentials();
  if (!credentials.ok()) {
    ExitWithError(kService, std::string(credentials.status().message()));
  }
  ServerOptions server_options;
  server_options.service_name = kService;
  server_options.listen_address = ListenAddress(kService);
  server_options.grace = absl::GetFlag(FLAGS_grace_period);
  server_options.max_threads = absl::GetFlag(FLAGS_max_threads);
  server_options.health_names = {
      "guestlist.notification.v1.NotificationService"};
  server_options.credentials = *credentials;
  ServiceRunner runner(server_options);
  runner.AddService(&service);
  runner.SetReadinessProbe([&pool] { return pool->Ping(); });
  runner.AddShutdownHook([&dispatcher] { dispatcher.Stop(); });
  absl::StatusOr<int> port = runner.Start();
  if (!port.ok()) ExitWithError(kService, std::string(port.status().message()));
  dispatcher.Start();
  LogInfo("notification serving", {{"port", absl::StrCat(*port)},
                                   {"smtp_url", RedactUserInfo(smtp.url)}});
  return runner.WaitForShutdown();
}
