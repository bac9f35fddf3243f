#include "tests/testing/postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "absl/strings/str_cat.h"

namespace guestlist::testing {
namespace {

constexpr char kBin[] = "/usr/lib/postgresql/15/bin";

// As root, PostgreSQL must run as `postgres`; `cd /` because runuser keeps
// the cwd, which may be unreachable for that user.
std::string AsPostgres(const std::string& cmd) {
  if (geteuid() == 0)
    return absl::StrCat("cd / && runuser -u postgres -- ", cmd);
  return cmd;
}

}  // namespace

std::string Run(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) std::abort();
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  int rc = pclose(pipe);
  if (rc != 0) {
    std::fprintf(stderr, "command failed (%d): %s\n%s\n", rc, command.c_str(),
                 out.c_str());
    std::abort();
  }
  return out;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

TestPostgres::TestPostgres() {
  char tmpl[] = "/tmp/guestlist-pg-XXXXXX";
  dir_ = mkdtemp(tmpl);
  if (geteuid() == 0) Run(absl::StrCat("chown postgres ", dir_));
  Run(AsPostgres(absl::StrCat(kBin, "/initdb -A trust -U postgres --no-sync ",
                              "-E UTF8 --locale=C.UTF-8 -D ", dir_,
                              "/data >/dev/null")));
  port_ = FreePort();
  Start();
}

TestPostgres::~TestPostgres() {
  // Best effort: a cluster that is already down is fine.
  (void)!std::system(AsPostgres(absl::StrCat(kBin, "/pg_ctl -D ", dir_,
                                             "/data -m immediate -w stop "
                                             ">/dev/null 2>&1"))
                         .c_str());
  (void)!std::system(absl::StrCat("rm -rf ", dir_).c_str());
}

void TestPostgres::Start() {
  Run(AsPostgres(absl::StrCat(
      kBin, "/pg_ctl -D ", dir_, "/data -w -l ", dir_, "/log -o \"-p ", port_,
      // No synchronous_commit=off: an immediate stop (fault tests) would
      // then lose the last commits. fsync=off is safe: the OS keeps them.
      " -k ", dir_, " -c listen_addresses=127.0.0.1 -c fsync=off",
      " -c full_page_writes=off",
      " -c max_connections=300\" start >/dev/null")));
}

void TestPostgres::Stop() {
  Run(AsPostgres(absl::StrCat(kBin, "/pg_ctl -D ", dir_,
                              "/data -m immediate -w stop >/dev/null")));
}

std::string TestPostgres::ConnInfo(const std::string& db) const {
  return absl::StrCat("host=127.0.0.1 port=", port_,
                      " user=postgres dbname=", db);
}

std::string TestPostgres::CreateDatabase(const std::string& db) {
  Psql(absl::StrCat("CREATE DATABASE ", db));
  return ConnInfo(db);
}

std::string TestPostgres::Psql(const std::string& sql, const std::string& db) {
  // SQL goes through a file so no shell quoting can break it.
  const std::string file = absl::StrCat(dir_, "/query.sql");
  FILE* f = std::fopen(file.c_str(), "w");
  std::fwrite(sql.data(), 1, sql.size(), f);
  std::fclose(f);
  return Run(absl::StrCat("psql -X -q -t -A -h 127.0.0.1 -p ", port_,
                          " -U postgres -d ", db, " -v ON_ERROR_STOP=1 -f ",
                          file));
}

}  // namespace guestlist::testing
