#include "common/logging.h"

#include <cstdio>

#include "absl/strings/string_view.h"
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

// Length of the valid UTF-8 sequence at the start of `s`, or 0 (RFC 3629:
// no overlong forms, no surrogates, nothing above U+10FFFF).
size_t Utf8SequenceLength(absl::string_view s) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < n || b(1) < lo || b(1) > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (b(i) < 0x80 || b(i) > 0xBF) return 0;
  }
  return n;
}

// Appends `s` as a JSON string. Hand-written (not nlohmann::json) because
// every RPC writes an access line: building a JSON object per line was
// ~5 us, a fifth of a cached Check.
void AppendJsonString(std::string* out, absl::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t n = Utf8SequenceLength(s.substr(i));
      if (n == 0) {
        out->append("\xEF\xBF\xBD");  // U+FFFD for each invalid byte
        ++i;
      } else {
        out->append(s.data() + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out->push_back('"');
}

// "2026-11-23T02:50:01.123Z". The part up to the seconds is formatted once
// per second per thread (absl::FormatTime is ~1 us).
std::string Timestamp(absl::Time now) {
  thread_local int64_t cached_second = -1;
  thread_local std::string cached_prefix;
  const int64_t ms = absl::ToUnixMillis(now);
  const int64_t second = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
  if (second != cached_second) {
    cached_prefix =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(second),
                         absl::UTCTimeZone());
    cached_second = second;
  }
  const int milli = static_cast<int>(ms - second * 1000);
  std::string out = cached_prefix;
  out += '.';
  out += static_cast<char>('0' + milli / 100);
  out += static_cast<char>('0' + milli / 10 % 10);
  out += static_cast<char>('0' + milli % 10);
  out += 'Z';
  return out;
}

}  // namespace

void SetLogService(const std::string& service) { ServiceName() = service; }

std::string FormatLogLine(LogLevel level, const std::string& msg,
                          const LogFields& fields, absl::Time now) {
  std::string line;
  line.reserve(256);
  line += '{';
  bool first = true;
  auto add = [&](absl::string_view key, absl::string_view value) {
    if (!first) line += ',';
    first = false;
    AppendJsonString(&line, key);
    line += ':';
    AppendJsonString(&line, value);
  };
  auto fixed = [&](const std::string& key, absl::string_view value) {
    if (fields.find(key) == fields.end()) add(key, value);
  };
  fixed("ts", Timestamp(now));
  fixed("level", LevelName(level));
  fixed("service", ServiceName());
  if (!t_request_id.empty()) fixed("request_id", t_request_id);
  fixed("msg", msg);
  for (const auto& [key, value] : fields) add(key, value);
  line += '}';
  return line;
}

void Log(LogLevel level, const std::string& msg, const LogFields& fields) {
  std::string line = FormatLogLine(level, msg, fields, absl::Now());
  line += '\n';
  absl::MutexLock lock(&g_log_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
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
