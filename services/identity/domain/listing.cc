#include "services/identity/domain/listing.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/random.h"

namespace guestlist::identity {
namespace {

constexpr char kSep = '\x1f';

std::string FingerprintHash(absl::string_view fingerprint) {
  return Sha256Hex(std::string(fingerprint)).substr(0, 16);
}

}  // namespace

absl::StatusOr<OrderBy> ParseOrderBy(absl::string_view order_by) {
  OrderBy out;
  std::vector<std::string> parts = absl::StrSplit(
      absl::StripAsciiWhitespace(order_by), ' ', absl::SkipWhitespace());
  if (parts.empty()) return out;
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "order_by: \"", order_by,
        "\" is not supported; use email, name or createTime, optionally "
        "followed by \" desc\""));
  };
  if (parts.size() > 2) return bad();
  if (parts[0] == "email") {
    out.field = UserOrder::kEmail;
  } else if (parts[0] == "name") {
    out.field = UserOrder::kName;
  } else if (parts[0] == "createTime" || parts[0] == "create_time") {
    out.field = UserOrder::kCreateTime;
  } else {
    return bad();
  }
  if (parts.size() == 2) {
    const std::string dir = absl::AsciiStrToLower(parts[1]);
    if (dir == "desc") {
      out.descending = true;
    } else if (dir != "asc") {
      return bad();
    }
  }
  return out;
}

std::string EncodePageToken(const PageCursor& cursor,
                            absl::string_view fingerprint) {
  return absl::WebSafeBase64Escape(
      absl::StrCat("v1", std::string(1, kSep), FingerprintHash(fingerprint),
                   std::string(1, kSep), cursor.id, std::string(1, kSep),
                   cursor.total, std::string(1, kSep), cursor.key));
}

absl::StatusOr<PageCursor> DecodePageToken(absl::string_view token,
                                           absl::string_view fingerprint) {
  std::string raw;
  const auto bad = absl::InvalidArgumentError(
      "page_token: is not a token from the previous page of this same query; "
      "repeat the query with the same filters and order, or drop page_token "
      "to start over");
  if (!absl::WebSafeBase64Unescape(token, &raw)) return bad;
  std::vector<std::string> parts =
      absl::StrSplit(raw, absl::MaxSplits(kSep, 4));
  if (parts.size() != 5 || parts[0] != "v1") return bad;
  if (parts[1] != FingerprintHash(fingerprint)) return bad;
  int64_t total = -1;
  if (!absl::SimpleAtoi(parts[3], &total)) return bad;
  return PageCursor{parts[4], parts[2], total};
}

absl::StatusOr<int> NormalizePageSize(int page_size) {
  if (page_size < 0) {
    return absl::InvalidArgumentError(
        "page_size: must not be negative; use 1 to 1000 (0 means 50)");
  }
  if (page_size == 0) return 50;
  return std::min(page_size, 1000);
}

std::string PrefixUpperBound(absl::string_view prefix) {
  return absl::StrCat(prefix, "\xF4\x8F\xBF\xBF");
}

std::string LowerAscii(absl::string_view s) { return absl::AsciiStrToLower(s); }

}  // namespace guestlist::identity
