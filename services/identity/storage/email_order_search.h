// SQL of ListUsers for a prefix query with many matches in email order
// (the default order): a merge of short sorted runs instead of a walk of
// the email index, whose cost depends on where in the order the matches
// lie (V008 has the indexes and why).
#ifndef GUESTLIST_SERVICES_IDENTITY_STORAGE_EMAIL_ORDER_SEARCH_H_
#define GUESTLIST_SERVICES_IDENTITY_STORAGE_EMAIL_ORDER_SEARCH_H_

#include <string>

namespace guestlist::identity {

// Above this many distinct first plus last names in a query's range, the
// runs cost more than the walk (a short prefix of many names matches
// densely all along the email order, where the walk is quick).
constexpr int kMaxMergedNames = 32;

// `col` starts with the query, parameter $p: a btree range of C-collated
// lower-case keys.
std::string PrefixRange(const char* col, int p);

// Parameters: $1 workspace id, $2 the query. One row: how many distinct
// first names and last names (each counted up to kMaxMergedNames + 1)
// start with the query.
std::string CountNamesOfPrefixSql();

// The parts of the page query the merge shares with ListUsers' others.
struct EmailOrderMerge {
  std::string filters;   // kind / status: " AND kind = $2"...
  int prefix_param = 0;  // $n of the query
  std::string after;     // " WHERE k >= ... AND (...)" past the cursor, or ""
  std::string order_by;  // " ORDER BY k, id" (or both DESC)
  int page_rows = 0;     // rows a page needs (its size + 1)
};

// (id, k = email_lc) of the page's users and more, in no particular order
// (the caller sorts and cuts the page): each run
// (the email range, one per distinct first or last name, the users whose
// username or full name no other run covers) stops after a page.
std::string EmailOrderMergeSql(const EmailOrderMerge& m, bool prefix_has_space);

}  // namespace guestlist::identity

#endif  // GUESTLIST_SERVICES_IDENTITY_STORAGE_EMAIL_ORDER_SEARCH_H_
