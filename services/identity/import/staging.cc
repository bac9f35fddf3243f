#include "services/identity/import/staging.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "services/identity/import/csv_reader.h"

namespace guestlist::identity::import {
namespace {

using ::guestlist::identity::v1::ImportRow;

// Rows per INSERT of the upload: bounds the buffer (memory) while keeping
// round trips per file in the hundreds, not per row.
constexpr size_t kRowsPerInsert = 5000;
// Separates the elements of list cells (group ids, app privileges). Ids
// and slugs never contain it.
constexpr char kSep[] = "\x1f";

std::string EncodeErrors(const std::vector<ImportRowError>& errors) {
  if (errors.empty()) return "";
  nlohmann::json j = nlohmann::json::array();
  for (const ImportRowError& e : errors) {
    j.push_back({e.column(), e.reason()});
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<ImportRowError> DecodeErrors(const std::string& text) {
  std::vector<ImportRowError> out;
  if (text.empty()) return out;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (!e.is_array() || e.size() != 2) continue;
    ImportRowError& error = out.emplace_back();
    error.set_column(e[0].get<std::string>());
    error.set_reason(e[1].get<std::string>());
  }
  return out;
}

constexpr char kColumns[] =
    "line, username, email, first_name, last_name, kind, groups, apps, del, "
    "metadata, errors, dup_of, action, new_user_id";

StagedRow ReadRow(const pg::Result& r, int i) {
  StagedRow row;
  RowIntent& in = row.intent;
  in.line = static_cast<int>(r.GetInt(i, 0));
  in.username = r.Get(i, 1);
  in.email = r.Get(i, 2);
  in.first_name = r.Get(i, 3);
  in.last_name = r.Get(i, 4);
  int kind = 0;
  if (absl::SimpleAtoi(r.Get(i, 5), &kind)) {
    in.kind = static_cast<Kind>(kind);
  }
  const std::string groups = r.Get(i, 6);
  if (!groups.empty()) in.group_ids = absl::StrSplit(groups, kSep);
  const std::string apps = r.Get(i, 7);
  if (!apps.empty()) {
    for (absl::string_view pair : absl::StrSplit(apps, kSep)) {
      const size_t eq = pair.rfind('=');
      int privilege = 0;
      if (eq == absl::string_view::npos ||
          !absl::SimpleAtoi(pair.substr(eq + 1), &privilege)) {
        continue;
      }
      in.apps[std::string(pair.substr(0, eq))] =
          static_cast<Privilege>(privilege);
    }
  }
  in.del = r.GetBool(i, 8);
  in.metadata = r.Get(i, 9);
  in.errors = DecodeErrors(r.Get(i, 10));
  if (!r.IsNull(i, 11)) {
    ImportRowError& dup = in.errors.emplace_back();
    dup.set_reason(
        DuplicateReason(in.username, static_cast<int>(r.GetInt(i, 11))));
  }
  row.action = static_cast<ImportRow::Action>(r.GetInt(i, 12));
  row.new_user_id = r.Get(i, 13);
  return row;
}

}  // namespace

const char Staging::kErrorLinesSql[] =
    "coalesce((SELECT string_agg(raw || ',' || error_cell || E'\\r\\n', '' "
    "ORDER BY line) FROM pg_temp.import_rows WHERE error_cell <> ''), '')";

std::string ErrorCell(const std::vector<ImportRowError>& errors) {
  std::vector<std::string> reasons;
  for (const ImportRowError& e : errors) {
    reasons.push_back(e.column().empty()
                          ? e.reason()
                          : absl::StrCat(e.column(), ": ", e.reason()));
  }
  std::string cell = EncodeCsvLine({absl::StrJoin(reasons, "; ")});
  cell.resize(cell.size() - 2);  // CRLF
  return cell;
}

absl::Status Staging::Create() {
  RETURN_IF_ERROR(Drop());
  // dup_of: the first line of a repeated username. action: an
  // ImportRow::Action once planned (0 before).
  return conn_->ExecScript(
      "CREATE TEMP TABLE import_rows (line int NOT NULL, username text NOT "
      "NULL, username_lc text NOT NULL, email text NOT NULL, first_name text "
      "NOT NULL, last_name text NOT NULL, kind text NOT NULL, groups text NOT "
      "NULL, apps text NOT NULL, del boolean NOT NULL, metadata text NOT "
      "NULL, raw text NOT NULL, errors text NOT NULL, error_cell text NOT "
      "NULL DEFAULT '', dup_of int, action smallint NOT NULL DEFAULT 0, "
      "new_user_id text NOT NULL DEFAULT '') "
      // Room on each page for the one update of each row (its outcome),
      // so it stays a heap-only tuple and the line index does not grow.
      "WITH (fillfactor = 60)");
}

absl::Status Staging::Drop() {
  return conn_->ExecScript("DROP TABLE IF EXISTS pg_temp.import_rows");
}

absl::Status Staging::Add(const RowIntent& row, std::string raw) {
  Buffer& b = buffer_;
  b.line.push_back(absl::StrCat(row.line));
  b.username.push_back(row.username);
  b.username_lc.push_back(absl::AsciiStrToLower(row.username));
  b.email.push_back(row.email);
  b.first.push_back(row.first_name);
  b.last.push_back(row.last_name);
  b.kind.push_back(row.kind.has_value() ? absl::StrCat(*row.kind) : "");
  b.groups.push_back(absl::StrJoin(row.group_ids, kSep));
  std::string apps;
  for (const auto& [slug, privilege] : row.apps) {
    if (!apps.empty()) apps += kSep;
    absl::StrAppend(&apps, slug, "=", static_cast<int>(privilege));
  }
  b.apps.push_back(std::move(apps));
  b.del.push_back(row.del ? "t" : "f");
  b.metadata.push_back(row.metadata);
  b.raw.push_back(std::move(raw));
  b.errors.push_back(EncodeErrors(row.errors));
  b.cell.push_back(row.errors.empty() ? "" : ErrorCell(row.errors));
  ++rows_;
  if (b.line.size() >= kRowsPerInsert) return FlushBuffer();
  return absl::OkStatus();
}

absl::Status Staging::FlushBuffer() {
  Buffer& b = buffer_;
  if (b.line.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(
      conn_
          ->Exec(
              "INSERT INTO pg_temp.import_rows (line, username, username_lc, "
              "email, first_name, last_name, kind, groups, apps, del, "
              "metadata, raw, errors, error_cell) SELECT * FROM unnest("
              "$1::int[], $2::text[], $3::text[], $4::text[], $5::text[], "
              "$6::text[], $7::text[], $8::text[], $9::text[], "
              "$10::boolean[], $11::text[], $12::text[], $13::text[], "
              "$14::text[])",
              {pg::TextArray(b.line), pg::TextArray(b.username),
               pg::TextArray(b.username_lc), pg::TextArray(b.email),
               pg::TextArray(b.first), pg::TextArray(b.last),
               pg::TextArray(b.kind), pg::TextArray(b.groups),
               pg::TextArray(b.apps), pg::TextArray(b.del),
               pg::TextArray(b.metadata), pg::TextArray(b.raw),
               pg::TextArray(b.errors), pg::TextArray(b.cell)})
          .status());
  buffer_ = Buffer();
  return absl::OkStatus();
}

absl::Status Staging::Finish() {
  RETURN_IF_ERROR(FlushBuffer());
  RETURN_IF_ERROR(conn_->ExecScript(
      "CREATE UNIQUE INDEX ON pg_temp.import_rows (line); "
      "UPDATE pg_temp.import_rows r SET dup_of = d.first FROM (SELECT line, "
      "min(line) OVER (PARTITION BY username_lc) AS first FROM "
      "pg_temp.import_rows WHERE username_lc <> '') d WHERE r.line = d.line "
      "AND d.first <> d.line; ANALYZE pg_temp.import_rows"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StagedRow>> Staging::Read(int after, int limit,
                                                     bool changing_only) {
  ASSIGN_OR_RETURN(
      pg::Result r,
      conn_->Exec(absl::StrCat("SELECT ", kColumns,
                               " FROM pg_temp.import_rows WHERE line > $1 ",
                               changing_only
                                   ? "AND action IN (1, 2, 3) AND errors = '' "
                                     "AND dup_of IS NULL "
                                   : "",
                               "ORDER BY line LIMIT $2"),
                  {pg::Int(after), pg::Int(limit)}));
  std::vector<StagedRow> rows;
  rows.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) rows.push_back(ReadRow(r, i));
  return rows;
}

absl::StatusOr<std::vector<std::pair<int, std::string>>> Staging::NewUserIds(
    int after, int limit) {
  ASSIGN_OR_RETURN(
      pg::Result r,
      conn_->Exec("SELECT line, new_user_id FROM pg_temp.import_rows WHERE "
                  "line > $1 AND action = 1 AND errors = '' AND dup_of IS "
                  "NULL ORDER BY line LIMIT $2",
                  {pg::Int(after), pg::Int(limit)}));
  std::vector<std::pair<int, std::string>> ids;
  ids.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) {
    ids.emplace_back(static_cast<int>(r.GetInt(i, 0)), r.Get(i, 1));
  }
  return ids;
}

absl::Status Staging::Save(const std::vector<RowOutcome>& outcomes) {
  if (outcomes.empty()) return absl::OkStatus();
  std::vector<std::string> line, action, id, errors, cell;
  int first = outcomes.front().line, last = first;
  for (const RowOutcome& o : outcomes) {
    first = std::min(first, o.line);
    last = std::max(last, o.line);
    line.push_back(absl::StrCat(o.line));
    action.push_back(absl::StrCat(static_cast<int>(o.action)));
    id.push_back(o.new_user_id);
    errors.push_back(EncodeErrors(o.errors));
    cell.push_back(o.errors.empty() ? "" : ErrorCell(o.errors));
  }
  // The errors written are the row's complete list (validation, duplicate
  // and later ones), so dup_of is folded into them. The line range keeps
  // the join to the batch's rows: with a few thousand outcomes the planner
  // would otherwise hash-join them against a scan of every staged row.
  return conn_
      ->Exec(
          "UPDATE pg_temp.import_rows r SET action = o.action, new_user_id = "
          "o.id, errors = o.errors, error_cell = o.cell, dup_of = NULL FROM "
          "unnest($1::int[], $2::smallint[], $3::text[], $4::text[], "
          "$5::text[]) AS o(line, action, id, errors, cell) WHERE r.line = "
          "o.line AND r.line BETWEEN $6 AND $7",
          {pg::TextArray(line), pg::TextArray(action), pg::TextArray(id),
           pg::TextArray(errors), pg::TextArray(cell), pg::Int(first),
           pg::Int(last)})
      .status();
}

absl::Status Staging::Analyze() {
  return conn_->ExecScript("ANALYZE pg_temp.import_rows");
}

absl::StatusOr<int64_t> Staging::CountErrors() {
  ASSIGN_OR_RETURN(pg::Result r,
                   conn_->Exec("SELECT count(*) FROM pg_temp.import_rows "
                               "WHERE errors <> '' OR dup_of IS NOT NULL"));
  return r.GetInt(0, 0);
}

absl::StatusOr<StagedCounts> Staging::Count() {
  ASSIGN_OR_RETURN(
      pg::Result r,
      conn_->Exec("SELECT CASE WHEN errors <> '' OR dup_of IS NOT NULL THEN "
                  "5 ELSE action END AS a, count(*) FROM pg_temp.import_rows "
                  "GROUP BY 1"));
  StagedCounts c;
  for (int i = 0; i < r.rows(); ++i) {
    const int n = static_cast<int>(r.GetInt(i, 1));
    switch (r.GetInt(i, 0)) {
      case ImportRow::CREATE:
        c.created = n;
        break;
      case ImportRow::UPDATE:
        c.updated = n;
        break;
      case ImportRow::DELETE:
        c.deleted = n;
        break;
      case ImportRow::UNCHANGED:
        c.unchanged = n;
        break;
      case ImportRow::ERROR:
        c.failed = n;
        break;
      default:
        break;  // not planned: a system failure stopped the job first
    }
  }
  return c;
}

absl::StatusOr<std::vector<v1::ImportRow>> Staging::ReportRows(int others) {
  ASSIGN_OR_RETURN(
      pg::Result r,
      conn_->Exec(
          absl::StrCat(
              "(SELECT ", kColumns,
              " FROM pg_temp.import_rows WHERE errors <> '' OR dup_of IS NOT "
              "NULL) UNION ALL (SELECT ",
              kColumns,
              " FROM pg_temp.import_rows WHERE errors = '' AND dup_of IS "
              "NULL ORDER BY line LIMIT $1) ORDER BY line"),
          {pg::Int(others)}));
  std::vector<v1::ImportRow> rows;
  rows.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) {
    StagedRow staged = ReadRow(r, i);
    v1::ImportRow& row = rows.emplace_back();
    row.set_line(staged.intent.line);
    row.set_username(staged.intent.username);
    if (!staged.intent.errors.empty()) {
      row.set_action(ImportRow::ERROR);
      for (const ImportRowError& e : staged.intent.errors) {
        *row.add_errors() = e;
      }
    } else {
      row.set_action(staged.action);
    }
  }
  return rows;
}

}  // namespace guestlist::identity::import
