#include "base/once_per_turn.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>

namespace loom {

OncePerTurn::OncePerTurn(asio::io_context& io, std::function<void()> fn)
    : io_(io), state_(std::make_shared<State>(State{std::move(fn), false})) {}

OncePerTurn::OncePerTurn(asio::io_context& io, Clock& clock, Clock::IdleOrder order, std::function<void()> fn)
    : io_(io), clock_(&clock), order_(order), state_(std::make_shared<State>(State{std::move(fn), false})) {}

void OncePerTurn::request() {
  if (state_->posted) return;
  state_->posted = true;
  std::function<void()> run = [weak = std::weak_ptr<State>(state_)] {
    // Kept alive while fn runs, which may destroy this object's owner.
    auto state = weak.lock();
    if (!state) return;
    state->posted = false;
    state->fn();
  };
  if (clock_ && clock_->defer_to_idle(run, order_)) return;
  asio::post(io_, std::move(run));
}

bool OncePerTurn::pending() const { return state_->posted; }

}  // namespace loom
