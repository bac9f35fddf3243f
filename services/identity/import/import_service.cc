#include "services/identity/import/import_service.h"

#include <algorithm>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace guestlist::identity::import {
namespace {

using Grant = ::guestlist::membership::v1::AppPrivilegeGrant;
using ::guestlist::identity::v1::ImportReport;
using ::guestlist::identity::v1::ImportRow;

constexpr char kCsvContentType[] = "text/csv; charset=utf-8";

enum class Action { kCreate, kUpdate, kDelete, kUnchanged, kError };

// What the import does for one valid row.
struct Plan {
  Action action = Action::kError;
  ExistingUser next;  // the user after the import
  int64_t read_version = 0;
  bool profile_changed = false;
  std::vector<std::string> add_groups;
  std::vector<std::string> remove_groups;
  std::vector<Grant> set_apps;
  std::vector<std::string> remove_apps;
};

struct Access {
  absl::flat_hash_set<std::string> groups;
  absl::flat_hash_map<std::string, Privilege> apps;  // app id -> privilege
};

void AddError(RowIntent& row, const std::string& column,
              const std::string& reason) {
  ImportRowError* e = &row.errors.emplace_back();
  e->set_column(column);
  e->set_reason(reason);
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  ts.set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(ts.seconds())) /
                                    absl::Nanoseconds(1)));
  return ts;
}

mv1::UserRecord ToMembership(const ExistingUser& u,
                             const std::string& workspace_id) {
  mv1::UserRecord r;
  r.set_id(u.id);
  r.set_workspace_id(workspace_id);
  r.set_username(u.username);
  r.set_email(u.email);
  r.set_first_name(u.first_name);
  r.set_last_name(u.last_name);
  // Same numbers in both enums (see membership.proto DirectoryUser).
  r.set_kind(static_cast<mv1::DirectoryUser::Kind>(u.kind));
  r.set_status(static_cast<mv1::DirectoryUser::Status>(u.status));
  if (u.access_expire_time.has_value()) {
    *r.mutable_access_expire_time() = ToProto(*u.access_expire_time);
  }
  *r.mutable_create_time() = ToProto(u.create_time);
  r.set_version(u.version);
  return r;
}

std::string DomainOf(const std::string& email) {
  const size_t at = email.rfind('@');
  return absl::AsciiStrToLower(at == std::string::npos ? ""
                                                       : email.substr(at + 1));
}

// The workspace's allow / block lists; "" when allowed.
std::string DomainPolicy(const WorkspaceInfo& ws, const std::string& email) {
  const std::string domain = DomainOf(email);
  auto matches = [&](const std::string& d) {
    const std::string rule = absl::AsciiStrToLower(d);
    return domain == rule || absl::EndsWith(domain, absl::StrCat(".", rule));
  };
  if (std::any_of(ws.blocked_email_domains.begin(),
                  ws.blocked_email_domains.end(), matches)) {
    return absl::StrCat("the domain ", domain, " is blocked in this workspace");
  }
  if (!ws.allowed_email_domains.empty() &&
      std::none_of(ws.allowed_email_domains.begin(),
                   ws.allowed_email_domains.end(), matches)) {
    return absl::StrCat("the domain ", domain,
                        " is not among this workspace's allowed domains (",
                        absl::StrJoin(ws.allowed_email_domains, ", "), ")");
  }
  return "";
}

bool IsPrivileged(const Principal& p) {
  return p.is_operator() || p.is_internal();
}

google::api::HttpBody Csv(std::string data) {
  google::api::HttpBody body;
  body.set_content_type(kCsvContentType);
  body.set_data(std::move(data));
  return body;
}

}  // namespace

absl::Status CheckAdmin(const Principal& caller,
                        const std::string& workspace_id,
                        const std::string& scope) {
  if (IsPrivileged(caller)) return absl::OkStatus();
  if (caller.workspace_id() != workspace_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("the caller does not belong to workspace ", workspace_id,
                     "; use a token of that workspace"));
  }
  if (!caller.api_key_id().empty()) {
    if (!scope.empty() &&
        std::find(caller.scopes().begin(), caller.scopes().end(), scope) !=
            caller.scopes().end()) {
      return absl::OkStatus();
    }
    return absl::PermissionDeniedError(
        scope.empty() ? std::string("API keys cannot do this")
                      : absl::StrCat("this API key lacks the scope ", scope,
                                     "; create a key with it"));
  }
  if (!caller.user_id().empty() && caller.kind() == v1::ADMIN) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      "only admins of the workspace may do this");
}

// Everything one import needs, shared by the uploading call and the job's
// thread (whichever ends last frees it).
struct ImportService::Job {
  std::string id;
  Principal caller;
  v1::ImportOptions options;
  WorkspaceInfo workspace;
  absl::Time create_time;
  std::vector<std::string> header_fields;
  HeaderMap header;
  std::vector<mv1::App> apps;
  std::vector<RowIntent> rows;
  std::vector<std::string> raw;  // each row re-encoded, for the error CSV
  std::vector<Plan> plans;
  ImportReport report;
  std::string error_csv;
  absl::Status status;  // a system failure (peer / database), not row errors
  // The job's connection and liveness lock, from StartJob to the end.
  std::unique_ptr<JobLease> lease;
  bool committed = false;  // the report was written by the commit
  std::string timings;     // per phase, for the log
  absl::Notification done;
};

ImportService::ImportService(ImportConfig config, ImportDeps deps)
    : config_(std::move(config)), deps_(deps) {
  // Jobs of a process that died mid-import stay RUNNING forever otherwise.
  if (deps_.store != nullptr) {
    absl::Status s = deps_.store->ReapOrphanedJobs();
    if (!s.ok()) LogWarning(absl::StrCat("imports: ", s.ToString()));
  }
}

ImportService::~ImportService() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* running) { return *running == 0; }, &running_));
}

absl::StatusOr<v1::ImportReport> ImportService::Import(
    const Principal& caller, const NextMessage& next,
    const Cancelled& cancelled) {
  auto job = std::make_shared<Job>();
  v1::ImportUsersRequest message;
  if (!next(&message) || !message.has_options()) {
    return absl::InvalidArgumentError(
        "the first message of ImportUsers must carry `options`");
  }
  job->options = message.options();
  const v1::ImportOptions& options = job->options;
  if (options.workspace_id().empty()) {
    return absl::InvalidArgumentError(
        "options.workspace_id is required; give the workspace's id");
  }
  if (options.idempotency_key().size() > 128) {
    return absl::InvalidArgumentError(
        "options.idempotency_key is longer than 128 bytes");
  }
  RETURN_IF_ERROR(
      CheckAdmin(caller, options.workspace_id(), "invitations.write"));
  ASSIGN_OR_RETURN(job->workspace,
                   deps_.store->LoadWorkspace(options.workspace_id()));
  if (!options.idempotency_key().empty()) {
    ASSIGN_OR_RETURN(std::optional<std::string> earlier,
                     deps_.store->FindJobByKey(job->workspace.id,
                                               options.idempotency_key()));
    if (earlier.has_value()) {
      ASSIGN_OR_RETURN(ImportJob stored, LoadJob(*earlier));
      return stored.report;
    }
  }
  job->caller = caller;
  job->create_time = deps_.clock->Now();
  ASSIGN_OR_RETURN(std::vector<mv1::Group> groups,
                   deps_.membership->ListGroups(job->workspace.id));
  ASSIGN_OR_RETURN(job->apps, deps_.membership->ListApps(job->workspace.id));
  RowContext context;
  for (const mv1::Group& g : groups) {
    context.groups_by_name[absl::AsciiStrToLower(g.name())] =
        GroupRef{g.id(), g.name()};
  }
  std::vector<std::string> slugs;
  for (const mv1::App& a : job->apps) slugs.push_back(a.slug());

  // Upload: parse and validate as chunks arrive, so memory holds rows, not
  // the file, and the limits bite before anything is written.
  const absl::Time upload_start = absl::Now();
  bool have_header = false;
  {  // the reader and the duplicate index are freed before the job runs
    CsvReader reader(config_.csv);
    DuplicateTracker duplicates;
    std::vector<CsvRecord> records;
    auto consume = [&]() -> absl::Status {
      for (CsvRecord& record : records) {
        if (!have_header) {
          if (!record.error.empty()) {
            return absl::InvalidArgumentError(
                absl::StrCat("the header line is unreadable: ", record.error));
          }
          ASSIGN_OR_RETURN(job->header, MapHeader(record.fields, slugs));
          job->header_fields = record.fields;
          have_header = true;
          continue;
        }
        // Spreadsheets leave rows of empty cells behind: not rows of the file.
        if (record.error.empty() &&
            std::all_of(record.fields.begin(), record.fields.end(),
                        [](const std::string& f) {
                          return absl::StripAsciiWhitespace(f).empty();
                        })) {
          continue;
        }
        if (static_cast<int64_t>(job->rows.size()) >= config_.max_rows) {
          return absl::ResourceExhaustedError(
              absl::StrCat("the file has more than ", config_.max_rows,
                           " rows; split it into several imports"));
        }
        RowIntent row = ValidateRow(job->header, record, context);
        duplicates.Check(row);
        std::string raw = EncodeCsvLine(record.fields);
        raw.resize(raw.size() - 2);  // CRLF
        job->raw.push_back(std::move(raw));
        job->rows.push_back(std::move(row));
      }
      records.clear();
      return absl::OkStatus();
    };
    while (next(&message)) {
      if (message.has_options()) {
        return absl::InvalidArgumentError(
            "`options` may only be in the first message of ImportUsers");
      }
      if (static_cast<int64_t>(reader.bytes() + message.chunk().size()) >
          config_.max_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("the file is larger than ", config_.max_bytes,
                         " bytes; split it into several imports"));
      }
      reader.Feed(message.chunk(), &records);
      RETURN_IF_ERROR(consume());
    }
    reader.Finish(&records);
    RETURN_IF_ERROR(consume());
  }
  if (!have_header) {
    return absl::InvalidArgumentError(
        "the file is empty; its first line must name the columns, as in the "
        "template");
  }

  job->timings =
      absl::StrCat("upload=", absl::FormatDuration(absl::Now() - upload_start));
  job->id = NewUuid(*deps_.random);
  ImportReport& report = job->report;
  report.set_import_id(job->id);
  report.set_workspace_id(job->workspace.id);
  report.set_dry_run(options.dry_run());
  report.set_mode(options.mode() == v1::BEST_EFFORT ? v1::BEST_EFFORT
                                                    : v1::ALL_OR_NOTHING);
  report.set_state(ImportReport::RUNNING);
  report.set_rows_total(static_cast<int32_t>(job->rows.size()));
  *report.mutable_create_time() = ToProto(job->create_time);
  ImportJob stored;
  stored.id = job->id;
  stored.workspace_id = job->workspace.id;
  stored.idempotency_key = options.idempotency_key();
  stored.creator =
      caller.user_id().empty() ? caller.api_key_id() : caller.user_id();
  stored.report = report;
  absl::StatusOr<std::unique_ptr<JobLease>> lease =
      deps_.store->StartJob(stored);
  if (absl::IsAlreadyExists(lease.status())) {
    // A concurrent upload with the same key won the race.
    return EarlierReport(job->workspace.id, options.idempotency_key());
  }
  RETURN_IF_ERROR(lease.status());
  job->lease = *std::move(lease);

  {
    absl::MutexLock lock(&mu_);
    ++running_;
  }
  std::thread([this, job] {
    RunJob(*job);
    absl::MutexLock lock(&mu_);
    --running_;
  }).detach();

  while (!job->done.WaitForNotificationWithTimeout(absl::Milliseconds(50))) {
    if (cancelled && cancelled()) {
      return absl::CancelledError(
          absl::StrCat("the client went away; import ", job->id,
                       " continues, read it with GetImport"));
    }
  }
  if (!job->status.ok()) return job->status;
  return job->report;
}

void ImportService::RunJob(Job& job) {
  job.status = Execute(job);
  const absl::Time finish_start = absl::Now();
  if (!job.status.ok()) {
    LogWarning(
        absl::StrCat("import ", job.id, " failed: ", job.status.ToString()));
    job.report.set_state(ImportReport::FAILED);
  }
  // A committed job recorded its report in the same transaction.
  if (!job.committed) Finish(job);
  // Only now: a job seen unlocked while RUNNING is judged dead.
  job.lease.reset();
  LogInfo(absl::StrCat(
      "import ", job.id, " finished: rows=", job.rows.size(), " ", job.timings,
      " report=", absl::FormatDuration(absl::Now() - finish_start)));
  job.done.Notify();
}

absl::Status ImportService::Execute(Job& job) {
  const std::string& ws = job.workspace.id;
  const absl::Time now = deps_.clock->Now();
  std::vector<RowIntent>& rows = job.rows;
  job.plans.resize(rows.size());
  absl::Time phase_start = absl::Now();
  auto phase = [&](const char* name) {
    const absl::Time t = absl::Now();
    absl::StrAppend(&job.timings, " ", name, "=",
                    absl::FormatDuration(t - phase_start));
    phase_start = t;
  };

  // 1. Existing users and their access.
  std::vector<std::string> lower;
  lower.reserve(rows.size());
  for (const RowIntent& row : rows) {
    if (row.errors.empty())
      lower.push_back(absl::AsciiStrToLower(row.username));
  }
  ASSIGN_OR_RETURN(auto existing, deps_.store->FindUsersByUsername(ws, lower));
  std::vector<std::string>().swap(lower);
  absl::flat_hash_map<std::string, std::string> app_ids;  // slug -> id
  for (const mv1::App& a : job.apps) app_ids[a.slug()] = a.id();
  absl::flat_hash_map<std::string, Access> access;
  if (job.header.has_groups || !job.header.app_slugs.empty()) {
    std::vector<std::string> ids;
    for (const auto& [key, user] : existing) ids.push_back(user.id);
    for (size_t start = 0; start < ids.size(); start += config_.grants_batch) {
      mv1::GetUserAccessRequest req;
      req.set_workspace_id(ws);
      for (size_t i = start;
           i < std::min(ids.size(), start + config_.grants_batch); ++i) {
        req.add_user_ids(ids[i]);
      }
      ASSIGN_OR_RETURN(mv1::GetUserAccessResponse resp,
                       deps_.membership->GetUserAccess(req));
      for (const mv1::UserAccess& ua : resp.users()) {
        Access& a = access[ua.user_id()];
        for (const auto& g : ua.groups()) a.groups.insert(g.group_id());
        for (const auto& p : ua.app_privileges()) {
          a.apps[p.app_id()] = p.privilege();
        }
      }
    }
  }

  phase("existing");
  // 2. Plan each row.
  const std::string username_column =
      job.header.has_username ? "username" : "Email address";
  for (size_t i = 0; i < rows.size(); ++i) {
    RowIntent& row = rows[i];
    Plan& plan = job.plans[i];
    if (!row.errors.empty()) continue;
    auto found = existing.find(absl::AsciiStrToLower(row.username));
    const ExistingUser* cur =
        found == existing.end() ? nullptr : &found->second;
    if (cur == nullptr) {
      if (row.del) {
        plan.action = Action::kUnchanged;  // nothing to archive
        continue;
      }
      if (row.first_name.empty() && row.last_name.empty()) {
        AddError(row, job.header.has_first_name ? "first_name" : "",
                 "first_name or last_name is required to create a user");
      }
      if (!row.email.empty()) {
        if (std::string why = DomainPolicy(job.workspace, row.email);
            !why.empty()) {
          AddError(row, job.header.has_email ? "email" : username_column, why);
        }
      }
      if (!row.errors.empty()) continue;
      plan.action = Action::kCreate;
      ExistingUser& u = plan.next;
      u.id = NewUuid(*deps_.random);
      u.username = row.username;
      u.email = row.email;
      u.first_name = row.first_name;
      u.last_name = row.last_name;
      u.kind = row.kind.value_or(v1::GUEST);
      u.status = v1::INVITED;
      u.metadata = row.metadata;
      u.version = 1;
      u.create_time = now;
      plan.profile_changed = true;
      plan.add_groups = row.group_ids;
      for (const auto& [slug, privilege] : row.apps) {
        if (privilege == Grant::PRIVILEGE_UNSPECIFIED) continue;
        Grant& g = plan.set_apps.emplace_back();
        g.set_app_id(app_ids[slug]);
        g.set_privilege(privilege);
      }
      continue;
    }
    plan.read_version = cur->version;
    if (row.del) {
      if (cur->status == v1::ARCHIVED) {
        plan.action = Action::kUnchanged;
      } else if (cur->id == job.caller.user_id()) {
        AddError(row, "delete", "you cannot archive yourself");
      } else {
        plan.action = Action::kDelete;
        plan.next = *cur;
        plan.next.status = v1::ARCHIVED;
        plan.next.version = cur->version + 1;
        plan.profile_changed = true;
      }
      continue;
    }
    if (cur->status == v1::ARCHIVED) {
      AddError(row, username_column,
               absl::StrCat("user \"", cur->username,
                            "\" is archived; archived users cannot be "
                            "changed by an import"));
      continue;
    }
    ExistingUser next = *cur;
    if (job.header.has_first_name) next.first_name = row.first_name;
    if (job.header.has_last_name) next.last_name = row.last_name;
    if (job.header.has_email && !row.email.empty()) next.email = row.email;
    if (row.kind.has_value()) next.kind = *row.kind;
    if (job.header.has_metadata) next.metadata = row.metadata;
    if (next.kind != cur->kind && cur->id == job.caller.user_id()) {
      AddError(row, "role", "you cannot change your own role");
    }
    if (next.first_name.empty() && next.last_name.empty() &&
        !(cur->first_name.empty() && cur->last_name.empty())) {
      AddError(row, "first_name",
               "first_name or last_name is required (at least one of them)");
    }
    if (next.email != cur->email && !next.email.empty()) {
      if (std::string why = DomainPolicy(job.workspace, next.email);
          !why.empty()) {
        AddError(row, "email", why);
      }
    }
    if (!row.errors.empty()) continue;
    plan.profile_changed = next.first_name != cur->first_name ||
                           next.last_name != cur->last_name ||
                           next.email != cur->email || next.kind != cur->kind ||
                           next.metadata != cur->metadata;
    const Access& have = access[cur->id];
    if (job.header.has_groups) {
      for (const std::string& g : row.group_ids) {
        if (!have.groups.contains(g)) plan.add_groups.push_back(g);
      }
      absl::flat_hash_set<std::string> want(row.group_ids.begin(),
                                            row.group_ids.end());
      for (const std::string& g : have.groups) {
        if (!want.contains(g)) plan.remove_groups.push_back(g);
      }
      std::sort(plan.remove_groups.begin(), plan.remove_groups.end());
    }
    for (const auto& [slug, privilege] : row.apps) {
      const std::string& app_id = app_ids[slug];
      auto it = have.apps.find(app_id);
      const Privilege current =
          it == have.apps.end() ? Grant::PRIVILEGE_UNSPECIFIED : it->second;
      if (current == privilege) continue;
      if (privilege == Grant::PRIVILEGE_UNSPECIFIED) {
        plan.remove_apps.push_back(app_id);
      } else {
        Grant& g = plan.set_apps.emplace_back();
        g.set_app_id(app_id);
        g.set_privilege(privilege);
      }
    }
    const bool grants_changed =
        !plan.add_groups.empty() || !plan.remove_groups.empty() ||
        !plan.set_apps.empty() || !plan.remove_apps.empty();
    if (plan.profile_changed) next.version = cur->version + 1;
    plan.next = std::move(next);
    plan.action = plan.profile_changed || grants_changed ? Action::kUpdate
                                                         : Action::kUnchanged;
  }

  // The lookups are done with: free them before the batches and the writes.
  decltype(existing)().swap(existing);
  decltype(access)().swap(access);
  phase("plan");
  // 3. Membership's verdict (licences, groups) on the changing rows.
  std::vector<size_t> changing;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Action a = job.plans[i].action;
    if (rows[i].errors.empty() &&
        (a == Action::kCreate || a == Action::kUpdate ||
         a == Action::kDelete)) {
      changing.push_back(i);
    }
  }
  auto grants_request = [&](size_t start, bool dry_run) {
    mv1::ApplyGrantsRequest req;
    req.set_workspace_id(ws);
    req.set_dry_run(dry_run);
    req.set_best_effort(dry_run || job.report.mode() == v1::BEST_EFFORT);
    for (size_t k = start;
         k < std::min(changing.size(), start + config_.grants_batch); ++k) {
      const Plan& plan = job.plans[changing[k]];
      mv1::UserGrants* g = req.add_users();
      *g->mutable_user() = ToMembership(plan.next, ws);
      for (const auto& id : plan.add_groups) g->add_group_ids(id);
      for (const auto& id : plan.remove_groups) g->add_remove_group_ids(id);
      for (const auto& p : plan.set_apps) *g->add_app_privileges() = p;
      for (const auto& id : plan.remove_apps) g->add_remove_app_ids(id);
    }
    return req;
  };
  auto record_failures = [&](size_t start, const mv1::ApplyGrantsResponse& r) {
    int failures = 0;
    for (int k = 0; k < r.results_size(); ++k) {
      if (start + k >= changing.size()) break;  // a peer answering too much
      const mv1::UserGrantResult& result = r.results(k);
      if (result.ok()) continue;
      ++failures;
      RowIntent& row = rows[changing[start + k]];
      AddError(row, "",
               result.error_message().empty()
                   ? absl::StrCat("membership refused this user (code ",
                                  result.error_code(), ")")
                   : result.error_message());
    }
    return failures;
  };
  for (size_t start = 0; start < changing.size();
       start += config_.grants_batch) {
    ASSIGN_OR_RETURN(
        mv1::ApplyGrantsResponse resp,
        deps_.membership->ApplyGrants(grants_request(start, true)));
    record_failures(start, resp);
    const size_t last =
        changing[std::min(changing.size(), start + config_.grants_batch) - 1];
    deps_.store->UpdateProgress(job.id, static_cast<int>(last + 1))
        .IgnoreError();  // progress is best effort
  }

  phase("check");
  auto count_errors = [&] {
    return std::count_if(rows.begin(), rows.end(),
                         [](const RowIntent& r) { return !r.errors.empty(); });
  };
  const bool all_or_nothing = job.report.mode() != v1::BEST_EFFORT;
  if (job.options.dry_run()) {
    job.report.set_state(all_or_nothing && count_errors() > 0
                             ? ImportReport::FAILED
                             : ImportReport::SUCCEEDED);
    return absl::OkStatus();
  }
  if (all_or_nothing && count_errors() > 0) {
    job.report.set_state(ImportReport::FAILED);
    return absl::OkStatus();
  }

  // 4. Apply. Intent rows naming the users about to be created in
  // membership are committed first; then one identity transaction locks
  // them, applies the grants batch by batch, writes users, invitations,
  // the invitation emails (outbox) and the final report, deletes the
  // intents and commits. If the process dies anywhere in between, the
  // transaction rolls back, the intents unlock and identity's relay removes
  // from membership the users identity does not have: no half-made guest.
  changing.erase(
      std::remove_if(changing.begin(), changing.end(),
                     [&](size_t i) { return !rows[i].errors.empty(); }),
      changing.end());
  std::vector<std::string> create_ids;
  for (size_t i : changing) {
    if (job.plans[i].action == Action::kCreate) {
      create_ids.push_back(job.plans[i].next.id);
    }
  }
  ASSIGN_OR_RETURN(std::vector<int64_t> intents,
                   deps_.store->AddIntents(*job.lease, ws, create_ids,
                                           config_.grants_batch));
  std::vector<std::string>().swap(create_ids);
  std::string inviter =
      deps_.store->UserDisplayName(job.caller.user_id()).value_or("");
  if (inviter.empty()) inviter = job.workspace.display_name;

  std::vector<std::string> created_ids;  // in membership, for compensation
  // Undoes membership's part of a rolled-back import at once (the relay
  // would too, from the intents): removes only the users identity does not
  // have, in case the outcome of the commit was lost with the connection.
  auto compensate = [&]() {
    absl::Status undone = deps_.store->DropMissingFromMembership(
        ws, created_ids, config_.grants_batch,
        [&](const mv1::DeleteUsersRequest& req) {
          return deps_.membership->DeleteUsers(req);
        });
    if (undone.ok()) undone = deps_.store->DropIntents(intents);
    if (!undone.ok()) {
      LogWarning(absl::StrCat("import ", job.id,
                              ": membership not cleaned up yet (identity's "
                              "relay will, from the intent rows): ",
                              undone.ToString()));
    }
  };
  WriteContext context;
  context.workspace_id = ws;
  context.inviter_id = job.caller.user_id();
  context.now = now;
  context.invitation_expire_time = now + job.workspace.invitation_ttl;
  const bool send = !job.options.has_send_emails() || job.options.send_emails();
  bool refused = false;  // membership refused a row in ALL_OR_NOTHING
  absl::Status committed = deps_.store->Commit(
      *job.lease, intents, context, [&](ImportTx& tx) -> absl::Status {
        for (size_t start = 0; start < changing.size();
             start += config_.grants_batch) {
          ASSIGN_OR_RETURN(
              mv1::ApplyGrantsResponse resp,
              deps_.membership->ApplyGrants(grants_request(start, false)));
          const int failures = record_failures(start, resp);
          // Created users count as in membership from here on, even when
          // the batch is refused: compensation is a no-op for unknown ids.
          for (size_t k = start;
               k < std::min(changing.size(), start + config_.grants_batch);
               ++k) {
            const Plan& plan = job.plans[changing[k]];
            if (plan.action == Action::kCreate) {
              created_ids.push_back(plan.next.id);
            }
          }
          if (all_or_nothing && (failures > 0 || !resp.applied())) {
            refused = true;
            return absl::AbortedError("membership refused rows");
          }
        }
        phase("grants");
        RETURN_IF_ERROR(WriteRows(job, tx, context, inviter, send));
        job.report.set_state(ImportReport::SUCCEEDED);
        BuildReport(job);
        return tx.FinishJob(StoredJob(job));
      });
  if (!committed.ok()) {
    compensate();
    if (refused) {
      job.report.set_state(ImportReport::FAILED);
      return absl::OkStatus();
    }
    return committed;
  }
  job.committed = true;
  phase("write");
  return absl::OkStatus();
}

absl::Status ImportService::WriteRows(Job& job, ImportTx& tx,
                                      const WriteContext& context,
                                      const std::string& inviter,
                                      bool send_emails) {
  std::vector<RowIntent>& rows = job.rows;
  std::string base = config_.public_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  // Same format and keys as InviteUser's emails (api/invitations.cc).
  const std::string expire = absl::FormatTime(
      absl::RFC3339_sec, context.invitation_expire_time, absl::UTCTimeZone());
  // Creates go in chunks: users + invitations, then their emails as outbox
  // rows of up to email_batch messages, so memory holds one chunk.
  constexpr size_t kChunk = 5000;
  std::vector<NewUser> creates;
  std::vector<std::string> tokens;
  std::vector<ExistingUser> updates;
  std::vector<ExistingUser> archives;
  auto flush_creates = [&]() -> absl::Status {
    if (creates.empty()) return absl::OkStatus();
    RETURN_IF_ERROR(tx.InsertUsers(creates));
    if (send_emails) {
      std::vector<std::string> payloads;
      nv1::BatchSendEmailRequest batch;
      auto seal = [&] {
        if (batch.messages_size() == 0) return;
        payloads.push_back(batch.SerializeAsString());
        batch.clear_messages();
      };
      for (size_t k = 0; k < creates.size(); ++k) {
        const NewUser& n = creates[k];
        if (n.user.email.empty()) continue;
        nv1::SendEmailRequest* m = batch.add_messages();
        m->set_workspace_id(context.workspace_id);
        m->set_template_("invitation");
        m->set_category("invitation");
        m->set_to(n.user.email);
        std::string to_name(absl::StripAsciiWhitespace(
            absl::StrCat(n.user.first_name, " ", n.user.last_name)));
        m->set_to_name(to_name.empty() ? n.user.username : to_name);
        m->set_recipient_user_id(n.user.id);
        // Notification deduplicates on it: a relay retry sends once.
        m->set_idempotency_key(
            absl::StrCat("invitation:", n.invitation_id, ":1"));
        auto& vars = *m->mutable_variables();
        vars["workspace_name"] = job.workspace.display_name;
        vars["inviter_name"] = inviter;
        vars["invitation_url"] =
            absl::StrCat(base, "/invite#token=", tokens[k]);
        vars["first_name"] = n.user.first_name;
        vars["expire_time"] = expire;
        if (batch.messages_size() >= config_.email_batch) seal();
      }
      seal();
      RETURN_IF_ERROR(tx.Enqueue(kTopicBatchSendEmail, payloads));
    }
    creates.clear();
    tokens.clear();
    return absl::OkStatus();
  };
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].errors.empty()) continue;
    Plan& plan = job.plans[i];
    switch (plan.action) {
      case Action::kCreate: {
        NewUser n;
        n.user = plan.next;
        n.invitation_id = NewUuid(*deps_.random);
        std::string token = NewToken(*deps_.random, 32, "gli_");
        n.token_hash = Sha256Hex(token);
        tokens.push_back(std::move(token));
        creates.push_back(std::move(n));
        if (creates.size() >= kChunk) RETURN_IF_ERROR(flush_creates());
        break;
      }
      case Action::kUpdate:
        if (plan.profile_changed) {
          ExistingUser u = plan.next;
          u.version = plan.read_version;
          updates.push_back(std::move(u));
        }
        break;
      case Action::kDelete: {
        ExistingUser u = plan.next;
        u.version = plan.read_version;
        archives.push_back(std::move(u));
        break;
      }
      default:
        break;
    }
  }
  RETURN_IF_ERROR(flush_creates());
  RETURN_IF_ERROR(tx.UpdateUsers(updates));
  return tx.ArchiveUsers(archives);
}

ImportJob ImportService::StoredJob(const Job& job) {
  ImportJob stored;
  stored.id = job.id;
  stored.workspace_id = job.workspace.id;
  stored.report = job.report;
  stored.error_csv = job.error_csv;
  if (!job.status.ok()) stored.failure_reason = job.status.ToString();
  return stored;
}

void ImportService::BuildReport(Job& job) {
  ImportReport& report = job.report;
  report.clear_rows();  // built again if a commit failed after building
  int created = 0, updated = 0, deleted = 0, unchanged = 0, failed = 0;
  int listed_ok = 0;
  std::string errors_csv;
  if (!job.header_fields.empty()) {
    std::vector<std::string> header = job.header_fields;
    header.push_back("error");
    errors_csv = EncodeCsvLine(header);
  }
  for (size_t i = 0; i < job.rows.size(); ++i) {
    const RowIntent& row = job.rows[i];
    ImportRow::Action action = ImportRow::ERROR;
    if (row.errors.empty() && i < job.plans.size()) {
      switch (job.plans[i].action) {
        case Action::kCreate:
          action = ImportRow::CREATE;
          ++created;
          break;
        case Action::kUpdate:
          action = ImportRow::UPDATE;
          ++updated;
          break;
        case Action::kDelete:
          action = ImportRow::DELETE;
          ++deleted;
          break;
        case Action::kUnchanged:
          action = ImportRow::UNCHANGED;
          ++unchanged;
          break;
        case Action::kError:
          // A system failure stopped the job before this row was planned.
          action = ImportRow::ACTION_UNSPECIFIED;
          break;
      }
    } else if (!row.errors.empty()) {
      ++failed;
    }
    if (action == ImportRow::ERROR || listed_ok < config_.report_rows) {
      if (action != ImportRow::ERROR) ++listed_ok;
      ImportRow* r = report.add_rows();
      r->set_line(row.line);
      r->set_action(action);
      r->set_username(row.username);
      for (const ImportRowError& e : row.errors) *r->add_errors() = e;
    }
    if (!row.errors.empty()) {
      std::vector<std::string> reasons;
      for (const ImportRowError& e : row.errors) {
        reasons.push_back(e.column().empty()
                              ? e.reason()
                              : absl::StrCat(e.column(), ": ", e.reason()));
      }
      std::string error_cell = EncodeCsvLine({absl::StrJoin(reasons, "; ")});
      error_cell.resize(error_cell.size() - 2);
      absl::StrAppend(&errors_csv, job.raw[i], ",", error_cell, "\r\n");
    }
  }
  report.set_created(created);
  report.set_updated(updated);
  report.set_deleted(deleted);
  report.set_unchanged(unchanged);
  report.set_failed(failed);
  report.set_rows_processed(report.rows_total());
  if (report.state() == ImportReport::RUNNING) {
    report.set_state(ImportReport::FAILED);
  }
  *report.mutable_finish_time() = ToProto(deps_.clock->Now());
  job.error_csv = std::move(errors_csv);
}

void ImportService::Finish(Job& job) {
  BuildReport(job);
  if (absl::Status s = deps_.store->FinishJob(StoredJob(job)); !s.ok()) {
    LogWarning(absl::StrCat("import ", job.id,
                            ": could not record the report: ", s.ToString()));
  }
}

absl::StatusOr<ImportJob> ImportService::LoadJob(const std::string& id) {
  ASSIGN_OR_RETURN(ImportJob job, deps_.store->GetJob(id));
  if (job.report.state() != ImportReport::RUNNING) return job;
  // RUNNING with its lock free: the process running it died.
  ASSIGN_OR_RETURN(bool reaped, deps_.store->ReapIfOrphaned(id));
  if (!reaped) return job;
  LogWarning(absl::StrCat("import ", id,
                          " was RUNNING in a process that died; marked "
                          "FAILED"));
  return deps_.store->GetJob(id);
}

absl::StatusOr<v1::ImportReport> ImportService::EarlierReport(
    const std::string& workspace_id, const std::string& key) {
  ASSIGN_OR_RETURN(std::optional<std::string> earlier,
                   deps_.store->FindJobByKey(workspace_id, key));
  if (!earlier.has_value()) {
    return absl::AbortedError(
        "a concurrent import with the same idempotency key failed to start; "
        "upload the file again");
  }
  ASSIGN_OR_RETURN(ImportJob first, LoadJob(*earlier));
  return first.report;
}

absl::StatusOr<v1::ImportReport> ImportService::GetImport(
    const Principal& caller, const v1::GetImportRequest& req) {
  absl::StatusOr<ImportJob> job = LoadJob(req.import_id());
  if (!job.ok() ||
      !CheckAdmin(caller, job->workspace_id, "invitations.write").ok()) {
    if (job.ok() || absl::IsNotFound(job.status()) ||
        absl::IsInvalidArgument(job.status())) {
      return absl::NotFoundError(
          absl::StrCat("import ", req.import_id(), " does not exist"));
    }
    return job.status();
  }
  return job->report;
}

absl::StatusOr<google::api::HttpBody> ImportService::GetImportErrors(
    const Principal& caller, const v1::GetImportErrorsRequest& req) {
  absl::StatusOr<ImportJob> job = LoadJob(req.import_id());
  if (!job.ok() ||
      !CheckAdmin(caller, job->workspace_id, "invitations.write").ok()) {
    if (job.ok() || absl::IsNotFound(job.status()) ||
        absl::IsInvalidArgument(job.status())) {
      return absl::NotFoundError(
          absl::StrCat("import ", req.import_id(), " does not exist"));
    }
    return job.status();
  }
  if (job->report.state() == ImportReport::RUNNING) {
    return absl::FailedPreconditionError(absl::StrCat(
        "import ", req.import_id(),
        " is still running; ask again when GetImport shows it finished"));
  }
  return Csv(job->error_csv);
}

absl::StatusOr<google::api::HttpBody> ImportService::GetImportTemplate(
    const Principal& caller, const v1::GetImportTemplateRequest& req) {
  RETURN_IF_ERROR(CheckAdmin(caller, req.workspace_id(), "invitations.write"));
  ASSIGN_OR_RETURN(WorkspaceInfo ws,
                   deps_.store->LoadWorkspace(req.workspace_id()));
  ASSIGN_OR_RETURN(std::vector<mv1::App> apps,
                   deps_.membership->ListApps(ws.id));
  std::vector<std::string> slugs;
  for (const mv1::App& a : apps) slugs.push_back(a.slug());
  return Csv(EncodeCsvLine(TemplateHeader(slugs)));
}

absl::StatusOr<google::api::HttpBody> ImportService::ExportUsers(
    const Principal& caller, const v1::ExportUsersRequest& req) {
  RETURN_IF_ERROR(CheckAdmin(caller, req.workspace_id(), "users.read"));
  ASSIGN_OR_RETURN(WorkspaceInfo ws,
                   deps_.store->LoadWorkspace(req.workspace_id()));
  ASSIGN_OR_RETURN(
      std::vector<ExistingUser> users,
      deps_.store->ListUsers(ws.id, req.kind(), req.status(), req.query()));
  ASSIGN_OR_RETURN(std::vector<mv1::App> apps,
                   deps_.membership->ListApps(ws.id));
  // Group names per user (sorted), app privileges per user.
  absl::flat_hash_map<std::string, std::vector<std::string>> groups;
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, Privilege>>
      privileges;
  size_t max_groups = 3;
  for (size_t start = 0; start < users.size(); start += config_.grants_batch) {
    mv1::GetUserAccessRequest access_req;
    access_req.set_workspace_id(ws.id);
    for (size_t i = start;
         i < std::min(users.size(), start + config_.grants_batch); ++i) {
      access_req.add_user_ids(users[i].id);
    }
    ASSIGN_OR_RETURN(mv1::GetUserAccessResponse resp,
                     deps_.membership->GetUserAccess(access_req));
    for (const mv1::UserAccess& ua : resp.users()) {
      std::vector<std::string>& names = groups[ua.user_id()];
      for (const auto& g : ua.groups()) names.push_back(g.group_name());
      std::sort(names.begin(), names.end());
      max_groups = std::max(max_groups, names.size());
      for (const auto& p : ua.app_privileges()) {
        privileges[ua.user_id()][p.app_id()] = p.privilege();
      }
    }
  }
  std::vector<std::string> slugs;
  for (const mv1::App& a : apps) slugs.push_back(a.slug());
  std::string csv =
      EncodeCsvLine(TemplateHeader(slugs, static_cast<int>(max_groups)));
  for (const ExistingUser& u : users) {
    std::vector<std::string> line = {u.username, u.first_name, u.last_name,
                                     KindCell(u.kind)};
    const std::vector<std::string>& names = groups[u.id];
    for (size_t g = 0; g < max_groups; ++g) {
      line.push_back(g < names.size() ? names[g] : "");
    }
    const auto& privs = privileges[u.id];
    for (const mv1::App& a : apps) {
      auto it = privs.find(a.id());
      line.push_back(it == privs.end() ? "" : PrivilegeCell(it->second));
    }
    line.push_back(u.status == v1::ARCHIVED ? "true" : "");
    line.push_back(u.metadata);
    absl::StrAppend(&csv, EncodeCsvLine(line));
  }
  return Csv(std::move(csv));
}

}  // namespace guestlist::identity::import
