#include "services/identity/import/rows.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace guestlist::identity::import {
namespace {

namespace v1 = ::guestlist::identity::v1;
using Grant = ::guestlist::membership::v1::AppPrivilegeGrant;

void AddError(RowIntent& row, const std::string& column, std::string reason) {
  ImportRowError* e = &row.errors.emplace_back();
  e->set_column(column);
  e->set_reason(std::move(reason));
}

size_t Utf8Chars(absl::string_view s) {
  size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

bool IsAtext(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::StrContains("!#$%&'*+/=?^_`{|}~-", c);
}

bool IsDomain(absl::string_view domain) {
  if (domain.empty() || domain.size() > 253) return false;
  std::vector<absl::string_view> labels = absl::StrSplit(domain, '.');
  if (labels.size() < 2) return false;
  for (absl::string_view label : labels) {
    if (label.empty() || label.size() > 63 || label.front() == '-' ||
        label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') {
        return false;
      }
    }
  }
  for (char c : labels.back()) {
    if (!absl::ascii_isalpha(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool IsUserGroupHeader(absl::string_view normalized) {
  if (!absl::ConsumePrefix(&normalized, "usergroup")) return false;
  int n = 0;
  return !normalized.empty() && absl::SimpleAtoi(normalized, &n) && n > 0 &&
         std::all_of(normalized.begin(), normalized.end(),
                     [](char c) { return absl::ascii_isdigit(c); });
}

}  // namespace

std::string NormalizeHeader(absl::string_view header) {
  std::string out;
  for (char c : absl::StripAsciiWhitespace(header)) {
    if (c == ' ' || c == '_' || c == '-' || c == '\t') continue;
    out.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

absl::StatusOr<HeaderMap> MapHeader(const std::vector<std::string>& header,
                                    const std::vector<std::string>& app_slugs) {
  absl::flat_hash_map<std::string, std::string> apps;  // normalized -> slug
  for (const std::string& slug : app_slugs) apps[NormalizeHeader(slug)] = slug;
  HeaderMap map;
  absl::flat_hash_map<std::string, std::string> seen;  // normalized -> header
  for (const std::string& raw : header) {
    const std::string name = NormalizeHeader(raw);
    const std::string shown(absl::StripAsciiWhitespace(raw));
    if (name.empty()) {
      return absl::InvalidArgumentError(
          "the header line has an empty column name; name every column or "
          "remove the empty column");
    }
    if (auto it = seen.find(name); it != seen.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "column \"", shown, "\" appears twice in the header (also as \"",
          it->second, "\"); keep one"));
    }
    seen[name] = shown;
    Column col{ColumnKind::kUsername, shown, ""};
    if (name == "username") {
      map.has_username = true;
    } else if (name == "email" || name == "emailaddress") {
      col.kind = ColumnKind::kEmail;
      map.has_email = true;
    } else if (name == "firstname") {
      col.kind = ColumnKind::kFirstName;
      map.has_first_name = true;
    } else if (name == "lastname") {
      col.kind = ColumnKind::kLastName;
      map.has_last_name = true;
    } else if (name == "role" || name == "userrole") {
      col.kind = ColumnKind::kRole;
      map.has_role = true;
    } else if (IsUserGroupHeader(name)) {
      col.kind = ColumnKind::kGroup;
      map.has_groups = true;
    } else if (name == "group" || name == "groups") {
      col.kind = ColumnKind::kGroupList;
      map.has_groups = true;
    } else if (name == "delete") {
      col.kind = ColumnKind::kDelete;
      map.has_delete = true;
    } else if (name == "metadata") {
      col.kind = ColumnKind::kMetadata;
      map.has_metadata = true;
    } else if (auto app = apps.find(name); app != apps.end()) {
      col.kind = ColumnKind::kApp;
      col.app_slug = app->second;
      map.app_slugs.push_back(app->second);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown column \"", shown,
          "\": expected username, first_name, last_name, role, "
          "user-group-N, delete, metadata, an app slug of this workspace (",
          app_slugs.empty() ? "none" : absl::StrJoin(app_slugs, ", "),
          ") or the low-code headers First Name, Last Name, Email address, "
          "User Role, Group, Metadata"));
    }
    map.columns.push_back(std::move(col));
  }
  if (!map.has_username && !map.has_email) {
    return absl::InvalidArgumentError(
        "the header has no username column (or \"Email address\"); the "
        "first line must name the columns, as in the template");
  }
  return map;
}

std::optional<Kind> ParseRole(absl::string_view value) {
  const std::string v = NormalizeHeader(value);
  if (v.empty()) return std::nullopt;
  if (v == "guest") return v1::GUEST;
  // The low-code platform's End User and Builder are full users of the
  // workspace, so they become members (they take a licence); only its
  // Admin becomes an admin.
  if (v == "member" || v == "enduser" || v == "builder") return v1::MEMBER;
  if (v == "admin" || v == "administrator") return v1::ADMIN;
  return v1::USER_KIND_UNSPECIFIED;
}

std::optional<Privilege> ParsePrivilege(absl::string_view value) {
  const std::string v =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(value));
  if (v.empty()) return Grant::PRIVILEGE_UNSPECIFIED;
  if (v == "guest") return Grant::GUEST;
  if (v == "viewer") return Grant::VIEWER;
  if (v == "editor") return Grant::EDITOR;
  return std::nullopt;
}

std::optional<bool> ParseDelete(absl::string_view value) {
  const std::string v =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(value));
  if (v.empty() || v == "false" || v == "no" || v == "0") return false;
  if (v == "true" || v == "yes" || v == "1") return true;
  return std::nullopt;
}

std::string CheckEmail(absl::string_view email) {
  if (email.size() > 254) return "is longer than 254 bytes";
  const size_t at = email.rfind('@');
  if (at == absl::string_view::npos) {
    return absl::StrCat("\"", email,
                        "\" has no @; give an address like name@example.com");
  }
  absl::string_view local = email.substr(0, at);
  absl::string_view domain = email.substr(at + 1);
  if (std::any_of(local.begin(), local.end(), [](char c) {
        return static_cast<unsigned char>(c) >= 0x80;
      })) {
    // Internationalised local parts need SMTPUTF8 end to end, which our
    // mail path does not promise: refuse them clearly instead of sending
    // invitations that bounce.
    return absl::StrCat(
        "\"", email,
        "\" has non-ASCII characters before the @; internationalised "
        "addresses are not supported, give an ASCII address");
  }
  const bool local_ok =
      !local.empty() && local.size() <= 64 && local.front() != '.' &&
      local.back() != '.' && !absl::StrContains(local, "..") &&
      std::all_of(local.begin(), local.end(),
                  [](char c) { return IsAtext(c) || c == '.'; });
  if (!local_ok) {
    return absl::StrCat("\"", email,
                        "\" has an invalid part before the @ (letters, "
                        "digits, dots and !#$%&'*+/=?^_`{|}~- only)");
  }
  if (!IsDomain(domain)) {
    return absl::StrCat("\"", email,
                        "\" has an invalid domain; give a domain like "
                        "example.com");
  }
  return "";
}

absl::StatusOr<std::string> CanonicalMetadata(absl::string_view json) {
  if (json.size() > kMaxMetadataBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "is longer than ", kMaxMetadataBytes, " bytes; keep it smaller"));
  }
  nlohmann::json parsed =
      nlohmann::json::parse(json.begin(), json.end(), nullptr,
                            /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError(
        "is not valid JSON; give an object like {\"key\": \"value\"}");
  }
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError(
        "must be a JSON object like {\"key\": \"value\"}");
  }
  return parsed.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string DuplicateReason(const std::string& username, int first_line) {
  return absl::StrCat("username \"", username, "\" already appears on line ",
                      first_line, "; keep one row per user");
}

void DuplicateTracker::Check(RowIntent& row) {
  if (row.username.empty()) return;
  auto [it, inserted] =
      first_line_.try_emplace(absl::AsciiStrToLower(row.username), row.line);
  if (!inserted) AddError(row, "", DuplicateReason(row.username, it->second));
}

RowIntent ValidateRow(const HeaderMap& header, const CsvRecord& record,
                      const RowContext& context) {
  RowIntent row;
  row.line = record.line;
  if (record.invalid_utf8_field >= 0 &&
      static_cast<size_t>(record.invalid_utf8_field) < header.columns.size()) {
    AddError(row, header.columns[record.invalid_utf8_field].header,
             "is not valid UTF-8; save the file as \"CSV UTF-8\"");
    return row;
  }
  if (!record.error.empty()) {
    AddError(row, "", record.error);
    return row;
  }
  if (record.fields.size() != header.columns.size()) {
    AddError(row, "",
             absl::StrCat("the row has ", record.fields.size(),
                          " fields but the header has ", header.columns.size(),
                          "; check for a missing or extra delimiter"));
    return row;
  }
  std::string username_header;
  std::string email_header;
  std::string first_header;
  for (size_t i = 0; i < header.columns.size(); ++i) {
    const Column& col = header.columns[i];
    const std::string& raw = record.fields[i];
    const std::string value(absl::StripAsciiWhitespace(raw));
    switch (col.kind) {
      case ColumnKind::kUsername:
        username_header = col.header;
        row.username = value;
        break;
      case ColumnKind::kEmail:
        email_header = col.header;
        row.email = value;
        break;
      case ColumnKind::kFirstName:
      case ColumnKind::kLastName:
        if (col.kind == ColumnKind::kFirstName) {
          first_header = col.header;
          row.first_name = value;
        } else {
          if (first_header.empty()) first_header = col.header;
          row.last_name = value;
        }
        if (Utf8Chars(value) > kMaxNameChars) {
          AddError(
              row, col.header,
              absl::StrCat("is longer than ", kMaxNameChars, " characters"));
        }
        break;
      case ColumnKind::kRole: {
        std::optional<Kind> kind = ParseRole(value);
        if (kind == v1::USER_KIND_UNSPECIFIED) {
          AddError(row, col.header,
                   absl::StrCat("\"", value,
                                "\" is not a role; use guest, member or admin "
                                "(or End User, Builder, Admin), or leave it "
                                "empty for guest"));
        } else {
          row.kind = kind;
        }
        break;
      }
      case ColumnKind::kGroup:
      case ColumnKind::kGroupList: {
        std::vector<std::string> names;
        if (col.kind == ColumnKind::kGroup) {
          if (!value.empty()) names.push_back(value);
        } else {
          for (absl::string_view part : absl::StrSplit(value, '|')) {
            part = absl::StripAsciiWhitespace(part);
            if (!part.empty()) names.emplace_back(part);
          }
        }
        for (const std::string& name : names) {
          auto it = context.groups_by_name.find(absl::AsciiStrToLower(name));
          if (it == context.groups_by_name.end()) {
            AddError(row, col.header,
                     absl::StrCat("group \"", name,
                                  "\" does not exist in this workspace; "
                                  "create it first or fix the name"));
          } else {
            row.group_ids.push_back(it->second.id);
          }
        }
        break;
      }
      case ColumnKind::kApp: {
        std::optional<Privilege> p = ParsePrivilege(value);
        if (!p.has_value()) {
          AddError(row, col.header,
                   absl::StrCat("\"", value,
                                "\" is not an app privilege; use guest, "
                                "viewer, editor, or leave it empty for none"));
        } else {
          row.apps[col.app_slug] = *p;
        }
        break;
      }
      case ColumnKind::kDelete: {
        std::optional<bool> d = ParseDelete(value);
        if (!d.has_value()) {
          AddError(row, col.header,
                   absl::StrCat("\"", value,
                                "\" is not a yes/no value; use true, false, "
                                "yes, no, 1, 0 or leave it empty"));
        } else {
          row.del = *d;
        }
        break;
      }
      case ColumnKind::kMetadata: {
        if (raw.empty()) break;
        absl::StatusOr<std::string> json = CanonicalMetadata(raw);
        if (!json.ok()) {
          AddError(row, col.header, std::string(json.status().message()));
        } else {
          // An empty object is no metadata (how it is stored and exported).
          if (*json != "{}") row.metadata = *std::move(json);
        }
        break;
      }
    }
  }
  std::sort(row.group_ids.begin(), row.group_ids.end());
  row.group_ids.erase(std::unique(row.group_ids.begin(), row.group_ids.end()),
                      row.group_ids.end());

  // Identity: the username, else the email stands for it.
  if (!row.username.empty()) {
    if (absl::StrContains(row.username, '@')) {
      if (std::string why = CheckEmail(row.username); !why.empty()) {
        AddError(row, username_header, why);
      } else if (row.email.empty()) {
        row.email = row.username;
      }
    } else if (row.username.size() > 254 ||
               std::any_of(
                   row.username.begin(), row.username.end(), [](char c) {
                     return static_cast<unsigned char>(c) <= ' ' || c == 0x7F;
                   })) {
      AddError(row, username_header,
               "must be at most 254 bytes without spaces or control "
               "characters");
    }
  }
  if (!row.email.empty() && !email_header.empty()) {
    if (std::string why = CheckEmail(row.email); !why.empty()) {
      AddError(row, email_header, why);
    }
  }
  if (row.username.empty()) {
    if (!row.email.empty()) {
      row.username = row.email;
    } else {
      AddError(row, username_header.empty() ? email_header : username_header,
               "is required: every row needs a username or an email");
    }
  }
  // Names are checked against the user they apply to (import_service.cc):
  // required to create, and must not be cleared, but an existing user that
  // never had one (a workspace's first admin) exports and re-imports as is.
  (void)first_header;
  return row;
}

std::vector<std::string> TemplateHeader(
    const std::vector<std::string>& app_slugs, int group_columns) {
  std::vector<std::string> h = {"username", "first_name", "last_name", "role"};
  for (int i = 1; i <= group_columns; ++i) {
    h.push_back(absl::StrCat("user-group-", i));
  }
  h.insert(h.end(), app_slugs.begin(), app_slugs.end());
  h.push_back("delete");
  h.push_back("metadata");
  return h;
}

std::string KindCell(Kind kind) {
  switch (kind) {
    case v1::ADMIN:
      return "admin";
    case v1::MEMBER:
      return "member";
    default:
      return "guest";
  }
}

std::string PrivilegeCell(Privilege privilege) {
  switch (privilege) {
    case Grant::GUEST:
      return "guest";
    case Grant::VIEWER:
      return "viewer";
    case Grant::EDITOR:
      return "editor";
    default:
      return "";
  }
}

}  // namespace guestlist::identity::import
