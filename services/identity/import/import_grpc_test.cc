// ImportUsers and friends over real sockets: identity's ImportHandlers
// (api/import_handlers) served by gRPC on port 0, the import's gRPC peers
// calling fake membership / notification servers that insist on the
// internal credential, PostgreSQL for identity's tables.
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/auth.h"
#include "common/clock.h"
#include "common/migrations.h"
#include "common/outbox.h"
#include "common/pg.h"
#include "common/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/identity/api/import_handlers.h"
#include "services/identity/identity_migrations.h"
#include "services/identity/import/import_service.h"
#include "services/identity/import/peers.h"
#include "tests/testing/postgres.h"

namespace guestlist::identity::import {
namespace {

using ::testing::HasSubstr;

constexpr char kWs[] = "11111111-1111-4111-8111-111111111111";
constexpr char kAdmin[] = "22222222-2222-4222-8222-222222222222";
constexpr char kInternal[] = "internal-secret";
constexpr char kAdminToken[] = "gls_admin";

bool Internal(grpc::ServerContext* ctx) {
  return HasInternalCredential(*ctx, kInternal);
}

grpc::Status Denied() {
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                      "internal credential required");
}

class FakeMembershipServer final : public mv1::MembershipService::Service {
 public:
  grpc::Status ListGroups(grpc::ServerContext* ctx,
                          const mv1::ListGroupsRequest* req,
                          mv1::ListGroupsResponse* resp) override {
    if (!Internal(ctx)) return Denied();
    // Two pages, to exercise paging.
    mv1::Group* g = resp->add_groups();
    if (req->page_token().empty()) {
      g->set_id("g-partners");
      g->set_name("Partners");
      resp->set_next_page_token("p2");
    } else {
      g->set_id("g-freelancers");
      g->set_name("Freelancers");
      mv1::Group* a = resp->add_groups();
      a->set_id("g-agencies");
      a->set_name("Agencies");
    }
    return grpc::Status::OK;
  }
  grpc::Status ListApps(grpc::ServerContext* ctx, const mv1::ListAppsRequest*,
                        mv1::ListAppsResponse* resp) override {
    if (!Internal(ctx)) return Denied();
    for (auto [id, slug] : std::vector<std::pair<std::string, std::string>>{
             {"a-sales", "sales-dashboard"}, {"a-churn", "churn-report"}}) {
      mv1::App* a = resp->add_apps();
      a->set_id(id);
      a->set_slug(slug);
    }
    return grpc::Status::OK;
  }
  grpc::Status GetUserAccess(grpc::ServerContext* ctx,
                             const mv1::GetUserAccessRequest* req,
                             mv1::GetUserAccessResponse* resp) override {
    if (!Internal(ctx)) return Denied();
    absl::MutexLock lock(&mu_);
    for (const std::string& id : req->user_ids()) {
      mv1::UserAccess* ua = resp->add_users();
      ua->set_user_id(id);
      for (const auto& g : groups_[id]) {
        auto* ref = ua->add_groups();
        ref->set_group_id(g);
        ref->set_group_name(g == "g-partners"   ? "Partners"
                            : g == "g-agencies" ? "Agencies"
                                                : "Freelancers");
      }
      for (const auto& [app, p] : apps_[id]) {
        auto* grant = ua->add_app_privileges();
        grant->set_app_id(app);
        grant->set_privilege(p);
      }
    }
    return grpc::Status::OK;
  }
  grpc::Status ApplyGrants(grpc::ServerContext* ctx,
                           const mv1::ApplyGrantsRequest* req,
                           mv1::ApplyGrantsResponse* resp) override {
    if (!Internal(ctx)) return Denied();
    absl::MutexLock lock(&mu_);
    for (const mv1::UserGrants& g : req->users()) {
      auto* r = resp->add_results();
      r->set_user_id(g.user().id());
      r->set_ok(true);
      if (req->dry_run()) continue;
      for (const auto& id : g.group_ids()) groups_[g.user().id()].insert(id);
      for (const auto& id : g.remove_group_ids()) {
        groups_[g.user().id()].erase(id);
      }
      for (const auto& p : g.app_privileges()) {
        apps_[g.user().id()][p.app_id()] = p.privilege();
      }
      for (const auto& id : g.remove_app_ids()) apps_[g.user().id()].erase(id);
    }
    resp->set_applied(!req->dry_run());
    return grpc::Status::OK;
  }
  grpc::Status DeleteUsers(grpc::ServerContext* ctx,
                           const mv1::DeleteUsersRequest*,
                           mv1::DeleteUsersResponse*) override {
    if (!Internal(ctx)) return Denied();
    return grpc::Status::OK;
  }

  absl::Mutex mu_;
  std::map<std::string, std::set<std::string>> groups_;
  std::map<std::string, std::map<std::string, Privilege>> apps_;
};

class FakeNotificationServer final : public nv1::NotificationService::Service {
 public:
  grpc::Status BatchSendEmail(grpc::ServerContext* ctx,
                              const nv1::BatchSendEmailRequest* req,
                              nv1::BatchSendEmailResponse* resp) override {
    if (!Internal(ctx)) return Denied();
    absl::MutexLock lock(&mu_);
    for (const auto& m : req->messages()) {
      to_.push_back(m.to());
      resp->add_messages();
    }
    return grpc::Status::OK;
  }
  absl::Mutex mu_;
  std::vector<std::string> to_;
};

// The identity service's import methods, as IdentityServiceImpl routes them.
class ImportOnlyService final : public v1::IdentityService::Service {
 public:
  explicit ImportOnlyService(ImportHandlers* handlers) : h_(handlers) {}
  grpc::Status ImportUsers(grpc::ServerContext* ctx,
                           grpc::ServerReader<v1::ImportUsersRequest>* reader,
                           v1::ImportReport* resp) override {
    return h_->ImportUsers(ctx, reader, resp);
  }
  grpc::Status GetImport(grpc::ServerContext* ctx,
                         const v1::GetImportRequest* req,
                         v1::ImportReport* resp) override {
    return h_->GetImport(ctx, req, resp);
  }
  grpc::Status GetImportTemplate(grpc::ServerContext* ctx,
                                 const v1::GetImportTemplateRequest* req,
                                 google::api::HttpBody* resp) override {
    return h_->GetImportTemplate(ctx, req, resp);
  }
  grpc::Status GetImportErrors(grpc::ServerContext* ctx,
                               const v1::GetImportErrorsRequest* req,
                               google::api::HttpBody* resp) override {
    return h_->GetImportErrors(ctx, req, resp);
  }
  grpc::Status ExportUsers(grpc::ServerContext* ctx,
                           const v1::ExportUsersRequest* req,
                           google::api::HttpBody* resp) override {
    return h_->ExportUsers(ctx, req, resp);
  }

 private:
  ImportHandlers* h_;
};

std::string ReadFile(const std::string& name) {
  std::ifstream in("services/identity/import/testdata/" + name,
                   std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ImportGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = std::make_unique<pg::Pool>(
        pg::PoolOptions{.conninfo = postgres_.CreateDatabase("grpc")});
    std::vector<Migration> migrations = IdentityMigrations();
    migrations.push_back(CommonTablesMigration("identity"));
    ASSERT_TRUE(RunMigrations(*pool_, "identity", migrations).ok());
    ASSERT_TRUE(pool_
                    ->Exec("INSERT INTO identity.workspaces (id, name, "
                           "display_name, create_time, update_time) VALUES "
                           "($1, 'acme', 'Acme', now(), now())",
                           {kWs})
                    .ok());
    int peers_port = 0;
    grpc::ServerBuilder pb;
    pb.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                        &peers_port);
    pb.RegisterService(&membership_server_);
    pb.RegisterService(&notification_server_);
    peers_ = pb.BuildAndStart();
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", peers_port),
                                       grpc::InsecureChannelCredentials());
    membership_ = std::make_unique<GrpcMembershipPeer>(
        mv1::MembershipService::NewStub(channel), kInternal, absl::Seconds(10));
    mail_ = std::make_unique<GrpcMailPeer>(
        nv1::NotificationService::NewStub(channel), kInternal,
        absl::Seconds(10));
    store_ = std::make_unique<ImportStore>(pool_.get());
    service_ = std::make_unique<ImportService>(
        ImportConfig(), ImportDeps{store_.get(), membership_.get(), mail_.get(),
                                   &clock_, &random_});
    handlers_ = std::make_unique<ImportHandlers>(service_.get());
    handlers_->SetAuthenticator(
        kInternal, [](const std::string& token) -> absl::StatusOr<Principal> {
          if (token != kAdminToken) {
            return absl::UnauthenticatedError("invalid or expired token");
          }
          Principal p;
          p.set_user_id(kAdmin);
          p.set_workspace_id(kWs);
          p.set_kind(v1::ADMIN);
          return p;
        });
    wrapper_ = std::make_unique<ImportOnlyService>(handlers_.get());
    int port = 0;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(wrapper_.get());
    server_ = b.BuildAndStart();
    stub_ = v1::IdentityService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->Shutdown();
    service_.reset();  // waits for jobs
    peers_->Shutdown();
  }

  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return ctx;
  }

  grpc::Status Upload(const std::string& token, const std::string& csv,
                      bool dry_run, v1::ImportReport* report) {
    auto ctx = Ctx(token);
    auto writer = stub_->ImportUsers(ctx.get(), report);
    v1::ImportUsersRequest options;
    options.mutable_options()->set_workspace_id(kWs);
    options.mutable_options()->set_dry_run(dry_run);
    writer->Write(options);
    for (size_t i = 0; i < csv.size(); i += 16) {
      v1::ImportUsersRequest chunk;
      chunk.set_chunk(csv.substr(i, 16));
      if (!writer->Write(chunk)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  guestlist::testing::TestPostgres postgres_;
  std::unique_ptr<pg::Pool> pool_;
  FakeMembershipServer membership_server_;
  FakeNotificationServer notification_server_;
  std::unique_ptr<grpc::Server> peers_;
  std::unique_ptr<GrpcMembershipPeer> membership_;
  std::unique_ptr<GrpcMailPeer> mail_;
  std::unique_ptr<ImportStore> store_;
  SystemClock clock_;
  SecureRandom random_;
  std::unique_ptr<ImportService> service_;
  std::unique_ptr<ImportHandlers> handlers_;
  std::unique_ptr<ImportOnlyService> wrapper_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::IdentityService::Stub> stub_;
};

TEST_F(ImportGrpcTest, StreamedUploadImportsAndReportsOverTheWire) {
  v1::ImportReport dry;
  ASSERT_TRUE(
      Upload(kAdminToken, ReadFile("template-basic.csv"), true, &dry).ok());
  EXPECT_EQ(dry.created(), 3);
  EXPECT_TRUE(notification_server_.to_.empty());

  v1::ImportReport report;
  grpc::Status s =
      Upload(kAdminToken, ReadFile("template-basic.csv"), false, &report);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(report.state(), v1::ImportReport::SUCCEEDED);
  EXPECT_EQ(report.created(), 3);
  EXPECT_EQ(report.unchanged(), 1);
  // Emails wait in identity's outbox for the relay, none went out directly.
  EXPECT_TRUE(notification_server_.to_.empty());
  std::vector<std::string> queued;
  auto outbox = pool_->Exec(
      "SELECT encode(payload, 'hex') FROM identity.outbox WHERE topic = "
      "'notification.BatchSendEmail'");
  ASSERT_TRUE(outbox.ok()) << outbox.status();
  for (int i = 0; i < outbox->rows(); ++i) {
    nv1::BatchSendEmailRequest batch;
    ASSERT_TRUE(
        batch.ParseFromString(absl::HexStringToBytes(outbox->Get(i, 0))));
    for (const auto& m : batch.messages()) queued.push_back(m.to());
  }
  EXPECT_THAT(queued, ::testing::UnorderedElementsAre(
                          "alice@partner.example", "bob@agency.example",
                          "carol@freelance.example"));

  v1::GetImportRequest get;
  get.set_import_id(report.import_id());
  v1::ImportReport again;
  ASSERT_TRUE(stub_->GetImport(Ctx(kAdminToken).get(), get, &again).ok());
  EXPECT_EQ(again.created(), 3);

  v1::GetImportErrorsRequest errors_req;
  errors_req.set_import_id(report.import_id());
  google::api::HttpBody errors;
  ASSERT_TRUE(
      stub_->GetImportErrors(Ctx(kAdminToken).get(), errors_req, &errors).ok());
  EXPECT_EQ(errors.data(),
            "username,first_name,last_name,role,user-group-1,user-group-2,"
            "user-group-3,sales-dashboard,churn-report,delete,metadata,"
            "error\r\n");

  v1::ExportUsersRequest export_req;
  export_req.set_workspace_id(kWs);
  google::api::HttpBody exported;
  ASSERT_TRUE(
      stub_->ExportUsers(Ctx(kAdminToken).get(), export_req, &exported).ok());
  EXPECT_EQ(exported.content_type(), "text/csv; charset=utf-8");
  v1::ImportReport round_trip;
  ASSERT_TRUE(Upload(kAdminToken, exported.data(), false, &round_trip).ok());
  EXPECT_EQ(round_trip.unchanged(), 3);
  EXPECT_EQ(round_trip.rows_total(), 3);
}

TEST_F(ImportGrpcTest, ErrorsMapToGrpcCodes) {
  v1::ImportReport report;
  EXPECT_EQ(Upload("", "username\n", false, &report).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Upload("gls_nobody", "username\n", false, &report).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status bad = Upload(kAdminToken, "colour\nred\n", false, &report);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("unknown column"));

  // A stream without options first.
  auto ctx = Ctx(kAdminToken);
  auto writer = stub_->ImportUsers(ctx.get(), &report);
  v1::ImportUsersRequest chunk;
  chunk.set_chunk("username\n");
  writer->Write(chunk);
  writer->WritesDone();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::GetImportRequest get;
  get.set_import_id("99999999-9999-4999-8999-999999999999");
  EXPECT_EQ(stub_->GetImport(Ctx(kAdminToken).get(), get, &report).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ImportGrpcTest, TemplateOverTheWire) {
  v1::GetImportTemplateRequest req;
  req.set_workspace_id(kWs);
  google::api::HttpBody body;
  ASSERT_TRUE(
      stub_->GetImportTemplate(Ctx(kAdminToken).get(), req, &body).ok());
  EXPECT_EQ(body.data(),
            "username,first_name,last_name,role,user-group-1,user-group-2,"
            "user-group-3,sales-dashboard,churn-report,delete,metadata\r\n");
}

}  // namespace
}  // namespace guestlist::identity::import
