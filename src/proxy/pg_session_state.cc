#include "proxy/pg_session_state.h"

#include <fmt/format.h>

#include "base/log.h"

namespace midflight::proxy {

namespace wire = midflight::pgwire;

void SessionPins::Apply(const SessionEffect& e) {
  using K = SessionEffect::Kind;
  switch (e.kind) {
    case K::kTempObject: temp_.insert(e.name); break;
    case K::kDrop: temp_.erase(e.name); break;
    case K::kHoldCursor: cursors_.insert(e.name); break;
    case K::kCloseCursor: cursors_.erase(e.name); break;
    case K::kCloseAll: cursors_.clear(); break;
    case K::kAdvisoryLock: advisory_ = true; break;
    case K::kAdvisoryUnlockAll: advisory_ = false; break;
    case K::kDiscardTemp: temp_.clear(); break;
    case K::kDiscardAll:
      temp_.clear();
      cursors_.clear();
      channels_.clear();
      advisory_ = false;
      break;
    case K::kListen: channels_.insert(e.name); break;
    case K::kUnlisten: channels_.erase(e.name); break;
    case K::kUnlistenAll: channels_.clear(); break;
    case K::kCustomSetting: custom_.insert(e.name); break;
  }
}

void SessionPins::Answered(const std::vector<SessionEffect>& effects, bool failed, char txn_status) {
  using K = SessionEffect::Kind;
  for (const SessionEffect& e : effects) {
    // Advisory locks are not transactional: taken (maybe) whatever happens next.
    if (e.kind == K::kAdvisoryLock) Apply(e);
    // A failed statement outside a transaction block left nothing behind.
    else if (!(failed && txn_status == 'I')) staged_.push_back(e);
  }
  if (failed && txn_status == 'E') rolled_back_ = true;
  if (txn_status != 'I') return;  // the session cannot move inside a transaction: wait for its end
  for (const SessionEffect& e : staged_) {
    const bool begins =
        e.kind == K::kTempObject || e.kind == K::kHoldCursor || e.kind == K::kListen || e.kind == K::kCustomSetting;
    // After a rollback (perhaps only to a savepoint: the same tag) the state
    // made may still be there, the ends are not trusted.
    if (begins || !rolled_back_) Apply(e);
  }
  staged_.clear();
  rolled_back_ = false;
}

std::string SessionPins::Reason() const {
  std::string out;
  auto add = [&](const std::string& part) { out += (out.empty() ? "" : "; ") + part; };
  auto names = [](const std::set<std::string>& set) {
    std::string s;
    for (const auto& n : set) s += (s.empty() ? "" : ", ") + n;
    return s;
  };
  if (!temp_.empty()) add(fmt::format("temporary table{} {}", temp_.size() > 1 ? "s" : "", names(temp_)));
  if (!cursors_.empty()) add(fmt::format("cursor{} {} WITH HOLD", cursors_.size() > 1 ? "s" : "", names(cursors_)));
  if (advisory_) add("session advisory lock");
  return out;
}

namespace {

// Session settings and LISTEN channels of the server session itself.
constexpr const char* kSessionStateSql =
    "SELECT 's', name, current_setting(name) FROM pg_catalog.pg_settings WHERE source = 'session' "
    "UNION ALL SELECT 'l', c, NULL FROM pg_catalog.pg_listening_channels() AS c";

// E'...' works whatever standard_conforming_strings says.
std::string Literal(std::string_view v) {
  std::string out = "E'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += c;
    out += c;
  }
  return out + "'";
}

std::string Identifier(std::string_view v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"') out += c;
    out += c;
  }
  return out + "\"";
}

// 'D' DataRow: the columns as text (NULL as "").
Result<std::vector<std::string>> DataRow(std::string_view body) {
  if (body.size() < 2) return OperatorError("malformed DataRow ('D') message");
  const int n = wire::GetInt16(body.data());
  size_t pos = 2;
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    if (body.size() < pos + 4) return OperatorError("malformed DataRow ('D') message");
    const int32_t len = wire::GetInt32(body.data() + pos);
    pos += 4;
    if (len < 0) {
      out.emplace_back();
      continue;
    }
    if (body.size() < pos + static_cast<size_t>(len)) return OperatorError("malformed DataRow ('D') message");
    out.emplace_back(body.substr(pos, static_cast<size_t>(len)));
    pos += static_cast<size_t>(len);
  }
  return out;
}

}  // namespace

std::vector<std::string> ReplayStatements(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) {
    if (r.size() >= 3 && r[0] == "s") out.push_back(wire::Query(fmt::format("SELECT pg_catalog.set_config({}, {}, false)", Literal(r[1]), Literal(r[2]))));
    if (r.size() >= 2 && r[0] == "l") out.push_back(wire::Query("LISTEN " + Identifier(r[1])));
  }
  return out;
}

std::string SessionStateQuery(const std::set<std::string>& custom_settings) {
  std::string sql = kSessionStateSql;
  if (!custom_settings.empty()) {
    std::string names;
    for (const auto& n : custom_settings) names += (names.empty() ? "" : ", ") + Literal(n);
    sql += fmt::format(
        " UNION ALL SELECT 's', n, current_setting(n, true) FROM unnest(ARRAY[{}]::text[]) AS n "
        "WHERE current_setting(n, true) IS NOT NULL",
        names);
  }
  return wire::Query(sql);
}

Result<std::vector<std::string>> DataRowColumns(std::string_view body) { return DataRow(body); }

}  // namespace midflight::proxy
