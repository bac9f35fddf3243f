// PostgreSQL-backed tests of the pool and the migrations runner, against a
// throwaway cluster.
#include "common/pg.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "common/migrations.h"
#include "gtest/gtest.h"
#include "tests/testing/postgres.h"

namespace guestlist {
namespace {

class PgTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { db_ = new guestlist::testing::TestPostgres(); }
  static void TearDownTestSuite() { delete db_; }
  static guestlist::testing::TestPostgres* db_;
};
guestlist::testing::TestPostgres* PgTest::db_ = nullptr;

TEST_F(PgTest, ParametersAreBoundNotInterpolated) {
  pg::Pool pool({.conninfo = db_->ConnInfo()});
  auto r = pool.Exec("SELECT $1::text, $2::int + 1, $3::text IS NULL",
                     {"'; DROP TABLE x; --", pg::Int(41), std::nullopt});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Get(0, 0), "'; DROP TABLE x; --");
  EXPECT_EQ(r->GetInt(0, 1), 42);
  EXPECT_TRUE(r->GetBool(0, 2));
}

TEST_F(PgTest, SqlStatesMapToStatusCodes) {
  pg::Pool pool({.conninfo = db_->ConnInfo()});
  ASSERT_TRUE(pool.Exec("CREATE TABLE uniq (k text PRIMARY KEY)").ok());
  ASSERT_TRUE(pool.Exec("INSERT INTO uniq VALUES ('a')").ok());
  EXPECT_EQ(pool.Exec("INSERT INTO uniq VALUES ('a')").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(pool.Exec("SELECT 1/0").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.Exec("SELECT nope FROM uniq").status().code(),
            absl::StatusCode::kInternal);
}

// Prepared once per connection, then executed with other values; the
// NUL guard and error mapping apply as for Exec.
TEST_F(PgTest, PreparedStatementsRunWithEachCallsParameters) {
  pg::Pool pool({.conninfo = db_->ConnInfo(), .max_size = 1});
  const std::string sql = "SELECT $1::int * 2, $2::text";
  for (int i = 0; i < 5; ++i) {
    auto r = pool.ExecPrepared(sql, {pg::Int(i), absl::StrCat("v", i)});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->GetInt(0, 0), 2 * i);
    EXPECT_EQ(r->Get(0, 1), absl::StrCat("v", i));
  }
  // One connection in the pool: the statement was prepared once on it.
  auto prepared = pool.Exec(
      "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1",
      {sql});
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->GetInt(0, 0), 1);
  EXPECT_EQ(pool.ExecPrepared(sql, {pg::Int(1), std::string("a\0b", 3)})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.ExecPrepared("SELECT 1/$1::int", {pg::Int(0)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.ExecPrepared("SELECT nope").status().code(),
            absl::StatusCode::kInternal);
}

TEST_F(PgTest, TransactionRollsBackUnlessCommitted) {
  pg::Pool pool({.conninfo = db_->ConnInfo()});
  ASSERT_TRUE(pool.Exec("CREATE TABLE tx_t (v int)").ok());
  {
    auto conn = pool.Acquire();
    ASSERT_TRUE(conn.ok());
    pg::Transaction tx(*conn);
    ASSERT_TRUE(tx.Exec("INSERT INTO tx_t VALUES (1)").ok());
  }
  {
    auto conn = pool.Acquire();
    ASSERT_TRUE(conn.ok());
    pg::Transaction tx(*conn);
    ASSERT_TRUE(tx.Exec("INSERT INTO tx_t VALUES (2)").ok());
    ASSERT_TRUE(tx.Commit().ok());
  }
  auto r = pool.Exec("SELECT array_agg(v)::text FROM tx_t");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->Get(0, 0), "{2}");
}

// Statements and COMMIT in one pipeline: results in order (a statement
// new to the connection is prepared on the way, once even if repeated; an
// unprepared one is planned for its values);
// on a statement's error the later ones are skipped and nothing is
// committed; on the COMMIT's error (a deferred constraint) the transaction
// is over. The connection is back out of pipeline mode and reused each time
// (one connection in the pool).
TEST_F(PgTest, StatementsAndCommitInOneRoundTrip) {
  pg::Pool pool({.conninfo = db_->ConnInfo(), .max_size = 1});
  ASSERT_TRUE(
      pool.Exec("CREATE TABLE pipe_t (k int PRIMARY KEY, v text)").ok());
  ASSERT_TRUE(pool.Exec("CREATE TABLE pipe_ref (k int REFERENCES pipe_t "
                        "DEFERRABLE INITIALLY DEFERRED)")
                  .ok());
  const std::string insert =
      "INSERT INTO pipe_t VALUES ($1::int, $2) RETURNING k * 10";
  const std::string count = "SELECT count(*) FROM pipe_t WHERE k < $1::int";
  auto run = [&](const std::vector<pg::Statement>& statements) {
    auto conn = pool.Acquire();
    EXPECT_TRUE(conn.ok()) << conn.status();
    pg::Transaction tx(*conn);
    absl::StatusOr<std::vector<pg::Result>> r =
        tx.ExecPipeline(statements, /*commit=*/true);
    EXPECT_TRUE((*conn)->healthy());
    return r;
  };
  absl::StatusOr<std::vector<pg::Result>> ok =
      run({{insert, {pg::Int(1), "a"}},
           {insert, {pg::Int(2), "b"}},
           {count, {pg::Int(100)}, /*prepared=*/false}});
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->size(), 3u);
  EXPECT_EQ((*ok)[0].GetInt(0, 0), 10);
  EXPECT_EQ((*ok)[1].GetInt(0, 0), 20);
  EXPECT_EQ((*ok)[2].GetInt(0, 0), 2);  // sees the pipeline's own rows
  // The second statement fails: the first is rolled back, the third skipped.
  EXPECT_EQ(run({{insert, {pg::Int(3), "c"}},
                 {insert, {pg::Int(1), "again"}},
                 {insert, {pg::Int(4), "d"}}})
                .status()
                .code(),
            absl::StatusCode::kAlreadyExists);
  // The COMMIT fails (a deferred foreign key): nothing stays either.
  EXPECT_EQ(run({{insert, {pg::Int(5), "e"}},
                 {"INSERT INTO pipe_ref VALUES ($1::int)", {pg::Int(99)}}})
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  auto rows =
      pool.Exec("SELECT string_agg(k::text, ',' ORDER BY k) FROM pipe_t");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->Get(0, 0), "1,2");
  // Each statement was prepared once on the pool's one connection.
  auto prepared = pool.Exec(
      "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1",
      {insert});
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->GetInt(0, 0), 1);
  // A bad value fails before anything is sent; the connection stays usable.
  EXPECT_EQ(
      run({{insert, {pg::Int(6), std::string("a\0b", 3)}}}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(run({{insert, {pg::Int(7), "g"}}}).ok());
}

TEST_F(PgTest, PoolIsBoundedAndTimesOut) {
  pg::Pool pool({.conninfo = db_->ConnInfo(),
                 .max_size = 2,
                 .acquire_timeout = absl::Milliseconds(100)});
  auto a = pool.Acquire();
  auto b = pool.Acquire();
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = pool.Acquire();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(PgTest, PoolSurvivesADatabaseRestart) {
  pg::Pool pool({.conninfo = db_->ConnInfo(), .max_size = 2});
  ASSERT_TRUE(pool.Ping().ok());
  db_->Stop();
  EXPECT_EQ(pool.Ping().code(), absl::StatusCode::kUnavailable);
  db_->Start();
  // The broken connection is dropped and a new one made.
  absl::Status s = pool.Ping();
  if (!s.ok()) s = pool.Ping();
  EXPECT_TRUE(s.ok()) << s;
}

TEST_F(PgTest, BadConnInfoIsUnavailableNotACrash) {
  pg::Pool pool({.conninfo = "host=127.0.0.1 port=1 dbname=x",
                 .connect_timeout = absl::Seconds(1)});
  absl::Status s = pool.Ping();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("cannot connect"), std::string::npos);
}

TEST_F(PgTest, ConcurrentMigrationsApplyOnce) {
  const std::string conninfo = db_->CreateDatabase("migr");
  std::vector<Migration> migrations = {
      {"V002__add", "INSERT INTO demo.t VALUES (2);"},
      {"V001__create", "CREATE TABLE demo.t (v int PRIMARY KEY);"},
  };
  std::vector<int> applied(4, -1);
  std::vector<absl::Status> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      pg::Pool pool({.conninfo = conninfo, .max_size = 1});
      results[i] = RunMigrations(pool, "demo", migrations, &applied[i]);
    });
  }
  for (auto& t : threads) t.join();
  int total = 0;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i];
    total += applied[i];
  }
  EXPECT_EQ(total, 2);
  EXPECT_EQ(db_->Psql("SELECT count(*) FROM demo.schema_migrations", "migr"),
            "2\n");
}

TEST_F(PgTest, FailedMigrationRollsBackAndNamesTheFile) {
  const std::string conninfo = db_->CreateDatabase("migr_bad");
  pg::Pool pool({.conninfo = conninfo});
  absl::Status s =
      RunMigrations(pool, "bad",
                    {{"V001__ok", "CREATE TABLE bad.a (v int);"},
                     {"V002__broken", "CREATE TABLE bad.b (v nosuchtype);"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("V002__broken"), std::string::npos);
  EXPECT_EQ(db_->Psql("SELECT count(*) FROM pg_namespace WHERE nspname='bad'",
                      "migr_bad"),
            "0\n");
}

}  // namespace
}  // namespace guestlist
