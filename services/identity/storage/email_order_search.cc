#include "services/identity/storage/email_order_search.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace guestlist::identity {
namespace {

// V008's predicate of users_by_own_name, verbatim so that the planner can
// use that partial index: a full name that neither starts with the first
// name and a space (or equals it) nor, without a first name, equals the
// last name. Any other full name that starts with a query without a space
// has its first (or last) name start with it too.
constexpr char kOwnName[] =
    "NOT (CASE WHEN coalesce(first_lc, '') = '' "
    "THEN name_lc IS NOT DISTINCT FROM last_lc "
    "ELSE name_lc = first_lc OR starts_with(name_lc, first_lc || ' ') END)";

// The end of the query's range (no key holds U+10FFFF).
std::string RangeEnd(int p) {
  return absl::StrCat("(lower($", p, ") || chr(1114111)) COLLATE \"C\"");
}

// The distinct values of `col` in the query's range, one index probe each
// (a loose index scan); `more` ends the recursion early.
std::string DistinctValues(const char* cte, const char* col, int p,
                           const std::string& more) {
  return absl::StrCat(cte, "(v, n) AS (SELECT min(", col,
                      "), 1 FROM identity.users WHERE workspace_id = $1 AND ",
                      PrefixRange(col, p), " UNION ALL SELECT (SELECT min(",
                      col, ") FROM identity.users WHERE workspace_id = $1 AND ",
                      col, " > r.v AND ", col, " < ", RangeEnd(p),
                      "), r.n + 1 FROM ", cte, " r WHERE r.v IS NOT NULL", more,
                      ")");
}

}  // namespace

std::string PrefixRange(const char* col, int p) {
  return absl::StrCat(col, " >= lower($", p, ") COLLATE \"C\" AND ", col, " < ",
                      RangeEnd(p));
}

std::string CountNamesOfPrefixSql() {
  const std::string more = absl::StrCat(" AND r.n <= ", kMaxMergedNames);
  return absl::StrCat("WITH RECURSIVE ",
                      DistinctValues("firsts", "first_lc", 2, more), ", ",
                      DistinctValues("lasts", "last_lc", 2, more),
                      " SELECT (SELECT count(v) FROM firsts), "
                      "(SELECT count(v) FROM lasts)");
}

std::string EmailOrderMergeSql(const EmailOrderMerge& m,
                               bool prefix_has_space) {
  const int p = m.prefix_param;
  // Each run's LIMIT is a literal: with a parameter, a generic plan assumes
  // a tenth of the rows and sorts whole ranges (21 ms instead of 0.9). One
  // of a few sizes keeps the prepared variants few.
  int rows = 1001;
  for (int bucket : {26, 51, 101, 251, 501}) {
    if (m.page_rows <= bucket) {
      rows = bucket;
      break;
    }
  }
  const std::string run_limit =
      absl::StrCat(" LIMIT ", std::max(rows, m.page_rows));
  // One run: the users of `where`, past the cursor, in email order, up to
  // a page.
  auto run = [&](const std::string& where) {
    return absl::StrCat(
        "(SELECT id, k FROM (SELECT id, email_lc AS k FROM "
        "identity.users WHERE workspace_id = $1",
        m.filters, " AND ", where, ") m", m.after, m.order_by, run_limit, ")");
  };
  // A run read whole, then sorted: OFFSET 0 keeps the planner from walking
  // the email index for it (these ranges are small, their order unknown).
  auto whole = [&](const std::string& where) {
    return absl::StrCat(
        "(SELECT id, k FROM (SELECT id, email_lc AS k FROM "
        "identity.users WHERE workspace_id = $1",
        m.filters, " AND ", where, " OFFSET 0) m", m.after, m.order_by,
        run_limit, ")");
  };
  // One run per distinct value of `cte`.
  auto runs_of = [&](const char* cte, const char* col) {
    return absl::StrCat(
        "(SELECT x.id, x.k FROM ", cte, " r CROSS JOIN LATERAL ",
        run(absl::StrCat(col, " = r.v")), " x WHERE r.v IS NOT NULL)");
  };
  // A query with a space can match a full name past its first name.
  const std::string names =
      prefix_has_space
          ? whole(PrefixRange("name_lc", p))
          : whole(absl::StrCat(PrefixRange("name_lc", p), " AND ", kOwnName));
  return absl::StrCat(
      "WITH RECURSIVE ", DistinctValues("firsts", "first_lc", p, ""), ", ",
      DistinctValues("lasts", "last_lc", p, ""), " ",
      run(PrefixRange("email_lc", p)), " UNION ", runs_of("firsts", "first_lc"),
      " UNION ", runs_of("lasts", "last_lc"), " UNION ",
      whole(absl::StrCat(PrefixRange("username_lc", p),
                         " AND username_lc IS DISTINCT FROM email_lc")),
      " UNION ", names);
}

}  // namespace guestlist::identity
