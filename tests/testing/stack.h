// The whole guestlist suite for end-to-end tests: a throwaway PostgreSQL,
// the four real binaries on free ports, and clients for gRPC and HTTP.
// Tests using it need data deps on the four binaries and no-sandbox.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>

#include "tests/testing/postgres.h"
#include "tests/testing/process.h"

namespace guestlist::testing {

struct HttpResponse {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

// One HTTP request with libcurl. `headers` as "Name: value".
HttpResponse HttpRequest(const std::string& method, const std::string& url,
                         const std::string& body = "",
                         const std::vector<std::string>& headers = {});

class Stack final {
 public:
  struct Options {
    std::string smtp_url;  // default: file:// under the stack's temp dir
    std::map<std::string, std::string> extra_env;
  };
  Stack() : Stack(Options()) {}
  explicit Stack(Options options);
  ~Stack();

  const std::string& operator_token() const { return operator_token_; }
  std::string identity_addr() const;
  std::string membership_addr() const;
  std::string notification_addr() const;
  std::string gateway_url() const;
  const std::string& mail_dir() const { return mail_dir_; }
  const std::string& dir() const { return dir_; }
  std::shared_ptr<grpc::Channel> Channel(const std::string& addr) const;

  // HTTP through the gateway with an optional bearer token.
  HttpResponse Http(const std::string& method, const std::string& path,
                    const std::string& json_body = "",
                    const std::string& token = "") const;

  ChildProcess& process(const std::string& service);
  TestPostgres& postgres() { return *pg_; }
  // Waits until the service's port accepts connections again.
  bool WaitReady(const std::string& service, int timeout_ms = 20000);
  // Concatenated logs of every service (for grepping secrets).
  std::string Logs() const;

 private:
  std::unique_ptr<TestPostgres> pg_;
  std::string dir_;
  std::string mail_dir_;
  std::string operator_token_;
  std::map<std::string, int> ports_;
  std::map<std::string, std::unique_ptr<ChildProcess>> processes_;
};

}  // namespace guestlist::testing
