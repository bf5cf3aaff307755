// libFuzzer target for R, the resource set of a job (Flux RFC 20, as rset.h
// reads it), as the scheduler writes it to the KVS and the execution
// service, the shells and `loom job info` read it back; and for the
// hostlists in its nodelist.
//
// For any input, ResourceSet::parse_text either fails with a one-line "R:"
// error or yields a set that round-trips through its encoder: to_json,
// written out and parsed again, gives the same set. The set operations the
// scheduler relies on hold on it (a set is its own union and subset, minus
// itself is empty, and disjoint from itself only when it holds nothing),
// checked when the set is small enough to stay cheap (huge sets only parse).
//
// Short inputs are also read as a hostlist: every host it names is a plain
// name that expands to itself, so a nodelist written from the names reads
// back the same.
//
// Build with the `fuzz` preset; ctest runs it for a bounded time on the
// seeds in fuzz_corpus/.
#include <cstdint>
#include <string>
#include <string_view>

#include "base/fuzz_check.h"
#include "rset/rset.h"

namespace loom {
namespace {

void check_hostlist(std::string_view text) {
  auto hosts = expand_hostlist(text);
  if (!hosts.ok()) {
    FUZZ_CHECK(hosts.error().code == EINVAL && fuzz::one_line(hosts.error().text));
    return;
  }
  FUZZ_CHECK(!hosts->empty());
  size_t checked = 0;
  for (const std::string& h : *hosts) {
    if (++checked > 64) break;
    FUZZ_CHECK(!h.empty());
    auto self = expand_hostlist(h);
    FUZZ_CHECK(self.ok());
    FUZZ_CHECK(self->size() == 1 && (*self)[0] == h);
  }
}

void check_set(const ResourceSet& rs) {
  // Up to a million ranks parse, at a second or more each under the
  // sanitizers; the checks below would take several, for nothing new.
  if (rs.ranks().size() > 65536) return;
  Json j = rs.to_json();
  auto back = ResourceSet::parse_text(dump_json(j));
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(*back == rs);
  FUZZ_CHECK(back->to_json() == j);

  uint64_t cores = 0, gpus = 0;
  for (const auto& [rank, rr] : rs.ranks()) {
    cores += rr.cores.count();
    gpus += rr.gpus.count();
  }
  FUZZ_CHECK(rs.ncores() == cores && rs.ngpus() == gpus);
  FUZZ_CHECK(rs.rank_set().count() == rs.ranks().size());

  if (rs.ranks().size() > 4096) return;  // the rest copies the set a few times
  FUZZ_CHECK(rs.subset(rs.rank_set()) == rs);
  FUZZ_CHECK(rs.set_union(rs) == rs);
  ResourceSet none = rs.subtract(rs);
  FUZZ_CHECK(none.empty());
  FUZZ_CHECK(rs.disjoint(none));
  FUZZ_CHECK(rs.disjoint(rs) == (cores == 0 && gpus == 0));
}

}  // namespace
}  // namespace loom

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loom;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  if (size <= 64) check_hostlist(text);

  auto rs = ResourceSet::parse_text(text);
  if (!rs.ok()) {
    FUZZ_CHECK(rs.error().code == EINVAL);
    FUZZ_CHECK(rs.error().text.starts_with("R: "));
    FUZZ_CHECK(fuzz::one_line(rs.error().text));
    return 0;
  }
  check_set(*rs);
  return 0;
}
