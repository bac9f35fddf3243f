// Request counters and latency histograms of the gateway, rendered in the
// Prometheus text exposition format for GET /metrics.
#pragma once

#include <array>
#include <map>
#include <string>
#include <tuple>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace guestlist::gateway {

class Metrics final {
 public:
  // Records one finished request. `route` is the route's pattern (or a
  // fixed name such as "unmatched"), never the raw path, so label
  // cardinality stays bounded.
  void Record(const std::string& route, const std::string& method, int code,
              absl::Duration latency);

  // Returns the text exposition (version 0.0.4).
  std::string Render() const;

 private:
  static constexpr std::array<double, 12> kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,   0.25,   0.5,   1.0,  5.0};
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> counts{};
    uint64_t count = 0;
    double sum = 0;
  };
  mutable absl::Mutex mu_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_
      ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, Histogram> latency_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace guestlist::gateway
