// A lexer for the SQL text MariaDB/MySQL print back (SHOW CREATE TABLE, VIEW,
// TRIGGER, FUNCTION, PROCEDURE, EVENT), with the sql_mode MyConn sets up (no
// ANSI_QUOTES, no NO_BACKSLASH_ESCAPES). It only tells quoted text and
// comments apart from the structure: `identifiers` (`` inside), 'strings' and
// "strings" (backslash escapes, doubled quotes), /* comments */, # and "-- "
// comments to the end of the line, words and single punctuation characters.
// Each token keeps its byte range, so pieces are cut out of the statement
// exactly as printed. Pure functions; no I/O.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace midflight::mysql {

enum class TokenKind { kIdent, kString, kWord, kPunct, kComment };

struct Token {
  TokenKind kind;
  size_t begin = 0, end = 0;  // [begin, end) in the statement
  std::string value;          // identifier unquoted; word or punctuation as is
  int depth = 0;              // nesting level; a '(' and its ')' have the level around them

  // A word equal to `word` (upper case) without regard to case.
  bool Is(std::string_view word) const;
  bool IsPunct(char c) const { return kind == TokenKind::kPunct && value.size() == 1 && value[0] == c; }
  // An identifier or a word: a name, quoted or not.
  bool IsName() const { return kind == TokenKind::kIdent || kind == TokenKind::kWord; }
};

// Internal error for unterminated quotes or comments and unbalanced parentheses.
Result<std::vector<Token>> Tokenize(std::string_view s);

// Index of the ')' closing the '(' at `open`, or `tokens.size()`.
size_t MatchingParen(const std::vector<Token>& tokens, size_t open);

}  // namespace midflight::mysql
