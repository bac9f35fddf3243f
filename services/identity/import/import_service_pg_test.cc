// The import executor against a real PostgreSQL (identity's migrations,
// V100 included) with membership and notification faked: creates with
// invitations that match their tokens, re-upload UNCHANGED, dry run, modes,
// the delete column, the error CSV, export round trip, limits, a client
// that goes away, and permissions.
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/migrations.h"
#include "common/outbox.h"
#include "common/pg.h"
#include "common/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/identity/identity_migrations.h"
#include "services/identity/import/import_service.h"
#include "tests/testing/postgres.h"

namespace guestlist::identity::import {
namespace {

using Grant = ::guestlist::membership::v1::AppPrivilegeGrant;
using ::guestlist::identity::v1::ImportReport;
using ::guestlist::identity::v1::ImportRow;
using ::testing::HasSubstr;

constexpr char kWs[] = "11111111-1111-4111-8111-111111111111";
constexpr char kAdmin[] = "22222222-2222-4222-8222-222222222222";

std::string ReadFile(const std::string& name) {
  std::ifstream in("services/identity/import/testdata/" + name,
                   std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Membership as the import sees it: groups, apps, users' access.
class FakeMembership final : public MembershipPeer {
 public:
  FakeMembership() {
    for (auto [id, name] : std::vector<std::pair<std::string, std::string>>{
             {"g-partners", "Partners"},
             {"g-agencies", "Agencies"},
             {"g-freelancers", "Freelancers"}}) {
      mv1::Group g;
      g.set_id(id);
      g.set_name(name);
      groups_.push_back(g);
    }
    for (auto [id, slug] : std::vector<std::pair<std::string, std::string>>{
             {"a-sales", "sales-dashboard"}, {"a-churn", "churn-report"}}) {
      mv1::App a;
      a.set_id(id);
      a.set_slug(slug);
      apps_.push_back(a);
    }
  }

  absl::StatusOr<std::vector<mv1::Group>> ListGroups(
      const std::string&) override {
    return groups_;
  }
  absl::StatusOr<std::vector<mv1::App>> ListApps(const std::string&) override {
    return apps_;
  }
  absl::StatusOr<mv1::GetUserAccessResponse> GetUserAccess(
      const mv1::GetUserAccessRequest& req) override {
    absl::MutexLock lock(&mu_);
    EXPECT_LE(req.user_ids_size(), 1000);  // the import's kAccessPerCall
    mv1::GetUserAccessResponse resp;
    for (const std::string& id : req.user_ids()) {
      mv1::UserAccess* ua = resp.add_users();
      ua->set_user_id(id);
      for (const std::string& g : groups_of_[id]) {
        auto* ref = ua->add_groups();
        ref->set_group_id(g);
        for (const auto& group : groups_) {
          if (group.id() == g) ref->set_group_name(group.name());
        }
      }
      for (const auto& [app, p] : apps_of_[id]) {
        Grant* grant = ua->add_app_privileges();
        grant->set_app_id(app);
        grant->set_privilege(p);
      }
    }
    return resp;
  }
  absl::StatusOr<mv1::ApplyGrantsResponse> ApplyGrants(
      const mv1::ApplyGrantsRequest& req) override {
    if (gate_ != nullptr) gate_->WaitForNotification();
    if (!req.dry_run() && real_gate_ != nullptr) {
      if (!real_entered_.HasBeenNotified()) real_entered_.Notify();
      real_gate_->WaitForNotification();
    }
    absl::MutexLock lock(&mu_);
    EXPECT_LE(req.users_size(), 5000);  // membership's limit per call
    if (!req.dry_run()) ++real_calls_;
    if (unavailable_ || (!req.dry_run() && real_calls_ == fail_real_call_)) {
      return absl::UnavailableError("membership is down");
    }
    mv1::ApplyGrantsResponse resp;
    bool any_failed = false;
    for (const mv1::UserGrants& g : req.users()) {
      auto* r = resp.add_results();
      r->set_user_id(g.user().id());
      r->set_ok(!refuse_.contains(g.user().username()));
      if (!r->ok()) {
        any_failed = true;
        r->set_error_code(9);
        r->set_error_message("not enough licences: 1 more needed");
      }
    }
    const bool apply = !req.dry_run() && (req.best_effort() || !any_failed);
    resp.set_applied(apply);
    if (!apply) return resp;
    for (int i = 0; i < req.users_size(); ++i) {
      if (!resp.results(i).ok()) continue;
      const mv1::UserGrants& g = req.users(i);
      const std::string& id = g.user().id();
      // As membership: a record not newer than the one held is ignored.
      if (!records_.contains(id) ||
          g.user().version() > records_[id].version()) {
        records_[id] = g.user();
      }
      for (const auto& gid : g.group_ids()) groups_of_[id].insert(gid);
      for (const auto& gid : g.remove_group_ids()) groups_of_[id].erase(gid);
      for (const auto& p : g.app_privileges()) {
        apps_of_[id][p.app_id()] = p.privilege();
      }
      for (const auto& a : g.remove_app_ids()) apps_of_[id].erase(a);
    }
    return resp;
  }
  absl::Status DeleteUsers(const mv1::DeleteUsersRequest& req) override {
    absl::MutexLock lock(&mu_);
    for (const auto& id : req.user_ids()) {
      records_.erase(id);
      groups_of_.erase(id);
      apps_of_.erase(id);
      ++deleted_;
    }
    return absl::OkStatus();
  }

  absl::Mutex mu_;
  std::vector<mv1::Group> groups_;
  std::vector<mv1::App> apps_;
  absl::flat_hash_map<std::string, mv1::UserRecord> records_;
  absl::flat_hash_map<std::string, std::set<std::string>> groups_of_;
  absl::flat_hash_map<std::string, std::map<std::string, Privilege>> apps_of_;
  absl::flat_hash_set<std::string> refuse_;  // usernames without licence
  bool unavailable_ = false;
  int fail_real_call_ = -1;  // the applying call (1, 2, ...) that fails
  absl::Notification* gate_ = nullptr;  // holds ApplyGrants until notified
  // Holds the applying (not dry-run) calls; real_entered_ says one came.
  absl::Notification* real_gate_ = nullptr;
  absl::Notification real_entered_;
  int real_calls_ = 0;
  int deleted_ = 0;
};

class FakeMail final : public MailPeer {
 public:
  absl::StatusOr<nv1::BatchSendEmailResponse> BatchSendEmail(
      const nv1::BatchSendEmailRequest& req) override {
    ADD_FAILURE() << "invitation emails must go through identity's outbox, "
                     "not straight to notification ("
                  << req.messages_size() << " sent)";
    return nv1::BatchSendEmailResponse();
  }
};

class ImportPgTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { db_ = new guestlist::testing::TestPostgres(); }
  static void TearDownTestSuite() { delete db_; }

  void SetUp() override {
    static int n = 0;
    const std::string name = absl::StrCat("import_", ++n);
    pool_ = std::make_unique<pg::Pool>(
        pg::PoolOptions{.conninfo = db_->CreateDatabase(name)});
    std::vector<Migration> migrations =
        guestlist::identity::IdentityMigrations();
    migrations.push_back(CommonTablesMigration("identity"));
    ASSERT_TRUE(RunMigrations(*pool_, "identity", migrations).ok());
    ASSERT_TRUE(
        pool_
            ->Exec("INSERT INTO identity.workspaces (id, name, display_name, "
                   "create_time, update_time) VALUES ($1, 'acme', 'Acme', "
                   "now(), now())",
                   {kWs})
            .ok());
    ASSERT_TRUE(pool_
                    ->Exec("INSERT INTO identity.users (id, workspace_id, "
                           "username, email, first_name, last_name, kind, "
                           "status, create_time, update_time) VALUES ($1, $2, "
                           "'boss@acme.example', 'boss@acme.example', 'Bea', "
                           "'Boss', 'ADMIN', 'ACTIVE', now(), now())",
                           {kAdmin, kWs})
                    .ok());
    store_ = std::make_unique<ImportStore>(pool_.get());
    MakeService(ImportConfig());
    admin_.set_user_id(kAdmin);
    admin_.set_workspace_id(kWs);
    admin_.set_kind(v1::ADMIN);
  }

  void MakeService(ImportConfig config) {
    service_.reset();
    config.public_url = "https://guests.example/";
    service_ = std::make_unique<ImportService>(
        config,
        ImportDeps{store_.get(), &membership_, &mail_, &clock_, &random_});
    // Its start-up reaper must not race the test: it would hold a job's
    // lock while the test reads that job (seen once in CI under load:
    // JobOfADeadProcessIsFailedWhenRead read RUNNING).
    service_->AwaitBackgroundWork();
  }

  absl::StatusOr<ImportReport> Import(
      const std::string& csv, bool dry_run = false,
      v1::ImportMode mode = v1::ALL_OR_NOTHING, size_t chunk = 5,
      ImportService::Cancelled cancelled = nullptr,
      const std::string& key = "") {
    std::vector<v1::ImportUsersRequest> messages(1);
    auto* options = messages[0].mutable_options();
    options->set_workspace_id(kWs);
    options->set_dry_run(dry_run);
    options->set_mode(mode);
    options->set_idempotency_key(key);
    for (size_t i = 0; i < csv.size(); i += chunk) {
      messages.emplace_back().set_chunk(csv.substr(i, chunk));
    }
    size_t next = 0;
    return service_->Import(
        admin_,
        [&](v1::ImportUsersRequest* m) {
          if (next >= messages.size()) return false;
          *m = messages[next++];
          return true;
        },
        cancelled);
  }

  // The invitation emails queued in identity's outbox (for the relay).
  std::vector<nv1::SendEmailRequest> Queued() {
    std::vector<nv1::SendEmailRequest> out;
    auto r = pool_->Exec(
        "SELECT encode(payload, 'hex') FROM identity.outbox WHERE topic = "
        "'notification.BatchSendEmail' ORDER BY id");
    EXPECT_TRUE(r.ok()) << r.status();
    for (int i = 0; r.ok() && i < r->rows(); ++i) {
      nv1::BatchSendEmailRequest batch;
      EXPECT_TRUE(batch.ParseFromString(absl::HexStringToBytes(r->Get(i, 0))));
      EXPECT_LE(batch.messages_size(), 500);
      for (const auto& m : batch.messages()) out.push_back(m);
    }
    return out;
  }

  std::string Query(const std::string& sql) {
    auto r = pool_->Exec(sql);
    EXPECT_TRUE(r.ok()) << r.status();
    std::string out;
    for (int i = 0; r.ok() && i < r->rows(); ++i) {
      for (int c = 0; c < r->columns(); ++c) {
        absl::StrAppend(&out, c ? "|" : "", r->Get(i, c));
      }
      out += "\n";
    }
    return out;
  }

  static std::vector<std::string> Actions(const ImportReport& r) {
    std::vector<std::string> out;
    for (const ImportRow& row : r.rows()) {
      out.push_back(
          absl::StrCat(row.line(), ":", ImportRow::Action_Name(row.action())));
    }
    return out;
  }

  static guestlist::testing::TestPostgres* db_;
  std::unique_ptr<pg::Pool> pool_;
  std::unique_ptr<ImportStore> store_;
  FakeMembership membership_;
  FakeMail mail_;
  FakeClock clock_{absl::FromUnixSeconds(1800000000)};
  FakeRandom random_;
  std::unique_ptr<ImportService> service_;
  Principal admin_;
};
guestlist::testing::TestPostgres* ImportPgTest::db_ = nullptr;

TEST_F(ImportPgTest, TemplateFileCreatesInvitedUsersWithWorkingInvitations) {
  auto report = Import(ReadFile("template-basic.csv"));
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->state(), ImportReport::SUCCEEDED);
  EXPECT_EQ(report->rows_total(), 4);
  EXPECT_EQ(report->created(), 3);
  EXPECT_EQ(report->unchanged(), 1);  // old.guest: nothing to archive
  EXPECT_EQ(report->failed(), 0);
  EXPECT_THAT(Actions(*report),
              ::testing::ElementsAre("2:CREATE", "3:CREATE", "4:CREATE",
                                     "5:UNCHANGED"));
  EXPECT_EQ(Query("SELECT username, email, first_name, last_name, kind, "
                  "status, metadata::text FROM identity.users WHERE kind = "
                  "'GUEST' ORDER BY username"),
            "alice@partner.example|alice@partner.example|Alice|Martin|GUEST|"
            "INVITED|\n"
            "bob@agency.example|bob@agency.example|Bob||GUEST|INVITED|"
            "{\"contract\": \"2026-Q4\"}\n"
            "carol@freelance.example|carol@freelance.example||Durand|GUEST|"
            "INVITED|\n");
  EXPECT_EQ(Query("SELECT count(*) FROM identity.invitations WHERE state = "
                  "'PENDING' AND inviter_id = '" +
                  std::string(kAdmin) + "'"),
            "3\n");
  // Membership got the groups and privileges.
  const std::string bob = Query(
                              "SELECT id FROM identity.users WHERE username = "
                              "'bob@agency.example'")
                              .substr(0, 36);
  EXPECT_EQ(membership_.groups_of_[bob],
            (std::set<std::string>{"g-agencies", "g-partners"}));
  EXPECT_EQ(membership_.apps_of_[bob].at("a-churn"), Grant::VIEWER);
  EXPECT_EQ(membership_.records_[bob].status(), mv1::DirectoryUser::INVITED);
  // One email per created guest, after commit, whose token is the stored hash.
  const std::vector<nv1::SendEmailRequest> queued = Queued();
  ASSERT_EQ(queued.size(), 3u);
  for (const auto& m : queued) {
    EXPECT_EQ(m.template_(), "invitation");
    EXPECT_EQ(m.variables().at("workspace_name"), "Acme");
    EXPECT_EQ(m.variables().at("inviter_name"), "Bea Boss");
    const std::string url = m.variables().at("invitation_url");
    ASSERT_TRUE(
        absl::StartsWith(url, "https://guests.example/invite#token=gli_"))
        << url;
    const std::string token = url.substr(url.find("token=") + 6);
    EXPECT_EQ(
        Query("SELECT count(*) FROM identity.invitations i JOIN "
              "identity.users u ON u.id = i.user_id WHERE token_hash = '" +
              Sha256Hex(token) + "' AND u.email = '" + m.to() + "'"),
        "1\n");
  }
  // The job row holds the same report.
  auto stored = service_->GetImport(admin_, [&] {
    v1::GetImportRequest r;
    r.set_import_id(report->import_id());
    return r;
  }());
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->created(), 3);
  EXPECT_EQ(stored->state(), ImportReport::SUCCEEDED);
  EXPECT_EQ(stored->rows_processed(), 4);
}

TEST_F(ImportPgTest, SameFileAgainIsUnchangedAndDeleteColumnArchives) {
  ASSERT_TRUE(Import(ReadFile("template-basic.csv")).ok());
  const int calls = membership_.real_calls_;
  auto again = Import(ReadFile("template-basic.csv"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->unchanged(), 4);
  EXPECT_EQ(again->created() + again->updated() + again->deleted(), 0);
  EXPECT_EQ(membership_.real_calls_, calls);
  EXPECT_EQ(Queued().size(), 3u);

  auto archive = Import(
      "username,delete\r\nalice@partner.example,yes\r\n"
      "bob@agency.example,no\r\n");
  ASSERT_TRUE(archive.ok()) << archive.status();
  EXPECT_THAT(Actions(*archive),
              ::testing::ElementsAre("2:DELETE", "3:UNCHANGED"));
  EXPECT_EQ(Query("SELECT u.status, i.state FROM identity.users u JOIN "
                  "identity.invitations i ON i.user_id = u.id WHERE "
                  "u.username = 'alice@partner.example'"),
            "ARCHIVED|REVOKED\n");
  const std::string alice =
      Query(
          "SELECT id FROM identity.users WHERE username = "
          "'alice@partner.example'")
          .substr(0, 36);
  EXPECT_EQ(membership_.records_[alice].status(), mv1::DirectoryUser::ARCHIVED);
  EXPECT_EQ(membership_.records_[alice].version(), 2);
}

TEST_F(ImportPgTest, UpdatesDiffProfileGroupsAndApps) {
  ASSERT_TRUE(Import(ReadFile("template-basic.csv")).ok());
  auto report = Import(
      "username,first_name,last_name,role,user-group-1,sales-dashboard,"
      "metadata\n"
      "bob@agency.example,Robert,,guest,Freelancers,,\"{\"\"a\"\":1}\"\n");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->updated(), 1);
  EXPECT_EQ(Query("SELECT first_name, metadata::text, version FROM "
                  "identity.users WHERE username = 'bob@agency.example'"),
            "Robert|{\"a\": 1}|2\n");
  const std::string bob = Query(
                              "SELECT id FROM identity.users WHERE username = "
                              "'bob@agency.example'")
                              .substr(0, 36);
  EXPECT_EQ(membership_.groups_of_[bob],
            (std::set<std::string>{"g-freelancers"}));
  EXPECT_EQ(membership_.apps_of_[bob].count("a-sales"), 0u);
  // churn-report was not a column: left alone.
  EXPECT_EQ(membership_.apps_of_[bob].at("a-churn"), Grant::VIEWER);
  EXPECT_EQ(membership_.records_[bob].first_name(), "Robert");
  EXPECT_EQ(membership_.records_[bob].version(), 2);
  // Committed: its restore row went with the commit.
  EXPECT_EQ(Query("SELECT count(*) FROM identity.outbox WHERE topic = "
                  "'identity.RestoreImportedUsers'"),
            "0\n");
}

// An import changing existing users fails after membership applied its
// first batch: membership gets every changed user back as it was (groups,
// app privileges, profile record), at a version above the one the import
// sent, and identity's version moves past it too.
TEST_F(ImportPgTest, FailedImportRestoresTheUsersItChanged) {
  ASSERT_TRUE(Import(ReadFile("template-basic.csv")).ok());
  const auto before_groups = membership_.groups_of_;
  const auto before_apps = membership_.apps_of_;
  const auto before_records = membership_.records_;
  ImportConfig config;
  config.grants_batch = 2;
  MakeService(config);
  // The second batch's call fails (and only it: the restore calls work).
  membership_.fail_real_call_ = membership_.real_calls_ + 2;
  auto report = Import(
      "username,first_name,last_name,role,user-group-1,sales-dashboard,"
      "churn-report,delete\n"
      "alice@partner.example,Alicia,Martin,member,Agencies,editor,viewer,\n"
      "bob@agency.example,Bob,,guest,Freelancers,,,\n"
      "carol@freelance.example,,Durand,guest,Freelancers,,,true\n");
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnavailable)
      << report.status();
  EXPECT_EQ(Query("SELECT state FROM identity.imports ORDER BY state"),
            "FAILED\nSUCCEEDED\n");
  // Identity wrote nothing but the versions.
  EXPECT_EQ(Query("SELECT username, first_name, kind, status, version FROM "
                  "identity.users WHERE kind <> 'ADMIN' ORDER BY username"),
            "alice@partner.example|Alice|GUEST|INVITED|3\n"
            "bob@agency.example|Bob|GUEST|INVITED|3\n"
            "carol@freelance.example||GUEST|INVITED|3\n");
  EXPECT_EQ(Query("SELECT topic, count(*) FROM identity.outbox GROUP BY 1"),
            "notification.BatchSendEmail|1\n");
  ASSERT_EQ(before_records.size(), 3u);
  for (const auto& [id, record] : before_records) {
    SCOPED_TRACE(record.username());
    EXPECT_EQ(membership_.groups_of_[id], before_groups.at(id));
    using Apps = std::map<std::string, Privilege>;
    const Apps want_apps =
        before_apps.contains(id) ? before_apps.at(id) : Apps();
    EXPECT_EQ(membership_.apps_of_[id], want_apps);
    mv1::UserRecord want = record;
    want.set_version(3);
    EXPECT_EQ(membership_.records_[id].DebugString(), want.DebugString());
  }
}

// The restore rows of an import whose process died: undone by the next
// reader of the job, or else by identity's relay.
TEST_F(ImportPgTest, RestoreRowsOfADeadImportPutChangedUsersBack) {
  ASSERT_TRUE(Import(ReadFile("template-basic.csv")).ok());
  const std::string bob = Query(
                              "SELECT id FROM identity.users WHERE username = "
                              "'bob@agency.example'")
                              .substr(0, 36);
  const std::set<std::string> groups = membership_.groups_of_[bob];
  const auto apps = membership_.apps_of_[bob];
  ASSERT_EQ(groups, (std::set<std::string>{"g-agencies", "g-partners"}));
  // What the dead import had applied to bob, and its restore row.
  auto apply_import = [&] {
    membership_.groups_of_[bob] = {"g-freelancers"};
    membership_.apps_of_[bob].clear();
    membership_.records_[bob].set_first_name("Robert");
    membership_.records_[bob].set_version(membership_.records_[bob].version() +
                                          1);
  };
  mv1::ApplyGrantsRequest inverse;
  inverse.set_workspace_id(kWs);
  mv1::UserGrants* g = inverse.add_users();
  g->mutable_user()->set_id(bob);
  g->add_group_ids("g-partners");
  g->add_group_ids("g-agencies");
  g->add_remove_group_ids("g-freelancers");
  for (const auto& [app, privilege] : apps) {
    Grant* p = g->add_app_privileges();
    p->set_app_id(app);
    p->set_privilege(privilege);
  }
  const std::string payload =
      absl::BytesToHexString(inverse.SerializeAsString());
  constexpr char kJob[] = "66666666-6666-4666-8666-666666666666";
  apply_import();
  ASSERT_TRUE(pool_
                  ->Exec("WITH i AS (INSERT INTO identity.outbox (topic, "
                         "payload, next_attempt_at) VALUES "
                         "('identity.RestoreImportedUsers', decode($3, 'hex'), "
                         "now() + interval '1 hour') RETURNING id) "
                         "INSERT INTO identity.imports (id, workspace_id, "
                         "idempotency_key, dry_run, mode, state, rows_total, "
                         "create_time, intent_ids) SELECT $1, $2, 'k-dead', "
                         "false, 'ALL_OR_NOTHING', 'RUNNING', 1, now(), "
                         "ARRAY[i.id] FROM i",
                         {kJob, kWs, payload})
                  .ok());
  v1::GetImportRequest get;
  get.set_import_id(kJob);
  auto read = service_->GetImport(admin_, get);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->state(), ImportReport::FAILED);
  EXPECT_EQ(membership_.groups_of_[bob], groups);
  EXPECT_EQ(membership_.apps_of_[bob], apps);
  EXPECT_EQ(membership_.records_[bob].first_name(), "Bob");
  EXPECT_EQ(membership_.records_[bob].version(), 3);
  EXPECT_EQ(Query("SELECT count(*) FROM identity.outbox WHERE topic = "
                  "'identity.RestoreImportedUsers'"),
            "0\n");

  // Nobody reads the job: the relay's handler does the same once due.
  apply_import();
  ASSERT_TRUE(pool_
                  ->Exec("INSERT INTO identity.outbox (topic, payload) "
                         "VALUES ('identity.RestoreImportedUsers', "
                         "decode($1, 'hex'))",
                         {payload})
                  .ok());
  OutboxRelay relay(pool_.get(), "identity");
  relay.Register(kTopicRestoreUsers,
                 RestoreUsersHandler(store_.get(), &membership_));
  auto delivered = relay.RunOnce();
  ASSERT_TRUE(delivered.ok()) << delivered.status();
  EXPECT_EQ(membership_.groups_of_[bob], groups);
  EXPECT_EQ(membership_.apps_of_[bob], apps);
  EXPECT_EQ(membership_.records_[bob].first_name(), "Bob");
  EXPECT_EQ(membership_.records_[bob].version(), 5);
  EXPECT_EQ(
      Query("SELECT version FROM identity.users WHERE id = '" + bob + "'"),
      "5\n");
  EXPECT_EQ(Query("SELECT count(*) FROM identity.outbox WHERE topic = "
                  "'identity.RestoreImportedUsers'"),
            "0\n");
}

TEST_F(ImportPgTest, DryRunReportsWithoutWriting) {
  auto report = Import(ReadFile("template-basic.csv"), /*dry_run=*/true);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->dry_run());
  EXPECT_EQ(report->created(), 3);
  EXPECT_EQ(report->state(), ImportReport::SUCCEEDED);
  EXPECT_EQ(Query("SELECT count(*) FROM identity.users"), "1\n");
  EXPECT_EQ(Query("SELECT count(*) FROM identity.invitations"), "0\n");
  EXPECT_EQ(membership_.real_calls_, 0);
  EXPECT_TRUE(Queued().empty());
}

constexpr char kMixed[] =
    "username,first_name,last_name,role,user-group-1\n"
    "ok1@x.example,Ok,One,guest,Partners\n"
    "bad@x.example,Bad,Group,guest,Nowhere\n"
    "ok2@x.example,Ok,Two,,\n"
    "OK1@x.example,Dup,,guest,\n";

TEST_F(ImportPgTest, AllOrNothingAppliesNothingWhenARowFails) {
  auto report = Import(kMixed);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->state(), ImportReport::FAILED);
  EXPECT_EQ(report->failed(), 2);
  EXPECT_THAT(Actions(*report), ::testing::ElementsAre("2:CREATE", "3:ERROR",
                                                       "4:CREATE", "5:ERROR"));
  EXPECT_EQ(report->rows(1).errors(0).column(), "user-group-1");
  EXPECT_THAT(report->rows(1).errors(0).reason(),
              HasSubstr("group \"Nowhere\" does not exist"));
  EXPECT_THAT(report->rows(3).errors(0).reason(),
              HasSubstr("already appears on line 2"));
  EXPECT_EQ(Query("SELECT count(*) FROM identity.users"), "1\n");
  EXPECT_EQ(membership_.real_calls_, 0);
  EXPECT_TRUE(Queued().empty());

  v1::GetImportErrorsRequest req;
  req.set_import_id(report->import_id());
  auto errors = service_->GetImportErrors(admin_, req);
  ASSERT_TRUE(errors.ok()) << errors.status();
  EXPECT_EQ(errors->content_type(), "text/csv; charset=utf-8");
  EXPECT_EQ(errors->data(),
            "username,first_name,last_name,role,user-group-1,error\r\n"
            "bad@x.example,Bad,Group,guest,Nowhere,\"user-group-1: group "
            "\"\"Nowhere\"\" does not exist in this workspace; create it "
            "first or fix the name\"\r\n"
            "OK1@x.example,Dup,,guest,,\"username \"\"OK1@x.example\"\" "
            "already appears on line 2; keep one row per user\"\r\n");
}

TEST_F(ImportPgTest, BestEffortAppliesValidRowsAndReportsLicenceShortfall) {
  membership_.refuse_.insert("ok2@x.example");
  auto report = Import(kMixed, false, v1::BEST_EFFORT);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->state(), ImportReport::SUCCEEDED);
  EXPECT_EQ(report->created(), 1);
  EXPECT_EQ(report->failed(), 3);
  EXPECT_THAT(report->rows(2).errors(0).reason(),
              HasSubstr("not enough licences"));
  EXPECT_EQ(Query("SELECT username FROM identity.users WHERE kind = 'GUEST'"),
            "ok1@x.example\n");
  EXPECT_EQ(Queued().size(), 1u);
}

TEST_F(ImportPgTest, ExportThenImportChangesNothing) {
  ASSERT_TRUE(Import(ReadFile("template-basic.csv")).ok());
  ASSERT_TRUE(
      Import(ReadFile("lowcode-platform.csv").substr(0, 0) +
             "First Name,Last Name,Email address,User Role,Group,"
             "Metadata\nJohn,Doe,john@corp.example,End User,"
             "Partners|Agencies|Freelancers,\"{\"\"k\"\": \"\"v\"\"}\"\n")
          .ok());
  v1::ExportUsersRequest req;
  req.set_workspace_id(kWs);
  auto exported = service_->ExportUsers(admin_, req);
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_THAT(exported->data(),
              HasSubstr("username,first_name,last_name,role,user-group-1,"
                        "user-group-2,user-group-3,sales-dashboard,"
                        "churn-report,delete,metadata\r\n"));
  EXPECT_THAT(exported->data(),
              HasSubstr("bob@agency.example,Bob,,guest,Agencies,Partners,,"
                        "guest,viewer,,\"{\"\"contract\"\":\"\"2026-Q4\"\"}\""
                        "\r\n"));
  EXPECT_THAT(exported->data(),
              HasSubstr("john@corp.example,John,Doe,member,Agencies,"
                        "Freelancers,Partners,,,,"));
  const int calls = membership_.real_calls_;
  auto report = Import(exported->data());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->rows_total(), 5);  // admin + 3 guests + John
  EXPECT_EQ(report->unchanged(), 5) << report->DebugString();
  EXPECT_EQ(membership_.real_calls_, calls);
}

TEST_F(ImportPgTest, TemplateListsTheWorkspaceApps) {
  v1::GetImportTemplateRequest req;
  req.set_workspace_id(kWs);
  auto body = service_->GetImportTemplate(admin_, req);
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(body->data(),
            "username,first_name,last_name,role,user-group-1,user-group-2,"
            "user-group-3,sales-dashboard,churn-report,delete,metadata\r\n");
  req.set_workspace_id("33333333-3333-4333-8333-333333333333");
  Principal op;
  op.set_is_operator(true);
  EXPECT_EQ(service_->GetImportTemplate(op, req).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ImportPgTest, LimitsFailBeforeAnythingIsWritten) {
  ImportConfig config;
  config.max_rows = 2;
  MakeService(config);
  auto rows = Import(ReadFile("template-basic.csv"));
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(rows.status().message(), HasSubstr("more than 2 rows"));
  config.max_rows = 1000;
  config.max_bytes = 100;
  MakeService(config);
  auto bytes = Import(ReadFile("template-basic.csv"));
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bytes.status().message(), HasSubstr("larger than 100 bytes"));
  EXPECT_EQ(Query("SELECT count(*) FROM identity.users"), "1\n");
  EXPECT_EQ(Query("SELECT count(*) FROM identity.imports"), "0\n");
  EXPECT_EQ(membership_.real_calls_, 0);
}

TEST_F(ImportPgTest, BadHeaderAndBadFirstMessage) {
  auto header = Import("username,colour\nx@y.example,red\n");
  EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(header.status().message(), HasSubstr("unknown column"));
  auto none = service_->Import(
      admin_,
      [](v1::ImportUsersRequest* m) {
        m->set_chunk("username\n");
        return true;
      },
      nullptr);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ImportPgTest, JobFinishesWhenTheClientGoesAway) {
  absl::Notification gate;
  membership_.gate_ = &gate;
  auto report = Import(ReadFile("template-basic.csv"), false,
                       v1::ALL_OR_NOTHING, 5, [] { return true; });
  ASSERT_EQ(report.status().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(report.status().message(), HasSubstr("continues"));
  EXPECT_EQ(Query("SELECT state, rows_total FROM identity.imports"),
            "RUNNING|4\n");
  gate.Notify();
  MakeService(ImportConfig());  // waits for the running job
  EXPECT_EQ(Query("SELECT state, created, rows_processed FROM "
                  "identity.imports"),
            "SUCCEEDED|3|4\n");
  EXPECT_EQ(Queued().size(), 3u);
}

TEST_F(ImportPgTest, IdempotencyKeyReturnsTheFirstReport) {
  auto first = Import(ReadFile("template-basic.csv"), false, v1::ALL_OR_NOTHING,
                      64, nullptr, "k1");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Import(ReadFile("template-basic.csv"), false,
                       v1::ALL_OR_NOTHING, 64, nullptr, "k1");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->import_id(), first->import_id());
  EXPECT_EQ(second->created(), 3);
  EXPECT_EQ(Queued().size(), 3u);
}

TEST_F(ImportPgTest, MembershipDownFailsTheJobAndLeavesIdentityUntouched) {
  membership_.unavailable_ = true;
  auto report = Import(ReadFile("template-basic.csv"));
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Query("SELECT state FROM identity.imports"), "FAILED\n");
  EXPECT_EQ(Query("SELECT count(*) FROM identity.users"), "1\n");
}

TEST_F(ImportPgTest, OnlyAdminsOfTheWorkspace) {
  Principal member;
  member.set_user_id("44444444-4444-4444-8444-444444444444");
  member.set_workspace_id(kWs);
  member.set_kind(v1::MEMBER);
  admin_ = member;
  EXPECT_EQ(Import(ReadFile("template-basic.csv")).status().code(),
            absl::StatusCode::kPermissionDenied);
  Principal key;
  key.set_api_key_id("k");
  key.set_workspace_id(kWs);
  key.add_scopes("users.read");
  v1::ExportUsersRequest req;
  req.set_workspace_id(kWs);
  EXPECT_TRUE(service_->ExportUsers(key, req).ok());
  admin_ = key;
  EXPECT_EQ(Import(ReadFile("template-basic.csv")).status().code(),
            absl::StatusCode::kPermissionDenied);
}

// Membership is granted under committed, locked intent rows: a crash before
// identity's commit leaves them to the relay, which removes those users.
TEST_F(ImportPgTest, IntentRowsCoverTheGrantsUntilIdentityCommits) {
  absl::Notification gate;
  membership_.real_gate_ = &gate;
  auto report = Import(ReadFile("template-basic.csv"), false,
                       v1::ALL_OR_NOTHING, 64, [] { return true; });
  ASSERT_EQ(report.status().code(), absl::StatusCode::kCancelled);
  membership_.real_entered_.WaitForNotification();
  auto intents = pool_->Exec(
      "SELECT encode(payload, 'hex') FROM identity.outbox WHERE topic = "
      "'identity.ReconcileInvite'");
  ASSERT_TRUE(intents.ok()) << intents.status();
  ASSERT_EQ(intents->rows(), 1);
  mv1::DeleteUsersRequest undo;
  ASSERT_TRUE(undo.ParseFromString(absl::HexStringToBytes(intents->Get(0, 0))));
  EXPECT_EQ(undo.workspace_id(), kWs);
  EXPECT_EQ(undo.user_ids_size(), 3);  // the three creates, not old.guest
  // Locked by the import's transaction: the relay skips it.
  EXPECT_EQ(Query("SELECT id FROM identity.outbox FOR UPDATE SKIP LOCKED"), "");
  // Alive (its lock is held): GetImport does not fail it.
  const std::string id = Query("SELECT id FROM identity.imports").substr(0, 36);
  v1::GetImportRequest get;
  get.set_import_id(id);
  auto running = service_->GetImport(admin_, get);
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_EQ(running->state(), ImportReport::RUNNING);
  EXPECT_EQ(Query("SELECT count(*) FROM identity.users"), "1\n");
  EXPECT_TRUE(Queued().empty());

  gate.Notify();
  MakeService(ImportConfig());  // waits for the job
  EXPECT_EQ(Query("SELECT topic, count(*) FROM identity.outbox GROUP BY 1"),
            "notification.BatchSendEmail|1\n");
  EXPECT_EQ(Query("SELECT state, created FROM identity.imports"),
            "SUCCEEDED|3\n");
  EXPECT_EQ(Queued().size(), 3u);
}

// The commit fails after membership granted (a username taken meanwhile):
// identity writes nothing, membership loses exactly the users identity
// does not have, the intents go, and the job says why it failed.
TEST_F(ImportPgTest, FailedCommitUndoesMembershipGrants) {
  absl::Notification gate;
  membership_.real_gate_ = &gate;
  std::thread upload([&] {
    auto report = Import(ReadFile("template-basic.csv"));
    EXPECT_EQ(report.status().code(), absl::StatusCode::kAlreadyExists)
        << report.status();
  });
  membership_.real_entered_.WaitForNotification();
  ASSERT_TRUE(pool_
                  ->Exec("INSERT INTO identity.users (id, workspace_id, "
                         "username, email, first_name, kind, status, "
                         "create_time, update_time) VALUES "
                         "('55555555-5555-4555-8555-555555555555', $1, "
                         "'Carol@freelance.example', 'c@x.example', 'C', "
                         "'GUEST', 'INVITED', now(), now())",
                         {kWs})
                  .ok());
  gate.Notify();
  upload.join();
  EXPECT_EQ(Query("SELECT count(*) FROM identity.users"), "2\n");
  EXPECT_EQ(Query("SELECT count(*) FROM identity.invitations"), "0\n");
  EXPECT_EQ(membership_.deleted_, 3);
  EXPECT_TRUE(membership_.records_.empty());
  EXPECT_EQ(Query("SELECT count(*) FROM identity.outbox"), "0\n");
  // FAILED: the counts say what would have happened (as ALL_OR_NOTHING).
  EXPECT_EQ(Query("SELECT state, created FROM identity.imports"), "FAILED|3\n");
  EXPECT_THAT(Query("SELECT failure_reason FROM identity.imports"),
              HasSubstr("ALREADY_EXISTS"));
}

// An import of more than 50,000 new users adds its intent rows in several
// calls: the job names all of them (else the reader of a dead job would
// leave the first calls' users to the relay, a minute later).
TEST_F(ImportPgTest, JobNamesTheIntentRowsOfEveryCall) {
  auto lease = store_->OpenLease();
  ASSERT_TRUE(lease.ok()) << lease.status();
  ImportJob job;
  job.id = "88888888-8888-4888-8888-888888888888";
  job.workspace_id = kWs;
  job.idempotency_key = "k-intents";
  job.report.set_mode(v1::ALL_OR_NOTHING);
  job.report.set_state(ImportReport::RUNNING);
  ASSERT_TRUE(store_->StartJob(**lease, job).ok());
  auto first = store_->AddIntents(**lease, kWs, {"u1", "u2", "u3"}, 2);
  auto second = store_->AddIntents(**lease, kWs, {"u4"}, 2);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->size(), 2u);
  EXPECT_EQ(second->size(), 1u);
  EXPECT_EQ(Query("SELECT cardinality(intent_ids) FROM identity.imports"),
            "3\n");
}

// A RUNNING job whose advisory lock nobody holds belongs to a dead process:
// reading it (GetImport, the same idempotency key, start-up) fails it.
TEST_F(ImportPgTest, JobOfADeadProcessIsFailedWhenRead) {
  constexpr char kJob[] = "66666666-6666-4666-8666-666666666666";
  constexpr char kOrphan[] = "77777777-7777-4777-8777-777777777777";
  // While a session holds its lock, the job is alive (taken before the row
  // exists, as StartJob does, so the start-up reaper cannot win a race).
  auto holder = pool_->Acquire();
  ASSERT_TRUE(holder.ok());
  ASSERT_TRUE((*holder)
                  ->Exec("SELECT pg_advisory_lock(hashtextextended("
                         "'identity.imports:' || $1, 0))",
                         {kJob})
                  .ok());
  // The dead job had granted kOrphan (unknown to identity) and kAdmin
  // (which identity has) in membership under one intent row.
  membership_.records_[kOrphan].set_id(kOrphan);
  membership_.records_[kAdmin].set_id(kAdmin);
  mv1::DeleteUsersRequest undo;
  undo.set_workspace_id(kWs);
  undo.add_user_ids(kOrphan);
  undo.add_user_ids(kAdmin);
  ASSERT_TRUE(
      pool_
          ->Exec("WITH i AS (INSERT INTO identity.outbox (topic, "
                 "payload, next_attempt_at) VALUES "
                 "('identity.ReconcileInvite', decode($3, 'hex'), "
                 "now() + interval '1 hour') RETURNING id) "
                 "INSERT INTO identity.imports (id, workspace_id, "
                 "idempotency_key, dry_run, mode, state, rows_total, "
                 "create_time, intent_ids) SELECT $1, $2, 'k-dead', "
                 "false, 'ALL_OR_NOTHING', 'RUNNING', 500, now(), "
                 "ARRAY[i.id] FROM i",
                 {kJob, kWs, absl::BytesToHexString(undo.SerializeAsString())})
          .ok());
  v1::GetImportRequest get;
  get.set_import_id(kJob);
  auto alive = service_->GetImport(admin_, get);
  ASSERT_TRUE(alive.ok()) << alive.status();
  EXPECT_EQ(alive->state(), ImportReport::RUNNING);
  EXPECT_EQ(membership_.deleted_, 0);
  ASSERT_TRUE((*holder)
                  ->Exec("SELECT pg_advisory_unlock(hashtextextended("
                         "'identity.imports:' || $1, 0))",
                         {kJob})
                  .ok());

  // The same file again with the same key gets the failed report, and
  // membership already lost the user identity does not have (only it).
  auto again = Import(ReadFile("template-basic.csv"), false, v1::ALL_OR_NOTHING,
                      64, nullptr, "k-dead");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->import_id(), kJob);
  EXPECT_EQ(again->state(), ImportReport::FAILED);
  ASSERT_EQ(again->rows_size(), 1);
  EXPECT_EQ(again->rows(0).line(), 0);
  EXPECT_THAT(again->rows(0).errors(0).reason(),
              HasSubstr("stopped before it finished"));
  EXPECT_TRUE(again->has_finish_time());
  EXPECT_EQ(membership_.deleted_, 1);
  EXPECT_FALSE(membership_.records_.contains(kOrphan));
  EXPECT_TRUE(membership_.records_.contains(kAdmin));
  EXPECT_EQ(Query("SELECT count(*) FROM identity.outbox"), "0\n");
  auto errors = service_->GetImportErrors(admin_, [&] {
    v1::GetImportErrorsRequest r;
    r.set_import_id(kJob);
    return r;
  }());
  EXPECT_TRUE(errors.ok()) << errors.status();

  // At start-up, every orphan is failed (on a background thread).
  ASSERT_TRUE(pool_
                  ->Exec("UPDATE identity.imports SET state = 'RUNNING', "
                         "failure_reason = '' WHERE id = $1",
                         {kJob})
                  .ok());
  MakeService(ImportConfig());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Query("SELECT state FROM identity.imports") != "FAILED\n" &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(Query("SELECT state FROM identity.imports"), "FAILED\n");
}

}  // namespace
}  // namespace guestlist::identity::import
