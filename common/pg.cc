#include "common/pg.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace guestlist::pg {

bool Result::IsNull(int row, int col) const {
  return PQgetisnull(res_.get(), row, col) != 0;
}

std::string Result::Get(int row, int col) const {
  return std::string(PQgetvalue(res_.get(), row, col),
                     PQgetlength(res_.get(), row, col));
}

std::optional<std::string> Result::GetOptional(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return Get(row, col);
}

int64_t Result::GetInt(int row, int col) const {
  int64_t v = 0;
  if (!absl::SimpleAtoi(PQgetvalue(res_.get(), row, col), &v)) return 0;
  return v;
}

bool Result::GetBool(int row, int col) const {
  const char* v = PQgetvalue(res_.get(), row, col);
  return v[0] == 't';
}

int64_t Result::AffectedRows() const {
  int64_t v = 0;
  if (!res_ || !absl::SimpleAtoi(PQcmdTuples(res_.get()), &v)) return 0;
  return v;
}

int Result::Column(const char* name) const {
  return PQfnumber(res_.get(), name);
}

absl::Status StatusFromResult(PGconn* conn, const PGresult* res) {
  const char* state_c =
      res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const std::string state = state_c ? state_c : "";
  std::string message =
      res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn);
  if (message.empty()) message = PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
    message.pop_back();
  if (PQstatus(conn) != CONNECTION_OK || state.rfind("08", 0) == 0 ||
      state.rfind("57P0", 0) == 0 || state.empty()) {
    return absl::UnavailableError(
        absl::StrCat("database unavailable, retry later (", message, ")"));
  }
  // The database's own text names tables and indexes and repeats the
  // offending value (of any size): it goes to the log, never to the caller.
  LogWarning("database statement failed",
             {{"sqlstate", state},
              {"error", message.size() > 300 ? message.substr(0, 300) + "..."
                                             : message}});
  if (state == "23505") {
    return absl::AlreadyExistsError("a record with this value already exists");
  }
  if (state == "23503") {
    return absl::FailedPreconditionError(
        "a record this refers to does not exist, or is still referred to");
  }
  // Data exceptions (22), check / not-null violations, and values over the
  // database's limits (54, e.g. a key too long for its index).
  if (state == "23514" || state == "23502" || state.rfind("22", 0) == 0 ||
      state.rfind("54", 0) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a value is malformed, out of range or too long (SQLSTATE ", state,
        "); check the request's fields"));
  }
  if (state == "40001" || state == "40P01" || state == "55P03") {
    return absl::AbortedError("concurrent update, retry the call");
  }
  if (state == "57014") {
    return absl::DeadlineExceededError(
        "the database statement was cancelled: the call's deadline passed");
  }
  if (state == "53300" || state == "53200") {
    return absl::ResourceExhaustedError(
        "the database is out of connections or memory, retry later");
  }
  return absl::InternalError(
      absl::StrCat("internal database error (SQLSTATE ", state, ")"));
}

Connection::~Connection() { PQfinish(conn_); }

absl::StatusOr<std::vector<const char*>> Connection::Values(
    const Params& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const Param& p : params) {
    // libpq takes C strings: a NUL would silently cut the value.
    if (p && p->find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          "a text value contains a NUL byte (U+0000); remove it");
    }
    values.push_back(p ? p->c_str() : nullptr);
  }
  return values;
}

absl::StatusOr<Result> Connection::Finish(PGresult* res) {
  Result result(res);
  const ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return result;
  return StatusFromResult(conn_, res);
}

absl::StatusOr<Result> Connection::Exec(const std::string& sql,
                                        const Params& params) {
  ASSIGN_OR_RETURN(std::vector<const char*> values, Values(params));
  return Finish(PQexecParams(conn_, sql.c_str(),
                             static_cast<int>(values.size()), nullptr,
                             values.data(), nullptr, nullptr, 0));
}

absl::StatusOr<Result> Connection::ExecPrepared(const std::string& sql,
                                                const Params& params) {
  ASSIGN_OR_RETURN(std::vector<const char*> values, Values(params));
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    const std::string name = NewPreparedName();
    RETURN_IF_ERROR(Finish(PQprepare(conn_, name.c_str(), sql.c_str(),
                                     static_cast<int>(values.size()), nullptr))
                        .status());
    it = prepared_.emplace(sql, name).first;
  }
  return Finish(PQexecPrepared(conn_, it->second.c_str(),
                               static_cast<int>(values.size()), values.data(),
                               nullptr, nullptr, 0));
}

absl::StatusOr<std::vector<Result>> Connection::ExecPipeline(
    const std::vector<Statement>& statements, bool commit, bool* committed) {
  *committed = false;
  // Values and names first: a bad value fails before anything is sent.
  // Statements not yet prepared on this connection are prepared in the
  // same pipeline.
  std::vector<std::vector<const char*>> values;
  std::vector<std::string> names;
  std::vector<bool> prepare;
  absl::flat_hash_map<std::string, std::string> fresh;  // sql -> name
  for (const Statement& st : statements) {
    ASSIGN_OR_RETURN(values.emplace_back(), Values(st.params));
    if (!st.prepared) {
      prepare.push_back(false);
      names.emplace_back();  // the unnamed statement
      continue;
    }
    auto known = prepared_.find(st.sql);
    auto here = fresh.find(st.sql);
    prepare.push_back(known == prepared_.end() && here == fresh.end());
    if (known != prepared_.end()) {
      names.push_back(known->second);
    } else if (here != fresh.end()) {
      names.push_back(here->second);
    } else {
      names.push_back(NewPreparedName(fresh.size()));
      fresh.emplace(st.sql, names.back());
    }
  }
  if (PQenterPipelineMode(conn_) != 1) {
    return absl::InternalError("could not enter libpq pipeline mode");
  }
  bool sent = true;
  for (size_t i = 0; sent && i < statements.size(); ++i) {
    const int n = static_cast<int>(values[i].size());
    if (!statements[i].prepared) {
      sent = PQsendQueryParams(conn_, statements[i].sql.c_str(), n, nullptr,
                               values[i].data(), nullptr, nullptr, 0) == 1;
      continue;
    }
    if (prepare[i]) {
      sent = PQsendPrepare(conn_, names[i].c_str(), statements[i].sql.c_str(),
                           n, nullptr) == 1;
    }
    sent =
        sent && PQsendQueryPrepared(conn_, names[i].c_str(), n,
                                    values[i].data(), nullptr, nullptr, 0) == 1;
  }
  if (sent && commit) {
    sent = PQsendQueryParams(conn_, "COMMIT", 0, nullptr, nullptr, nullptr,
                             nullptr, 0) == 1;
  }
  sent = sent && PQpipelineSync(conn_) == 1;
  // Each query's results end with a NULL; then the sync point. On a broken
  // connection PQgetResult keeps returning NULL: healthy() then drops the
  // connection (still in pipeline mode).
  auto next = [this, sent]() -> PGresult* {
    if (!sent) return nullptr;
    PGresult* first = PQgetResult(conn_);
    if (first == nullptr) return nullptr;
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
    return first;
  };
  std::vector<Result> results;
  absl::Status failed;
  for (size_t i = 0; i < statements.size(); ++i) {
    if (prepare[i]) {
      absl::StatusOr<Result> prepared = Finish(next());
      if (failed.ok() && !prepared.ok()) failed = prepared.status();
      if (prepared.ok()) prepared_.emplace(statements[i].sql, names[i]);
    }
    absl::StatusOr<Result> r = Finish(next());
    if (failed.ok() && !r.ok()) failed = r.status();
    if (r.ok()) results.push_back(*std::move(r));
  }
  absl::Status commit_status;
  if (commit) {
    PGresult* c = next();
    // After an error the COMMIT was skipped (PGRES_PIPELINE_ABORTED).
    if (failed.ok()) {
      *committed = true;
      commit_status = Finish(c).status();
    } else if (c != nullptr) {
      PQclear(c);
    }
  }
  PGresult* sync = next();
  const bool synced =
      sync != nullptr && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  if (sync != nullptr) PQclear(sync);
  if (synced) PQexitPipelineMode(conn_);
  if (!failed.ok()) return failed;
  if (!sent || !synced) {
    return absl::UnavailableError(
        "database unavailable, retry later (the connection broke)");
  }
  RETURN_IF_ERROR(commit_status);
  return results;
}

absl::Status Connection::ExecScript(const std::string& sql) {
  PGresult* res = PQexec(conn_, sql.c_str());
  Result result(res);
  const ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return absl::OkStatus();
  return StatusFromResult(conn_, res);
}

PooledConnection::~PooledConnection() {
  if (pool_ != nullptr && conn_ != nullptr) pool_->Release(std::move(conn_));
}

Pool::Pool(PoolOptions options) : options_(std::move(options)) {}

Pool::~Pool() {
  absl::MutexLock lock(&mu_);
  idle_.clear();
}

absl::StatusOr<std::unique_ptr<Connection>> Pool::Connect() {
  const std::string connect_timeout = absl::StrCat(
      std::max<int64_t>(1, absl::ToInt64Seconds(options_.connect_timeout)));
  std::string session_options =
      "-c TimeZone=UTC -c DateStyle=ISO -c client_min_messages=warning";
  if (options_.statement_timeout > absl::ZeroDuration()) {
    absl::StrAppend(&session_options, " -c statement_timeout=",
                    absl::ToInt64Milliseconds(options_.statement_timeout));
  }
  // Later keywords override what the connection string says.
  const char* keys[] = {"dbname", "connect_timeout", "options",
                        "application_name", nullptr};
  const char* values[] = {options_.conninfo.c_str(), connect_timeout.c_str(),
                          session_options.c_str(), "guestlist", nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn == nullptr) return absl::ResourceExhaustedError("out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return absl::UnavailableError(
        absl::StrCat("cannot connect to the database: ", message));
  }
  return std::make_unique<Connection>(conn);
}

absl::StatusOr<PooledConnection> Pool::Acquire() {
  const absl::Time deadline = absl::Now() + options_.acquire_timeout;
  {
    absl::MutexLock lock(&mu_);
    auto can_proceed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_ < options_.max_size;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&can_proceed), deadline)) {
      return absl::UnavailableError(
          "all database connections are busy; retry later");
    }
    if (!idle_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->healthy()) return PooledConnection(this, std::move(conn));
      // A broken idle connection (e.g. the server restarted): replace it.
      --open_;
    }
    ++open_;
  }
  absl::StatusOr<std::unique_ptr<Connection>> conn = Connect();
  if (!conn.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
    return conn.status();
  }
  return PooledConnection(this, *std::move(conn));
}

void Pool::Release(std::unique_ptr<Connection> conn) {
  // A connection left inside a failed transaction or broken is discarded.
  const bool reusable =
      conn->healthy() && PQtransactionStatus(conn->raw()) == PQTRANS_IDLE;
  absl::MutexLock lock(&mu_);
  if (reusable) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
}

absl::StatusOr<Result> Pool::Exec(const std::string& sql,
                                  const Params& params) {
  absl::StatusOr<PooledConnection> conn = Acquire();
  if (!conn.ok()) return conn.status();
  return (*conn)->Exec(sql, params);
}

absl::StatusOr<Result> Pool::ExecPrepared(const std::string& sql,
                                          const Params& params) {
  absl::StatusOr<PooledConnection> conn = Acquire();
  if (!conn.ok()) return conn.status();
  return (*conn)->ExecPrepared(sql, params);
}

absl::Status Pool::Ping() { return Exec("SELECT 1").status(); }

Transaction::Transaction(PooledConnection& conn, const std::string& begin)
    : conn_(conn) {
  status_ = conn_->ExecScript(begin);
  if (!status_.ok()) done_ = true;
}

Transaction::~Transaction() {
  if (!done_) {
    absl::Status s = conn_->ExecScript("ROLLBACK");
    (void)s;  // a broken connection is dropped by the pool anyway
  }
}

absl::StatusOr<Result> Transaction::Exec(const std::string& sql,
                                         const Params& params) {
  if (!status_.ok()) return status_;
  return conn_->Exec(sql, params);
}

absl::StatusOr<Result> Transaction::ExecPrepared(const std::string& sql,
                                                 const Params& params) {
  if (!status_.ok()) return status_;
  return conn_->ExecPrepared(sql, params);
}

absl::StatusOr<std::vector<Result>> Transaction::ExecPipeline(
    const std::vector<Statement>& statements, bool commit) {
  if (!status_.ok()) return status_;
  bool committed = false;
  absl::StatusOr<std::vector<Result>> r =
      conn_->ExecPipeline(statements, commit, &committed);
  if (committed) done_ = true;
  return r;
}

absl::Status Transaction::Commit() {
  if (!status_.ok()) return status_;
  absl::Status s = conn_->ExecScript("COMMIT");
  done_ = true;
  return s;
}

Param Text(std::string value) { return Param(std::move(value)); }

Param NullIfEmpty(const std::string& value) {
  if (value.empty()) return std::nullopt;
  return value;
}

Param Int(int64_t value) { return absl::StrCat(value); }

Param Bool(bool value) { return std::string(value ? "true" : "false"); }

Param Time(absl::Time t) {
  if (t == absl::InfinitePast()) return std::nullopt;
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

absl::Time ParseTime(const std::string& text) {
  // Server output with TimeZone=UTC, DateStyle=ISO: 2026-01-02 03:04:05.123+00
  std::string s = text;
  if (s.size() > 3 && s.compare(s.size() - 3, 3, "+00") == 0)
    s.resize(s.size() - 3);
  absl::Time t;
  std::string err;
  if (absl::ParseTime("%Y-%m-%d %H:%M:%E*S", s, absl::UTCTimeZone(), &t, &err))
    return t;
  return absl::InfinitePast();
}

std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ",";
    out += "\"";
    out += absl::StrReplaceAll(values[i], {{"\\", "\\\\"}, {"\"", "\\\""}});
    out += "\"";
  }
  out += "}";
  return out;
}

}  // namespace guestlist::pg
