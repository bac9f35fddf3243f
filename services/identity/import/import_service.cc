#include "services/identity/import/import_service.h"

#include <algorithm>
#include <future>
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
#include "services/identity/import/staging.h"

namespace guestlist::identity::import {
namespace {

using Grant = ::guestlist::membership::v1::AppPrivilegeGrant;
using ::guestlist::identity::v1::ImportReport;
using ::guestlist::identity::v1::ImportRow;

constexpr char kCsvContentType[] = "text/csv; charset=utf-8";
// New users' ids read back from staging at a time (intents, compensation):
// bounds memory independently of the grants batch.
constexpr int kIdsPerRead = 50000;
// Users per membership.GetUserAccess call: a member can be in hundreds of
// groups, and the answer must stay well under gRPC's 16 MiB limit.
constexpr int kAccessPerCall = 1000;

// Calls `fn` with membership's access of each of `user_ids`, asking
// kAccessPerCall users at a time.
absl::Status ForEachUserAccess(
    MembershipPeer* membership, const std::string& workspace_id,
    const std::vector<std::string>& user_ids,
    const std::function<void(const mv1::UserAccess&)>& fn) {
  for (size_t start = 0; start < user_ids.size(); start += kAccessPerCall) {
    mv1::GetUserAccessRequest req;
    req.set_workspace_id(workspace_id);
    for (size_t i = start;
         i < std::min(user_ids.size(), start + size_t{kAccessPerCall}); ++i) {
      req.add_user_ids(user_ids[i]);
    }
    ASSIGN_OR_RETURN(mv1::GetUserAccessResponse resp,
                     membership->GetUserAccess(req));
    for (const mv1::UserAccess& ua : resp.users()) fn(ua);
  }
  return absl::OkStatus();
}

// Splits the time since the last lap among named totals (the phase line
// of the log): lap(read) adds the time since the previous lap to `read`.
class Laps {
 public:
  void operator()(absl::Duration& total) {
    const absl::Time now = absl::Now();
    total += now - last_;
    last_ = now;
  }

 private:
  absl::Time last_ = absl::Now();
};

enum class Action { kCreate, kUpdate, kDelete, kUnchanged, kError };

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

// Whether the action changes anything (users or grants).
bool Changes(Action a) {
  return a == Action::kCreate || a == Action::kUpdate || a == Action::kDelete;
}

ImportRow::Action ToRowAction(Action a) {
  switch (a) {
    case Action::kCreate:
      return ImportRow::CREATE;
    case Action::kUpdate:
      return ImportRow::UPDATE;
    case Action::kDelete:
      return ImportRow::DELETE;
    case Action::kUnchanged:
      return ImportRow::UNCHANGED;
    case Action::kError:
      break;
  }
  return ImportRow::ACTION_UNSPECIFIED;
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

// What the import does for one valid row.
struct ImportService::Plan {
  Action action = Action::kError;
  ExistingUser next;  // the user after the import
  int64_t read_version = 0;
  bool profile_changed = false;
  std::vector<std::string> add_groups;
  std::vector<std::string> remove_groups;
  std::vector<Grant> set_apps;
  std::vector<std::string> remove_apps;
  // The privileges before, of the apps set or removed (UNSPECIFIED: none).
  std::vector<Grant> prev_apps;
};

// Everything one import needs, shared by the uploading call and the job's
// thread (whichever ends last frees it). The rows themselves are staged in
// PostgreSQL (staging.h), never all in memory.
struct ImportService::Job {
  std::string id;
  Principal caller;
  v1::ImportOptions options;
  WorkspaceInfo workspace;
  absl::Time create_time;
  std::vector<std::string> header_fields;
  HeaderMap header;
  std::vector<mv1::App> apps;
  absl::flat_hash_map<std::string, std::string> app_ids;  // slug -> id
  ImportReport report;
  std::string error_csv;  // its header line; the rows come from staging
  absl::Status status;    // a system failure (peer / database), not row errors
  // The job's connection (staged rows, liveness lock, commit) from the
  // upload to the end.
  std::unique_ptr<JobLease> lease;
  std::unique_ptr<Staging> staging;
  bool committed = false;  // the report was written by the commit
  std::string timings;     // per phase, for the log
  // Time in the users + invitations INSERTs and the email outbox INSERTs.
  absl::Duration insert_time, enqueue_time;
  absl::Notification done;
};

ImportService::ImportService(ImportConfig config, ImportDeps deps)
    : config_(std::move(config)), deps_(deps) {
  // Jobs of a process that died mid-import stay RUNNING forever otherwise.
  // On a thread: reconciling them calls membership, which may be down.
  if (deps_.store != nullptr) {
    {
      absl::MutexLock lock(&mu_);
      ++running_;
    }
    std::thread([this] {
      absl::Status s =
          deps_.store->ReapOrphanedJobs(UndoThrough(deps_.membership));
      if (!s.ok()) LogWarning(absl::StrCat("imports: ", s.ToString()));
      absl::MutexLock lock(&mu_);
      --running_;
    }).detach();
  }
}

ImportService::~ImportService() { AwaitBackgroundWork(); }

void ImportService::AwaitBackgroundWork() {
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
  for (const mv1::App& a : job->apps) {
    slugs.push_back(a.slug());
    job->app_ids[a.slug()] = a.id();
  }

  // Upload: parse and validate as chunks arrive and stage the rows in
  // PostgreSQL, so memory holds a chunk, not the file, and the limits bite
  // before anything is applied.
  const absl::Time upload_start = absl::Now();
  ASSIGN_OR_RETURN(job->lease, deps_.store->OpenLease());
  job->staging = std::make_unique<Staging>(&*job->lease->conn());
  RETURN_IF_ERROR(job->staging->Create());
  Staging& staging = *job->staging;
  bool have_header = false;
  {
    CsvReader reader(config_.csv);
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
        if (staging.rows() >= config_.max_rows) {
          return absl::ResourceExhaustedError(
              absl::StrCat("the file has more than ", config_.max_rows,
                           " rows; split it into several imports"));
        }
        RowIntent row = ValidateRow(job->header, record, context);
        std::string raw = EncodeCsvLine(record.fields);
        raw.resize(raw.size() - 2);  // CRLF
        RETURN_IF_ERROR(staging.Add(row, std::move(raw)));
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
  // Duplicates across the whole file, in SQL.
  RETURN_IF_ERROR(staging.Finish());

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
  report.set_rows_total(static_cast<int32_t>(staging.rows()));
  *report.mutable_create_time() = ToProto(job->create_time);
  ImportJob stored;
  stored.id = job->id;
  stored.workspace_id = job->workspace.id;
  stored.idempotency_key = options.idempotency_key();
  stored.creator =
      caller.user_id().empty() ? caller.api_key_id() : caller.user_id();
  stored.report = report;
  absl::Status started = deps_.store->StartJob(*job->lease, stored);
  if (absl::IsAlreadyExists(started)) {
    // A concurrent upload with the same key won the race.
    return EarlierReport(job->workspace.id, options.idempotency_key());
  }
  RETURN_IF_ERROR(started);

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
  const int64_t rows = job.staging->rows();
  // Only now: a job seen unlocked while RUNNING is judged dead.
  job.staging.reset();
  job.lease.reset();
  LogInfo(absl::StrCat(
      "import ", job.id, " finished: rows=", rows, " ", job.timings,
      " report=", absl::FormatDuration(absl::Now() - finish_start)));
  job.done.Notify();
}

absl::Status ImportService::PlanBatch(Job& job, absl::Time now,
                                      std::vector<StagedRow>& batch,
                                      std::vector<Plan>& plans) {
  const std::string& ws = job.workspace.id;
  plans.assign(batch.size(), Plan());
  std::vector<std::string> lower;
  lower.reserve(batch.size());
  for (const StagedRow& row : batch) {
    // A create planned before keeps its plan (and id): looking it up again
    // would only find what the unique index refuses at the insert anyway.
    if (row.intent.errors.empty() && row.new_user_id.empty()) {
      lower.push_back(absl::AsciiStrToLower(row.intent.username));
    }
  }
  absl::flat_hash_map<std::string, ExistingUser> existing;
  if (!lower.empty()) {
    ASSIGN_OR_RETURN(existing, deps_.store->FindUsersByUsername(ws, lower));
  }
  absl::flat_hash_map<std::string, Access> access;
  if (!existing.empty() &&
      (job.header.has_groups || !job.header.app_slugs.empty())) {
    std::vector<std::string> ids;
    ids.reserve(existing.size());
    for (const auto& [key, user] : existing) ids.push_back(user.id);
    RETURN_IF_ERROR(ForEachUserAccess(
        deps_.membership, ws, ids, [&](const mv1::UserAccess& ua) {
          Access& a = access[ua.user_id()];
          for (const auto& g : ua.groups()) a.groups.insert(g.group_id());
          for (const auto& p : ua.app_privileges()) {
            a.apps[p.app_id()] = p.privilege();
          }
        }));
  }
  const std::string username_column =
      job.header.has_username ? "username" : "Email address";
  for (size_t i = 0; i < batch.size(); ++i) {
    RowIntent& row = batch[i].intent;
    Plan& plan = plans[i];
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
      // The id chosen when the row was first planned: intent rows name it.
      u.id = batch[i].new_user_id.empty() ? NewUuid(*deps_.random)
                                          : batch[i].new_user_id;
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
        g.set_app_id(job.app_ids[slug]);
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
      const std::string& app_id = job.app_ids[slug];
      auto it = have.apps.find(app_id);
      const Privilege current =
          it == have.apps.end() ? Grant::PRIVILEGE_UNSPECIFIED : it->second;
      if (current == privilege) continue;
      Grant& prev = plan.prev_apps.emplace_back();
      prev.set_app_id(app_id);
      prev.set_privilege(current);
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
  return absl::OkStatus();
}

struct ImportService::GrantsCall {
  std::vector<StagedRow> batch;
  std::vector<Plan> plans;
  // Indexes into `batch` of the rows sent, in the request's order.
  std::vector<size_t> changing;
  // Not valid when no row changes (nothing to send).
  std::future<absl::StatusOr<mv1::ApplyGrantsResponse>> response;
};

std::unique_ptr<ImportService::GrantsCall> ImportService::StartGrants(
    Job& job, std::vector<StagedRow> batch, std::vector<Plan> plans,
    bool dry_run) {
  auto call = std::make_unique<GrantsCall>();
  call->batch = std::move(batch);
  call->plans = std::move(plans);
  mv1::ApplyGrantsRequest req;
  req.set_workspace_id(job.workspace.id);
  req.set_dry_run(dry_run);
  req.set_best_effort(dry_run || job.report.mode() == v1::BEST_EFFORT);
  for (size_t i = 0; i < call->batch.size(); ++i) {
    if (!call->batch[i].intent.errors.empty() ||
        !Changes(call->plans[i].action)) {
      continue;
    }
    call->changing.push_back(i);
    const Plan& plan = call->plans[i];
    mv1::UserGrants* g = req.add_users();
    *g->mutable_user() = ToMembershipRecord(plan.next, job.workspace.id);
    for (const auto& id : plan.add_groups) g->add_group_ids(id);
    for (const auto& id : plan.remove_groups) g->add_remove_group_ids(id);
    for (const auto& p : plan.set_apps) *g->add_app_privileges() = p;
    for (const auto& id : plan.remove_apps) g->add_remove_app_ids(id);
  }
  if (!call->changing.empty()) {
    call->response =
        std::async(std::launch::async,
                   [membership = deps_.membership, req = std::move(req)] {
                     return membership->ApplyGrants(req);
                   });
  }
  return call;
}

mv1::ApplyGrantsRequest ImportService::Inverse(
    const std::string& workspace_id, const std::vector<StagedRow>& batch,
    const std::vector<Plan>& plans) {
  mv1::ApplyGrantsRequest inverse;
  inverse.set_workspace_id(workspace_id);
  for (size_t i = 0; i < batch.size(); ++i) {
    const Plan& plan = plans[i];
    if (!batch[i].intent.errors.empty() ||
        (plan.action != Action::kUpdate && plan.action != Action::kDelete)) {
      continue;
    }
    mv1::UserGrants* g = inverse.add_users();
    g->mutable_user()->set_id(plan.next.id);
    for (const auto& id : plan.remove_groups) g->add_group_ids(id);
    for (const auto& id : plan.add_groups) g->add_remove_group_ids(id);
    for (const Grant& prev : plan.prev_apps) {
      if (prev.privilege() == Grant::PRIVILEGE_UNSPECIFIED) {
        g->add_remove_app_ids(prev.app_id());
      } else {
        *g->add_app_privileges() = prev;
      }
    }
  }
  return inverse;
}

absl::StatusOr<int> ImportService::FinishGrants(GrantsCall& call,
                                                bool* applied) {
  if (applied != nullptr) *applied = true;
  if (!call.response.valid()) return 0;
  ASSIGN_OR_RETURN(mv1::ApplyGrantsResponse resp, call.response.get());
  if (applied != nullptr) *applied = resp.applied();
  int failures = 0;
  for (int k = 0; k < resp.results_size(); ++k) {
    if (static_cast<size_t>(k) >= call.changing.size()) break;  // too many
    const mv1::UserGrantResult& result = resp.results(k);
    if (result.ok()) continue;
    ++failures;
    AddError(call.batch[call.changing[k]].intent, "",
             result.error_message().empty()
                 ? absl::StrCat("membership refused this user (code ",
                                result.error_code(), ")")
                 : result.error_message());
  }
  return failures;
}

std::vector<RowOutcome> ImportService::Outcomes(
    const std::vector<StagedRow>& batch, const std::vector<Plan>& plans) {
  std::vector<RowOutcome> out;
  out.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    RowOutcome& o = out.emplace_back();
    o.line = batch[i].intent.line;
    o.errors = batch[i].intent.errors;
    o.action =
        o.errors.empty() ? ToRowAction(plans[i].action) : ImportRow::ERROR;
    if (o.action == ImportRow::CREATE) o.new_user_id = plans[i].next.id;
  }
  return out;
}

absl::Status ImportService::Execute(Job& job) {
  const std::string& ws = job.workspace.id;
  const absl::Time now = deps_.clock->Now();
  Staging& staging = *job.staging;
  absl::Time phase_start = absl::Now();
  auto phase = [&](const char* name) {
    const absl::Time t = absl::Now();
    absl::StrAppend(&job.timings, " ", name, "=",
                    absl::FormatDuration(t - phase_start));
    phase_start = t;
  };
  const int batch_size = config_.grants_batch;

  // 1. Plan a batch at a time: existing users and their access, each row's
  // action, then membership's verdict (licences, groups) on the changing
  // rows; the outcome goes back to the staged rows.
  // Membership checks batch k while this thread reads and plans batch k+1
  // (the call's destructor waits for it on every way out).
  int after = 0;
  int processed = 0;
  std::unique_ptr<GrantsCall> checking;
  // Where the check's time goes, for the log: `dry` is the time spent
  // waiting for membership, not hidden behind reading and planning.
  absl::Duration read, plan, dry, save;
  Laps lap;
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<StagedRow> batch,
                     staging.Read(after, batch_size, false));
    lap(read);
    std::vector<Plan> plans;
    if (!batch.empty()) {
      after = batch.back().intent.line;
      RETURN_IF_ERROR(PlanBatch(job, now, batch, plans));
      lap(plan);
    }
    if (checking != nullptr) {
      RETURN_IF_ERROR(FinishGrants(*checking, nullptr).status());
      lap(dry);
      RETURN_IF_ERROR(staging.Save(Outcomes(checking->batch, checking->plans)));
      processed += static_cast<int>(checking->batch.size());
      deps_.store->UpdateProgress(job.id, processed)
          .IgnoreError();  // progress is best effort
      checking.reset();
      lap(save);
    }
    if (batch.empty()) break;
    checking = StartGrants(job, std::move(batch), std::move(plans), true);
    lap(plan);
  }
  RETURN_IF_ERROR(staging.Analyze());
  phase("check");
  absl::StrAppend(&job.timings, " (read=", absl::FormatDuration(read),
                  " plan=", absl::FormatDuration(plan),
                  " dry_run=", absl::FormatDuration(dry),
                  " save=", absl::FormatDuration(save), ")");
  ASSIGN_OR_RETURN(const int64_t errors, staging.CountErrors());
  const bool all_or_nothing = job.report.mode() != v1::BEST_EFFORT;
  if (job.options.dry_run()) {
    job.report.set_state(all_or_nothing && errors > 0
                             ? ImportReport::FAILED
                             : ImportReport::SUCCEEDED);
    return absl::OkStatus();
  }
  if (all_or_nothing && errors > 0) {
    job.report.set_state(ImportReport::FAILED);
    return absl::OkStatus();
  }

  // 2. Apply. Intent rows naming the users about to be created in
  // membership are committed first; then one identity transaction locks
  // them, applies the grants batch by batch (a batch changing existing
  // users first commits and locks a restore row: their access before),
  // writes users, invitations, the invitation emails (outbox) and the final
  // report, deletes the intents and commits. If the process dies anywhere
  // in between, the transaction rolls back, the rows unlock and identity's
  // relay (or the next reader of the job) removes from membership the users
  // identity does not have and restores the ones it changed: no half-made
  // guest, no half-changed one.
  std::vector<int64_t> intents;
  for (int last = 0;;) {
    ASSIGN_OR_RETURN(auto ids, staging.NewUserIds(last, kIdsPerRead));
    if (ids.empty()) break;
    last = ids.back().first;
    std::vector<std::string> only;
    only.reserve(ids.size());
    for (auto& [line, id] : ids) only.push_back(std::move(id));
    ASSIGN_OR_RETURN(std::vector<int64_t> more,
                     deps_.store->AddIntents(*job.lease, ws, only, batch_size));
    intents.insert(intents.end(), more.begin(), more.end());
  }
  std::string inviter =
      deps_.store->UserDisplayName(job.caller.user_id()).value_or("");
  if (inviter.empty()) inviter = job.workspace.display_name;

  // Undoes membership's part of a rolled-back import at once (the relay
  // would too, from the same rows): removes the created users identity
  // does not have and restores the changed ones. Rows the commit deleted
  // (its outcome lost with the connection) are not undone.
  auto compensate = [&]() {
    absl::Status undone =
        deps_.store->UndoJob(job.id, ws, UndoThrough(deps_.membership));
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
        int last = 0;
        // Rows per write: a grants batch, so that identity writes batch k
        // while membership applies batch k+1 (two processes, two database
        // backends: on two cores the shorter of the two hides).
        const size_t write_rows = static_cast<size_t>(batch_size);
        PendingWrites pending;
        // Where the time goes, for the log (docs/BENCHMARKS.md): `grants`
        // is the time spent waiting for membership, not hidden behind the
        // writes.
        absl::Duration read, plan, grants, write;
        Laps lap;
        // Reads and plans the next batch (empty at the end).
        auto next = [&](std::vector<StagedRow>& batch,
                        std::vector<Plan>& plans) -> absl::Status {
          ASSIGN_OR_RETURN(batch, staging.Read(last, batch_size, true));
          lap(read);
          if (batch.empty()) return absl::OkStatus();
          last = batch.back().intent.line;
          RETURN_IF_ERROR(PlanBatch(job, now, batch, plans));
          lap(plan);
          for (size_t i = 0; i < batch.size(); ++i) {
            if (!batch[i].intent.errors.empty() ||
                ToRowAction(plans[i].action) != batch[i].action) {
              return absl::AbortedError(
                  "users changed while the import ran; upload the file "
                  "again");
            }
          }
          return absl::OkStatus();
        };
        // The batch membership is applying; its destructor waits for the
        // call, so no grant is in flight once this callback returns (the
        // compensation after a rollback sees them all).
        std::unique_ptr<GrantsCall> applying;
        for (;;) {
          std::vector<StagedRow> batch;
          std::vector<Plan> plans;
          RETURN_IF_ERROR(next(batch, plans));
          if (applying != nullptr) {
            bool applied = true;
            ASSIGN_OR_RETURN(int failures, FinishGrants(*applying, &applied));
            lap(grants);
            if (all_or_nothing && (failures > 0 || !applied)) {
              refused = true;
              return absl::AbortedError("membership refused rows");
            }
            if (failures > 0) {
              // BEST_EFFORT: those rows fail, the others go on.
              std::vector<RowOutcome> failed =
                  Outcomes(applying->batch, applying->plans);
              failed.erase(std::remove_if(failed.begin(), failed.end(),
                                          [](const RowOutcome& o) {
                                            return o.errors.empty();
                                          }),
                           failed.end());
              RETURN_IF_ERROR(staging.Save(failed));
            }
            CollectWrites(applying->batch, applying->plans, pending);
            applying.reset();
            lap(write);
          }
          if (batch.empty()) break;
          // Before membership changes existing users: how to put them back
          // if this transaction does not commit.
          if (mv1::ApplyGrantsRequest inverse = Inverse(ws, batch, plans);
              inverse.users_size() > 0) {
            ASSIGN_OR_RETURN(int64_t restore,
                             deps_.store->AddRestoreIntent(job.id, inverse));
            RETURN_IF_ERROR(tx.LockIntent(restore));
          }
          applying =
              StartGrants(job, std::move(batch), std::move(plans), false);
          if (pending.size() >= write_rows) {
            RETURN_IF_ERROR(
                FlushWrites(job, tx, context, inviter, send, pending));
          }
          lap(write);
        }
        RETURN_IF_ERROR(FlushWrites(job, tx, context, inviter, send, pending));
        lap(write);
        absl::StrAppend(
            &job.timings, " (read=", absl::FormatDuration(read),
            " plan=", absl::FormatDuration(plan),
            " grants=", absl::FormatDuration(grants),
            " write=", absl::FormatDuration(write),
            " of which insert=", absl::FormatDuration(job.insert_time),
            " enqueue=", absl::FormatDuration(job.enqueue_time), ")");
        phase("apply");
        job.report.set_state(ImportReport::SUCCEEDED);
        RETURN_IF_ERROR(BuildReport(job));
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
  phase("commit");
  return absl::OkStatus();
}

void ImportService::CollectWrites(const std::vector<StagedRow>& batch,
                                  const std::vector<Plan>& plans,
                                  PendingWrites& pending) {
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].intent.errors.empty()) continue;
    const Plan& plan = plans[i];
    switch (plan.action) {
      case Action::kCreate: {
        NewUser& n = pending.creates.emplace_back();
        n.user = plan.next;
        n.invitation_id = NewUuid(*deps_.random);
        std::string token = NewToken(*deps_.random, 32, "gli_");
        n.token_hash = Sha256Hex(token);
        pending.tokens.push_back(std::move(token));
        break;
      }
      case Action::kUpdate:
        if (plan.profile_changed) {
          ExistingUser& u = pending.updates.emplace_back(plan.next);
          u.version = plan.read_version;
        }
        break;
      case Action::kDelete: {
        ExistingUser& u = pending.archives.emplace_back(plan.next);
        u.version = plan.read_version;
        break;
      }
      default:
        break;
    }
  }
}

absl::Status ImportService::FlushWrites(Job& job, ImportTx& tx,
                                        const WriteContext& context,
                                        const std::string& inviter,
                                        bool send_emails,
                                        PendingWrites& pending) {
  absl::Time t0 = absl::Now();
  RETURN_IF_ERROR(tx.InsertUsers(pending.creates));
  job.insert_time += absl::Now() - t0;
  if (send_emails && !pending.creates.empty()) {
    std::string base = config_.public_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    // Same format and keys as InviteUser's emails (api/invitations.cc).
    const std::string expire = absl::FormatTime(
        absl::RFC3339_sec, context.invitation_expire_time, absl::UTCTimeZone());
    // One outbox row per email_batch messages: the relay sends them after
    // commit, each message with its own idempotency key.
    std::vector<std::string> payloads;
    nv1::BatchSendEmailRequest mail;
    auto seal = [&] {
      if (mail.messages_size() == 0) return;
      payloads.push_back(mail.SerializeAsString());
      mail.clear_messages();
    };
    for (size_t k = 0; k < pending.creates.size(); ++k) {
      const NewUser& n = pending.creates[k];
      if (n.user.email.empty()) continue;
      nv1::SendEmailRequest* m = mail.add_messages();
      m->set_workspace_id(context.workspace_id);
      m->set_template_("invitation");
      m->set_category("invitation");
      m->set_to(n.user.email);
      std::string to_name(absl::StripAsciiWhitespace(
          absl::StrCat(n.user.first_name, " ", n.user.last_name)));
      m->set_to_name(to_name.empty() ? n.user.username : to_name);
      m->set_recipient_user_id(n.user.id);
      m->set_idempotency_key(
          absl::StrCat("invitation:", n.invitation_id, ":1"));
      auto& vars = *m->mutable_variables();
      vars["workspace_name"] = job.workspace.display_name;
      vars["inviter_name"] = inviter;
      vars["invitation_url"] =
          absl::StrCat(base, "/invite#token=", pending.tokens[k]);
      vars["first_name"] = n.user.first_name;
      vars["expire_time"] = expire;
      if (mail.messages_size() >= config_.email_batch) seal();
    }
    seal();
    t0 = absl::Now();
    RETURN_IF_ERROR(tx.Enqueue(kTopicBatchSendEmail, payloads));
    job.enqueue_time += absl::Now() - t0;
  }
  RETURN_IF_ERROR(tx.UpdateUsers(pending.updates));
  RETURN_IF_ERROR(tx.ArchiveUsers(pending.archives));
  pending = PendingWrites();
  return absl::OkStatus();
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

absl::Status ImportService::BuildReport(Job& job) {
  ImportReport& report = job.report;
  ASSIGN_OR_RETURN(StagedCounts counts, job.staging->Count());
  ASSIGN_OR_RETURN(std::vector<ImportRow> rows,
                   job.staging->ReportRows(config_.report_rows));
  report.clear_rows();
  for (ImportRow& row : rows) *report.add_rows() = std::move(row);
  report.set_created(counts.created);
  report.set_updated(counts.updated);
  report.set_deleted(counts.deleted);
  report.set_unchanged(counts.unchanged);
  report.set_failed(counts.failed);
  report.set_rows_processed(report.rows_total());
  if (report.state() == ImportReport::RUNNING) {
    report.set_state(ImportReport::FAILED);
  }
  *report.mutable_finish_time() = ToProto(deps_.clock->Now());
  // The failed rows are appended from the staged rows when stored.
  std::vector<std::string> header = job.header_fields;
  header.push_back("error");
  job.error_csv = EncodeCsvLine(header);
  return absl::OkStatus();
}

void ImportService::Finish(Job& job) {
  absl::Status s = BuildReport(job);
  if (s.ok()) s = deps_.store->FinishJob(*job.lease, StoredJob(job));
  if (!s.ok()) {
    LogWarning(absl::StrCat("import ", job.id,
                            ": could not record the report: ", s.ToString()));
  }
}

ImportStore::Undo UndoThrough(MembershipPeer* membership) {
  return {[membership](const mv1::DeleteUsersRequest& req) {
            return membership->DeleteUsers(req);
          },
          [membership](const mv1::ApplyGrantsRequest& req) {
            return membership->ApplyGrants(req);
          }};
}

std::function<absl::Status(const std::string&)> RestoreUsersHandler(
    ImportStore* store, MembershipPeer* membership) {
  return [store, membership](const std::string& payload) {
    mv1::ApplyGrantsRequest inverse;
    if (!inverse.ParseFromString(payload)) {
      LogError("dropping a restore row that does not parse",
               {{"topic", kTopicRestoreUsers}});
      return absl::OkStatus();
    }
    return store->RestoreUsers(std::move(inverse),
                               UndoThrough(membership).apply);
  };
}

absl::StatusOr<ImportJob> ImportService::LoadJob(const std::string& id) {
  ASSIGN_OR_RETURN(ImportJob job, deps_.store->GetJob(id));
  if (job.report.state() != ImportReport::RUNNING) return job;
  // RUNNING with its lock free: the process running it died.
  ASSIGN_OR_RETURN(bool reaped, deps_.store->ReapIfOrphaned(
                                    id, UndoThrough(deps_.membership)));
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
  std::vector<std::string> ids;
  ids.reserve(users.size());
  for (const ExistingUser& u : users) ids.push_back(u.id);
  RETURN_IF_ERROR(ForEachUserAccess(
      deps_.membership, ws.id, ids, [&](const mv1::UserAccess& ua) {
        std::vector<std::string>& names = groups[ua.user_id()];
        for (const auto& g : ua.groups()) names.push_back(g.group_name());
        std::sort(names.begin(), names.end());
        max_groups = std::max(max_groups, names.size());
        for (const auto& p : ua.app_privileges()) {
          privileges[ua.user_id()][p.app_id()] = p.privilege();
        }
      }));
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
