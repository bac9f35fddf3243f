// ListUsers rules: order_by parsing, opaque keyset page tokens bound to the
// query that produced them, and case-insensitive prefix ranges.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace guestlist::identity {

enum class UserOrder { kEmail, kName, kCreateTime };

struct OrderBy {
  UserOrder field = UserOrder::kEmail;
  bool descending = false;
};

// Parses `email`, `name`, `createTime` / `create_time`, each optionally
// followed by ` desc` (or ` asc`); empty means `email`.
absl::StatusOr<OrderBy> ParseOrderBy(absl::string_view order_by);

// Position after the last row of a page: its sort key and id.
struct PageCursor {
  std::string key;
  std::string id;
  // Total matches counted on the first page and carried along, so deep pages
  // need no count (-1: unknown).
  int64_t total = -1;
};

// Encodes a cursor bound to `fingerprint` (the filters and order).
std::string EncodePageToken(const PageCursor& cursor,
                            absl::string_view fingerprint);
// Decodes a token; INVALID_ARGUMENT if malformed or made for other filters.
absl::StatusOr<PageCursor> DecodePageToken(absl::string_view token,
                                           absl::string_view fingerprint);

// Page size: default 50, at most 1000; negative is INVALID_ARGUMENT.
absl::StatusOr<int> NormalizePageSize(int page_size);

// The exclusive upper bound of all byte strings starting with `prefix`
// (byte order, as COLLATE "C" compares): prefix + U+10FFFF's encoding.
std::string PrefixUpperBound(absl::string_view prefix);

// Unicode-unaware lower-casing that matches PostgreSQL lower() for ASCII;
// non-ASCII bytes are kept.
std::string LowerAscii(absl::string_view s);

}  // namespace guestlist::identity
