// Fuzz target for the gateway's parsers of outside input: path matching and
// percent-decoding, query strings, content types, JSON / form / raw bodies
// into request messages, and rendering the result back. Input:
// "METHOD /path?query\ncontent-type\nbody". With clang, link with
// -fsanitize=fuzzer and -DGUESTLIST_LIBFUZZER; with gcc the main() below
// replays built-in seeds and random mutations for FUZZ_SECONDS (default 3).
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "guestlist/identity/v1/identity.pb.h"
#include "guestlist/membership/v1/membership.pb.h"
#include "guestlist/notification/v1/notification.pb.h"
#include "services/gateway/domain/route_table.h"
#include "services/gateway/domain/transcoder.h"

namespace {

using guestlist::gateway::BodyLimits;
using guestlist::gateway::RouteTable;

const RouteTable& Table() {
  static const RouteTable* table = [] {
    auto t = RouteTable::FromServices(
        {guestlist::identity::v1::User::descriptor()->file()->service(0),
         guestlist::membership::v1::Group::descriptor()->file()->service(0),
         guestlist::notification::v1::Message::descriptor()->file()->service(
             0)},
        BodyLimits{});
    if (!t.ok()) std::abort();
    return new RouteTable(*std::move(t));
  }();
  return *table;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = guestlist::gateway;
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nl1 = input.find('\n');
  const std::string line = input.substr(0, nl1);
  std::string content_type, body;
  if (nl1 != std::string::npos) {
    const size_t nl2 = input.find('\n', nl1 + 1);
    content_type = input.substr(nl1 + 1, nl2 - nl1 - 1);
    if (nl2 != std::string::npos) body = input.substr(nl2 + 1);
  }
  const size_t space = line.find(' ');
  const std::string method = line.substr(0, space);
  const std::string target =
      space == std::string::npos ? "" : line.substr(space + 1);
  const size_t q = target.find('?');
  const std::string path = target.substr(0, q);
  const std::string query = q == std::string::npos ? "" : target.substr(q + 1);

  auto match = Table().Find(method, path);
  auto params = gw::ParseQuery(query);
  if (match.outcome != RouteTable::Outcome::kFound || !params.ok()) return 0;
  auto kind = gw::ClassifyBody(*match.route, content_type);
  if (!kind.ok()) return 0;
  std::unique_ptr<google::protobuf::Message> request(
      match.route->request_prototype->New());
  if (gw::BuildRequest(*match.route, match.bindings, *params, *kind, body,
                       request.get())
          .ok()) {
    // What the gateway sends upstream must serialize and parse back.
    const std::string bytes = request->SerializeAsString();
    std::unique_ptr<google::protobuf::Message> copy(request->New());
    if (!copy->ParseFromString(bytes)) std::abort();
    // Render the request type as if it were a response (exercises the
    // JSON printer on whatever the parser accepted).
    gw::Route as_response = *match.route;
    as_response.http_body_response = false;
    as_response.response_body.clear();
    gw::HttpReply reply = gw::RenderResponse(as_response, *copy);
    if (reply.status != 200) std::abort();
  }
  return 0;
}

#ifndef GUESTLIST_LIBFUZZER
int main() {
  const std::vector<std::string> seeds = {
      "GET /v1/users/a%2Fb%20c\n\n",
      "PATCH /v1/users/u1?updateMask=firstName,accessExpireTime\n"
      "application/json\n{\"firstName\":\"Zo\\u00eb\",\"accessExpireTime\":"
      "\"2030-01-02T03:04:05Z\",\"metadata\":{\"a\":[1,null,true,{}]}}",
      "POST /v1/workspaces\napplication/json\n{\"workspace\":{\"name\":\"a\","
      "\"settings\":{\"invitationTtl\":\"3600s\",\"allowedEmailDomains\":"
      "[\"x.test\"]}},\"adminEmail\":\"a@x.test\"}",
      "GET /v1/workspaces/w1/users?kind=GUEST&status=3&pageSize=20&query=%C3%A9"
      "&orderBy=createTime+desc\n\n",
      "POST /v1/workspaces/w1/users:import?dryRun=true&mode=BEST_EFFORT"
      "&sendEmails=false&idempotencyKey=k\ntext/csv\nusername\na\n",
      "POST /v1/unsubscribe?token=t\napplication/x-www-form-urlencoded\n"
      "List-Unsubscribe=One-Click",
      "POST /v1/apps/a1/reports\napplication/json\n{\"title\":\"t\","
      "\"content\":\"JVBERi0xLjQK\"}",
      "POST "
      "/v1/check:batch\napplication/json\n{\"checks\":[{\"userId\":\"u\"}]}",
      "PUT "
      "/v1/apps/a/privileges/u\napplication/json\n{\"privilege\":\"GUEST\"}",
      "POST /v1/workspaces/w/invitations\napplication/json; charset=utf-8\n"
      "{\"email\":\"g@x.test\",\"kind\":\"GUEST\",\"groupIds\":[\"g1\"],"
      "\"appPrivileges\":[{\"appId\":\"a\",\"privilege\":\"VIEWER\"}],"
      "\"sendEmail\":false}",
  };
  for (const auto& s : seeds) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()),
                           s.size());
  }
  static const char kInteresting[] = {'%',  '{', '}', '"', '\\', ':',    '/',
                                      '?',  '&', '=', '+', '\n', '\xC3', '\xFF',
                                      '\0', '.', '[', ']', ','};
  const char* env = std::getenv("FUZZ_SECONDS");
  const auto budget = std::chrono::seconds(env ? std::atoi(env) : 3);
  const auto start = std::chrono::steady_clock::now();
  std::mt19937_64 rng(42);
  long runs = 0;
  while (std::chrono::steady_clock::now() - start < budget) {
    std::string s = seeds[rng() % seeds.size()];
    const int steps = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < steps; ++i) {
      const size_t pos = rng() % (s.size() + 1);
      switch (rng() % 4) {
        case 0:
          s.insert(pos, 1, kInteresting[rng() % sizeof(kInteresting)]);
          break;
        case 1:
          if (!s.empty())
            s[pos % s.size()] ^= static_cast<char>(1u << (rng() % 8));
          break;
        case 2:
          if (!s.empty()) s.erase(pos % s.size(), 1 + rng() % 8);
          break;
        case 3:
          if (!s.empty())
            s.insert(pos, s.substr(rng() % s.size(), 1 + rng() % 32));
          break;
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()),
                           s.size());
    ++runs;
  }
  std::printf("%ld runs\n", runs);
  return 0;
}
#endif
