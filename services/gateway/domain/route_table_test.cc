// The route table built from the real compiled-in descriptors, plus the
// request/response translation, without any network.
#include "services/gateway/domain/route_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "guestlist/identity/v1/identity.pb.h"
#include "guestlist/membership/v1/membership.pb.h"
#include "guestlist/notification/v1/notification.pb.h"
#include "services/gateway/domain/metrics.h"
#include "services/gateway/domain/openapi.h"
#include "services/gateway/domain/transcoder.h"

namespace guestlist::gateway {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

const RouteTable& Table() {
  static const RouteTable* table = [] {
    auto* pool = google::protobuf::DescriptorPool::generated_pool();
    auto t = RouteTable::FromServices(
        {pool->FindServiceByName("guestlist.identity.v1.IdentityService"),
         pool->FindServiceByName("guestlist.membership.v1.MembershipService"),
         pool->FindServiceByName(
             "guestlist.notification.v1.NotificationService")},
        BodyLimits{});
    EXPECT_TRUE(t.ok()) << t.status();
    return new RouteTable(*std::move(t));
  }();
  return *table;
}

TEST(PathTemplateTest, ParsesVariablesAndVerb) {
  auto t =
      ParsePathTemplate("/v1/workspaces/{options.workspace_id}/users:import");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->verb, "import");
  ASSERT_EQ(t->segments.size(), 4u);
  ASSERT_EQ(t->variables.size(), 1u);
  EXPECT_EQ(t->variables[0].field_path, "options.workspace_id");
  EXPECT_EQ(t->variables[0].begin, 2);
  EXPECT_EQ(t->variables[0].end, 3);
}

TEST(PathTemplateTest, ParsesMultiSegmentVariable) {
  auto t = ParsePathTemplate("/v1/{name=projects/*/files/**}");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->segments.size(), 5u);
  EXPECT_EQ(t->variables[0].end, -1);
}

TEST(PathTemplateTest, RejectsMalformed) {
  EXPECT_FALSE(ParsePathTemplate("v1/x").ok());
  EXPECT_FALSE(ParsePathTemplate("/v1/{x").ok());
  EXPECT_FALSE(ParsePathTemplate("/v1//x").ok());
  EXPECT_FALSE(ParsePathTemplate("/v1/x:").ok());
}

TEST(RouteTableTest, HasEveryAnnotatedRoute) {
  int identity = 0;
  bool import_seen = false;
  for (const Route& r : Table().routes()) {
    if (r.service == "guestlist.identity.v1.IdentityService") ++identity;
    if (r.method->name() == "ImportUsers") {
      import_seen = true;
      EXPECT_TRUE(r.raw_body);
      EXPECT_EQ(r.query_prefix, "options");
      EXPECT_EQ(r.max_body_bytes, size_t{100} << 20);
    }
    // Authenticate and the internal methods have no HTTP route.
    EXPECT_NE(r.method->name(), "Authenticate");
    EXPECT_NE(r.method->name(), "SyncUsers");
  }
  EXPECT_TRUE(import_seen);
  EXPECT_GE(identity, 30);
}

TEST(RouteTableTest, FindsPathVariablesAndDecodesThem) {
  auto m = Table().Find("GET", "/v1/users/a%2Fb%20%C3%A9");
  ASSERT_EQ(m.outcome, RouteTable::Outcome::kFound);
  EXPECT_EQ(m.route->method->name(), "GetUser");
  EXPECT_THAT(m.bindings, ElementsAre(Pair("user_id", "a/b \xC3\xA9")));
  EXPECT_EQ(m.route->grpc_path,
            "/guestlist.identity.v1.IdentityService/GetUser");
}

TEST(RouteTableTest, CustomVerbWins) {
  auto m = Table().Find("POST", "/v1/users/u1:suspend");
  ASSERT_EQ(m.outcome, RouteTable::Outcome::kFound);
  EXPECT_EQ(m.route->method->name(), "SuspendUser");
  EXPECT_THAT(m.bindings, ElementsAre(Pair("user_id", "u1")));

  auto lookup = Table().Find("POST", "/v1/invitations:lookup");
  ASSERT_EQ(lookup.outcome, RouteTable::Outcome::kFound);
  EXPECT_EQ(lookup.route->method->name(), "GetInvitation");

  auto tmpl = Table().Find("GET", "/v1/workspaces/w1/users:template");
  ASSERT_EQ(tmpl.outcome, RouteTable::Outcome::kFound);
  EXPECT_EQ(tmpl.route->method->name(), "GetImportTemplate");
  EXPECT_TRUE(tmpl.route->http_body_response);
}

TEST(RouteTableTest, WrongMethodListsAllowed) {
  auto m = Table().Find("PUT", "/v1/groups/g1");
  EXPECT_EQ(m.outcome, RouteTable::Outcome::kMethodNotAllowed);
  EXPECT_THAT(m.allowed, ElementsAre("DELETE", "GET", "PATCH"));
  auto verb = Table().Find("GET", "/v1/users/u1:suspend");
  EXPECT_EQ(verb.outcome, RouteTable::Outcome::kMethodNotAllowed);
  EXPECT_THAT(verb.allowed, ElementsAre("POST"));
}

TEST(RouteTableTest, UnknownPaths) {
  EXPECT_EQ(Table().Find("GET", "/v1/nothing").outcome,
            RouteTable::Outcome::kNotFound);
  EXPECT_EQ(Table().Find("GET", "/v1/users/").outcome,
            RouteTable::Outcome::kNotFound);
  EXPECT_EQ(Table().Find("GET", "/v1/users/a/b").outcome,
            RouteTable::Outcome::kNotFound);
  EXPECT_EQ(Table().Find("GET", "").outcome, RouteTable::Outcome::kNotFound);
}

TEST(RouteTableTest, TwoVariables) {
  auto m = Table().Find("DELETE", "/v1/groups/g1/members/u2");
  ASSERT_EQ(m.outcome, RouteTable::Outcome::kFound);
  EXPECT_EQ(m.route->method->name(), "RemoveGroupMember");
  EXPECT_THAT(m.bindings,
              ElementsAre(Pair("group_id", "g1"), Pair("user_id", "u2")));
}

TEST(RouteTableTest, BodyLimitsFollowTheMessage) {
  auto report = Table().Find("POST", "/v1/apps/a1/reports");
  ASSERT_EQ(report.outcome, RouteTable::Outcome::kFound);
  EXPECT_EQ(report.route->max_body_bytes, size_t{14} << 20);
  auto login = Table().Find("POST", "/v1/workspaces/w/sessions");
  ASSERT_EQ(login.outcome, RouteTable::Outcome::kFound);
  EXPECT_EQ(login.route->max_body_bytes, size_t{1} << 20);
}

TEST(TranscoderTest, BodyFieldQueryAndPath) {
  auto m = Table().Find("PATCH", "/v1/users/u7");
  ASSERT_EQ(m.outcome, RouteTable::Outcome::kFound);
  identity::v1::UpdateUserRequest req;
  auto query = ParseQuery("updateMask=firstName,accessExpireTime");
  ASSERT_TRUE(query.ok());
  ASSERT_TRUE(
      BuildRequest(
          *m.route, m.bindings, *query, BodyKind::kJson,
          R"({"firstName":"Zoë","accessExpireTime":"2030-01-02T03:04:05Z"})",
          &req)
          .ok());
  EXPECT_EQ(req.user_id(), "u7");
  EXPECT_EQ(req.user().first_name(), "Zo\xC3\xAB");
  EXPECT_EQ(req.user().access_expire_time().seconds(), 1893553445);
  EXPECT_THAT(req.update_mask().paths(),
              ElementsAre("first_name", "access_expire_time"));
}

// `curl -d '{...}'` labels JSON as a form: the body decides, and a real
// form is refused where the body is one field of the request.
TEST(TranscoderTest, JsonSentAsFormIsJson) {
  auto m = Table().Find("PATCH", "/v1/users/u7");
  ASSERT_EQ(m.outcome, RouteTable::Outcome::kFound);
  identity::v1::UpdateUserRequest req;
  ASSERT_TRUE(BuildRequest(*m.route, m.bindings, {}, BodyKind::kForm,
                           R"( {"firstName":"Ann"})", &req)
                  .ok());
  EXPECT_EQ(req.user().first_name(), "Ann");
  identity::v1::UpdateUserRequest form;
  EXPECT_EQ(BuildRequest(*m.route, m.bindings, {}, BodyKind::kForm,
                         "firstName=Ann", &form)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// Found by the fuzz target: a mask path that is not UTF-8 made a message
// the service could not parse.
TEST(TranscoderTest, FieldMaskPathsAreValidated) {
  identity::v1::UpdateUserRequest req;
  auto s = SetFieldFromString(&req, "updateMask", "firstName,last\xffName");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("updateMask"));
  EXPECT_TRUE(
      SetFieldFromString(&req, "update_mask", "settings.invitationTtl").ok());
  EXPECT_THAT(req.update_mask().paths(),
              ElementsAre("settings.invitation_ttl"));
}

TEST(TranscoderTest, QueryEnumsRepeatedAndErrors) {
  auto m = Table().Find("GET", "/v1/workspaces/w1/users");
  ASSERT_EQ(m.outcome, RouteTable::Outcome::kFound);
  identity::v1::ListUsersRequest req;
  auto q = ParseQuery("kind=GUEST&status=ACTIVE&pageSize=20&query=a+b%26c");
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(
      BuildRequest(*m.route, m.bindings, *q, BodyKind::kNone, "", &req).ok());
  EXPECT_EQ(req.kind(), identity::v1::GUEST);
  EXPECT_EQ(req.status(), identity::v1::ACTIVE);
  EXPECT_EQ(req.page_size(), 20);
  EXPECT_EQ(req.query(), "a b&c");
  EXPECT_EQ(req.workspace_id(), "w1");

  identity::v1::ListUsersRequest bad;
  auto s = BuildRequest(*m.route, m.bindings, {{"kind", "BOSS"}},
                        BodyKind::kNone, "", &bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("kind"));
  s = BuildRequest(*m.route, m.bindings, {{"colour", "red"}}, BodyKind::kNone,
                   "", &bad);
  EXPECT_THAT(s.message(), HasSubstr("unknown query parameter \"colour\""));
  s = BuildRequest(*m.route, m.bindings, {{"pageSize", "many"}},
                   BodyKind::kNone, "", &bad);
  EXPECT_THAT(s.message(), HasSubstr("pageSize"));
}

TEST(TranscoderTest, RepeatedQueryParameter) {
  membership::v1::CheckRequest probe;  // any message with a repeated string
  identity::v1::BatchGetUsersRequest req;
  ASSERT_TRUE(SetFieldFromString(&req, "userIds", "a").ok());
  ASSERT_TRUE(SetFieldFromString(&req, "user_ids", "b").ok());
  EXPECT_THAT(req.user_ids(), ElementsAre("a", "b"));
}

TEST(TranscoderTest, UnknownJsonFieldIsNamed) {
  auto m = Table().Find("POST", "/v1/workspaces/w1/sessions");
  identity::v1::LoginRequest req;
  auto s = BuildRequest(*m.route, m.bindings, {}, BodyKind::kJson,
                        R"({"username":"a","passwrd":"x"})", &req);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("passwrd"));
  identity::v1::LoginRequest req2;
  s = BuildRequest(*m.route, m.bindings, {}, BodyKind::kJson,
                   "{\"username\":", &req2);
  EXPECT_THAT(s.message(), HasSubstr("invalid JSON body"));
}

TEST(TranscoderTest, StreamingOptionsFromPathAndQuery) {
  auto m = Table().Find("POST", "/v1/workspaces/w9/users:import");
  ASSERT_EQ(m.outcome, RouteTable::Outcome::kFound);
  identity::v1::ImportUsersRequest req;
  ASSERT_TRUE(BuildRequest(*m.route, m.bindings,
                           {{"dryRun", "true"},
                            {"mode", "BEST_EFFORT"},
                            {"sendEmails", "false"},
                            {"idempotencyKey", "k1"}},
                           BodyKind::kRaw, "ignored", &req)
                  .ok());
  EXPECT_EQ(req.options().workspace_id(), "w9");
  EXPECT_TRUE(req.options().dry_run());
  EXPECT_EQ(req.options().mode(), identity::v1::BEST_EFFORT);
  EXPECT_TRUE(req.options().has_send_emails());
  EXPECT_FALSE(req.options().send_emails());
  EXPECT_EQ(req.options().idempotency_key(), "k1");
  EXPECT_TRUE(req.chunk().empty());
}

TEST(TranscoderTest, OneClickUnsubscribeForm) {
  auto m = Table().Find("POST", "/v1/unsubscribe");
  ASSERT_EQ(m.outcome, RouteTable::Outcome::kFound);
  auto kind = ClassifyBody(*m.route, "application/x-www-form-urlencoded");
  ASSERT_TRUE(kind.ok());
  notification::v1::UnsubscribeRequest req;
  ASSERT_TRUE(BuildRequest(*m.route, m.bindings, {{"token", "t1"}}, *kind,
                           "List-Unsubscribe=One-Click", &req)
                  .ok());
  EXPECT_EQ(req.token(), "t1");
}

TEST(TranscoderTest, ContentTypes) {
  auto login = Table().Find("POST", "/v1/workspaces/w/sessions");
  EXPECT_EQ(*ClassifyBody(*login.route, "application/json; charset=utf-8"),
            BodyKind::kJson);
  EXPECT_EQ(*ClassifyBody(*login.route, ""), BodyKind::kJson);
  EXPECT_FALSE(ClassifyBody(*login.route, "text/plain").ok());
  auto import = Table().Find("POST", "/v1/workspaces/w/users:import");
  EXPECT_EQ(*ClassifyBody(*import.route, "text/csv"), BodyKind::kRaw);
  EXPECT_FALSE(ClassifyBody(*import.route, "application/json").ok());
}

TEST(TranscoderTest, RendersProto3Json) {
  auto m = Table().Find("GET", "/v1/users/u1");
  identity::v1::User user;
  user.set_id("u1");
  user.set_kind(identity::v1::GUEST);
  user.set_first_name("J\xC3\xBCrgen");
  user.mutable_create_time()->set_seconds(1700000000);
  HttpReply reply = RenderResponse(*m.route, user);
  EXPECT_EQ(reply.status, 200);
  EXPECT_THAT(reply.body, HasSubstr("\"kind\":\"GUEST\""));
  EXPECT_THAT(reply.body, HasSubstr("\"firstName\":\"J\xC3\xBCrgen\""));
  EXPECT_THAT(reply.body, HasSubstr("\"createTime\":\"2023-11-14T22:13:20Z\""));
  EXPECT_THAT(reply.body, HasSubstr("\"email\":\"\""));
}

TEST(TranscoderTest, ErrorMapping) {
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kFailedPrecondition), 400);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kOutOfRange), 400);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kAlreadyExists), 409);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kAborted), 409);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnimplemented), 501);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kInternal), 500);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnknown), 500);
  HttpReply r = ErrorReply(absl::StatusCode::kNotFound, "no \"x\"");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, R"({"code":5,"message":"no \"x\"","details":[]})");
}

TEST(OpenApiTest, DescribesRoutesAndSchemas) {
  const std::string doc = BuildOpenApi(Table(), "guestlist");
  EXPECT_THAT(doc, HasSubstr("\"openapi\":\"3.0.3\""));
  EXPECT_THAT(doc, HasSubstr("\"/v1/users/{user_id}:suspend\""));
  EXPECT_THAT(doc, HasSubstr("\"guestlist.identity.v1.User\""));
  EXPECT_THAT(doc, HasSubstr("\"operationId\":\"IdentityService_ListUsers\""));
  EXPECT_THAT(doc, HasSubstr("\"name\":\"pageSize\""));
  EXPECT_THAT(doc, HasSubstr("\"name\":\"dryRun\""));
  EXPECT_THAT(doc,
              HasSubstr("{\"in\":\"path\",\"name\":\"options.workspace_id\""));
}

TEST(MetricsTest, RendersCountersAndHistogram) {
  Metrics metrics;
  metrics.Record("/v1/users/{user_id}", "GET", 200, absl::Microseconds(700));
  metrics.Record("/v1/users/{user_id}", "GET", 404, absl::Milliseconds(30));
  const std::string text = metrics.Render();
  EXPECT_THAT(text,
              HasSubstr("guestlist_gateway_requests_total{route=\"/v1/"
                        "users/{user_id}\",method=\"GET\",code=\"200\"} 1"));
  EXPECT_THAT(text, HasSubstr("le=\"0.001\"} 1"));
  EXPECT_THAT(text, HasSubstr("le=\"+Inf\"} 2"));
  EXPECT_THAT(text,
              HasSubstr("guestlist_gateway_request_duration_seconds_count"));
}

}  // namespace
}  // namespace guestlist::gateway
