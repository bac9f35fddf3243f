// Who may do what in identity: workspace scoping and admin / scope checks
// on the authenticated Principal. Everything of another workspace is
// invisible (NOT_FOUND for ids) or refused (PERMISSION_DENIED for
// workspace paths).
#pragma once

#include <algorithm>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/auth.h"

namespace guestlist::identity {

inline bool IsPrivileged(const Principal& p) {
  return p.is_operator() || p.is_internal();
}
inline bool IsApiKey(const Principal& p) { return !p.api_key_id().empty(); }
inline bool IsUser(const Principal& p) { return !p.user_id().empty(); }
inline bool HasScope(const Principal& p, const std::string& scope) {
  return std::find(p.scopes().begin(), p.scopes().end(), scope) !=
         p.scopes().end();
}
inline bool IsAdminOf(const Principal& p, const std::string& workspace_id) {
  return IsPrivileged(p) || (IsUser(p) && p.workspace_id() == workspace_id &&
                             p.kind() == identity::v1::ADMIN);
}
// Whether the caller may see things of `workspace_id` at all.
inline bool SameWorkspace(const Principal& p, const std::string& workspace_id) {
  return IsPrivileged(p) || p.workspace_id() == workspace_id;
}

// A stable id of the caller for idempotency scopes.
inline std::string CallerId(const Principal& p) {
  if (p.is_operator()) return "operator";
  if (p.is_internal()) return "internal";
  if (IsApiKey(p)) return absl::StrCat("key:", p.api_key_id());
  return absl::StrCat("user:", p.user_id());
}

inline absl::Status RequireInWorkspace(const Principal& p,
                                       const std::string& workspace_id) {
  if (SameWorkspace(p, workspace_id)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("the caller does not belong to workspace ", workspace_id,
                   "; use a token of that workspace"));
}

// Admins (and the operator / internal credential); with `scope`, also API
// keys of the workspace holding it.
inline absl::Status RequireAdmin(const Principal& p,
                                 const std::string& workspace_id,
                                 const std::string& scope = "") {
  if (!SameWorkspace(p, workspace_id))
    return RequireInWorkspace(p, workspace_id);
  if (IsAdminOf(p, workspace_id)) return absl::OkStatus();
  if (IsApiKey(p)) {
    if (!scope.empty() && HasScope(p, scope)) return absl::OkStatus();
    return absl::PermissionDeniedError(
        scope.empty()
            ? std::string("API keys cannot do this; use an admin's session")
            : absl::StrCat("this API key lacks the scope ", scope,
                           "; create a key with it"));
  }
  return absl::PermissionDeniedError(
      "only admins of the workspace may do this");
}

// Admins only (no API keys).
inline absl::Status RequireUserAdmin(const Principal& p,
                                     const std::string& workspace_id) {
  return RequireAdmin(p, workspace_id, "");
}

}  // namespace guestlist::identity
