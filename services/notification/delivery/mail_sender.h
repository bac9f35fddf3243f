// Mail transports for the delivery workers: SMTP over libcurl (smtp://,
// smtps://, STARTTLS, AUTH; one connection kept open per sender) and a
// file:///dir transport that writes <message-id>.eml atomically for local
// runs. A sender is used by one worker thread at a time.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace guestlist::notification {

struct SendOutcome {
  enum class Kind {
    kSent,
    // Connection trouble or a 4xx reply: try again later.
    kTransient,
    // A 5xx reply: the relay will never take it.
    kPermanent,
  };
  Kind kind = Kind::kSent;
  // The server's reply (e.g. "550 5.1.1 no such user") or the transport
  // error; empty when sent.
  std::string error;
  // Whether the relay was reached at all (false: connection failed, so the
  // rest of a batch would fail the same way).
  bool reached_server = true;
};

struct Envelope {
  std::string from;
  std::string to;
  // Without angle brackets; names the .eml file of the file transport.
  std::string message_id;
};

class MailSender {
 public:
  virtual ~MailSender() = default;
  // Sends `mime`. `before_commit` runs right before the point after which
  // the relay may have accepted the message (before SMTP's final "."), so
  // the caller can narrow the window in which a crash causes a duplicate.
  virtual SendOutcome Send(const Envelope& envelope, const std::string& mime,
                           const std::function<void()>& before_commit) = 0;
};

struct SmtpOptions {
  std::string url;  // smtp://host:port or smtps://host:port
  std::string username;
  std::string password;
  bool starttls = false;
  // CA bundle to verify the relay's certificate (empty: system CAs).
  std::string ca_file;
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration timeout = absl::Seconds(60);
};

// Returns a factory of senders for `url` (smtp://, smtps:// or file:///dir).
// Errors: InvalidArgument for another scheme or an empty directory.
absl::StatusOr<std::function<std::unique_ptr<MailSender>()>>
MakeMailSenderFactory(const SmtpOptions& options);

// Initialises libcurl once per process (call from main before threads).
void InitMailTransport();

}  // namespace guestlist::notification
