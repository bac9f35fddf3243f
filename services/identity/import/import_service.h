// Bulk guests: the CSV template, import (create / update / archive users,
// their groups and app privileges), dry runs, the error CSV, and export in
// the template format. An import is a job (identity.imports) that runs on
// its own thread once the file is uploaded, so it finishes even when the
// uploading client goes away; its progress is readable with GetImport.
//
// Order of effects (the InviteUser contract, in batches): rows are parsed
// and validated, diffed against identity's users and membership's access,
// checked by membership.ApplyGrants(dry_run) (licences, groups). Then
// intent rows for the users to create are committed to identity's outbox,
// and one identity transaction locks them, applies the grants with
// ApplyGrants in batches of 5000 (each batch that changes existing users
// first commits and locks a restore intent: how to put them back), writes
// users, invitations, the invitation emails (outbox rows of BatchSendEmail
// batches of 500, sent by the relay after commit) and the job's report, and
// deletes the intents. A failure or crash rolls it back; the compensation,
// the next reader of the job or the relay then removes from membership the
// users identity does not have and restores the ones it changed. A job
// holds an advisory lock while it runs, so a RUNNING job whose lock is free
// is failed when it is next read (or at start-up).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/auth.h"
#include "common/clock.h"
#include "common/random.h"
#include "google/api/httpbody.pb.h"
#include "guestlist/identity/v1/identity.pb.h"
#include "services/identity/import/peers.h"
#include "services/identity/import/rows.h"
#include "services/identity/import/staging.h"
#include "services/identity/import/store.h"

namespace guestlist::identity::import {

struct ImportConfig {
  // Beyond these, the import fails before anything is written.
  int64_t max_rows = 1000000;
  int64_t max_bytes = 512LL * 1024 * 1024;
  // Base of invitation links: <public_url>/invite#token=<token>.
  std::string public_url = "http://127.0.0.1:8080";
  // Report rows kept beyond the rows with errors.
  int report_rows = 1000;
  // Rows per ApplyGrants and per identity write: membership's limit. Fewer,
  // larger calls: each costs a fixed ~20 ms (docs/BENCHMARKS.md).
  int grants_batch = 5000;
  int email_batch = 500;  // notification's limit per BatchSendEmail
  CsvLimits csv;
};

struct ImportDeps {
  ImportStore* store = nullptr;
  MembershipPeer* membership = nullptr;
  // Unused: invitation emails go through identity's outbox (kept so the
  // wiring in main.cc stays as it is).
  MailPeer* mail = nullptr;
  const Clock* clock = nullptr;
  RandomSource* random = nullptr;
};

class ImportService final {
 public:
  // Reads the next message of the upload; false at the end of the stream.
  using NextMessage = std::function<bool(v1::ImportUsersRequest*)>;
  // Whether the client went away (the job then continues on its own).
  using Cancelled = std::function<bool()>;

  ImportService(ImportConfig config, ImportDeps deps);
  // Waits for running jobs.
  ~ImportService();
  ImportService(const ImportService&) = delete;
  ImportService& operator=(const ImportService&) = delete;

  // Blocks until the start-up reaper and jobs whose clients left have
  // finished.
  void AwaitBackgroundWork();

  // Runs an import and returns its report (row errors are in the report).
  // Errors: INVALID_ARGUMENT (first message not `options`, repeated
  // options, bad header, file larger than max_bytes), RESOURCE_EXHAUSTED
  // (more than max_rows rows), NOT_FOUND (workspace), PERMISSION_DENIED,
  // CANCELLED (client gone; the job goes on), UNAVAILABLE (a peer failed;
  // the job is FAILED and nothing is left applied in identity).
  absl::StatusOr<v1::ImportReport> Import(const Principal& caller,
                                          const NextMessage& next,
                                          const Cancelled& cancelled);
  // Errors: NOT_FOUND (unknown, or of another workspace).
  absl::StatusOr<v1::ImportReport> GetImport(const Principal& caller,
                                             const v1::GetImportRequest& req);
  // Errors: NOT_FOUND, FAILED_PRECONDITION (still RUNNING).
  absl::StatusOr<google::api::HttpBody> GetImportErrors(
      const Principal& caller, const v1::GetImportErrorsRequest& req);
  // Errors: NOT_FOUND (workspace), PERMISSION_DENIED.
  absl::StatusOr<google::api::HttpBody> GetImportTemplate(
      const Principal& caller, const v1::GetImportTemplateRequest& req);
  // Errors: NOT_FOUND (workspace), PERMISSION_DENIED.
  absl::StatusOr<google::api::HttpBody> ExportUsers(
      const Principal& caller, const v1::ExportUsersRequest& req);

  struct Job;

 private:
  struct Plan;

  void RunJob(Job& job);
  absl::Status Execute(Job& job);
  // Plans each row of a batch against identity's users and membership's
  // access (errors go into the rows).
  absl::Status PlanBatch(Job& job, absl::Time now,
                         std::vector<StagedRow>& batch,
                         std::vector<Plan>& plans);
  // A batch whose membership.ApplyGrants call runs on its own thread while
  // the job's thread does identity's part (reads, plans, writes) of the
  // batches around it. At most one is in flight per job.
  struct GrantsCall;
  // Starts membership.ApplyGrants for the changing rows of `batch` (moved
  // into the call, with `plans`).
  std::unique_ptr<GrantsCall> StartGrants(Job& job,
                                          std::vector<StagedRow> batch,
                                          std::vector<Plan> plans,
                                          bool dry_run);
  // Waits for the call; refusals become row errors of call.batch. Returns
  // how many rows membership refused; `applied` whether it committed.
  absl::StatusOr<int> FinishGrants(GrantsCall& call, bool* applied);
  // What puts back in membership the existing users `batch` changes: their
  // groups and privileges before it (RestoreUsers adds their records).
  static mv1::ApplyGrantsRequest Inverse(const std::string& workspace_id,
                                         const std::vector<StagedRow>& batch,
                                         const std::vector<Plan>& plans);
  static std::vector<RowOutcome> Outcomes(const std::vector<StagedRow>& batch,
                                          const std::vector<Plan>& plans);
  // Identity writes of planned batches, gathered across batches and
  // written (with the invitation emails) inside the job's commit.
  struct PendingWrites {
    std::vector<NewUser> creates;
    std::vector<std::string> tokens;  // invitation token per create
    std::vector<ExistingUser> updates;
    std::vector<ExistingUser> archives;
    size_t size() const {
      return creates.size() + updates.size() + archives.size();
    }
  };
  void CollectWrites(const std::vector<StagedRow>& batch,
                     const std::vector<Plan>& plans, PendingWrites& pending);
  absl::Status FlushWrites(Job& job, ImportTx& tx, const WriteContext& context,
                           const std::string& inviter, bool send_emails,
                           PendingWrites& pending);
  // Counts and report rows from the staged rows; the error CSV's header.
  absl::Status BuildReport(Job& job);
  static ImportJob StoredJob(const Job& job);
  // BuildReport + the job row (for jobs that did not commit).
  void Finish(Job& job);
  // The job, failed first if it is RUNNING in a process that died.
  absl::StatusOr<ImportJob> LoadJob(const std::string& id);
  // The report of the job that holds (workspace, key).
  absl::StatusOr<v1::ImportReport> EarlierReport(
      const std::string& workspace_id, const std::string& key);

  const ImportConfig config_;
  const ImportDeps deps_;
  absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
};

// Undoing an import in membership through `membership`.
ImportStore::Undo UndoThrough(MembershipPeer* membership);

// identity's relay handler of kTopicRestoreUsers rows: those of an import
// whose process died, when nobody read the job within the rows' minute.
std::function<absl::Status(const std::string&)> RestoreUsersHandler(
    ImportStore* store, MembershipPeer* membership);

// Whether `caller` may act as an admin of `workspace_id` (API keys need
// `scope`, when one is given).
absl::Status CheckAdmin(const Principal& caller,
                        const std::string& workspace_id,
                        const std::string& scope);

}  // namespace guestlist::identity::import
