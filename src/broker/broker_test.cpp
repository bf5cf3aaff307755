// The broker's own configuration checks, with its services in process.
#include "broker/broker.h"

#include <gtest/gtest.h>

#include <asio/detail/reactor.hpp>
#include <asio/io_context.hpp>
#include <string>

#include "base/stepped_clock.h"

namespace loom {
namespace {

TEST(Broker, RefusesToStartWithoutALocalSocket) {
  asio::io_context io;
  SteppedClock clock;
  Broker broker(io, clock, BrokerConfig{});
  auto st = broker.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().text, "no local socket given");
}

// A broker with no local clients (a simulation's) routes between its
// services as any other, and leaves the loop nothing to ask the kernel:
// no descriptor is registered, so polling it makes no system call.
TEST(Broker, WithoutLocalClientsRoutesBetweenServicesAndWatchesNoDescriptor) {
  asio::io_context io;
  SteppedClock clock;
  BrokerConfig cfg;
  cfg.no_local_clients = true;
  Broker broker(io, clock, cfg);
  ASSERT_TRUE(broker.start().ok());
  Handle& server = broker.add_module({"echo"});
  server.add_method("echo.hello", Access::kOwner, [&](const Message& m) { server.respond(m, m.payload); });
  Handle& client = broker.add_module({"client"});
  std::string answer;
  client.rpc("echo.hello", std::string(R"({"x":1})"), {}, [&](const Message& m) { answer = m.payload; });
  while (io.poll() > 0) io.restart();
  EXPECT_EQ(answer, R"({"x":1})");
  EXPECT_FALSE(asio::has_service<asio::detail::reactor>(io));
}

}  // namespace
}  // namespace loom
