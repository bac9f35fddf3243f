#include "services/gateway/domain/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace guestlist::gateway {
namespace {

std::string Label(const std::string& value) {
  return absl::StrReplaceAll(value,
                             {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

}  // namespace

constexpr std::array<double, 12> Metrics::kBuckets;

void Metrics::Record(const std::string& route, const std::string& method,
                     int code, absl::Duration latency) {
  const double seconds = absl::ToDoubleSeconds(latency);
  absl::MutexLock lock(&mu_);
  ++requests_[{route, method, code}];
  Histogram& h = latency_[{route, method}];
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++h.counts[i];
  }
  ++h.count;
  h.sum += seconds;
}

std::string Metrics::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  absl::StrAppend(&out,
                  "# HELP guestlist_gateway_requests_total HTTP requests "
                  "served, by route pattern, method and status code.\n"
                  "# TYPE guestlist_gateway_requests_total counter\n");
  for (const auto& [key, count] : requests_) {
    absl::StrAppend(&out, "guestlist_gateway_requests_total{route=\"",
                    Label(std::get<0>(key)), "\",method=\"",
                    Label(std::get<1>(key)), "\",code=\"", std::get<2>(key),
                    "\"} ", count, "\n");
  }
  absl::StrAppend(
      &out,
      "# HELP guestlist_gateway_request_duration_seconds Time from the "
      "request's headers to the end of the response, by route and method.\n"
      "# TYPE guestlist_gateway_request_duration_seconds histogram\n");
  for (const auto& [key, h] : latency_) {
    const std::string labels = absl::StrCat(
        "route=\"", Label(key.first), "\",method=\"", Label(key.second), "\"");
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      absl::StrAppend(&out,
                      "guestlist_gateway_request_duration_seconds_bucket{",
                      labels, ",le=\"", kBuckets[i], "\"} ", h.counts[i], "\n");
    }
    absl::StrAppend(&out, "guestlist_gateway_request_duration_seconds_bucket{",
                    labels, ",le=\"+Inf\"} ", h.count, "\n");
    absl::StrAppend(&out, "guestlist_gateway_request_duration_seconds_sum{",
                    labels, "} ", h.sum, "\n");
    absl::StrAppend(&out, "guestlist_gateway_request_duration_seconds_count{",
                    labels, "} ", h.count, "\n");
  }
  return out;
}

}  // namespace guestlist::gateway
