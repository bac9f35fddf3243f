// SQL of ListUsers for a prefix query with many matches in email order
// (the default) or name order: a merge of short sorted runs instead of a
// walk of the sort index, whose cost depends on where in the order the
// matches lie (V008 and V009 have the indexes and why).
#ifndef GUESTLIST_SERVICES_IDENTITY_STORAGE_MERGE_SEARCH_H_
#define GUESTLIST_SERVICES_IDENTITY_STORAGE_MERGE_SEARCH_H_

#include <string>
#include <vector>

namespace guestlist::identity {

// Above this many distinct names the merge reads one run each of, the
// runs cost more than the walk (a short prefix of many names matches
// densely all along the order, where the walk is quick).
constexpr int kMaxMergedNames = 32;

// `col` starts with the query, parameter $p: a btree range of C-collated
// lower-case keys.
std::string PrefixRange(const char* col, int p);

// Conditions that together select every user some search key of whom
// (email, username, first, last or full name) starts with the query, $p:
// the email, first- and last-name ranges, and the username and full-name
// ranges only of the users those three do not already cover (a username
// other than the email; a full name past the first name, or any full name
// when the query has a space), read from V008's small partial indexes.
std::vector<std::string> SearchRanges(int p, bool prefix_has_space);

// SearchRanges made disjoint: each also excludes the users of the ranges
// before it, so every matching user satisfies exactly one and the ranges
// can be counted and merged without removing duplicates. V009's indexes
// carry the keys each exclusion tests.
std::vector<std::string> DisjointSearchRanges(int p, bool prefix_has_space);

// Parameters: $1 workspace id, $2 the query. One row: how many distinct
// first names and last names (each counted up to kMaxMergedNames + 1)
// start with the query.
std::string CountNamesOfPrefixSql();

// " LIMIT n" of a merge's runs, and of the page it makes, for a page of
// `page_rows` rows: a literal, since with a parameter a generic plan
// assumes a tenth of the rows (it sorted whole ranges, 21 ms instead of
// 0.9, and read every user by a hash join to fetch a page). n is one of a
// few sizes, at least page_rows, to keep the prepared variants few.
std::string MergeLimit(int page_rows);

// The parts of the page query the merge shares with ListUsers' others.
struct MergeQuery {
  std::string filters;   // kind / status: " AND kind = $2"...
  int prefix_param = 0;  // $n of the query
  std::string after;     // " WHERE k >= ... AND (...)" past the cursor, or ""
  std::string order_by;  // " ORDER BY k, id" (or both DESC)
  int page_rows = 0;     // rows a page needs (its size + 1)
};

// (id, k = email_lc) of the page's users and more, in no particular order
// (the caller sorts and cuts the page): each run (the email range, one per
// distinct first or last name, the users whose username or full name no
// other run covers) stops after a page. Worth it while the query's first
// plus last names are at most kMaxMergedNames.
std::string EmailOrderMergeSql(const MergeQuery& m, bool prefix_has_space);

// (id, k = name_lc) of the page's users and more, likewise: the full-name
// range, one run per distinct last name, and the few users whose username
// or email no other run covers (V009). The query must not start or end
// with a space (a first name that starts with it then has its full name
// start with it too). Worth it while the query's last names are at most
// kMaxMergedNames.
std::string NameOrderMergeSql(const MergeQuery& m);

}  // namespace guestlist::identity

#endif  // GUESTLIST_SERVICES_IDENTITY_STORAGE_MERGE_SEARCH_H_
