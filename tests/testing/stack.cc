#include "tests/testing/stack.h"

#include <curl/curl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace guestlist::testing {
namespace {

size_t WriteBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t WriteHeader(char* data, size_t size, size_t n, void* out) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    (*static_cast<std::map<std::string, std::string>*>(out))[name] = value;
  }
  return size * n;
}

constexpr const char* kServices[] = {"identity", "membership", "notification",
                                     "gateway"};

}  // namespace

HttpResponse HttpRequest(const std::string& method, const std::string& url,
                         const std::string& body,
                         const std::vector<std::string>& headers) {
  HttpResponse out;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (!body.empty() || method == "POST" || method == "PATCH" ||
      method == "PUT") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                     static_cast<long>(body.size()));
  }
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &out.headers);
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
  }
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  return out;
}

Stack::Stack(Options options) {
  pg_ = std::make_unique<TestPostgres>();
  char tmpl[] = "/tmp/guestlist-stack-XXXXXX";
  dir_ = mkdtemp(tmpl);
  mail_dir_ = dir_ + "/mail";
  Run("mkdir -p " + mail_dir_);
  operator_token_ = absl::StrCat("op-", getpid(), "-", std::rand());
  std::map<std::string, std::string> env = {
      {"GUESTLIST_OPERATOR_TOKEN", operator_token_},
      {"GUESTLIST_SMTP_URL",
       options.smtp_url.empty() ? "file://" + mail_dir_ : options.smtp_url},
  };
  for (const char* svc : kServices) ports_[svc] = FreePort();
  env["GUESTLIST_IDENTITY_ADDR"] = identity_addr();
  env["GUESTLIST_MEMBERSHIP_ADDR"] = membership_addr();
  env["GUESTLIST_NOTIFICATION_ADDR"] = notification_addr();
  env["GUESTLIST_GATEWAY_PORT"] = absl::StrCat(ports_["gateway"]);
  env["GUESTLIST_PUBLIC_URL"] = gateway_url();
  for (const char* db : {"identity", "membership", "notification"}) {
    env[absl::StrCat("GUESTLIST_", absl::AsciiStrToUpper(db),
                     "_DATABASE_URL")] = pg_->CreateDatabase(db);
  }
  for (const auto& [k, v] : options.extra_env) env[k] = v;
  for (const char* svc : kServices) {
    processes_[svc] = std::make_unique<ChildProcess>(
        RunfilePath(absl::StrCat("services/", svc, "/", svc)),
        std::vector<std::string>{}, env, absl::StrCat(dir_, "/", svc, ".log"));
  }
  for (const char* svc : kServices) {
    if (!WaitReady(svc)) {
      std::fprintf(stderr, "%s did not start; logs:\n%s\n", svc,
                   Logs().c_str());
      std::abort();
    }
  }
}

Stack::~Stack() {
  for (auto& [name, p] : processes_) p->Signal(SIGTERM);
  for (auto& [name, p] : processes_) p->Wait(15000);
  processes_.clear();
  pg_.reset();
  if (std::getenv("GUESTLIST_KEEP_STACK") == nullptr) {
    (void)!std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }
}

bool Stack::WaitReady(const std::string& service, int timeout_ms) {
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (PortOpen(ports_[service])) return true;
    if (!processes_[service]->running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string Stack::identity_addr() const {
  return absl::StrCat("127.0.0.1:", ports_.at("identity"));
}
std::string Stack::membership_addr() const {
  return absl::StrCat("127.0.0.1:", ports_.at("membership"));
}
std::string Stack::notification_addr() const {
  return absl::StrCat("127.0.0.1:", ports_.at("notification"));
}
std::string Stack::gateway_url() const {
  return absl::StrCat("http://127.0.0.1:", ports_.at("gateway"));
}

std::shared_ptr<grpc::Channel> Stack::Channel(const std::string& addr) const {
  return grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
}

HttpResponse Stack::Http(const std::string& method, const std::string& path,
                         const std::string& json_body,
                         const std::string& token) const {
  std::vector<std::string> headers = {"Content-Type: application/json"};
  if (!token.empty()) headers.push_back("Authorization: Bearer " + token);
  return HttpRequest(method, gateway_url() + path, json_body, headers);
}

ChildProcess& Stack::process(const std::string& service) {
  return *processes_.at(service);
}

std::string Stack::Logs() const {
  std::string all;
  for (const char* svc : kServices) {
    std::ifstream in(absl::StrCat(dir_, "/", svc, ".log"));
    std::stringstream ss;
    ss << in.rdbuf();
    absl::StrAppend(&all, "=== ", svc, " ===\n", ss.str());
  }
  return all;
}

}  // namespace guestlist::testing
