#include "base/uri.h"

#include <gtest/gtest.h>

#include "engines/postgres/pg_conn.h"

namespace midflight {

TEST(UriTest, PasswordNeverShown) {
  EXPECT_EQ(RedactUri("postgres://app:s3cret@db1:5432/shop"), "postgres://app:***@db1:5432/shop");
  EXPECT_EQ(RedactUri("postgres://app@db1/shop"), "postgres://app@db1/shop");
  EXPECT_EQ(RedactUri("postgres://db1/shop?user=a&password=s3cret"), "postgres://db1/shop?user=a&password=***");
  EXPECT_EQ(RedactUri("host=db1 password=s3cret"), "host=db1 password=***");
}

TEST(UriTest, PasswordWithAtIsRedactedWhole) {
  EXPECT_EQ(RedactUri("postgres://u:p@ss@host/db"), "postgres://u:***@host/db");
  EXPECT_EQ(RedactUri("postgres://u:a/b:c@host:5432/db"), "postgres://u:***@host:5432/db");
  EXPECT_EQ(RedactUri("mysql://u:p@ss@[::1]:3306/db?ssl=1"), "mysql://u:***@[::1]:3306/db?ssl=1");
  // Malformed URIs are redacted all the same.
  EXPECT_EQ(RedactUri("postgres://u:pw@[::1:5432/db"), "postgres://u:***@[::1:5432/db");
  EXPECT_EQ(RedactUri("postgres://u:p%zz@host/db"), "postgres://u:***@host/db");
  EXPECT_EQ(RedactUri("postgres://u:p?ss@host/db"), "postgres://u:***@host/db");
  EXPECT_EQ(RedactUri("host=db1 password='a b' user=u"), "host=db1 password=*** user=u");
}

struct PasswordCase {
  std::string written, password;
};

TEST(UriTest, ParsesPasswordsWithSpecialCharacters) {
  const PasswordCase cases[] = {
      {"p@ss", "p@ss"},         {"a:b:c", "a:b:c"},           {"a/b", "a/b"},
      {"p%25x", "p%x"},         {"p%3Fq%23r", "p?q#r"},       {"pässwörd", "pässwörd"},
      {"%E2%82%ACuro", "€uro"}, {"@:/%40", "@:/@"},
  };
  for (const auto& c : cases) {
    const std::string uri = "postgres://app:" + c.written + "@db1:5433/shop?sslmode=disable";
    auto p = ParseUri(uri);
    ASSERT_TRUE(p.ok()) << c.written << ": " << p.status().message();
    EXPECT_EQ(p->user, "app");
    EXPECT_EQ(p->password, c.password);
    EXPECT_EQ(p->host, "db1");
    EXPECT_EQ(p->port, 5433);
    EXPECT_EQ(p->database, "shop");
    ASSERT_EQ(p->params.size(), 1u);
    EXPECT_EQ(p->params[0], std::make_pair(std::string("sslmode"), std::string("disable")));
    EXPECT_EQ(RedactUri(uri), "postgres://app:***@db1:5433/shop?sslmode=disable");
  }
}

TEST(UriTest, ParsesHosts) {
  auto v6 = ParseUri("postgres://u@[::1]:5432/db");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 5432);
  auto two = ParseUri("postgresql://h1:5432,[::1]/db");
  ASSERT_TRUE(two.ok());
  ASSERT_EQ(two->hosts.size(), 2u);
  EXPECT_EQ(two->hosts[1].host, "::1");
  EXPECT_EQ(two->hosts[1].port, 0);
  auto none = ParseUri("postgres:///db");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->host, "");
  EXPECT_EQ(none->database, "db");
}

// Every malformed URI fails with a message that says what is wrong and quotes
// nothing of the URI (the password, or a piece of it, could be anywhere).
TEST(UriTest, MalformedUrisFailWithoutQuotingThem) {
  const std::pair<std::string, std::string> cases[] = {
      {"postgres://u:Secret1@[::1:5432/db", "unclosed '[' in the host (an IPv6 address is written [::1]:5432)"},
      {"postgres://u:Secret%zz@host/db",
       "the password has a '%' that is not a %XX escape, or is %00 (write a literal % as %25)"},
      {"postgres://u:Secret%2@host/db",
       "the password has a '%' that is not a %XX escape, or is %00 (write a literal % as %25)"},
      {"postgres://u:Secret%00@host/db",
       "the password has a '%' that is not a %XX escape, or is %00 (write a literal % as %25)"},
      {"postgres://u:Secret?x@host/db", "the port is not a number from 1 to 65535"},
      {"postgres://u:Secret@host/db?sslmode", "a query parameter is not key=value (a '?' in a password must be written %3F)"},
      {"postgres://u:Se#cret@host/db", "a raw '#' (write it as %23)"},
      {"postgres://u:Secret@host:99999/db", "the port is not a number from 1 to 65535"},
      {"postgres://u:Secret@ho]st/db", "a '[' or ']' in the host (an IPv6 address is written [::1]:5432)"},
      {"u:Secret@host/db", "not a URI (scheme://user:password@host:port/database)"},
  };
  for (const auto& [uri, message] : cases) {
    auto p = ParseUri(uri);
    ASSERT_FALSE(p.ok()) << uri;
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(p.status().message(), message) << uri;
  }
}

TEST(UriTest, ScrubSecretsRemovesTheUriAndThePassword) {
  const std::string uri = "postgres://u:p%zz@@host/db";
  EXPECT_EQ(ScrubSecrets("invalid percent-encoded token: \"" + uri + "\"", uri),
            "invalid percent-encoded token: \"postgres://u:***@host/db\"");
  EXPECT_EQ(ScrubSecrets("token \"p%zz@\" is bad", uri), "token \"***\" is bad");
  // Decoded and re-encoded forms of the password.
  const std::string encoded = "postgres://u:s%C3%A9cret%40x@host/db";
  EXPECT_EQ(ScrubSecrets("auth for 'sécret@x' failed", encoded), "auth for '***' failed");
  EXPECT_EQ(ScrubSecrets("saw s%C3%A9cret%40x", encoded), "saw ***");
  // password= in a query or a conninfo string.
  EXPECT_EQ(ScrubSecrets("bad: hunter22", "postgres://h/db?password=hunter22"), "bad: ***");
  EXPECT_EQ(ScrubSecrets("bad: 'hunter 22'", "host=h password='hunter 22'"), "bad: '***'");
  // Several connection strings; text without secrets is left alone.
  EXPECT_EQ(ScrubSecrets("a=pw111 b=pw222", std::vector<std::string>{"postgres://u:pw111@h/d", "mysql://u:pw222@h/d"}), "a=*** b=***");
  EXPECT_EQ(ScrubSecrets("connection refused", uri), "connection refused");
  // A password that a redacted URI shows anyway (the user's name) is not
  // hunted: that would turn every user name into *** and hide nothing.
  const std::vector<std::string> spec = {"postgres://midflight:hunter2x@h:1/db", "postgres://midflight:midflight@h:2/db"};
  EXPECT_EQ(ScrubSecrets("cannot connect to postgres://midflight:hunter2x@h:1/db: password authentication failed for "
                         "user \"midflight\" (hunter2x)",
                         spec),
            "cannot connect to postgres://midflight:***@h:1/db: password authentication failed for user \"midflight\" "
            "(***)");
}

TEST(UriTest, SplitPasswordRefusesMalformedUrisWithoutQuotingThePassword) {
  for (const std::string uri : {"postgres://u:Secret%zz@host/db", "postgres://u:Secret@[::1:5432/db"}) {
    auto r = pg::SplitPassword(uri);
    ASSERT_FALSE(r.ok()) << uri;
    EXPECT_EQ(r.status().message().find("Secret"), std::string::npos) << r.status().message();
  }
  auto at = pg::SplitPassword("postgres://u:p@ss@127.0.0.1/db");
  ASSERT_TRUE(at.ok());
  EXPECT_EQ(at->second, "p@ss");
  EXPECT_EQ(at->first, "host='127.0.0.1' user='u' dbname='db'");
}

TEST(UriTest, SplitPasswordKeepsEverythingElse) {
  auto r = pg::SplitPassword("postgres://app:s3cret@127.0.0.1:5433/shop");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->second, "s3cret");
  EXPECT_EQ(r->first.find("s3cret"), std::string::npos);
  EXPECT_NE(r->first.find("port='5433'"), std::string::npos) << r->first;
}

TEST(QuoteTest, IdentifiersAndLiterals) {
  EXPECT_EQ(pg::QuoteIdent("Order"), "\"Order\"");
  EXPECT_EQ(pg::QuoteIdent("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(pg::QuoteLiteral("it's"), "'it''s'");
  EXPECT_EQ(pg::QuoteLiteral("a\\b"), "E'a\\\\b'");
}

TEST(UriTest, WithPasswordEncodesSoParseGivesItBackAndScrubHidesIt) {
  for (const std::string pw : {"plain", "p@ss:w/rd", "100%", "a?b#c&d=e", "sp ace", "ü€", "'\"\\"}) {
    auto uri = WithPassword("postgres://app@db1:5432/shop?sslmode=disable", pw);
    ASSERT_TRUE(uri.ok()) << uri.status().message();
    auto parts = ParseUri(*uri);
    ASSERT_TRUE(parts.ok()) << pw << ": " << parts.status().message();
    EXPECT_EQ(parts->password, pw);
    EXPECT_EQ(parts->user, "app");
    EXPECT_EQ(parts->database, "shop");
    EXPECT_EQ(parts->query, "sslmode=disable");
    EXPECT_EQ(RedactUri(*uri), "postgres://app:***@db1:5432/shop?sslmode=disable");
    if (pw.size() >= 3) {
      std::string text = ScrubSecrets("login " + *uri + " as app with password " + pw + ".", *uri);
      EXPECT_EQ(text, "login postgres://app:***@db1:5432/shop?sslmode=disable as app with password ***.") << pw;
    }
  }
  EXPECT_EQ(*WithPassword("mysql://u:@h/db", "x"), "mysql://u:x@h/db");
  EXPECT_EQ(*WithPassword("postgres://u@p@h/db", "x"), "postgres://u@p:x@h/db");  // the user is "u@p"
}

TEST(UriTest, WithPasswordRefusesWithoutQuotingTheUri) {
  EXPECT_EQ(WithPassword("postgres://h/db", "x").status().message(),
            "names no user to go with the password (scheme://USER@host/database)");
  EXPECT_EQ(WithPassword("postgres://u:s3cret@h/db", "x").status().message(), "has a password already");
  EXPECT_EQ(WithPassword("postgres://u@h/db?password=s3cret", "x").status().message(), "has a password already");
  EXPECT_EQ(WithPassword("postgres://u:s3cret%zz@h/db", "x").status().message(),
            "the password has a '%' that is not a %XX escape, or is %00 (write a literal % as %25)");
}

}  // namespace midflight
