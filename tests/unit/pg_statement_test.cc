#include "proxy/pg_statement.h"

#include "proxy/pg_session_state.h"

#include <gtest/gtest.h>

namespace midflight::proxy {
namespace {

TEST(PgStatementTest, LeadingSkipsBlanksAndComments) {
  EXPECT_EQ(Leading("  set  search_path to x", 2), "SET SEARCH_PATH");
  EXPECT_EQ(Leading("-- note\n/* block */ Reset ALL;", 2), "RESET ALL");
  EXPECT_EQ(Leading("/* unterminated", 1), "");
  EXPECT_EQ(Leading("", 3), "");
  EXPECT_EQ(Leading("select * from t", 5), "SELECT");  // stops at a non-word
}

TEST(PgStatementTest, SettingKeyNamesTheSettingASetOverrides) {
  EXPECT_EQ(SettingKey("SET statement_timeout = 5"), "statement_timeout");
  EXPECT_EQ(SettingKey("set SESSION Statement_Timeout TO 5"), "statement_timeout");
  EXPECT_EQ(SettingKey("RESET statement_timeout;"), "statement_timeout");
  EXPECT_EQ(SettingKey("SET myapp.user_id=7"), "myapp.user_id");  // custom settings keep their prefix
  EXPECT_EQ(SettingKey("SET myapp.tenant = 1"), "myapp.tenant");
  EXPECT_EQ(SettingKey("SET session_replication_role = replica"), "session_replication_role");
  EXPECT_EQ(SettingKey("SET \"Odd\" = 1"), "");             // quoted: never merged
  EXPECT_EQ(SettingKey("SET a = 1 /* c */"), "");           // a comment: never merged
  EXPECT_EQ(SettingKey("SELECT 1"), "");
}

// The proxy's plan for a long client message (pg_proxy.cc streams it or holds it).
std::string Message(char type, const std::string& body, size_t total) {
  std::string m(1, type);
  const uint32_t len = static_cast<uint32_t>(total - 1);
  for (int shift = 24; shift >= 0; shift -= 8) m += static_cast<char>((len >> shift) & 0xff);
  return m + body;
}

TEST(PgStatementTest, LongMessagesAreStreamedUnlessTheProxyMustKeepThem) {
  const size_t big = size_t{300} << 20;
  const std::string pad(kClassifyPrefix, 'x');
  auto plan = [&](bool ro, char type, const std::string& body, size_t total = size_t{300} << 20) {
    return PlanLargeMessage(ro, type, total, Message(type, body + pad, total));
  };
  EXPECT_EQ(plan(false, 'Q', "SELECT 1 /* "), LargeMessage::kStream);
  EXPECT_EQ(plan(false, 'Q', "insert into t values ('"), LargeMessage::kStream);
  EXPECT_EQ(plan(false, 'B', ""), LargeMessage::kStream);
  EXPECT_EQ(plan(false, 'd', ""), LargeMessage::kStream);
  EXPECT_EQ(plan(false, 'P', std::string("\0SELECT $1 /* ", 14)), LargeMessage::kStream);  // unnamed
  // Kept for a replay or checked whole: refused above the cap, held below it.
  EXPECT_EQ(plan(false, 'Q', "SET application_name = '"), LargeMessage::kRefuse);
  EXPECT_EQ(plan(false, 'Q', "SET application_name = '", kMaxHeldMessage), LargeMessage::kHoldWhole);
  EXPECT_EQ(plan(false, 'Q', "  prepare p AS SELECT '"), LargeMessage::kRefuse);
  EXPECT_EQ(plan(false, 'P', std::string("s1\0SELECT 1 /* ", 15)), LargeMessage::kRefuse);  // named
  EXPECT_EQ(plan(true, 'Q', "SELECT 1 /* "), LargeMessage::kRefuse);  // the read-only check reads it all
  // The prefix cannot say what the statement is: held, as a statement that may change state.
  EXPECT_EQ(plan(false, 'Q', "/* "), LargeMessage::kRefuse);
  EXPECT_EQ(PlanLargeMessage(false, 'Q', big, Message('Q', std::string(kClassifyPrefix, 's'), big)),
            LargeMessage::kRefuse);  // one word up to the prefix's end
  EXPECT_EQ(PlanLargeMessage(false, 'Q', big, Message('Q', "SELECT 1", big)), LargeMessage::kWaitForPrefix);
}

TEST(PgStatementTest, SingleStatement) {
  EXPECT_TRUE(SingleStatement("SET a = 1"));
  EXPECT_TRUE(SingleStatement("SET a = 1;  \n"));
  EXPECT_FALSE(SingleStatement("SET a = 1; SELECT 1"));
  EXPECT_FALSE(SingleStatement("SET a = ';x'"));  // conservative: not carried
}

TEST(PgStatementTest, ClassifiesSessionState) {
  std::string name;
  EXPECT_EQ(Classify("SET search_path = app", &name), StateEffect::kSet);
  EXPECT_EQ(Classify("set session statement_timeout = 5", &name), StateEffect::kSet);
  EXPECT_EQ(Classify("RESET search_path", &name), StateEffect::kSet);
  EXPECT_EQ(Classify("SET LOCAL search_path = app", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("SET CONSTRAINTS ALL DEFERRED", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("SET a = 1; DELETE FROM t", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("reset all", &name), StateEffect::kResetAll);
  EXPECT_EQ(Classify("DISCARD ALL", &name), StateEffect::kDiscardAll);
  EXPECT_EQ(Classify("DISCARD TEMP", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("SELECT 1", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("UPDATE t SET a = 1", &name), StateEffect::kNone);
}

TEST(PgStatementTest, PreparedStatementNames) {
  std::string name;
  EXPECT_EQ(Classify("PREPARE q1 (int) AS SELECT $1", &name), StateEffect::kPrepare);
  EXPECT_EQ(name, "Q1");
  EXPECT_EQ(Classify("PREPARE TRANSACTION 'x'", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("DEALLOCATE q1", &name), StateEffect::kDeallocate);
  EXPECT_EQ(name, "Q1");
  EXPECT_EQ(Classify("deallocate prepare q1", &name), StateEffect::kDeallocate);
  EXPECT_EQ(name, "Q1");
  EXPECT_EQ(Classify("DEALLOCATE ALL", &name), StateEffect::kDeallocate);
  EXPECT_EQ(name, "ALL");
}

TEST(PgStatementTest, ReadWriteTransactions) {
  EXPECT_EQ(ReadWriteAttempt("BEGIN READ WRITE"), "BEGIN READ WRITE");
  EXPECT_EQ(ReadWriteAttempt("begin transaction isolation level serializable, read  write;"), "BEGIN READ WRITE");
  EXPECT_EQ(ReadWriteAttempt("BEGIN WORK NOT DEFERRABLE READ\nWRITE"), "BEGIN READ WRITE");
  EXPECT_EQ(ReadWriteAttempt("Start Transaction Read Write"), "START TRANSACTION READ WRITE");
  EXPECT_EQ(ReadWriteAttempt("BEGIN; SET TRANSACTION READ WRITE; INSERT INTO t VALUES (1)"),
            "SET TRANSACTION READ WRITE");
  EXPECT_EQ(ReadWriteAttempt("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE"),
            "SET TRANSACTION READ WRITE");
  EXPECT_EQ(ReadWriteAttempt("set session characteristics as transaction read write"),
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE");
  EXPECT_EQ(ReadWriteAttempt("/* why */ -- not\n  BEGIN /* nested /* twice */ */ READ WRITE"), "BEGIN READ WRITE");
}

TEST(PgStatementTest, ReadWriteSettings) {
  EXPECT_EQ(ReadWriteAttempt("SET default_transaction_read_only = off"), "SET default_transaction_read_only");
  EXPECT_EQ(ReadWriteAttempt("SET SESSION default_transaction_read_only TO false"),
            "SET default_transaction_read_only");
  EXPECT_EQ(ReadWriteAttempt("set local DEFAULT_TRANSACTION_READ_ONLY = 'of'"), "SET default_transaction_read_only");
  EXPECT_EQ(ReadWriteAttempt("SET \"default_transaction_read_only\" = 0"), "SET default_transaction_read_only");
  EXPECT_EQ(ReadWriteAttempt("SET default_transaction_read_only = E'\\x6Fff'"), "SET default_transaction_read_only");
  EXPECT_EQ(ReadWriteAttempt("SET default_transaction_read_only"),
            "SET default_transaction_read_only");  // malformed: refused
  EXPECT_EQ(ReadWriteAttempt("SET transaction_read_only = off"), "SET transaction_read_only");
  EXPECT_EQ(ReadWriteAttempt("SET LOCAL transaction_read_only TO no"), "SET transaction_read_only");
  EXPECT_EQ(ReadWriteAttempt("SELECT 1; SET default_transaction_read_only = off"), "SET default_transaction_read_only");
  EXPECT_EQ(ReadWriteAttempt("SELECT set_config('default_transaction_read_only', 'off', false)"),
            "set_config of transaction_read_only");
  EXPECT_EQ(ReadWriteAttempt("select PG_CATALOG.SET_CONFIG($$Transaction_Read_Only$$, $1, true)"),
            "set_config of transaction_read_only");
  EXPECT_EQ(ReadWriteAttempt("DO $x$ BEGIN EXECUTE 'SET default_transaction_read_only = off'; END $x$"), "a DO block");
  EXPECT_EQ(ReadWriteAttempt("do 'BEGIN NULL; END'"), "a DO block");
  EXPECT_EQ(ReadWriteAttempt("SELECT set_config('default_transaction' || '_read_only', 'off', false); COMMIT; INSERT"),
            "set_config of a setting name computed at run time");
  EXPECT_EQ(ReadWriteAttempt("SELECT set_config($1, $2, false)"), "set_config of a setting name computed at run time");
  EXPECT_EQ(ReadWriteAttempt("SELECT set_config(name, 'off', false) FROM pg_settings"),
            "set_config of a setting name computed at run time");
  EXPECT_EQ(ReadWriteAttempt("SELECT set_config(E'default_transaction_read_\\157nly', 'off', false)"),
            "set_config of a setting name computed at run time");
  EXPECT_EQ(ReadWriteAttempt("SET U&\"transaction_\\0072ead_only\" = off"), "SET of a U& quoted setting name");
  EXPECT_EQ(ReadWriteAttempt("SET default_transaction_read_only = U&'\\006f\\0066f'"),
            "SET default_transaction_read_only");
}

TEST(PgStatementTest, MayAskForWritesLetsEveryAttemptThrough) {
  for (const char* sql :
       {"BEGIN READ WRITE", "start transaction read\twrite", "SET TRANSACTION READ WRITE",
        "SET default_transaction_read_only = off", "SET TRANSACTION_READ_ONLY TO 0",
        "SELECT set_config('transaction_read_only', 'off', false)", "SET U&\"transaction_\\0072ead_only\" = off",
        "SELECT set_config($1, 'off', false)", "DO $$BEGIN END$$"}) {
    EXPECT_NE(ReadWriteAttempt(sql), "") << sql;
    EXPECT_TRUE(MayAskForWrites(sql)) << sql;
  }
  EXPECT_FALSE(MayAskForWrites("SELECT * FROM t WHERE id = $1"));
  EXPECT_FALSE(MayAskForWrites("BEGIN READ ONLY"));
  EXPECT_TRUE(MayAskForWrites("SELECT SET_CONFIG($1, $2, false)"));
  EXPECT_TRUE(MayAskForWrites("DO 'BEGIN NULL; END'"));
}

TEST(PgStatementTest, ReadOnlyStatementsPass) {
  EXPECT_EQ(ReadWriteAttempt("BEGIN"), "");
  EXPECT_EQ(ReadWriteAttempt("BEGIN READ ONLY"), "");
  EXPECT_EQ(ReadWriteAttempt("START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE"), "");
  EXPECT_EQ(ReadWriteAttempt("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"), "");
  EXPECT_EQ(ReadWriteAttempt("SET default_transaction_read_only = on"), "");
  EXPECT_EQ(ReadWriteAttempt("SET SESSION default_transaction_read_only TO 'true'"), "");
  EXPECT_EQ(ReadWriteAttempt("SET default_transaction_read_only TO DEFAULT"), "");
  EXPECT_EQ(ReadWriteAttempt("SET transaction_read_only = 1"), "");
  EXPECT_EQ(ReadWriteAttempt("RESET default_transaction_read_only"), "");
  EXPECT_EQ(ReadWriteAttempt("RESET ALL; DISCARD ALL"), "");
  EXPECT_EQ(ReadWriteAttempt("SHOW transaction_read_only"), "");
  EXPECT_EQ(ReadWriteAttempt("SELECT current_setting('transaction_read_only')"), "");
  EXPECT_EQ(ReadWriteAttempt("SELECT set_config('search_path', 'app', false)"), "");
  EXPECT_EQ(ReadWriteAttempt("SELECT pg_catalog.set_config(E'search_path', 'app', false)"), "");
  // The words inside quotes, identifiers and comments are not keywords.
  EXPECT_EQ(ReadWriteAttempt("SELECT 'BEGIN READ WRITE'"), "");
  EXPECT_EQ(ReadWriteAttempt("SELECT 'it''s; BEGIN READ WRITE'"), "");
  EXPECT_EQ(ReadWriteAttempt("SELECT E'\\'; BEGIN READ WRITE'"), "");
  EXPECT_EQ(ReadWriteAttempt("SELECT \"x;BEGIN READ WRITE\" FROM t"), "");
  EXPECT_EQ(ReadWriteAttempt("SELECT $$;BEGIN READ WRITE;$$, $t$ $$ ; SET transaction_read_only = off $t$"), "");
  EXPECT_EQ(ReadWriteAttempt("-- BEGIN READ WRITE\nSELECT 1 /* ; BEGIN READ WRITE */"), "");
  EXPECT_EQ(ReadWriteAttempt("SELECT read, write FROM t"), "");
  EXPECT_EQ(ReadWriteAttempt(""), "");
}

TEST(PgStatementTest, HighestParameter) {
  EXPECT_EQ(HighestParameter("SELECT 1"), 0);
  EXPECT_EQ(HighestParameter("SELECT set_config($2, $1, false), $10"), 10);
  EXPECT_EQ(HighestParameter("SELECT '$3', $$ $4 $$, $1"), 1);
}

// Found by tests/fuzz/pg_wire_fuzz.cc: a client's "PREPARE" without a name
// threw std::out_of_range from substr on the proxy's per-query path
// (Session::Track), which catches nothing: one query ended the process.
TEST(PgStatementTest, PrepareWithoutANameIsNotCarried) {
  std::string name = "unchanged";
  EXPECT_EQ(Classify("PREPARE", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("prepare;", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("  PREPARE /* c */ (int) AS SELECT 1", &name), StateEffect::kNone);
  EXPECT_EQ(name, "unchanged");
}

}  // namespace
}  // namespace midflight::proxy

namespace midflight::proxy {
namespace {

using K = SessionEffect::Kind;

TEST(SessionEffectsTest, FindsStateThatPinsASession) {
  EXPECT_EQ(SessionEffects("CREATE TEMP TABLE t1 (id int)"), (std::vector<SessionEffect>{{K::kTempObject, "t1"}}));
  EXPECT_EQ(SessionEffects("create local temporary table if not exists \"Odd\" (x int)"),
            (std::vector<SessionEffect>{{K::kTempObject, "odd"}}));
  EXPECT_EQ(SessionEffects("CREATE TABLE pg_temp.t2 (x int)"), (std::vector<SessionEffect>{{K::kTempObject, "t2"}}));
  EXPECT_EQ(SessionEffects("CREATE TEMP TABLE t3 (x int) ON COMMIT DROP"), std::vector<SessionEffect>{});
  EXPECT_EQ(SessionEffects("CREATE TABLE t4 (x int)"), std::vector<SessionEffect>{});
  EXPECT_EQ(SessionEffects("SELECT * INTO TEMP TABLE t5 FROM x"), (std::vector<SessionEffect>{{K::kTempObject, "t5"}}));
  EXPECT_EQ(SessionEffects("select 'create temp table no' ; DROP TABLE IF EXISTS a, s.b CASCADE"),
            (std::vector<SessionEffect>{{K::kDrop, "a"}, {K::kDrop, "b"}}));
  EXPECT_EQ(SessionEffects("DECLARE c1 NO SCROLL CURSOR WITH HOLD FOR SELECT 1"),
            (std::vector<SessionEffect>{{K::kHoldCursor, "c1"}}));
  EXPECT_EQ(SessionEffects("DECLARE c2 CURSOR FOR SELECT 'with hold'"), std::vector<SessionEffect>{});
  EXPECT_EQ(SessionEffects("CLOSE c1; close all"), (std::vector<SessionEffect>{{K::kCloseCursor, "c1"}, {K::kCloseAll, ""}}));
  EXPECT_EQ(SessionEffects("SELECT pg_try_advisory_lock(1), pg_advisory_xact_lock(2)"),
            (std::vector<SessionEffect>{{K::kAdvisoryLock, ""}}));
  EXPECT_EQ(SessionEffects("SELECT pg_advisory_unlock_all()"), (std::vector<SessionEffect>{{K::kAdvisoryUnlockAll, ""}}));
  EXPECT_EQ(SessionEffects("LISTEN jobs; UNLISTEN *; discard temp; DISCARD ALL"),
            (std::vector<SessionEffect>{{K::kListen, "jobs"}, {K::kUnlistenAll, ""}, {K::kDiscardTemp, ""}, {K::kDiscardAll, ""}}));
  EXPECT_EQ(SessionEffects("SELECT set_config('myapp.tenant', '42', false), set_config('search_path', 'x', false)"),
            (std::vector<SessionEffect>{{K::kCustomSetting, "myapp.tenant"}}));
  EXPECT_FALSE(MayHoldSessionState("SELECT * FROM accounts WHERE id = $1"));
  EXPECT_TRUE(MayHoldSessionState("create TEMPORARY table x()"));
}

TEST(SessionPinsTest, PinsUntilTheStateEndsInACommittedTransaction) {
  SessionPins p;
  p.Answered(SessionEffects("CREATE TEMP TABLE t1 (x int)"), false, 'I');
  EXPECT_EQ(p.Reason(), "temporary table t1");
  // Dropped in a transaction that rolls back: still there.
  p.Answered(SessionEffects("BEGIN"), false, 'T');
  p.Answered(SessionEffects("DROP TABLE t1"), false, 'T');
  EXPECT_TRUE(p.pinned());
  p.RolledBack();
  p.Answered({}, false, 'I');
  EXPECT_EQ(p.Reason(), "temporary table t1");
  // A failed statement outside a transaction left nothing.
  p.Answered(SessionEffects("CREATE TEMP TABLE t2 (x nosuchtype)"), true, 'I');
  EXPECT_EQ(p.Reason(), "temporary table t1");
  p.Answered(SessionEffects("DECLARE c CURSOR WITH HOLD FOR SELECT 1; SELECT pg_advisory_lock(7)"), false, 'I');
  EXPECT_EQ(p.Reason(), "temporary table t1; cursor c WITH HOLD; session advisory lock");
  p.Answered(SessionEffects("DROP TABLE t1; CLOSE c"), false, 'I');
  EXPECT_EQ(p.Reason(), "session advisory lock");
  p.Answered(SessionEffects("LISTEN ch"), false, 'I');
  EXPECT_TRUE(p.listening());
  p.Answered(SessionEffects("DISCARD ALL"), false, 'I');
  EXPECT_FALSE(p.pinned());
  EXPECT_FALSE(p.listening());
  EXPECT_EQ(p.Reason(), "");
}

TEST(SessionStateTest, ReplayQuotesForAnyStringSetting) {
  auto q = ReplayStatements({{"s", "search_path", "a, \"b'c\\\\\""}, {"l", "Job \"x\"", ""}});
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].substr(5), std::string("SELECT pg_catalog.set_config(E'search_path', E'a, \"b''c\\\\\\\\\"', false)") + '\0');
  EXPECT_EQ(q[1].substr(5), std::string("LISTEN \"Job \"\"x\"\"\"") + '\0');
}

}  // namespace
}  // namespace midflight::proxy
