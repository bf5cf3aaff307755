// Work coalesced to the next turn of the event loop.
#pragma once

#include <functional>
#include <memory>

#include "base/clock.h"

namespace asio {
class io_context;
}

namespace loom {

// Runs `fn` once on a later turn of the loop, however many times it is
// requested before then: everything that arrives during one turn is
// handled together (one KVS transaction, one commit, one scheduling pass).
// A request made while `fn` runs posts it again. Destroying this object
// guarantees `fn` will not run afterwards.
class OncePerTurn {
 public:
  OncePerTurn(asio::io_context& io, std::function<void()> fn);
  // The same, where a turn ends only once `clock` says the loop is idle at
  // the current instant (Clock::defer_to_idle: the simulator's clock), in
  // `order` among what else waits for that; on the loop's next turn
  // otherwise.
  OncePerTurn(asio::io_context& io, Clock& clock, Clock::IdleOrder order, std::function<void()> fn);
  OncePerTurn(const OncePerTurn&) = delete;
  OncePerTurn& operator=(const OncePerTurn&) = delete;

  void request();
  // Requested, and not yet run.
  bool pending() const;

 private:
  struct State {
    std::function<void()> fn;
    bool posted = false;
  };
  asio::io_context& io_;
  Clock* clock_ = nullptr;
  Clock::IdleOrder order_ = Clock::IdleOrder::kDecide;
  // Held weakly by the posted handler, so that it does nothing once this
  // object is gone.
  std::shared_ptr<State> state_;
};

}  // namespace loom
