// The gateway binary: port from GUESTLIST_GATEWAY_PORT, serves /healthz,
// reports unreachable peers on /readyz, and exits 0 on SIGTERM.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "tests/testing/process.h"

namespace guestlist::gateway {
namespace {

using ::testing::HasSubstr;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

long Get(const std::string& url, std::string* body) {
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  long status = 0;
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  }
  curl_easy_cleanup(curl);
  return status;
}

TEST(GatewayBinaryTest, ServesAndExitsCleanlyOnSigterm) {
  const int port = FreePort();
  const std::string dead = "127.0.0.1:" + std::to_string(FreePort());
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string log_path = std::string(tmp ? tmp : "/tmp") + "/gateway.log";
  testing::ChildProcess gateway(
      testing::RunfilePath("services/gateway/gateway"), {},
      {{"GUESTLIST_GATEWAY_PORT", std::to_string(port)},
       {"GUESTLIST_IDENTITY_ADDR", dead},
       {"GUESTLIST_MEMBERSHIP_ADDR", dead},
       {"GUESTLIST_NOTIFICATION_ADDR", dead}},
      log_path);
  for (int i = 0; i < 100 && !testing::PortOpen(port); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(testing::PortOpen(port));
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  std::string body;
  EXPECT_EQ(Get(base + "/healthz", &body), 200);
  EXPECT_EQ(body, R"({"status":"ok"})");
  body.clear();
  EXPECT_EQ(Get(base + "/readyz", &body), 503);
  EXPECT_THAT(body, HasSubstr("\"notReady\":[\"identity\",\"membership\","
                              "\"notification\"]"));
  body.clear();
  EXPECT_EQ(Get(base + "/v1/users/u1", &body), 503);
  gateway.Signal(SIGTERM);
  const int exit_code = gateway.Wait(10000);
  EXPECT_EQ(exit_code, 0) << "gateway log:\n" << ReadFile(log_path);
}

}  // namespace
}  // namespace guestlist::gateway
