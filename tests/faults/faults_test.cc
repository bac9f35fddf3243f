// Fault injection against the real suite (issue 9, FAULTS): kill -9 of each
// service during invites, a bulk import and email delivery, uploads the
// gateway answers early, a PostgreSQL outage, an SMTP outage, short
// deadlines, SIGTERM under load and overload. Each test records what it
// injected and what happened on stderr as "RELIABILITY ..." lines (the
// numbers in docs/RELIABILITY.md come from them) and asserts that nothing
// is lost: every accepted invite exists in identity AND membership, with
// its invitation, and its email arrives (duplicates only with the same
// Message-ID).
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "guestlist/identity/v1/identity.grpc.pb.h"
#include "services/notification/testing/smtp_sink.h"
#include "tests/testing/slowdown.h"
#include "tests/testing/stack.h"

namespace guestlist {
namespace {

using ::guestlist::notification::testing::ReceivedMail;
using ::guestlist::notification::testing::SmtpSink;
using ::guestlist::testing::HttpResponse;
using ::guestlist::testing::Stack;
using json = nlohmann::json;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

constexpr char kPassword[] = "a long enough password";
using ::guestlist::testing::kSlowdown;
// Notification's delivery workers (its default); bounds duplicates per crash:
// each worker has at most one message between "SMTP accepted" and "marked
// SENT" when it dies.
constexpr int kDeliveryWorkers = 4;

// The response's JSON object; an empty object when it is not one (a dead
// gateway, an HTML error page), so lookups fail the test without throwing.
json Body(const HttpResponse& r) {
  json j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

double SecondsSince(absl::Time t) {
  return absl::ToDoubleSeconds(absl::Now() - t);
}

// One line per scenario outcome, grep-able as "RELIABILITY".
void Record(const std::string& scenario, const std::string& line) {
  std::fprintf(stderr, "RELIABILITY %s: %s\n", scenario.c_str(), line.c_str());
}

HealthStatus::ServingStatus HealthOf(const std::shared_ptr<grpc::Channel>& ch) {
  auto stub = grpc::health::v1::Health::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = stub->Check(&ctx, req, &resp);
  if (!s.ok()) return HealthStatus::UNKNOWN;
  return resp.status();
}

// Waits until `pred` holds, polling every `poll`; false on timeout.
template <typename Pred>
bool WaitUntil(Pred pred, absl::Duration timeout,
               absl::Duration poll = absl::Milliseconds(100)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (pred()) return true;
    absl::SleepFor(poll);
  }
  return pred();
}

std::string StatusHistogram(const std::map<long, int>& by_status) {
  std::vector<std::string> parts;
  for (const auto& [code, n] : by_status) {
    parts.push_back(
        absl::StrCat(code == 0 ? "no-response" : absl::StrCat(code), "x", n));
  }
  return absl::StrJoin(parts, " ");
}

long VmRssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      return std::atol(line.c_str() + 6);
    }
  }
  return -1;
}

// Mail received for addresses at `domain`, grouped by recipient.
struct MailTally {
  std::map<std::string, std::vector<std::string>> ids_by_recipient;
  int total = 0;
  int duplicates() const {
    return total - static_cast<int>(ids_by_recipient.size());
  }
};

MailTally TallyMail(const SmtpSink& sink, const std::string& domain) {
  MailTally t;
  for (const ReceivedMail& m : sink.messages()) {
    for (const std::string& r : m.recipients) {
      if (absl::EndsWith(r, "@" + domain)) {
        t.ids_by_recipient[r].push_back(m.message_id());
        ++t.total;
      }
    }
  }
  return t;
}

// Every duplicate delivery carries the Message-ID of the first one, and no
// two recipients share a Message-ID.
void ExpectDuplicatesShareMessageId(const MailTally& t) {
  std::set<std::string> seen;
  for (const auto& [recipient, ids] : t.ids_by_recipient) {
    ASSERT_FALSE(ids.empty());
    EXPECT_FALSE(ids[0].empty()) << recipient << " has no Message-ID";
    for (const std::string& id : ids) {
      EXPECT_EQ(id, ids[0])
          << "duplicate to " << recipient << " with a different Message-ID";
    }
    EXPECT_TRUE(seen.insert(ids[0]).second)
        << "Message-ID " << ids[0] << " reused for " << recipient;
  }
}

class FaultsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sink_ = new SmtpSink();
    ASSERT_TRUE(sink_->Start());
    Stack::Options options;
    options.smtp_url = sink_->url();
    // A crashed notification's claims come back after the lease; 4 s keeps
    // the test short (production: 60 s). Retries of a refused relay are
    // capped at 4 s so the SMTP outage catches up quickly.
    options.extra_env = {
        {"GUESTLIST_NOTIFICATION_LEASE", "4s"},
        {"GUESTLIST_NOTIFICATION_RETRY_MAX_DELAY", "4s"},
        {"GUESTLIST_NOTIFICATION_DELIVERY_WORKERS",
         absl::StrCat(kDeliveryWorkers)},
    };
    stack_ = new Stack(options);
  }
  static void TearDownTestSuite() {
    Record("setup", absl::StrCat("group creations refused with 404 right "
                                 "after CreateWorkspace returned: ",
                                 workspace_not_yet_known_));
    delete stack_;
    delete sink_;
  }

  void TearDown() override {
    if (HasFailure() || std::getenv("GUESTLIST_FAULTS_LOGS") != nullptr) {
      const std::string logs = stack_->Logs();
      std::fprintf(
          stderr, "---- last 6000 bytes of service logs ----\n%s\n",
          logs.substr(logs.size() > 6000 ? logs.size() - 6000 : 0).c_str());
    }
  }

  // Every log line (all services) that carries `request_id`.
  static std::string LogLinesFor(const std::string& request_id) {
    std::string out;
    std::istringstream logs(stack_->Logs());
    std::string line;
    while (std::getline(logs, line)) {
      if (!request_id.empty() && absl::StrContains(line, request_id)) {
        absl::StrAppend(&out, line, "\n");
      }
    }
    return out;
  }

  struct Workspace {
    std::string id;
    std::string admin;  // session token
    std::string group;  // one OPEN group guests are invited into
  };

  static Workspace NewWorkspace(const std::string& name, int licenses = 1000) {
    Workspace w;
    auto r =
        stack_->Http("POST", "/v1/workspaces",
                     json{{"workspace",
                           {{"name", name},
                            {"displayName", name + " Inc"},
                            {"licenseCount", licenses}}},
                          {"adminEmail", "admin@" + name + ".admin.example"},
                          {"adminPassword", kPassword}}
                         .dump(),
                     stack_->operator_token());
    EXPECT_EQ(r.status, 200) << r.body;
    w.id = Body(r).value("id", "");
    auto login =
        stack_->Http("POST", "/v1/workspaces/" + w.id + "/sessions",
                     json{{"username", "admin@" + name + ".admin.example"},
                          {"password", kPassword}}
                         .dump());
    EXPECT_EQ(login.status, 200) << login.body;
    w.admin = Body(login).value("token", "");
    // Membership learns of the workspace from identity's outbox, after
    // CreateWorkspace returned: until then it answers 404 (see
    // docs/RELIABILITY.md, "read-your-writes"). Count how often.
    HttpResponse group;
    for (int i = 0; i < 50; ++i) {
      group = stack_->Http("POST", "/v1/workspaces/" + w.id + "/groups",
                           R"({"name": "Partners", "visibility": "OPEN"})",
                           w.admin);
      if (group.status != 404) break;
      ++workspace_not_yet_known_;
      absl::SleepFor(absl::Milliseconds(100));
    }
    EXPECT_EQ(group.status, 200) << group.body;
    w.group = Body(group).value("id", "");
    return w;
  }

  static HttpResponse Invite(const Workspace& w, const std::string& email,
                             const std::string& key, bool send_email = true) {
    return stack_->Http("POST", "/v1/workspaces/" + w.id + "/invitations",
                        json{{"email", email},
                             {"firstName", "Guest"},
                             {"kind", "GUEST"},
                             {"groupIds", {w.group}},
                             {"sendEmail", send_email},
                             {"idempotencyKey", key}}
                            .dump(),
                        w.admin);
  }

  // Every item of a paged list (`field`), following nextPageToken.
  static std::vector<json> ListAll(const std::string& path,
                                   const std::string& field,
                                   const std::string& token,
                                   long* status = nullptr) {
    std::vector<json> out;
    std::string page_token;
    for (int page = 0; page < 100; ++page) {
      const std::string sep = absl::StrContains(path, "?") ? "&" : "?";
      auto r = stack_->Http(
          "GET",
          absl::StrCat(path, sep, "pageSize=1000",
                       page_token.empty() ? "" : "&pageToken=", page_token),
          "", token);
      if (status != nullptr) *status = r.status;
      if (r.status != 200) return {};
      json body = Body(r);
      if (body.contains(field)) {
        for (const auto& item : body[field]) out.push_back(item);
      }
      page_token = body.value("nextPageToken", "");
      if (page_token.empty()) break;
    }
    return out;
  }

  // User ids known to identity, to membership, and the user ids that have
  // an invitation; checks the three agree (no half-made guest).
  struct Census {
    std::set<std::string> identity_users;
    std::set<std::string> membership_users;
    std::map<std::string, std::string> membership_names;  // id -> username
    std::set<std::string> invited_users;
    long identity_status = 0, membership_status = 0, invitations_status = 0;
  };
  static Census TakeCensus(const Workspace& w) {
    Census c;
    for (const json& u : ListAll("/v1/workspaces/" + w.id + "/users", "users",
                                 w.admin, &c.identity_status)) {
      c.identity_users.insert(u.value("id", ""));
    }
    for (const json& row : ListAll("/v1/workspaces/" + w.id + "/appAccess",
                                   "rows", w.admin, &c.membership_status)) {
      c.membership_users.insert(row["user"].value("id", ""));
      c.membership_names[row["user"].value("id", "")] =
          row["user"].value("username", "");
    }
    for (const json& inv :
         ListAll("/v1/workspaces/" + w.id + "/invitations", "invitations",
                 w.admin, &c.invitations_status)) {
      c.invited_users.insert(inv["user"].value("id", ""));
    }
    return c;
  }
  // Returns the number of inconsistencies (orphans either way, users
  // without an invitation), with EXPECTs naming each one.
  static int ExpectConsistent(const Workspace& w, const Census& c,
                              const std::string& when) {
    EXPECT_EQ(c.identity_status, 200) << when;
    EXPECT_EQ(c.membership_status, 200) << when;
    EXPECT_EQ(c.invitations_status, 200) << when;
    int problems = 0;
    for (const std::string& id : c.identity_users) {
      if (!c.membership_users.count(id)) {
        ++problems;
        ADD_FAILURE() << when << ": user " << id
                      << " exists in identity but not in membership";
      }
    }
    for (const std::string& id : c.membership_users) {
      if (!c.identity_users.count(id)) {
        ++problems;
        ADD_FAILURE() << when << ": orphan " << id << " ("
                      << c.membership_names.at(id)
                      << ") in membership, unknown to identity";
      }
    }
    // Everyone but the first admin came in through an invitation, and no
    // invitation points at a user identity does not have.
    int uninvited = 0;
    for (const std::string& id : c.identity_users) {
      if (!c.invited_users.count(id)) ++uninvited;
    }
    for (const std::string& id : c.invited_users) {
      if (!c.identity_users.count(id)) {
        ++problems;
        ADD_FAILURE() << when << ": invitation for unknown user " << id;
      }
    }
    EXPECT_EQ(uninvited, 1) << when
                            << ": users without an invitation (want only the "
                               "first admin)";
    if (uninvited != 1) problems += std::abs(uninvited - 1);
    return problems;
  }

  // Retries an invite with the same idempotency key until it succeeds
  // (UNAVAILABLE while channels reconnect). Returns the final response.
  static HttpResponse RetryInvite(const Workspace& w, const std::string& email,
                                  const std::string& key, int* attempts) {
    HttpResponse r;
    for (*attempts = 0; *attempts < 100; ++*attempts) {
      r = Invite(w, email, key);
      if (r.status != 503 && r.status != 0) return r;
      absl::SleepFor(absl::Milliseconds(200));
    }
    return r;
  }

  // An import straight at identity over gRPC (client streaming), so the
  // gateway's own upload bug (1c) does not hide what identity does.
  static identity::v1::ImportReport ImportOverGrpc(const Workspace& w,
                                                   const std::string& csv,
                                                   const std::string& key,
                                                   grpc::Status* status) {
    auto stub = identity::v1::IdentityService::NewStub(
        stack_->Channel(stack_->identity_addr()));
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + w.admin);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    identity::v1::ImportReport report;
    auto writer = stub->ImportUsers(&ctx, &report);
    identity::v1::ImportUsersRequest req;
    auto* options = req.mutable_options();
    options->set_workspace_id(w.id);
    options->set_mode(identity::v1::ALL_OR_NOTHING);
    options->set_send_emails(true);
    options->set_idempotency_key(key);
    bool open = writer->Write(req);
    for (size_t off = 0; open && off < csv.size(); off += 16 << 10) {
      req.set_chunk(csv.substr(off, 16 << 10));
      open = writer->Write(req);
    }
    writer->WritesDone();
    *status = writer->Finish();
    return report;
  }

  // Starts an import, SIGKILLs identity `seconds` later and restarts it.
  // Returns the import's answer.
  static grpc::Status ImportKilledAfter(const Workspace& w,
                                        const std::string& csv,
                                        const std::string& key,
                                        double seconds) {
    grpc::Status first;
    std::thread client([&] { ImportOverGrpc(w, csv, key, &first); });
    absl::SleepFor(absl::Seconds(seconds));
    stack_->process("identity").Signal(SIGKILL);
    stack_->process("identity").Wait(5000);
    stack_->process("identity").Restart();
    EXPECT_TRUE(stack_->WaitReady("identity"));
    client.join();
    return first;
  }

  // After a kill: the client re-sends the same file with the same key
  // until it gets a finished report (for up to 4 s: the job died with
  // identity, and a report still RUNNING seconds later will not finish).
  static identity::v1::ImportReport FinishedReport(const Workspace& w,
                                                   const std::string& csv,
                                                   const std::string& key,
                                                   grpc::Status* status) {
    using Report = identity::v1::ImportReport;
    Report report;
    WaitUntil(
        [&] {
          report = ImportOverGrpc(w, csv, key, status);
          return status->error_code() != grpc::StatusCode::UNAVAILABLE &&
                 !(status->ok() && report.state() == Report::RUNNING);
        },
        absl::Seconds(4), absl::Milliseconds(200));
    return report;
  }

  static std::string StateOf(const identity::v1::ImportReport& report,
                             const grpc::Status& status) {
    return status.ok() ? identity::v1::ImportReport::State_Name(report.state())
                       : absl::StrCat("error ", status.error_code());
  }

  static Stack* stack_;
  static SmtpSink* sink_;
  static int workspace_not_yet_known_;
};
Stack* FaultsTest::stack_ = nullptr;
SmtpSink* FaultsTest::sink_ = nullptr;
int FaultsTest::workspace_not_yet_known_ = 0;

// The invites of one run: address, idempotency key, first HTTP status.
struct InviteRun {
  std::vector<long> status;
  std::vector<std::string> email;
  std::vector<std::string> key;
};

// ---------------------------------------------------------------------------
// 1. kill -9 of identity during a stream of invites.
// ---------------------------------------------------------------------------
TEST_F(FaultsTest, IdentityKilledDuringInvitesLeavesNoHalfMadeGuest) {
  const Workspace w = NewWorkspace("s1");
  const std::string domain = "s1.example";
  constexpr int kInvites = 150;
  constexpr int kThreads = 4;
  const int kill_at[] = {20, 70};  // 200s seen before each kill

  InviteRun run;
  for (int i = 0; i < kInvites; ++i) {
    run.email.push_back(absl::StrCat("guest", i, "@", domain));
    run.key.push_back(absl::StrCat("s1-invite-", i));
  }
  run.status.assign(kInvites, -1);
  std::atomic<int> next{0}, ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < kInvites; i = next++) {
        HttpResponse r = Invite(w, run.email[i], run.key[i]);
        run.status[i] = r.status;
        if (r.status == 200) ++ok;
        // A steady stream (not a burst) so both kills land inside it; and
        // keep it going through the outage without burning it all.
        absl::SleepFor(absl::Milliseconds(r.status == 200 ? 15 : 100));
      }
    });
  }
  int crashes = 0;
  for (int at : kill_at) {
    if (!WaitUntil([&] { return ok.load() >= at || next.load() >= kInvites; },
                   absl::Seconds(60), absl::Milliseconds(2))) {
      break;
    }
    if (next.load() >= kInvites) break;
    stack_->process("identity").Signal(SIGKILL);
    stack_->process("identity").Wait(5000);
    ++crashes;
    absl::SleepFor(absl::Milliseconds(300));
    stack_->process("identity").Restart();
    ASSERT_TRUE(stack_->WaitReady("identity"));
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(crashes, 2) << "the invite stream ended before both kills";

  std::map<long, int> first;
  for (long s : run.status) ++first[s];
  int clean_failures = 0, unclean = 0;
  for (long s : run.status) {
    if (s == 503) ++clean_failures;
    if (s != 200 && s != 503) ++unclean;
  }
  EXPECT_EQ(unclean, 0) << "first attempts: " << StatusHistogram(first)
                        << " (only 200 or 503 are clean)";

  // Right after the restarts, before any retry: no half-made guest.
  absl::SleepFor(absl::Seconds(1));
  Census before = TakeCensus(w);
  const int orphans_before = ExpectConsistent(w, before, "after the kills");

  // Clients retry what failed, with the same idempotency key.
  int retried = 0, retry_attempts = 0, retry_409 = 0;
  for (int i = 0; i < kInvites; ++i) {
    if (run.status[i] == 200) continue;
    ++retried;
    int attempts = 0;
    HttpResponse r = RetryInvite(w, run.email[i], run.key[i], &attempts);
    retry_attempts += attempts + 1;
    if (r.status == 409) ++retry_409;
    EXPECT_EQ(r.status, 200) << run.email[i] << ": " << r.body;
  }
  Census after = TakeCensus(w);
  const int orphans_after = ExpectConsistent(w, after, "after the retries");
  EXPECT_EQ(after.identity_users.size(), static_cast<size_t>(kInvites + 1));

  // Every invitation email arrives; duplicates carry the same Message-ID.
  const bool all_mail = WaitUntil(
      [&] {
        return TallyMail(*sink_, domain).ids_by_recipient.size() >=
               static_cast<size_t>(kInvites);
      },
      absl::Seconds(40));
  MailTally mail = TallyMail(*sink_, domain);
  EXPECT_TRUE(all_mail) << mail.ids_by_recipient.size() << " of " << kInvites
                        << " invitation emails arrived";
  ExpectDuplicatesShareMessageId(mail);
  const int lost = kInvites - static_cast<int>(mail.ids_by_recipient.size());
  Record("1 identity kill -9 during invites",
         absl::StrCat(
             "invites=", kInvites, " crashes=", crashes, " first_attempts=[",
             StatusHistogram(first), "] clean_failures=", clean_failures,
             " unclean=", unclean, " retried=", retried,
             " retry_calls=", retry_attempts, " retry_409=", retry_409,
             " identity_users=", after.identity_users.size(),
             " membership_users=", after.membership_users.size(),
             " invitations=", after.invited_users.size(),
             " orphans_before_retry=", orphans_before,
             " orphans_after_retry=", orphans_after, " emails=", mail.total,
             " duplicates=", mail.duplicates(), " lost=", lost));
}

// ---------------------------------------------------------------------------
// 1b. kill -9 of identity during a bulk import (ALL_OR_NOTHING, emails on):
// the import completes or fails cleanly with its report, no half-made
// guest, and the emails of what was created arrive.
// ---------------------------------------------------------------------------
TEST_F(FaultsTest, IdentityKilledDuringImportCompletesOrFailsCleanly) {
  // What makes it hold (services/identity/import): membership's grants are
  // covered by committed intent rows that identity's relay reconciles after
  // a crash, emails are outbox rows of the commit, and a job whose process
  // died is failed when it is read (its advisory lock is free).
  const Workspace w = NewWorkspace("s1b", 100000);
  constexpr int kRows = 500;
  auto csv_for = [&](const std::string& domain, int rows) {
    std::string csv = "Email,First Name,Last Name\n";
    for (int i = 0; i < rows; ++i) {
      absl::StrAppend(&csv, "guest", i, "@", domain, ",Guest,Number", i, "\n");
    }
    return csv;
  };
  using Report = identity::v1::ImportReport;
  // Undisturbed, to learn how long an import takes here.
  grpc::Status st;
  const absl::Time t0 = absl::Now();
  Report warm =
      ImportOverGrpc(w, csv_for("s1b-warm.example", kRows), "s1b-warm", &st);
  const double import_seconds = SecondsSince(t0);
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  ASSERT_EQ(warm.state(), Report::SUCCEEDED);
  ASSERT_EQ(warm.created(), kRows);
  // Its invitation emails leave through identity's outbox relay.
  WaitUntil(
      [&] {
        return static_cast<int>(TallyMail(*sink_, "s1b-warm.example")
                                    .ids_by_recipient.size()) >= kRows;
      },
      absl::Seconds(30));
  EXPECT_EQ(static_cast<int>(
                TallyMail(*sink_, "s1b-warm.example").ids_by_recipient.size()),
            kRows);

  std::vector<std::string> outcomes;
  int unclean = 0, lost_mail = 0, total_problems = 0;
  // The last kill comes after the commit, while the relay sends the emails.
  const double fractions[] = {0.3, 0.6, 0.9, 1.3};
  constexpr int kKills = sizeof(fractions) / sizeof(fractions[0]);
  for (int k = 0; k < kKills; ++k) {
    const std::string domain = absl::StrCat("s1b-", k, ".example");
    const std::string key = absl::StrCat("s1b-import-", k);
    const std::string csv = csv_for(domain, kRows);
    const grpc::Status first =
        ImportKilledAfter(w, csv, key, import_seconds * fractions[k]);
    grpc::Status again;
    const absl::Time retry_start = absl::Now();
    const Report report = FinishedReport(w, csv, key, &again);
    const double retry_seconds = SecondsSince(retry_start);
    const std::string state = StateOf(report, again);
    Census c = TakeCensus(w);
    int present = 0;
    for (const json& u :
         ListAll("/v1/workspaces/" + w.id + "/users?query=guest", "users",
                 w.admin)) {
      if (absl::EndsWith(u.value("email", ""), "@" + domain)) ++present;
    }
    const bool clean = (state == "SUCCEEDED" && present == kRows) ||
                       (state == "FAILED" && present == 0);
    if (!clean) ++unclean;
    EXPECT_TRUE(clean) << "kill at " << fractions[k] * 100
                       << "% of an import: first call " << first.error_code()
                       << ", report after restart " << state << " (created "
                       << report.created() << "), " << present << " of "
                       << kRows << " users of this file exist";
    const int problems =
        ExpectConsistent(w, c, absl::StrCat("after import kill ", k));
    total_problems += problems;
    int arrived = 0;
    if (present > 0) {
      WaitUntil(
          [&] {
            return static_cast<int>(
                       TallyMail(*sink_, domain).ids_by_recipient.size()) >=
                   present;
          },
          absl::Seconds(20));
      arrived =
          static_cast<int>(TallyMail(*sink_, domain).ids_by_recipient.size());
      EXPECT_EQ(arrived, present) << "invitation emails of import " << k;
      lost_mail += present - arrived;
    }
    outcomes.push_back(absl::StrCat(
        "kill@", static_cast<int>(fractions[k] * 100), "%: first_call=",
        first.error_code(), " retry=", state, " after ", retry_seconds,
        "s created=", report.created(), " users_present=", present,
        " emails=", arrived, " inconsistencies=", problems));
  }
  Record("1b identity kill -9 during import",
         absl::StrCat("rows_per_import=", kRows, " undisturbed_import_s=",
                      import_seconds, " imports_killed=", kKills, " [",
                      absl::StrJoin(outcomes, "; "), "] unclean=", unclean,
                      " inconsistencies=", total_problems,
                      " lost_emails=", lost_mail));
}

// ---------------------------------------------------------------------------
// 1d. kill -9 of identity during an import that CHANGES existing users.
// ---------------------------------------------------------------------------
TEST_F(FaultsTest, IdentityKilledDuringAnImportOfChangesAppliesAllOrRestores) {
  // What makes it hold (services/identity/import): before membership
  // applies a batch of changes to existing users, identity commits a
  // restore row (their groups and privileges before), locked by the
  // import's transaction. When that transaction dies, the next reader of
  // the job (here: the re-sent file) restores them in membership and moves
  // their version past what the import sent, so identity's later changes
  // still reach membership.
  const Workspace w = NewWorkspace("s1d", 100000);
  auto agencies =
      stack_->Http("POST", "/v1/workspaces/" + w.id + "/groups",
                   R"({"name": "Agencies", "visibility": "OPEN"})", w.admin);
  ASSERT_EQ(agencies.status, 200) << agencies.body;
  const std::map<std::string, std::string> group_ids = {
      {"Partners", w.group}, {"Agencies", Body(agencies).value("id", "")}};
  constexpr int kRows = 500;
  auto csv_for = [&](const std::string& first_name, const std::string& group) {
    std::string csv = "username,first_name,last_name,role,user-group-1\n";
    for (int i = 0; i < kRows; ++i) {
      absl::StrAppend(&csv, "guest", i, "@s1d.example,", first_name, ",Number",
                      i, ",guest,", group, "\n");
    }
    return csv;
  };
  // Membership's view: first name of each member of `group`.
  auto members = [&](const std::string& group) {
    std::map<std::string, std::string> names;
    for (const json& m :
         ListAll("/v1/groups/" + group_ids.at(group) + "/members", "members",
                 w.admin)) {
      if (m["user"].value("kind", "") == "ADMIN") continue;  // the creator
      names[m.value("userId", "")] = m["user"].value("firstName", "");
    }
    return names;
  };
  using Report = identity::v1::ImportReport;
  grpc::Status st;
  Report created =
      ImportOverGrpc(w, csv_for("Start", "Partners"), "s1d-create", &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(created.created(), kRows);
  // Undisturbed, to learn how long a change of every user takes here.
  const absl::Time t0 = absl::Now();
  Report warm = ImportOverGrpc(w, csv_for("Warm", "Agencies"), "s1d-warm", &st);
  const double import_seconds = SecondsSince(t0);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(warm.updated(), kRows);
  std::string name = "Warm", group = "Agencies";

  std::vector<std::string> outcomes;
  int failed_rounds = 0;
  // The last kill comes after the commit: the changes must all stay.
  const double fractions[] = {0.3, 0.5, 0.7, 0.9, 1.5};
  for (int k = 0; k < 5; ++k) {
    const std::string next_name = absl::StrCat("Round", k);
    const std::string next_group =
        group == "Agencies" ? "Partners" : "Agencies";
    const std::string csv = csv_for(next_name, next_group);
    const std::string key = absl::StrCat("s1d-", k);
    const grpc::Status first =
        ImportKilledAfter(w, csv, key, import_seconds * fractions[k]);
    grpc::Status again;
    const Report report = FinishedReport(w, csv, key, &again);
    const std::string state = StateOf(report, again);
    ASSERT_TRUE(state == "SUCCEEDED" || state == "FAILED") << state;
    if (state == "SUCCEEDED") {
      name = next_name;
      group = next_group;
    } else {
      ++failed_rounds;
    }
    // All of the file or none of it, in identity and in membership.
    int identity_named = 0;
    for (const json& u : ListAll("/v1/workspaces/" + w.id + "/users?kind=GUEST",
                                 "users", w.admin)) {
      identity_named += u.value("firstName", "") == name;
    }
    const auto in_group = members(group);
    const auto in_other =
        members(group == "Agencies" ? "Partners" : "Agencies");
    int membership_named = 0;
    for (const auto& [id, first_name] : in_group) {
      membership_named += first_name == name;
    }
    EXPECT_EQ(identity_named, kRows) << "kill " << k << ": " << state;
    EXPECT_EQ(in_group.size(), static_cast<size_t>(kRows))
        << "kill " << k << ": " << state;
    EXPECT_EQ(in_other.size(), 0u) << "kill " << k << ": " << state;
    EXPECT_EQ(membership_named, kRows) << "kill " << k << ": " << state;
    outcomes.push_back(absl::StrCat(
        "kill@", static_cast<int>(fractions[k] * 100),
        "%: first_call=", first.error_code(), " retry=", state,
        " identity_as_expected=", identity_named, " membership_in_group=",
        in_group.size(), " membership_named=", membership_named,
        " in_other_group=", in_other.size()));
  }
  // Identity's next change of a user reaches membership (after a restore,
  // membership must not hold a version identity has not passed).
  const auto before = members(group);
  ASSERT_FALSE(before.empty());
  const std::string user_id = before.begin()->first;
  auto update =
      stack_->Http("PATCH", "/v1/users/" + user_id + "?updateMask=firstName",
                   R"({"firstName": "Later"})", w.admin);
  ASSERT_EQ(update.status, 200) << update.body;
  const bool synced = WaitUntil(
      [&] { return members(group)[user_id] == "Later"; }, absl::Seconds(10));
  EXPECT_TRUE(synced) << "membership never saw identity's change of "
                      << user_id;
  Record("1d identity kill -9 during an import of changes",
         absl::StrCat("rows_per_import=", kRows, " undisturbed_import_s=",
                      import_seconds, " [", absl::StrJoin(outcomes, "; "),
                      "] failed_rounds=", failed_rounds,
                      " later_change_synced=", synced));
}

// ---------------------------------------------------------------------------
// 1c. Uploads answered before their body is read (no credentials, or an
// upstream that refuses at once) must not take the gateway down: every
// other scenario goes through it.
// ---------------------------------------------------------------------------
TEST_F(FaultsTest, GatewaySurvivesEarlyAnsweredUploads) {
  const Workspace w = NewWorkspace("s1c");
  std::string csv = "Email,First Name,Last Name\n";
  while (csv.size() < (1u << 20)) {
    absl::StrAppend(&csv, "guest", csv.size(), "@s1c.example,Guest,Big\n");
  }
  std::map<long, int> codes;
  constexpr int kUploads = 20;
  int died_at = -1;
  for (int i = 0; i < kUploads; ++i) {
    // First anonymous, then as the admin (dry run, nothing changes).
    std::vector<std::string> headers = {"Content-Type: text/csv"};
    if (i >= kUploads / 2) {
      headers.push_back("Authorization: Bearer " + w.admin);
    }
    HttpResponse r = guestlist::testing::HttpRequest(
        "POST",
        stack_->gateway_url() + "/v1/workspaces/" + w.id +
            "/users:import?dryRun=true",
        csv, headers);
    ++codes[r.status];
    if (r.status == 0) {  // nobody answers any more
      died_at = i + 1;
      break;
    }
  }
  const bool alive = stack_->Http("GET", "/healthz").status == 200;
  EXPECT_TRUE(alive) << "the gateway died; its log ends:\n"
                     <<
      [&] {
        std::ifstream in(stack_->process("gateway").log_path());
        std::stringstream ss;
        ss << in.rdbuf();
        const std::string s = ss.str();
        return s.substr(s.size() > 800 ? s.size() - 800 : 0);
      }();
  for (const auto& [code, n] : codes) {
    EXPECT_TRUE((code > 0 && code < 500) || code == 501) << code << " x" << n;
  }
  Record("1c early-answered 1 MiB uploads",
         absl::StrCat("uploads=", kUploads, " answers=[",
                      StatusHistogram(codes), "] gateway_alive=",
                      alive ? "yes" : "NO", " no_answer_from_upload=", died_at,
                      " (1-10 anonymous, 11-20 admin)"));
  if (!alive) {
    // Later scenarios need a gateway.
    stack_->process("gateway").Signal(SIGKILL);
    stack_->process("gateway").Wait(10000);
    stack_->process("gateway").Restart();
    ASSERT_TRUE(stack_->WaitReady("gateway"));
  }
}

// ---------------------------------------------------------------------------
// 2. kill -9 of notification while it delivers a batch of 200 emails.
// ---------------------------------------------------------------------------
TEST_F(FaultsTest, NotificationKilledDuringDeliveryLosesNothing) {
  const Workspace w = NewWorkspace("s2");
  const std::string domain = "s2.example";
  constexpr int kInvites = 200;
  constexpr int kThreads = 6;
  const int port = sink_->port();

  // Hold delivery back (relay down) so a real backlog is in flight when
  // notification dies.
  sink_->Stop();
  std::atomic<int> next{0}, ok{0}, failed{0};
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < kInvites; i = next++) {
        HttpResponse r = Invite(w, absl::StrCat("guest", i, "@", domain),
                                absl::StrCat("s2-invite-", i));
        if (r.status == 200) {
          ++ok;
        } else {
          ++failed;
          ADD_FAILURE() << "invite " << i << ": " << r.status << " " << r.body;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double invite_seconds = SecondsSince(start);
  ASSERT_EQ(ok.load(), kInvites);

  // All 200 are queued in notification before the relay comes back.
  size_t queued = 0;
  WaitUntil(
      [&] {
        queued =
            ListAll("/v1/workspaces/" + w.id + "/messages?category=invitation",
                    "messages", w.admin)
                .size();
        return queued >= static_cast<size_t>(kInvites);
      },
      absl::Seconds(30));
  EXPECT_EQ(queued, static_cast<size_t>(kInvites));

  ASSERT_TRUE(sink_->Start(port));
  int crashes = 0;
  std::vector<int> delivered_at_kill;
  // First kill after 40 arrivals, the second 40 arrivals after the
  // restarted process resumed (once the dead one's leases ran out).
  int at = static_cast<int>(sink_->count()) + 40;
  for (int kill = 0; kill < 2; ++kill) {
    if (!WaitUntil([&] { return static_cast<int>(sink_->count()) >= at; },
                   absl::Seconds(30), absl::Milliseconds(1))) {
      break;
    }
    stack_->process("notification").Signal(SIGKILL);
    stack_->process("notification").Wait(5000);
    delivered_at_kill.push_back(TallyMail(*sink_, domain).total);
    at = static_cast<int>(sink_->count()) + 40;
    ++crashes;
    stack_->process("notification").Restart();
    ASSERT_TRUE(stack_->WaitReady("notification"));
  }
  EXPECT_EQ(crashes, 2);
  const bool all = WaitUntil(
      [&] {
        return TallyMail(*sink_, domain).ids_by_recipient.size() >=
               static_cast<size_t>(kInvites);
      },
      absl::Seconds(60));
  // Let any straggling re-delivery land before counting duplicates.
  absl::SleepFor(absl::Seconds(1));
  MailTally mail = TallyMail(*sink_, domain);
  EXPECT_TRUE(all) << mail.ids_by_recipient.size() << " of " << kInvites;
  EXPECT_EQ(mail.ids_by_recipient.size(), static_cast<size_t>(kInvites));
  EXPECT_LE(mail.duplicates(), crashes * kDeliveryWorkers);
  ExpectDuplicatesShareMessageId(mail);

  // Notification's own books agree: every message SENT.
  int sent = 0;
  for (const json& m :
       ListAll("/v1/workspaces/" + w.id + "/messages?category=invitation",
               "messages", w.admin)) {
    if (m.value("state", "") == "SENT") ++sent;
  }
  EXPECT_EQ(sent, kInvites);
  Record("2 notification kill -9 during delivery",
         absl::StrCat(
             "invites=", kInvites, " (", invite_seconds,
             " s) invite_failures=", failed.load(),
             " queued_before_delivery=", queued, " crashes=", crashes,
             " delivered_at_kills=", absl::StrJoin(delivered_at_kill, ","),
             " emails=", mail.total, " distinct=", mail.ids_by_recipient.size(),
             " duplicates=", mail.duplicates(), " (bound ",
             crashes * kDeliveryWorkers, ") sent=", sent,
             " lost=", kInvites - mail.ids_by_recipient.size()));
}

// ---------------------------------------------------------------------------
// 3. kill -9 of membership during invites.
// ---------------------------------------------------------------------------
TEST_F(FaultsTest, MembershipKilledDuringInvitesFailsCleanly) {
  const Workspace w = NewWorkspace("s3");
  const std::string domain = "s3.example";
  constexpr int kInvites = 120;
  constexpr int kThreads = 4;
  std::vector<long> status(kInvites, -1);
  std::vector<double> seconds(kInvites, 0);
  std::atomic<int> next{0}, ok{0};
  std::atomic<bool> paused{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < kInvites; i = next++) {
        const absl::Time t0 = absl::Now();
        HttpResponse r = Invite(w, absl::StrCat("guest", i, "@", domain),
                                absl::StrCat("s3-invite-", i));
        seconds[i] = SecondsSince(t0);
        status[i] = r.status;
        if (r.status == 200) ++ok;
        // Back to back, so several invites are inside membership at a kill.
        while (paused.load()) absl::SleepFor(absl::Milliseconds(20));
      }
    });
  }
  // Three kills: the window in which membership has committed grants but
  // not yet answered is narrow, so one kill does not always hit it.
  HttpResponse down;
  double down_seconds = 0, recovery_seconds = 0;
  int crashes = 0;
  for (int at : {10, 40, 70}) {
    if (!WaitUntil([&] { return ok.load() >= at || next.load() >= kInvites; },
                   absl::Seconds(60), absl::Milliseconds(2)) ||
        next.load() >= kInvites) {
      break;
    }
    stack_->process("membership").Signal(SIGKILL);
    stack_->process("membership").Wait(5000);
    ++crashes;
    // While membership is down an invite is refused as UNAVAILABLE (503),
    // never a 500, and quickly. The client threads hold off meanwhile so
    // the stream outlasts three kills.
    paused = true;
    const absl::Time t0 = absl::Now();
    down = Invite(w, absl::StrCat("while-down", crashes, "@", domain),
                  absl::StrCat("s3-down-", crashes));
    down_seconds = std::max(down_seconds, SecondsSince(t0));
    EXPECT_EQ(down.status, 503) << down.body;
    EXPECT_EQ(Body(down).value("code", 0), 14) << down.body;
    absl::SleepFor(absl::Milliseconds(300));
    stack_->process("membership").Restart();
    ASSERT_TRUE(stack_->WaitReady("membership"));
    // Time until invites work again (identity's channel reconnects).
    const absl::Time restarted = absl::Now();
    int a = 0;
    HttpResponse back =
        RetryInvite(w, absl::StrCat("while-down", crashes, "@", domain),
                    absl::StrCat("s3-down-", crashes), &a);
    EXPECT_EQ(back.status, 200) << back.body;
    recovery_seconds = std::max(recovery_seconds, SecondsSince(restarted));
    paused = false;
  }
  EXPECT_LT(down_seconds, 6.0 * kSlowdown);
  EXPECT_EQ(crashes, 3) << "the invite stream ended before the third kill";
  for (auto& t : threads) t.join();

  std::map<long, int> first;
  int unclean = 0;
  double slowest_failure = 0;
  for (int i = 0; i < kInvites; ++i) {
    ++first[status[i]];
    if (status[i] != 200 && status[i] != 503) ++unclean;
    if (status[i] != 200)
      slowest_failure = std::max(slowest_failure, seconds[i]);
  }
  EXPECT_EQ(unclean, 0) << StatusHistogram(first);
  EXPECT_LT(slowest_failure, 6.0 * kSlowdown);

  // After the restart invites succeed again (same idempotency keys).
  int retried = 0, retry_calls = 0;
  for (int i = 0; i < kInvites; ++i) {
    if (status[i] == 200) continue;
    ++retried;
    int attempts = 0;
    HttpResponse r = RetryInvite(w, absl::StrCat("guest", i, "@", domain),
                                 absl::StrCat("s3-invite-", i), &attempts);
    retry_calls += attempts + 1;
    EXPECT_EQ(r.status, 200) << r.body;
  }
  int attempts = 0;
  for (int k = 1; k <= crashes; ++k) {
    int a = 0;
    HttpResponse again =
        RetryInvite(w, absl::StrCat("while-down", k, "@", domain),
                    absl::StrCat("s3-down-", k), &a);
    attempts += a + 1;
    EXPECT_EQ(again.status, 200) << again.body;
  }
  Census c = TakeCensus(w);
  const int problems = ExpectConsistent(w, c, "after membership restarts");
  EXPECT_EQ(c.identity_users.size(),
            static_cast<size_t>(kInvites + crashes + 1));
  Record(
      "3 membership kill -9 during invites",
      absl::StrCat("invites=", kInvites + crashes, " crashes=", crashes,
                   " first_attempts=[", StatusHistogram(first),
                   "] probes_while_down=", down.status, " slowest ",
                   down_seconds, " s slowest_failure_s=", slowest_failure,
                   " invites_ok_again_after_restart_s(max)=", recovery_seconds,
                   " unclean=", unclean, " retried=", retried + crashes,
                   " retry_calls=", retry_calls + attempts,
                   " identity_users=", c.identity_users.size(),
                   " membership_users=", c.membership_users.size(),
                   " orphans=", problems, " lost=0"));
}

// ---------------------------------------------------------------------------
// 4. PostgreSQL stopped (immediate) under light load, then restarted.
// ---------------------------------------------------------------------------
TEST_F(FaultsTest, PostgresOutageFailsFastAndRecoversWithoutRestart) {
  const Workspace w = NewWorkspace("s4");
  const pid_t pids[] = {
      stack_->process("identity").pid(), stack_->process("membership").pid(),
      stack_->process("notification").pid(), stack_->process("gateway").pid()};
  const std::vector<std::string> paths = {
      "/v1/workspaces/" + w.id + "/users",     // identity
      "/v1/workspaces/" + w.id + "/license",   // membership
      "/v1/workspaces/" + w.id + "/messages",  // notification
  };
  // Calls are counted in the phase they started and ended in; calls that
  // straddle a transition are not counted.
  enum Phase { kBefore = 0, kDown = 1, kAfter = 2, kStopping = 3 };
  std::atomic<int> phase{kBefore};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::map<long, int> by_phase[4];
  double slowest_down = 0;
  int requests = 0;
  std::vector<std::thread> threads;
  for (const std::string& path : paths) {
    threads.emplace_back([&, path] {
      while (!stop.load()) {
        const int p = phase.load();
        const absl::Time t0 = absl::Now();
        HttpResponse r = stack_->Http("GET", path, "", w.admin);
        const double took = SecondsSince(t0);
        {
          std::lock_guard<std::mutex> lock(mu);
          ++requests;
          if (p == phase.load()) {
            ++by_phase[p][r.status];
            if (p == kDown) slowest_down = std::max(slowest_down, took);
          }
        }
        absl::SleepFor(absl::Milliseconds(50));
      }
    });
  }
  absl::SleepFor(absl::Seconds(1));
  phase = kStopping;
  stack_->postgres().Stop();  // returns once the server is gone
  phase = kDown;
  const absl::Time stopped = absl::Now();
  // Readiness follows the database.
  std::map<std::string, double> not_serving_after;
  const std::pair<std::string, std::string> services[] = {
      {"identity", stack_->identity_addr()},
      {"membership", stack_->membership_addr()},
      {"notification", stack_->notification_addr()}};
  for (const auto& [name, addr] : services) {
    auto ch = stack_->Channel(addr);
    bool went =
        WaitUntil([&] { return HealthOf(ch) == HealthStatus::NOT_SERVING; },
                  absl::Seconds(8));
    EXPECT_TRUE(went) << name << " health did not go NOT_SERVING";
    not_serving_after[name] = SecondsSince(stopped);
  }
  absl::SleepFor(absl::Seconds(2));
  const double outage = SecondsSince(stopped);
  phase = kAfter;
  const absl::Time restarted = absl::Now();
  stack_->postgres().Start();
  // Service resumes, without restarting anything.
  double recovered_after = -1;
  const bool recovered = WaitUntil(
      [&] {
        for (const std::string& path : paths) {
          if (stack_->Http("GET", path, "", w.admin).status != 200) {
            return false;
          }
        }
        recovered_after = SecondsSince(restarted);
        return true;
      },
      absl::Seconds(30));
  EXPECT_TRUE(recovered) << "service did not resume after PostgreSQL restart";
  std::map<std::string, double> serving_after;
  for (const auto& [name, addr] : services) {
    auto ch = stack_->Channel(addr);
    EXPECT_TRUE(WaitUntil([&] { return HealthOf(ch) == HealthStatus::SERVING; },
                          absl::Seconds(10)))
        << name;
    serving_after[name] = SecondsSince(restarted);
  }
  // A write works too.
  HttpResponse write = Invite(w, "after-pg@s4.example", "s4-after", false);
  EXPECT_EQ(write.status, 200) << write.body;
  stop = true;
  for (auto& t : threads) t.join();

  const char* names[] = {"identity", "membership", "notification", "gateway"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(stack_->process(names[i]).pid(), pids[i]) << names[i];
    EXPECT_TRUE(stack_->process(names[i]).running()) << names[i];
  }
  int down_total = 0, down_bad = 0;
  for (const auto& [code, n] : by_phase[kDown]) {
    down_total += n;
    if (code != 503) down_bad += n;
  }
  EXPECT_GT(down_total, 0);
  EXPECT_EQ(down_bad, 0) << "during the outage: "
                         << StatusHistogram(by_phase[kDown])
                         << " (want only 503 UNAVAILABLE)";
  EXPECT_LT(slowest_down, 6.0 * kSlowdown);
  int before_bad = 0;
  for (const auto& [code, n] : by_phase[kBefore]) {
    if (code != 200) before_bad += n;
  }
  EXPECT_EQ(before_bad, 0) << StatusHistogram(by_phase[kBefore]);
  Record(
      "4 PostgreSQL stop -m immediate under load",
      absl::StrCat(
          "requests=", requests, " before=[",
          StatusHistogram(by_phase[kBefore]), "] during_outage=[",
          StatusHistogram(by_phase[kDown]),
          "] slowest_during_outage_s=", slowest_down, " after_restart=[",
          StatusHistogram(by_phase[kAfter]), "] outage_s=", outage,
          " not_serving_within_s(identity,membership,notification)=",
          not_serving_after["identity"], ",", not_serving_after["membership"],
          ",", not_serving_after["notification"],
          " all_routes_200_after_restart_s=", recovered_after,
          " serving_again_s=", serving_after["notification"],
          " process_restarts=0"));
}

// ---------------------------------------------------------------------------
// 5. SMTP relay down for a while (refusing connections, then answering 4xx).
// ---------------------------------------------------------------------------
TEST_F(FaultsTest, SmtpOutageQueuesAndCatchesUp) {
  const Workspace w = NewWorkspace("s5");
  const std::string domain = "s5.example";
  constexpr int kInvites = 30;
  constexpr int kTempFailures = 5;
  const int port = sink_->port();
  const std::string messages_path =
      "/v1/workspaces/" + w.id + "/messages?category=invitation";

  sink_->Stop();
  const absl::Time down_at = absl::Now();
  for (int i = 0; i < kInvites; ++i) {
    HttpResponse r = Invite(w, absl::StrCat("guest", i, "@", domain),
                            absl::StrCat("s5-invite-", i));
    ASSERT_EQ(r.status, 200) << r.body;
  }
  // The queue holds every message, none FAILED, while the relay is down.
  std::map<std::string, int> states;
  WaitUntil(
      [&] {
        states.clear();
        for (const json& m : ListAll(messages_path, "messages", w.admin)) {
          ++states[m.value("state", "")];
        }
        return states["QUEUED"] >= kInvites;
      },
      absl::Seconds(20));
  // Stay down a little longer so delivery retries against a dead relay.
  while (SecondsSince(down_at) < 6) absl::SleepFor(absl::Milliseconds(100));
  states.clear();
  for (const json& m : ListAll(messages_path, "messages", w.admin)) {
    ++states[m.value("state", "")];
  }
  EXPECT_EQ(states["QUEUED"], kInvites);
  EXPECT_EQ(states["FAILED"], 0);
  EXPECT_EQ(TallyMail(*sink_, domain).total, 0);
  const double outage = SecondsSince(down_at);

  // Back, but the first answers are "try again later".
  sink_->FailNext(kTempFailures, "451 4.3.0 mailbox busy, try again later");
  ASSERT_TRUE(sink_->Start(port));
  const absl::Time up_at = absl::Now();
  const bool all = WaitUntil(
      [&] {
        return TallyMail(*sink_, domain).ids_by_recipient.size() >=
               static_cast<size_t>(kInvites);
      },
      absl::Seconds(40));
  const double catch_up = SecondsSince(up_at);
  MailTally mail = TallyMail(*sink_, domain);
  EXPECT_TRUE(all) << mail.ids_by_recipient.size() << " of " << kInvites;
  EXPECT_EQ(mail.duplicates(), 0);
  ExpectDuplicatesShareMessageId(mail);
  std::map<std::string, int> final_states;
  WaitUntil(
      [&] {
        final_states.clear();
        for (const json& m : ListAll(messages_path, "messages", w.admin)) {
          ++final_states[m.value("state", "")];
        }
        return final_states["SENT"] >= kInvites;
      },
      absl::Seconds(10));
  EXPECT_EQ(final_states["SENT"], kInvites);
  EXPECT_EQ(final_states["FAILED"], 0);
  Record("5 SMTP relay down",
         absl::StrCat("messages=", kInvites, " relay_down_s=", outage,
                      " queued_while_down=", states["QUEUED"],
                      " failed_while_down=", states["FAILED"],
                      " then 4xx answers=", kTempFailures, " caught_up_in_s=",
                      catch_up, " delivered=", mail.ids_by_recipient.size(),
                      " duplicates=", mail.duplicates(), " final SENT=",
                      final_states["SENT"], " FAILED=", final_states["FAILED"],
                      " lost=", kInvites - mail.ids_by_recipient.size()));
}

// ---------------------------------------------------------------------------
// 6. Deadlines: a 50 ms deadline against a naturally slow call (argon2id
// Login, queued behind other logins) ends promptly as DEADLINE_EXCEEDED.
// ---------------------------------------------------------------------------
TEST_F(FaultsTest, ShortDeadlineEndsPromptly) {
  const Workspace w = NewWorkspace("s6");
  auto stub = identity::v1::IdentityService::NewStub(
      stack_->Channel(stack_->identity_addr()));
  identity::v1::LoginRequest login;
  login.set_workspace_id(w.id);
  login.set_username("admin@s6.admin.example");
  login.set_password(kPassword);

  // Background logins keep the password hasher (one slot per core) busy.
  std::atomic<bool> stop{false};
  std::atomic<int> background_ok{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 8; ++t) {
    load.emplace_back([&] {
      while (!stop.load()) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
        identity::v1::Session s;
        if (stub->Login(&ctx, login, &s).ok()) ++background_ok;
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(300));
  constexpr int kCalls = 10;
  int exceeded = 0;
  double slowest = 0;
  std::map<int, int> codes;
  for (int i = 0; i < kCalls; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(50));
    identity::v1::Session s;
    const absl::Time t0 = absl::Now();
    grpc::Status st = stub->Login(&ctx, login, &s);
    const double took = SecondsSince(t0);
    slowest = std::max(slowest, took);
    ++codes[st.error_code()];
    if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) ++exceeded;
    // Either it beat its deadline or it ended promptly past it.
    EXPECT_TRUE(st.ok() ||
                st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
        << st.error_code() << " " << st.error_message();
    EXPECT_LT(took, 0.5 * kSlowdown)
        << "call " << i << " took " << took << " s";
  }
  stop = true;
  for (auto& t : load) t.join();
  // The hasher is busy, so most calls cannot make 50 ms.
  EXPECT_GE(exceeded, kCalls / 2) << "codes: " << [&] {
    std::string s;
    for (auto [c, n] : codes) absl::StrAppend(&s, c, "x", n, " ");
    return s;
  }();
  EXPECT_GT(background_ok.load(), 0);

  // The server keeps working afterwards.
  grpc::ClientContext ok_ctx;
  ok_ctx.set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(10));
  identity::v1::Session s;
  EXPECT_TRUE(stub->Login(&ok_ctx, login, &s).ok());
  // The server saw the callers go: its access log has the ended calls.
  const std::string log = [&] {
    std::ifstream in(stack_->process("identity").log_path());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }();
  const bool server_saw = absl::StrContains(log, "DEADLINE_EXCEEDED") ||
                          absl::StrContains(log, "CANCELLED") ||
                          absl::StrContains(log, "\"code\":4") ||
                          absl::StrContains(log, "\"code\":1,");
  Record("6 short deadline",
         absl::StrCat(
             "calls=", kCalls, " deadline_ms=50 deadline_exceeded=", exceeded,
             " slowest_return_ms=", slowest * 1000,
             " background_logins_ok=", background_ok.load(),
             " server_logged_expired_calls=", server_saw ? "yes" : "no"));
}

// ---------------------------------------------------------------------------
// 6b. The caller's deadline reaches the peer: identity's call to a frozen
// membership (SIGSTOP) ends with the caller's 300 ms deadline, not after
// --peer_timeout (5 s); and the invite left in doubt leaves no orphan.
// ---------------------------------------------------------------------------
TEST_F(FaultsTest, DeadlinePropagatesToPeerCalls) {
  const Workspace w = NewWorkspace("s6b");
  auto stub = identity::v1::IdentityService::NewStub(
      stack_->Channel(stack_->identity_addr()));
  identity::v1::InviteUserRequest req;
  req.set_workspace_id(w.id);
  req.set_email("frozen@s6b.example");
  req.set_first_name("Frozen");
  req.set_kind(identity::v1::GUEST);
  req.add_group_ids(w.group);
  req.set_send_email(false);
  req.set_idempotency_key("s6b-frozen");
  const std::string request_id = "s6b-deadline-probe";

  stack_->process("membership").Signal(SIGSTOP);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + w.admin);
  ctx.AddMetadata("x-request-id", request_id);
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(300));
  identity::v1::Invitation inv;
  const absl::Time t0 = absl::Now();
  grpc::Status st = stub->InviteUser(&ctx, req, &inv);
  const double client_seconds = SecondsSince(t0);
  // How long identity itself kept the call (its access log line).
  double server_ms = -1;
  std::string server_code;
  WaitUntil(
      [&] {
        std::ifstream in(stack_->process("identity").log_path());
        std::string line;
        while (std::getline(in, line)) {
          if (!absl::StrContains(line, request_id) ||
              !absl::StrContains(line, "\"InviteUser\"")) {
            continue;
          }
          json j = json::parse(line, nullptr, false);
          if (j.is_discarded() || j.value("msg", "") != "rpc") continue;
          server_ms = std::atof(j.value("duration_ms", "-1").c_str());
          server_code = j.value("code", "");
          return true;
        }
        return false;
      },
      absl::Seconds(8));
  stack_->process("membership").Signal(SIGCONT);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << st.error_message();
  EXPECT_LT(client_seconds, 1.0 * kSlowdown);
  EXPECT_GE(server_ms, 0) << "identity logged no InviteUser for " << request_id;
  EXPECT_LT(server_ms, 1000 * kSlowdown)
      << "identity kept the call " << server_ms
      << " ms: the caller's deadline did not reach "
         "its membership call";

  // Membership wakes up with the stale ApplyGrants in its socket. Whatever
  // it does with it, the invite is either wholly there or wholly absent.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return HealthOf(stack_->Channel(stack_->membership_addr())) ==
               HealthStatus::SERVING;
      },
      absl::Seconds(10)));
  absl::SleepFor(absl::Seconds(1));
  Census c = TakeCensus(w);
  const int problems = ExpectConsistent(w, c, "after the frozen peer");
  // The client retries with its key and gets the guest.
  int attempts = 0;
  HttpResponse retry =
      RetryInvite(w, "frozen@s6b.example", "s6b-frozen", &attempts);
  Census after = TakeCensus(w);
  const int problems_after = ExpectConsistent(w, after, "after the retry");
  Record("6b deadline propagation",
         absl::StrCat("peer=membership SIGSTOPped, caller deadline=300ms,"
                      " client_code=",
                      st.error_code(), " client_s=", client_seconds,
                      " identity_logged=", server_code, " after_ms=", server_ms,
                      " inconsistencies=", problems,
                      " retry_status=", retry.status,
                      " inconsistencies_after_retry=", problems_after));
  // Note: the retry's body is not compared with the first call's: the
  // first call never returned one.
  (void)attempts;
}

// ---------------------------------------------------------------------------
// 7. SIGTERM of identity under load: accepted calls complete, exit 0.
// ---------------------------------------------------------------------------
TEST_F(FaultsTest, SigtermUnderLoadDrainsAcceptedCalls) {
  const Workspace w = NewWorkspace("s7");
  auto channel = stack_->Channel(stack_->identity_addr());
  auto stub = identity::v1::IdentityService::NewStub(channel);
  identity::v1::LoginRequest login;
  login.set_workspace_id(w.id);
  login.set_username("admin@s7.admin.example");
  login.set_password(kPassword);

  std::atomic<bool> stop{false};
  std::mutex mu;
  absl::Time sigterm_at = absl::InfiniteFuture();
  std::map<long, int> http_codes;
  std::map<int, int> grpc_codes;
  int in_flight_at_sigterm = 0, in_flight_ok = 0, in_flight_bad = 0;
  std::vector<std::string> bad_http, bad_ids;
  std::atomic<int> sequence{0};
  int requests = 0;
  std::vector<std::thread> threads;
  // HTTP clients through the gateway (ListUsers: identity).
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        const std::string request_id = absl::StrCat("s7-", ++sequence);
        HttpResponse r = guestlist::testing::HttpRequest(
            "GET", stack_->gateway_url() + "/v1/workspaces/" + w.id + "/users",
            "",
            {"Authorization: Bearer " + w.admin,
             "X-Request-Id: " + request_id});
        std::lock_guard<std::mutex> lock(mu);
        ++requests;
        ++http_codes[r.status];
        if (r.status != 200 && r.status != 503) {
          bad_http.push_back(
              absl::StrCat(r.status, " ", r.body, " request_id=", request_id));
          bad_ids.push_back(request_id);
        }
      }
    });
  }
  // gRPC Logins straight at identity: slow (argon2id, one hash per core, so
  // twelve callers queue inside the server), several are being handled
  // when SIGTERM arrives.
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
        identity::v1::Session s;
        const absl::Time t0 = absl::Now();
        grpc::Status st = stub->Login(&ctx, login, &s);
        std::lock_guard<std::mutex> lock(mu);
        ++requests;
        ++grpc_codes[st.error_code()];
        // Started well before SIGTERM (so inside the server, queued for
        // the hasher) and still running at it: accepted.
        if (t0 < sigterm_at - absl::Milliseconds(100) &&
            absl::Now() > sigterm_at) {
          ++in_flight_at_sigterm;
          if (st.ok()) {
            ++in_flight_ok;
          } else {
            ++in_flight_bad;
            ADD_FAILURE() << "accepted call failed: " << st.error_code() << " "
                          << st.error_message();
          }
        }
        if (!st.ok()) absl::SleepFor(absl::Milliseconds(50));
      }
    });
  }
  absl::SleepFor(absl::Seconds(1));
  {
    std::lock_guard<std::mutex> lock(mu);
    sigterm_at = absl::Now();
  }
  stack_->process("identity").Signal(SIGTERM);
  const int exit_code = stack_->process("identity").Wait(20000);
  const double drain_seconds = SecondsSince(sigterm_at);
  absl::SleepFor(absl::Milliseconds(300));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(exit_code, 0);
  stack_->process("identity").Restart();
  ASSERT_TRUE(stack_->WaitReady("identity"));

  int http_bad = 0;
  for (const auto& [code, n] : http_codes) {
    if (code != 200 && code != 503) http_bad += n;
  }
  EXPECT_EQ(http_bad, 0) << StatusHistogram(http_codes)
                         << " (a refused call is 503, never 500)";
  for (size_t i = 0; i < bad_http.size() && i < 3; ++i) {
    ADD_FAILURE() << "bad response: " << bad_http[i] << "\n"
                  << LogLinesFor(bad_ids[i]);
  }
  int grpc_bad = 0;
  std::string grpc_hist;
  for (const auto& [code, n] : grpc_codes) {
    absl::StrAppend(&grpc_hist, code, "x", n, " ");
    // A refused call is UNAVAILABLE, or CANCELLED when its stream reached
    // the server in the instant Shutdown began and was never matched to a
    // handler (grpc++ cancels such pending calls; seen once in ~10 runs).
    // Either way it never ran; every call that had been accepted is
    // checked above to have succeeded (in_flight_bad).
    if (code != grpc::StatusCode::OK && code != grpc::StatusCode::UNAVAILABLE &&
        code != grpc::StatusCode::CANCELLED) {
      grpc_bad += n;
    }
  }
  EXPECT_EQ(grpc_bad, 0) << grpc_hist;
  EXPECT_GT(in_flight_at_sigterm, 0) << "no call was in flight at SIGTERM";
  EXPECT_EQ(in_flight_bad, 0);
  Record("7 SIGTERM identity under load",
         absl::StrCat("requests=", requests, " http=[",
                      StatusHistogram(http_codes), "] grpc_codes=[", grpc_hist,
                      "] in_flight_at_sigterm=", in_flight_at_sigterm,
                      " completed_ok=", in_flight_ok, " failed=", in_flight_bad,
                      " exit_code=", exit_code, " drain_s=", drain_seconds));
}

// ---------------------------------------------------------------------------
// 8. Overload: far more concurrent calls than --max_threads.
// ---------------------------------------------------------------------------
TEST(OverloadTest, ExcessGetsResourceExhaustedQuickly) {
  constexpr int kMaxThreads = 4;
  constexpr int kClients = 48;
  Stack::Options options;
  options.extra_env = {
      {"GUESTLIST_IDENTITY_MAX_THREADS", absl::StrCat(kMaxThreads)}};
  Stack stack(options);
  auto r = stack.Http(
      "POST", "/v1/workspaces",
      json{{"workspace",
            {{"name", "s8"}, {"displayName", "S8"}, {"licenseCount", 10}}},
           {"adminEmail", "admin@s8.example"},
           {"adminPassword", kPassword}}
          .dump(),
      stack.operator_token());
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string ws = Body(r).value("id", "");
  const pid_t pid = stack.process("identity").pid();
  const long rss_before = VmRssKb(pid);

  identity::v1::LoginRequest login;
  login.set_workspace_id(ws);
  login.set_username("admin@s8.example");
  login.set_password(kPassword);

  std::mutex mu;
  std::map<int, int> codes;
  double slowest_rejection = 0, slowest_ok = 0;
  std::atomic<long> rss_peak{rss_before};
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling.load()) {
      rss_peak = std::max(rss_peak.load(), VmRssKb(pid));
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  constexpr int kRounds = 3;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&] {
        // One channel per client so calls are not multiplexed into one
        // connection's flow control.
        grpc::ChannelArguments args;
        args.SetInt("grpc.use_local_subchannel_pool", 1);
        auto ch = grpc::CreateCustomChannel(
            stack.identity_addr(), grpc::InsecureChannelCredentials(), args);
        auto stub = identity::v1::IdentityService::NewStub(ch);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(30));
        identity::v1::Session s;
        const absl::Time t0 = absl::Now();
        grpc::Status st = stub->Login(&ctx, login, &s);
        const double took = SecondsSince(t0);
        std::lock_guard<std::mutex> lock(mu);
        ++codes[st.error_code()];
        if (st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          slowest_rejection = std::max(slowest_rejection, took);
        } else if (st.ok()) {
          slowest_ok = std::max(slowest_ok, took);
        }
      });
    }
    for (auto& t : clients) t.join();
  }
  sampling = false;
  sampler.join();
  const long rss_after = VmRssKb(pid);

  const int total = kClients * kRounds;
  const int ok = codes[grpc::StatusCode::OK];
  const int exhausted = codes[grpc::StatusCode::RESOURCE_EXHAUSTED];
  std::string hist;
  for (const auto& [code, n] : codes) absl::StrAppend(&hist, code, "x", n, " ");
  EXPECT_EQ(ok + exhausted, total) << hist;
  EXPECT_GT(exhausted, 0) << "no call was refused at " << kClients
                          << " concurrent vs max_threads=" << kMaxThreads
                          << ": " << hist;
  EXPECT_GT(ok, 0) << hist;
  EXPECT_LT(slowest_rejection, 1.0 * kSlowdown);
  // Bounded memory: a handful of 19 MiB argon2 buffers at most, not one per
  // queued caller.
  EXPECT_LT(rss_peak.load() - rss_before, 200 * 1024) << "KiB";
  EXPECT_TRUE(stack.process("identity").running());
  // Serving normally again right afterwards (through the gateway, whose
  // own connection to identity may have been refused during the storm).
  const absl::Time calm = absl::Now();
  HttpResponse after;
  long first_after = 0;
  WaitUntil(
      [&] {
        after = stack.Http(
            "POST", "/v1/workspaces/" + ws + "/sessions",
            json{{"username", "admin@s8.example"}, {"password", kPassword}}
                .dump());
        if (first_after == 0) first_after = after.status;
        return after.status == 200;
      },
      absl::Seconds(10), absl::Milliseconds(50));
  const double recovery = SecondsSince(calm);
  EXPECT_EQ(after.status, 200) << after.body;
  EXPECT_LT(recovery, 5.0 * kSlowdown);
  Record("8 overload",
         absl::StrCat("max_threads=", kMaxThreads, " concurrent=", kClients,
                      " rounds=", kRounds, " calls=", total, " ok=", ok,
                      " resource_exhausted=", exhausted, " codes=[", hist,
                      "] slowest_rejection_ms=", slowest_rejection * 1000,
                      " slowest_admitted_s=", slowest_ok,
                      " gateway_first_call_after=", first_after,
                      " gateway_ok_after_s=", recovery,
                      " rss_kib before/peak/after=", rss_before, "/",
                      rss_peak.load(), "/", rss_after));
}

}  // namespace
}  // namespace guestlist
