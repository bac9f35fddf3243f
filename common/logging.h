// Structured logs: one JSON object per line on stderr, carrying the
// request id of the call being served (set by the server interceptor).
#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"

namespace guestlist {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogFields = std::map<std::string, std::string>;

// Names the emitting service in every line ("identity").
void SetLogService(const std::string& service);

// Writes {"ts","level","service","request_id","msg",...fields} as one line.
void Log(LogLevel level, const std::string& msg, const LogFields& fields = {});

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
