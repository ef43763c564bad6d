// Status and Result<T>: every call that can fail returns one of these.
//
// The code tells the caller what to do about a failure:
//   kRetryCall      the connection was lost or the server is restarting: reconnect, call again
//   kRetryTxn       deadlock / serialization failure / lock timeout: roll back, run the transaction again
//   kOperator       stop until an operator fixes something (wrong setting, missing key, bad spec)
//   kDataLoss       undecodable stream or a state that would lose data: stop, never skip
//   kInvalidArgument, kNotFound, kInternal  the usual meanings
// Messages name the object at fault (table, column, key, position, setting)
// and never contain a password.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace midflight {

enum class StatusCode {
  kOk,
  kInvalidArgument,
  kNotFound,
  kRetryCall,
  kRetryTxn,
  kOperator,
  kDataLoss,
  kCancelled,
  kInternal,
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Adds context in front of the message: "copying public.t: <message>".
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status RetryCall(std::string m) { return {StatusCode::kRetryCall, std::move(m)}; }
inline Status RetryTxn(std::string m) { return {StatusCode::kRetryTxn, std::move(m)}; }
inline Status OperatorError(std::string m) { return {StatusCode::kOperator, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}   // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace midflight

#define MF_CONCAT_INNER(a, b) a##b
#define MF_CONCAT(a, b) MF_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::midflight::Status mf_status_ = (expr);       \
    if (!mf_status_.ok()) return mf_status_;       \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL(MF_CONCAT(mf_result_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
