// The rows of one import, staged in a temporary table of the job's own
// connection (pg_temp.import_rows) instead of in memory, so a 1,000,000-row
// file costs identity O(batch) memory: the upload appends validated rows in
// multi-row INSERTs, duplicates across the whole file are found in SQL, the
// executor reads them back in line order a batch at a time and writes each
// row's outcome (action, errors) back; the report's counts, its rows and
// the error CSV are computed from the table at the end.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/pg.h"
#include "guestlist/identity/v1/identity.pb.h"
#include "services/identity/import/rows.h"

namespace guestlist::identity::import {

// A staged row as the executor reads it back.
struct StagedRow {
  RowIntent intent;  // with its validation (and duplicate) errors
  // What the planning pass decided (ACTION_UNSPECIFIED before), and the id
  // it chose for a user to create.
  v1::ImportRow::Action action = v1::ImportRow::ACTION_UNSPECIFIED;
  std::string new_user_id;
};

// What the executor decided for a row.
struct RowOutcome {
  int line = 0;
  v1::ImportRow::Action action = v1::ImportRow::ACTION_UNSPECIFIED;
  std::string new_user_id;
  std::vector<ImportRowError> errors;
};

struct StagedCounts {
  int created = 0;
  int updated = 0;
  int deleted = 0;
  int unchanged = 0;
  int failed = 0;
};

class Staging final {
 public:
  // `conn` must outlive this and stay with one job (the table is local to
  // the session).
  explicit Staging(pg::Connection* conn) : conn_(conn) {}

  // Creates the (empty) table.
  absl::Status Create();
  absl::Status Drop();

  // Buffers a validated row and its re-encoded CSV line (for the error
  // CSV); writes every few thousand rows.
  absl::Status Add(const RowIntent& row, std::string raw);
  // Writes what is buffered, then flags every row whose username repeats
  // an earlier line's (DuplicateReason) and indexes the table.
  absl::Status Finish();
  int64_t rows() const { return rows_; }

  // Up to `limit` rows after line `after`, in line order. `changing_only`:
  // rows planned CREATE / UPDATE / DELETE without errors.
  absl::StatusOr<std::vector<StagedRow>> Read(int after, int limit,
                                              bool changing_only);
  // Ids chosen for the users to create, after line `after` (line, id).
  absl::StatusOr<std::vector<std::pair<int, std::string>>> NewUserIds(
      int after, int limit);
  absl::Status Save(const std::vector<RowOutcome>& outcomes);
  // Fresh statistics once every row has an outcome: the planner otherwise
  // still believes no row is planned and scans the table for each batch.
  absl::Status Analyze();

  absl::StatusOr<int64_t> CountErrors();
  absl::StatusOr<StagedCounts> Count();
  // Every row with errors, plus the first `others` rows without.
  absl::StatusOr<std::vector<v1::ImportRow>> ReportRows(int others);

  // SQL expression of the failed rows as CSV lines (each the original
  // fields plus the error cell), in line order; "" when none.
  static const char kErrorLinesSql[];

 private:
  absl::Status FlushBuffer();

  pg::Connection* conn_;
  int64_t rows_ = 0;
  struct Buffer {
    std::vector<std::string> line, username, username_lc, email, first, last,
        kind, groups, apps, del, metadata, raw, errors, cell;
  } buffer_;
};

// The error cell of a row ("column: reason; ..."), CSV-encoded.
std::string ErrorCell(const std::vector<ImportRowError>& errors);

}  // namespace guestlist::identity::import
