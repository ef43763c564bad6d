#include "engines/mysql/schema_objects.h"

#include <gtest/gtest.h>

#include "engines/mysql/snapshot_copier.h"
#include "engines/mysql/sql_tokens.h"

namespace midflight::mysql {
namespace {

// Statements as MariaDB 10.11's SHOW CREATE TRIGGER prints them.
TEST(GuardTrigger, WrapsASingleStatementBody) {
  auto g = GuardTrigger("CREATE DEFINER=`root`@`localhost` TRIGGER tr AFTER UPDATE ON t FOR EACH ROW \n"
                        "INSERT INTO au(x) VALUES (NEW.v)");
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_EQ(*g, "CREATE DEFINER=`root`@`localhost` TRIGGER tr AFTER UPDATE ON t FOR EACH ROW \n"
                "BEGIN IF @midflight_apply IS NULL THEN\nINSERT INTO au(x) VALUES (NEW.v); END IF; END");
}

TEST(GuardTrigger, WrapsACompoundBodyAndDropsTrailingCommentsAndSemicolons) {
  auto g = GuardTrigger("CREATE TRIGGER `ins film` AFTER INSERT ON film FOR EACH ROW BEGIN # it's\n"
                        "  INSERT INTO film_text VALUES (new.film_id, 'a;b -- c');\nEND; -- done");
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_EQ(*g, "CREATE TRIGGER `ins film` AFTER INSERT ON film FOR EACH ROW BEGIN IF @midflight_apply IS NULL "
                "THEN\nBEGIN # it's\n  INSERT INTO film_text VALUES (new.film_id, 'a;b -- c');\nEND; END IF; END");
}

TEST(GuardTrigger, SkipsFollowsAndIsIdempotent) {
  auto g = GuardTrigger("CREATE TRIGGER b BEFORE INSERT ON t FOR EACH ROW FOLLOWS a SET NEW.v = 1");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(*g, "CREATE TRIGGER b BEFORE INSERT ON t FOR EACH ROW FOLLOWS a BEGIN IF @midflight_apply IS NULL "
                "THEN\nSET NEW.v = 1; END IF; END");
  auto again = GuardTrigger(*g);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *g);
}

TEST(GuardTrigger, RefusesAStatementWithoutABody) {
  auto g = GuardTrigger("CREATE TRIGGER b BEFORE INSERT ON t");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().message(), "no FOR EACH ROW followed by a body in the trigger's statement");
}

TEST(DisableEvent, ReplacesTheStatusClauseOnly) {
  auto e = DisableEvent("CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 HOUR STARTS "
                        "'2026-12-06 06:49:07' ON COMPLETION NOT PRESERVE ENABLE DO UPDATE t SET enable = 1");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, "CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 HOUR STARTS "
                "'2026-12-06 06:49:07' ON COMPLETION NOT PRESERVE DISABLE DO UPDATE t SET enable = 1");
  auto replica = DisableEvent("CREATE EVENT `e` ON SCHEDULE EVERY 1 DAY DISABLE ON SLAVE DO DELETE FROM t");
  ASSERT_TRUE(replica.ok());
  EXPECT_EQ(*replica, "CREATE EVENT `e` ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM t");
  auto none = DisableEvent("CREATE EVENT `e` ON SCHEDULE EVERY 1 DAY DO DELETE FROM t");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "CREATE EVENT `e` ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM t");
}

TEST(RenameDatabase, QualifiedNamesOnly) {
  auto r = RenameDatabase("select `shop`.`t`.`a` AS `shop`, shop.f(1), x.shop.y, 'shop.t' from `shop`.`t` join "
                          "other.t",
                          "shop", "shop_new");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "select `shop_new`.`t`.`a` AS `shop`, `shop_new`.f(1), x.shop.y, 'shop.t' from `shop_new`.`t` join "
                "other.t");
}

TEST(Tokenize, LineComments) {
  auto tk = Tokenize("a -- b's\n c #d'\n e --f");
  ASSERT_TRUE(tk.ok()) << tk.status().message();
  std::vector<std::string> words;
  for (const auto& t : *tk)
    if (t.kind == TokenKind::kWord) words.push_back(t.value);
  EXPECT_EQ(words, (std::vector<std::string>{"a", "c", "e", "f"}));  // "--f" is minus minus f
}

TEST(ReplicaLagTracker, StoppedSqlThreadLagGrowsWhileEventsWait) {
  using namespace std::chrono;
  ReplicaLagTracker tracker;
  const auto t0 = steady_clock::now();
  ReplicaLag running{true, true, 2.0, "bin.000001:100", true};
  EXPECT_EQ(tracker.Observe(running, t0), 2.0);
  ReplicaLag stopped{false, true, std::nullopt, "bin.000001:200", true};
  EXPECT_EQ(tracker.Observe(stopped, t0 + seconds(1)), 2.0);  // at least what it last reported
  EXPECT_NEAR(tracker.Observe(stopped, t0 + seconds(11)), 10.0, 1e-6);
  ReplicaLag idle{false, true, std::nullopt, "bin.000001:200", false};
  EXPECT_EQ(tracker.Observe(idle, t0 + seconds(12)), 0.0);  // stopped, but nothing waits
}

}  // namespace
}  // namespace midflight::mysql
