// The PMI server's barriers over an exchange the test steps by hand: the
// lines the shells append reach each shell's watch only when the test
// delivers them, so orders that are races between real brokers are
// played here one by one.
#include "shell/pmi_server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace loom {
namespace {

// The job's `pmi` key, and how much of it each shell's watch was given.
struct Exchange {
  std::string key;
  std::vector<std::function<void(std::string_view, const Error*)>> watchers;
  std::vector<size_t> delivered;

  PmiExchange for_shell(size_t shell) {
    if (watchers.size() <= shell) {
      watchers.resize(shell + 1);
      delivered.resize(shell + 1);
    }
    PmiExchange ex;
    ex.append = [this](std::string line, const std::function<void(const Error*)>& done) {
      key += line;
      done(nullptr);
    };
    ex.watch = [this, shell](std::function<void(std::string_view, const Error*)> chunk) {
      watchers[shell] = std::move(chunk);
      delivered[shell] = 0;
    };
    return ex;
  }
  // What was appended since, to shell's watch (if it watches).
  void deliver(size_t shell) {
    if (!watchers[shell] || delivered[shell] == key.size()) return;
    std::string chunk = key.substr(delivered[shell]);
    delivered[shell] = key.size();
    watchers[shell](chunk, nullptr);
  }
  // Ends shell's watch with `e`.
  void fail(size_t shell, const Error& e) {
    auto w = std::move(watchers[shell]);
    watchers[shell] = nullptr;
    w({}, &e);
  }
  bool watching(size_t shell) const { return static_cast<bool>(watchers[shell]); }
};

class PmiServerTest : public ::testing::Test {
 protected:
  asio::io_context io;
  Exchange exchange;
  std::vector<std::unique_ptr<PmiServer>> shells;
  std::vector<int> fds;  // the task ends, by task rank
  std::vector<std::string> aborts;

  // `per_shell[s]` tasks on shell s, ranked in shell order.
  void start(const std::vector<int>& per_shell) {
    int size = 0;
    for (int n : per_shell) size += n;
    for (size_t s = 0; s < per_shell.size(); ++s) {
      PmiJob job{size, "loom_1", static_cast<int>(per_shell.size()), static_cast<uint32_t>(s), ""};
      shells.push_back(std::make_unique<PmiServer>(io, job, exchange.for_shell(s),
                                                   [this](const std::string& why) { aborts.push_back(why); }));
      for (int t = 0; t < per_shell[s]; ++t) {
        auto fd = shells.back()->add_task(static_cast<int>(fds.size()));
        ASSERT_TRUE(fd.ok()) << fd.error().text;
        fds.push_back(*fd);
      }
    }
  }
  void TearDown() override {
    for (int fd : fds) ::close(fd);
  }
  // Task `task` sends `line`; the shells run until nothing is left to do.
  void send(int task, const std::string& line) {
    std::string text = line + "\n";
    ASSERT_EQ(::write(fds[task], text.data(), text.size()), static_cast<ssize_t>(text.size()));
    settle();
  }
  // What every shell appended, to every shell's watch.
  void deliver_all() {
    for (size_t s = 0; s < shells.size(); ++s) exchange.deliver(s);
    settle();
  }
  void settle() {
    // The server's read is ready once the reactor sees the bytes: run
    // until a pass finds nothing to do.
    while (io.poll() > 0) {
    }
  }
  // The answer task `task` has waiting, "" for none.
  std::string answer(int task) {
    pollfd p{fds[task], POLLIN, 0};
    if (::poll(&p, 1, 0) != 1) return "";
    std::string got;
    char ch = 0;
    while (::read(fds[task], &ch, 1) == 1 && ch != '\n') got += ch;
    return got;
  }
  std::string ask(int task, const std::string& line) {
    send(task, line);
    return answer(task);
  }
};

TEST_F(PmiServerTest, KeysPutForTheNextBarrierAreNotSeenBeforeItEnds) {
  // One task on each of two shells, each running one program after
  // another (`sh -c './a; ./b'`) that puts the same key.
  start({1, 1});
  for (int t : {0, 1}) {
    ASSERT_EQ(ask(t, "cmd=init pmi_version=1 pmi_subversion=1"),
              "cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1");
    ASSERT_EQ(ask(t, "cmd=put key=k" + std::to_string(t) + " value=first-" + std::to_string(t)), "cmd=put_result rc=0");
    send(t, "cmd=barrier_in");
  }
  deliver_all();
  ASSERT_EQ(answer(0), "cmd=barrier_out rc=0");
  ASSERT_EQ(answer(1), "cmd=barrier_out rc=0");

  // Task 0 reads, finishes its first program and starts the second,
  // which puts k0 anew and enters the next barrier; its shell's line
  // reaches task 1's shell before task 1 reads.
  EXPECT_EQ(ask(0, "cmd=get key=k1"), "cmd=get_result rc=0 value=first-1");
  EXPECT_EQ(ask(0, "cmd=finalize"), "cmd=finalize_ack rc=0");
  EXPECT_EQ(ask(0, "cmd=init pmi_version=1 pmi_subversion=1"),
            "cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1");
  EXPECT_EQ(ask(0, "cmd=put key=k0 value=second-0"), "cmd=put_result rc=0");
  EXPECT_EQ(ask(0, "cmd=get key=k0"), "cmd=get_result rc=0 value=second-0") << "a task sees its own put at once";
  send(0, "cmd=barrier_in");
  exchange.deliver(1);
  settle();
  EXPECT_EQ(ask(1, "cmd=get key=k0"), "cmd=get_result rc=0 value=first-0");

  // Task 1's second program: the barrier ends on both, with the new keys.
  EXPECT_EQ(ask(1, "cmd=finalize"), "cmd=finalize_ack rc=0");
  EXPECT_EQ(ask(1, "cmd=init pmi_version=1 pmi_subversion=1"),
            "cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1");
  EXPECT_EQ(ask(1, "cmd=put key=k1 value=second-1"), "cmd=put_result rc=0");
  send(1, "cmd=barrier_in");
  EXPECT_EQ(answer(1), "") << "the barrier waits for shell 0's line";
  deliver_all();
  EXPECT_EQ(answer(0), "cmd=barrier_out rc=0");
  EXPECT_EQ(answer(1), "cmd=barrier_out rc=0");
  EXPECT_EQ(ask(0, "cmd=get key=k1"), "cmd=get_result rc=0 value=second-1");
  EXPECT_EQ(ask(1, "cmd=get key=k0"), "cmd=get_result rc=0 value=second-0");
  EXPECT_TRUE(aborts.empty());
}

TEST_F(PmiServerTest, ATaskSeesTheKeysOfItsShellsOtherTasksOnlyAfterABarrier) {
  start({2});
  for (int t : {0, 1}) ASSERT_NE(ask(t, "cmd=init pmi_version=1 pmi_subversion=1"), "");
  EXPECT_EQ(ask(0, "cmd=put key=a value=1"), "cmd=put_result rc=0");
  EXPECT_EQ(ask(1, "cmd=get key=a"), "cmd=get_result rc=-1 msg=key_a_not_found");
  send(0, "cmd=barrier_in");
  send(1, "cmd=barrier_in");
  exchange.deliver(0);
  settle();
  EXPECT_EQ(answer(0), "cmd=barrier_out rc=0");
  EXPECT_EQ(answer(1), "cmd=barrier_out rc=0");
  EXPECT_EQ(ask(1, "cmd=get key=a"), "cmd=get_result rc=0 value=1");
}

TEST_F(PmiServerTest, AWatchThatEndsInTheWireUpEndsTheJobAndTellsTheOtherShells) {
  start({1, 1});
  for (int t : {0, 1}) ASSERT_NE(ask(t, "cmd=init pmi_version=1 pmi_subversion=1"), "");
  exchange.fail(0, Error{EINVAL, "key pmi was overwritten, not appended to"});
  ASSERT_EQ(aborts,
            std::vector<std::string>{"cannot follow the PMI exchange: key pmi was overwritten, not appended to"});
  exchange.deliver(1);
  settle();
  EXPECT_EQ(aborts.size(), 2u) << "shell 1 reads the abort line";
}

TEST_F(PmiServerTest, ALostBrokerIsNoAbortAndAWatchEndedOutsideTheWireUpStartsAgain) {
  start({1});
  ASSERT_NE(ask(0, "cmd=init pmi_version=1 pmi_subversion=1"), "");
  // The broker went away: the shell reconnects and calls rewatch().
  exchange.fail(0, Error{ECONNRESET, "lost the connection to the broker"});
  EXPECT_TRUE(aborts.empty());
  shells[0]->rewatch();
  ASSERT_TRUE(exchange.watching(0));
  EXPECT_EQ(ask(0, "cmd=put key=a value=1"), "cmd=put_result rc=0");
  send(0, "cmd=barrier_in");
  exchange.deliver(0);
  settle();
  EXPECT_EQ(answer(0), "cmd=barrier_out rc=0");
  // Between two programs no task waits on the exchange: the next init
  // follows it again, from its start, passing over what was read.
  EXPECT_EQ(ask(0, "cmd=finalize"), "cmd=finalize_ack rc=0");
  exchange.fail(0, Error{EPERM, "not yours"});
  EXPECT_TRUE(aborts.empty());
  EXPECT_FALSE(exchange.watching(0));
  ASSERT_NE(ask(0, "cmd=init pmi_version=1 pmi_subversion=1"), "");
  ASSERT_TRUE(exchange.watching(0));
  send(0, "cmd=barrier_in");
  exchange.deliver(0);
  settle();
  EXPECT_EQ(answer(0), "cmd=barrier_out rc=0");
  EXPECT_TRUE(aborts.empty());
}

}  // namespace
}  // namespace loom
