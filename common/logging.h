// Structured logs: one JSON object per line on stderr, carrying the
// request id of the call being served (set by the server interceptor).
#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace guestlist {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogFields = std::map<std::string, std::string>;

// Names the emitting service in every line ("identity").
void SetLogService(const std::string& service);

// Writes {"ts","level","service","request_id","msg",...fields} as one line
// (a field named like one of the fixed keys replaces it).
void Log(LogLevel level, const std::string& msg, const LogFields& fields = {});

// The line Log writes at `now`, without its newline. Invalid UTF-8 becomes
// U+FFFD, so the line is always valid JSON.
std::string FormatLogLine(LogLevel level, const std::string& msg,
                          const LogFields& fields, absl::Time now);

inline void LogInfo(const std::string& msg, const LogFields& fields = {}) {
  Log(LogLevel::kInfo, msg, fields);
}
inline void LogWarning(const std::string& msg, const LogFields& fields = {}) {
  Log(LogLevel::kWarning, msg, fields);
}
inline void LogError(const std::string& msg, const LogFields& fields = {}) {
  Log(LogLevel::kError, msg, fields);
}

// The request id of the current thread's call ("" outside a call).
const std::string& CurrentRequestId();

// The deadline of the call the current thread serves (InfiniteFuture
// outside a call or when the caller set none). Calls to peers made while
// serving are capped by it, so a caller's deadline propagates.
absl::Time CurrentCallDeadline();

// Sets the current thread's call deadline for its lifetime.
class ScopedCallDeadline final {
 public:
  explicit ScopedCallDeadline(absl::Time deadline);
  ~ScopedCallDeadline();
  ScopedCallDeadline(const ScopedCallDeadline&) = delete;
  ScopedCallDeadline& operator=(const ScopedCallDeadline&) = delete;

 private:
  absl::Time previous_;
};

// Sets the current thread's request id for its lifetime, then restores it.
class ScopedRequestId final {
 public:
  explicit ScopedRequestId(std::string id);
  ~ScopedRequestId();
  ScopedRequestId(const ScopedRequestId&) = delete;
  ScopedRequestId& operator=(const ScopedRequestId&) = delete;

 private:
  std::string previous_;
};

}  // namespace guestlist
