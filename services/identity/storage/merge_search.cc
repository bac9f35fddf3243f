#include "services/identity/storage/merge_search.h"

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

// V009's predicate of users_by_own_email, verbatim: an email that does not
// start with its user's first name. Any other email that starts with a
// query either has the first name start with the query too (the query is
// no longer than the first name) or has a first name that is a proper
// prefix of the query.
constexpr char kOwnEmail[] =
    "email_lc <> '' AND NOT (coalesce(first_lc, '') <> '' "
    "AND starts_with(email_lc, first_lc))";

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

// Users with a username of their own in the query's range (V008's
// users_by_own_username).
std::string OwnUsernameRange(int p) {
  return absl::StrCat(PrefixRange("username_lc", p),
                      " AND username_lc IS DISTINCT FROM email_lc");
}

// Users with a full name of their own in the query's range (V008's
// users_by_own_name).
std::string OwnNameRange(int p) {
  return absl::StrCat(PrefixRange("name_lc", p), " AND ", kOwnName);
}

// Builds the runs of one merge, each (id, k) with k the sort key `key_col`,
// past the cursor, in page order, stopped after a page.
class Runs {
 public:
  Runs(const MergeQuery& m, const char* key_col)
      : m_(m), key_col_(key_col), limit_(MergeLimit(m.page_rows)) {}

  // The users of `where`, read along an index in the sort order.
  std::string Ordered(const std::string& where) const { return Run(where, ""); }
  // The users of `where` read whole, then sorted: OFFSET 0 keeps the
  // planner from walking the sort index for them (these ranges are small,
  // their order unknown).
  std::string Whole(const std::string& where) const {
    return Run(where, " OFFSET 0");
  }
  // One ordered run per distinct value of `cte` (see DistinctValues).
  std::string PerValue(const char* cte, const char* col) const {
    return absl::StrCat(
        "(SELECT x.id, x.k FROM ", cte, " r CROSS JOIN LATERAL ",
        Ordered(absl::StrCat(col, " = r.v")), " x WHERE r.v IS NOT NULL)");
  }

 private:
  std::string Run(const std::string& where, const char* fence) const {
    return absl::StrCat("(SELECT id, k FROM (SELECT id, ", key_col_,
                        " AS k FROM identity.users WHERE workspace_id = $1",
                        m_.filters, " AND ", where, fence, ") m", m_.after,
                        m_.order_by, limit_, ")");
  }

  const MergeQuery& m_;
  const char* key_col_;
  std::string limit_;
};

}  // namespace

std::string MergeLimit(int page_rows) {
  int rows = 1001;
  for (int bucket : {26, 51, 101, 251, 501}) {
    if (page_rows <= bucket) {
      rows = bucket;
      break;
    }
  }
  return absl::StrCat(" LIMIT ", std::max(rows, page_rows));
}

std::string PrefixRange(const char* col, int p) {
  return absl::StrCat(col, " >= lower($", p, ") COLLATE \"C\" AND ", col, " < ",
                      RangeEnd(p));
}

std::vector<std::string> SearchRanges(int p, bool prefix_has_space) {
  return {PrefixRange("email_lc", p), PrefixRange("first_lc", p),
          PrefixRange("last_lc", p), OwnUsernameRange(p),
          prefix_has_space ? PrefixRange("name_lc", p) : OwnNameRange(p)};
}

std::vector<std::string> DisjointSearchRanges(int p, bool prefix_has_space) {
  const std::vector<std::string> ranges = SearchRanges(p, prefix_has_space);
  std::vector<std::string> disjoint;
  for (size_t i = 0; i < ranges.size(); ++i) {
    std::string where = ranges[i];
    // No key is NULL, so NOT keeps every user outside range j.
    for (size_t j = 0; j < i; ++j) {
      absl::StrAppend(&where, " AND NOT (", ranges[j], ")");
    }
    disjoint.push_back(std::move(where));
  }
  return disjoint;
}

std::string CountNamesOfPrefixSql() {
  const std::string more = absl::StrCat(" AND r.n <= ", kMaxMergedNames);
  return absl::StrCat("WITH RECURSIVE ",
                      DistinctValues("firsts", "first_lc", 2, more), ", ",
                      DistinctValues("lasts", "last_lc", 2, more),
                      " SELECT (SELECT count(v) FROM firsts), "
                      "(SELECT count(v) FROM lasts)");
}

std::string EmailOrderMergeSql(const MergeQuery& m, bool prefix_has_space) {
  const int p = m.prefix_param;
  const Runs runs(m, "email_lc");
  // A query with a space can match a full name past its first name.
  const std::string names = runs.Whole(
      prefix_has_space ? PrefixRange("name_lc", p) : OwnNameRange(p));
  return absl::StrCat("WITH RECURSIVE ",
                      DistinctValues("firsts", "first_lc", p, ""), ", ",
                      DistinctValues("lasts", "last_lc", p, ""), " ",
                      runs.Ordered(PrefixRange("email_lc", p)), " UNION ",
                      runs.PerValue("firsts", "first_lc"), " UNION ",
                      runs.PerValue("lasts", "last_lc"), " UNION ",
                      runs.Whole(OwnUsernameRange(p)), " UNION ", names);
}

std::string NameOrderMergeSql(const MergeQuery& m) {
  const int p = m.prefix_param;
  const Runs runs(m, "name_lc");
  // Emails that start with their first name and match the query past it:
  // the first name is then one of the query's proper prefixes, each an
  // index range of V008's users_by_first (first name, email).
  const std::string emails_past_first_name = absl::StrCat(
      "(SELECT x.id, x.k FROM generate_series(1, length(lower($", p,
      ")) - 1) g(n) CROSS JOIN LATERAL ",
      runs.Whole(absl::StrCat("first_lc = left(lower($", p, "), g.n) AND ",
                              PrefixRange("email_lc", p))),
      " x)");
  return absl::StrCat(
      "WITH RECURSIVE ", DistinctValues("lasts", "last_lc", p, ""), " ",
      runs.Ordered(PrefixRange("name_lc", p)), " UNION ",
      runs.PerValue("lasts", "last_lc"), " UNION ",
      runs.Whole(OwnUsernameRange(p)), " UNION ",
      runs.Whole(absl::StrCat(PrefixRange("email_lc", p), " AND ", kOwnEmail)),
      " UNION ", emails_past_first_name);
}

}  // namespace guestlist::identity
