// loom rpc [--rank N] [--stream] [--timeout S] TOPIC [JSON]
// Sends one request and prints each response payload as one line.
#include <iostream>

#include "cli/common.h"

namespace loom::cli {

namespace {
struct RpcOpts {
  int rank = -1;
  bool stream = false;
  double timeout = 0;
  std::string topic;
  std::string payload;
};

int run_rpc(const RpcOpts& o) {
  std::string payload = o.payload;
  if (payload == "-") {
    payload.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  if (!payload.empty()) {
    auto j = parse_json(payload);
    if (!j.ok()) return fail("rpc", "payload: " + j.error().text, kExitUsage);
    payload = dump_json(*j);
  }
  auto s = connect_session();
  if (!s.ok()) return fail("rpc", s.error());
  Session& sess = **s;
  int rc = -1;
  RpcOptions opts{rank_or_any(o.rank), o.stream, o.timeout};
  sess.handle().rpc(o.topic, payload, opts, [&](const Message& r) {
    if (r.errnum == 0) {
      std::cout << (r.payload.empty() ? "{}" : r.payload) << "\n" << std::flush;
      if (!o.stream) rc = 0;
      return;
    }
    if (o.stream && r.errnum == ENODATA) {
      rc = 0;
      return;
    }
    rc = fail("rpc", o.topic + ": " + error_text(r));
  });
  while (rc < 0 && sess.client->is_open()) sess.io.run_one();
  if (rc < 0) return fail("rpc", sess.client->lost_text());
  return rc;
}
}  // namespace

void add_rpc_command(CLI::App& app, Runner& run) {
  auto o = std::make_shared<RpcOpts>();
  auto* sub =
      app.add_subcommand("rpc", "Send a request to any service and print each response payload as one JSON line");
  sub->add_option("--rank", o->rank, "Send to this rank (default: the nearest provider)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--stream", o->stream, "Streaming request: print every response until the stream ends");
  sub->add_option("--timeout", o->timeout, "Give up after this many seconds (default: wait forever)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("topic", o->topic, "service.method, e.g. broker.info")->required();
  sub->add_option("payload", o->payload, "JSON payload, or - to read it from stdin");
  sub->footer("Example: loom rpc --rank 3 broker.info");
  sub->callback([o, &run] { run = [o] { return run_rpc(*o); }; });
}

}  // namespace loom::cli
