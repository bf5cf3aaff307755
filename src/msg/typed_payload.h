// Typed payloads (docs/design.md, section 3): between the services of one
// process a payload may travel as the C++ value its sender built. The
// receiver reads the value itself (typed_payload), neither parsing nor
// building JSON; anything else sees the JSON it stands for, written only
// when asked for: a socket (Message::write_text), a handler that reads
// the payload as JSON (payload_json). A message from a socket never has one.
#pragma once

#include <memory>
#include <utility>

#include "msg/json.h"
#include "msg/message.h"

namespace loom {

// A TypedPayload holding a T; `payload_json_of(const T&)`, found by
// argument-dependent lookup, gives its JSON.
template <class T>
class TypedAs final : public TypedPayload {
 public:
  explicit TypedAs(T v) : value(std::move(v)) {}
  Json to_json() const override { return payload_json_of(value); }
  const T value;
};

// The value of `m`'s typed payload if it is a T, else nullptr (no typed
// payload, or one of another type: the caller reads the JSON).
template <class T>
const T* typed_payload(const Message& m) {
  const auto* t = dynamic_cast<const TypedAs<T>*>(m.typed.get());
  return t ? &t->value : nullptr;
}

}  // namespace loom
