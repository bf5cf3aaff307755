#include "base/once_per_turn.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>

namespace loom {

OncePerTurn::OncePerTurn(asio::io_context& io, std::function<void()> fn)
    : io_(io), state_(std::make_shared<State>(State{std::move(fn), false})) {}

void OncePerTurn::request() {
  if (state_->posted) return;
  state_->posted = true;
  asio::post(io_, [weak = std::weak_ptr<State>(state_)] {
    // Kept alive while fn runs, which may destroy this object's owner.
    auto state = weak.lock();
    if (!state) return;
    state->posted = false;
    state->fn();
  });
}

bool OncePerTurn::pending() const { return state_->posted; }

}  // namespace loom
