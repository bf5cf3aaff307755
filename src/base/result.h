// Errors are values: an errno-style code that goes on the wire and a
// sentence for people. Exceptions never cross a component boundary.
#pragma once

#include <cerrno>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "base/assert.h"

namespace loom {

struct Error {
  int code = EINVAL;
  std::string text;

  Error() = default;
  Error(int c, std::string t) : code(c), text(std::move(t)) {}
};

// Result<T> holds a T or an Error. Accessing the wrong side is a bug in
// the caller and asserts.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    LOOM_ASSERT(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    LOOM_ASSERT(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    LOOM_ASSERT(ok());
    return std::get<0>(std::move(v_));
  }
  const Error& error() const {
    LOOM_ASSERT(!ok());
    return std::get<1>(v_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return !err_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const {
    LOOM_ASSERT(!ok());
    return *err_;
  }

 private:
  std::optional<Error> err_;
};

using Status = Result<void>;

}  // namespace loom
