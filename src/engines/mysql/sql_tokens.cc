#include "engines/mysql/sql_tokens.h"

#include <fmt/format.h>

#include <cctype>

namespace midflight::mysql {
namespace {

bool IsWordByte(unsigned char c) { return std::isalnum(c) || c == '_' || c == '$' || c >= 0x80; }

}  // namespace

bool Token::Is(std::string_view word) const {
  if (kind != TokenKind::kWord || value.size() != word.size()) return false;
  for (size_t i = 0; i < word.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(value[i])) != word[i]) return false;
  return true;
}

Result<std::vector<Token>> Tokenize(std::string_view s) {
  std::vector<Token> out;
  int depth = 0;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (std::isspace(c)) {
      ++i;
      continue;
    }
    Token t;
    t.begin = i;
    if (c == '`') {
      t.kind = TokenKind::kIdent;
      for (++i;; ++i) {
        if (i >= s.size()) return Internal(fmt::format("unterminated identifier at byte {}", t.begin));
        if (s[i] == '`') {
          if (i + 1 < s.size() && s[i + 1] == '`') {
            t.value.push_back('`');
            ++i;
            continue;
          }
          ++i;
          break;
        }
        t.value.push_back(s[i]);
      }
    } else if (c == '\'' || c == '"') {
      t.kind = TokenKind::kString;
      for (++i;; ++i) {
        if (i >= s.size()) return Internal(fmt::format("unterminated string at byte {}", t.begin));
        if (s[i] == '\\') {
          ++i;
          continue;
        }
        if (static_cast<unsigned char>(s[i]) == c) {
          if (i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == c) {
            ++i;
            continue;
          }
          ++i;
          break;
        }
      }
    } else if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
      t.kind = TokenKind::kComment;
      size_t close = s.find("*/", i + 2);
      if (close == std::string_view::npos) return Internal(fmt::format("unterminated comment at byte {}", t.begin));
      i = close + 2;
    } else if (c == '#' ||
               (c == '-' && i + 1 < s.size() && s[i + 1] == '-' &&
                (i + 2 == s.size() || std::isspace(static_cast<unsigned char>(s[i + 2])) ||
                 std::iscntrl(static_cast<unsigned char>(s[i + 2]))))) {
      // To the end of the line ("--" needs a space or control character after it).
      t.kind = TokenKind::kComment;
      size_t eol = s.find('\n', i);
      i = eol == std::string_view::npos ? s.size() : eol;
    } else if (IsWordByte(c)) {
      t.kind = TokenKind::kWord;
      while (i < s.size() && IsWordByte(static_cast<unsigned char>(s[i]))) t.value.push_back(s[i++]);
    } else {
      t.kind = TokenKind::kPunct;
      t.value.assign(1, static_cast<char>(c));
      ++i;
    }
    t.end = i;
    if (t.IsPunct(')')) --depth;
    t.depth = depth;
    if (t.IsPunct('(')) ++depth;
    if (depth < 0) return Internal(fmt::format("unbalanced ')' at byte {}", t.begin));
    out.push_back(std::move(t));
  }
  if (depth != 0) return Internal("unbalanced parentheses");
  return out;
}

size_t MatchingParen(const std::vector<Token>& tokens, size_t open) {
  for (size_t i = open + 1; i < tokens.size(); ++i)
    if (tokens[i].IsPunct(')') && tokens[i].depth == tokens[open].depth) return i;
  return tokens.size();
}

}  // namespace midflight::mysql
