// Shared helpers of the identity benchmarks: a workspace with an admin
// session on a Stack, authenticated call contexts, percentiles and
// /proc memory readings.
#pragma once

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "guestlist/identity/v1/identity.grpc.pb.h"
#include "guestlist/membership/v1/membership.grpc.pb.h"
#include "tests/testing/stack.h"

namespace guestlist::bench {

namespace iv1 = ::guestlist::identity::v1;
namespace mv1 = ::guestlist::membership::v1;

inline constexpr char kAdminPassword[] = "bench correct horse battery";

inline void Die(const std::string& what, const grpc::Status& st) {
  std::fprintf(stderr, "FATAL: %s: %d %s\n", what.c_str(),
               static_cast<int>(st.error_code()), st.error_message().c_str());
  std::exit(1);
}

inline void Authorize(grpc::ClientContext* ctx, const std::string& token,
                      int deadline_ms = 10000) {
  ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(deadline_ms));
}

struct BenchWorkspace {
  std::string id;
  std::string admin_username;
  std::string admin_token;
};

// CreateWorkspace (operator token) and Login as its first admin.
inline BenchWorkspace CreateWorkspace(testing::Stack& stack,
                                      iv1::IdentityService::Stub& identity,
                                      const std::string& name,
                                      int licenses = 0) {
  BenchWorkspace w;
  w.admin_username = absl::StrCat("admin@", name, ".example");
  iv1::CreateWorkspaceRequest req;
  req.mutable_workspace()->set_name(name);
  req.mutable_workspace()->set_display_name(name + " Inc");
  req.mutable_workspace()->set_license_count(licenses);
  req.set_admin_email(w.admin_username);
  req.set_admin_password(kAdminPassword);
  iv1::Workspace ws;
  grpc::ClientContext ctx;
  Authorize(&ctx, stack.operator_token());
  grpc::Status st = identity.CreateWorkspace(&ctx, req, &ws);
  if (!st.ok()) Die("CreateWorkspace", st);
  w.id = ws.id();
  iv1::LoginRequest login;
  login.set_workspace_id(w.id);
  login.set_username(w.admin_username);
  login.set_password(kAdminPassword);
  iv1::Session session;
  grpc::ClientContext lctx;
  lctx.set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(30));
  st = identity.Login(&lctx, login, &session);
  if (!st.ok()) Die("Login", st);
  w.admin_token = session.token();
  return w;
}

// Percentile (0..100) of sorted samples.
inline int64_t Pct(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(p / 100.0 * (sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

// A field of /proc/<pid>/status in kB (VmRSS, VmHWM), -1 if absent.
inline int64_t ProcStatusKb(int pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::strtoll(line.c_str() + field.size() + 1, nullptr, 10);
    }
  }
  return -1;
}

inline std::string Load() {
  std::ifstream in("/proc/loadavg");
  std::string s;
  std::getline(in, s);
  return s;
}

}  // namespace guestlist::bench
