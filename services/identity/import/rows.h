// Pure rules of the bulk CSV: which header means which field (the template's
// own columns and the low-code platform's), and the validation of one row
// into what the import should make true for that user. No I/O: the
// workspace's groups and apps are passed in.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "guestlist/identity/v1/identity.pb.h"
#include "guestlist/membership/v1/membership.pb.h"
#include "services/identity/import/csv_reader.h"

namespace guestlist::identity::import {

using ::guestlist::identity::v1::ImportRowError;
using Privilege = ::guestlist::membership::v1::AppPrivilegeGrant::Privilege;
using Kind = ::guestlist::identity::v1::UserKind;

inline constexpr size_t kMaxMetadataBytes = 16 * 1024;
inline constexpr size_t kMaxNameChars = 100;

// What a column of the file holds.
enum class ColumnKind {
  kUsername,
  kEmail,
  kFirstName,
  kLastName,
  kRole,
  kGroup,      // one group name (user-group-N)
  kGroupList,  // `|`-separated group names (the low-code "Group")
  kApp,        // privilege on the app `app_slug`
  kDelete,
  kMetadata,
};

struct Column {
  ColumnKind kind;
  std::string header;    // as written in the file
  std::string app_slug;  // kApp only
};

// The header line mapped to columns.
struct HeaderMap {
  std::vector<Column> columns;  // one per header field, in file order
  bool has_username = false;
  bool has_email = false;
  bool has_first_name = false;
  bool has_last_name = false;
  bool has_role = false;
  bool has_groups = false;
  bool has_delete = false;
  bool has_metadata = false;
  std::vector<std::string> app_slugs;  // app columns present
};

// Header names compare after lower-casing and dropping spaces, `_` and `-`
// ("First Name" == "first_name" == "FIRSTNAME").
std::string NormalizeHeader(absl::string_view header);

// Maps the header line. Errors: INVALID_ARGUMENT naming an unknown or
// repeated column, or when neither a username nor an email column exists.
absl::StatusOr<HeaderMap> MapHeader(const std::vector<std::string>& header,
                                    const std::vector<std::string>& app_slugs);

// A group of the workspace, for resolving names.
struct GroupRef {
  std::string id;
  std::string name;
};

// What one valid row asks for. Fields whose column is absent from the file
// are left as they are on existing users (the `has_*` of the HeaderMap).
struct RowIntent {
  int line = 0;
  std::string username;
  std::string email;
  std::string first_name;
  std::string last_name;
  std::optional<Kind> kind;            // nullopt: role cell empty
  std::vector<std::string> group_ids;  // sorted, unique
  std::map<std::string, Privilege>
      apps;  // slug -> privilege (UNSPECIFIED = none)
  bool del = false;
  std::string metadata;  // canonical JSON text ("" = none)
  std::vector<ImportRowError> errors;
};

// Workspace data a row is checked against.
struct RowContext {
  // Lower-cased group name -> group.
  absl::flat_hash_map<std::string, GroupRef> groups_by_name;
};

// Validates one record into a RowIntent (errors in `errors`, each naming the
// header of its column).
RowIntent ValidateRow(const HeaderMap& header, const CsvRecord& record,
                      const RowContext& context);

// The error of a row whose username (case-insensitive) already appeared on
// `first_line`.
std::string DuplicateReason(const std::string& username, int first_line);

// Flags rows whose username (case-insensitive) appeared on an earlier line.
class DuplicateTracker final {
 public:
  // Adds an error to `row` if its username was seen before.
  void Check(RowIntent& row);

 private:
  absl::flat_hash_map<std::string, int> first_line_;
};

// Parsers of single cells; nullopt when the value is not accepted.
std::optional<Kind> ParseRole(absl::string_view value);  // "" -> nullopt
std::optional<Privilege> ParsePrivilege(absl::string_view value);
std::optional<bool> ParseDelete(absl::string_view value);

// Email syntax (ASCII dot-atom local part, LDH domain with an alphabetic
// TLD). Returns the reason it is refused, or "" when valid.
std::string CheckEmail(absl::string_view email);

// Canonical JSON text of a metadata object, or the reason it is refused.
absl::StatusOr<std::string> CanonicalMetadata(absl::string_view json);

// The template's header line for a workspace with `app_slugs`.
std::vector<std::string> TemplateHeader(
    const std::vector<std::string>& app_slugs, int group_columns = 3);

std::string KindCell(Kind kind);
std::string PrivilegeCell(Privilege privilege);

}  // namespace guestlist::identity::import
