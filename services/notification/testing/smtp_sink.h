// A small SMTP server for tests and benchmarks: accepts mail on 127.0.0.1,
// records every message, and answers 4xx/5xx on demand (the next N
// messages, or a given recipient), so delivery retries and failures are
// tested against a real socket. Stop()/Start() on the same port simulate a
// relay outage.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace guestlist::notification::testing {

struct ReceivedMail {
  std::string from;
  std::vector<std::string> recipients;
  std::string data;  // the message as received, dot-stuffing removed
  // Value of the Message-ID header ("" if none).
  std::string message_id() const;
};

class SmtpSink final {
 public:
  SmtpSink() = default;
  ~SmtpSink();

  // Listens on `port` (0: any free port). Returns false on failure.
  bool Start(int port = 0);
  // Closes the listener and every open connection.
  void Stop();
  int port() const { return port_; }
  std::string url() const;

  // The next `count` messages get `reply` (e.g. "451 4.3.0 try again")
  // after DATA, and are not recorded.
  void FailNext(int count, const std::string& reply);
  // Demands AUTH PLAIN with these credentials before MAIL FROM.
  void RequireAuth(const std::string& username, const std::string& password);
  // Every RCPT TO for `recipient` gets `reply`.
  void RejectRecipient(const std::string& recipient, const std::string& reply);

  std::vector<ReceivedMail> messages() const;
  size_t count() const;
  // Waits until at least `n` messages arrived; false on timeout.
  bool WaitForCount(size_t n, absl::Duration timeout) const;
  // Connections accepted so far (connection reuse shows as few).
  int connections() const { return connections_.load(); }

 private:
  void AcceptLoop();
  void Serve(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> running_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  mutable absl::Mutex mu_;
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<int> open_fds_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> next_replies_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> rejected_ ABSL_GUARDED_BY(mu_);
  std::string auth_ ABSL_GUARDED_BY(mu_);  // "\0user\0pass" or empty
  std::vector<ReceivedMail> received_ ABSL_GUARDED_BY(mu_);
};

}  // namespace guestlist::notification::testing
