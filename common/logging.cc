#include "common/logging.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace guestlist {
namespace {

absl::Mutex g_log_mu;
std::string& ServiceName() {
  static std::string* name = new std::string("guestlist");
  return *name;
}
thread_local std::string t_request_id;
thread_local absl::Time t_call_deadline = absl::InfiniteFuture();

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

}  // namespace

void SetLogService(const std::string& service) { ServiceName() = service; }

void Log(LogLevel level, const std::string& msg, const LogFields& fields) {
  nlohmann::json line;
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                absl::UTCTimeZone());
  line["level"] = LevelName(level);
  line["service"] = ServiceName();
  if (!t_request_id.empty()) line["request_id"] = t_request_id;
  line["msg"] = msg;
  for (const auto& [key, value] : fields) line[key] = value;
  // `replace` keeps a line valid JSON even if a value is not UTF-8.
  const std::string text =
      line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  absl::MutexLock lock(&g_log_mu);
  std::fprintf(stderr, "%s\n", text.c_str());
  std::fflush(stderr);
}

const std::string& CurrentRequestId() { return t_request_id; }

absl::Time CurrentCallDeadline() { return t_call_deadline; }

ScopedCallDeadline::ScopedCallDeadline(absl::Time deadline)
    : previous_(t_call_deadline) {
  t_call_deadline = deadline;
}

ScopedCallDeadline::~ScopedCallDeadline() { t_call_deadline = previous_; }

ScopedRequestId::ScopedRequestId(std::string id)
    : previous_(std::move(t_request_id)) {
  t_request_id = std::move(id);
}

ScopedRequestId::~ScopedRequestId() { t_request_id = std::move(previous_); }

}  // namespace guestlist
