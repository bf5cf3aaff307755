// R, the resource set of a job (Flux RFC 20, version 1):
//   {"version": 1, "execution": {
//      "R_lite": [{"rank": "0-3", "children": {"core": "0-7", "gpu": "0-1"}}],
//      "nodelist": ["host0", "host[1-3]"], "starttime": T0, "expiration": T1}}
// Kept as R_lite has it, ranks that have the same children together, so
// that reading and writing an R costs its entries, not its ranks: a job of
// a thousand ranks of one core each is one entry. It is still read rank by
// rank (ranks()), split by rank (partial release), joined and subtracted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "idset/idset.h"
#include "msg/json.h"

namespace loom {

// What one rank holds, to add to a set.
struct RankResources {
  IdSet cores;
  IdSet gpus;
  std::string hostname;
  bool operator==(const RankResources&) const = default;
};

// What one rank of a set holds, as ranks() shows it: references into the
// set, valid while it is not changed.
struct RankRef {
  const IdSet& cores;
  const IdSet& gpus;
  const std::string& hostname;
  operator RankResources() const { return {cores, gpus, hostname}; }  // NOLINT(google-explicit-constructor)
};

class ResourceSet {
 public:
  // Ranks with the same children, with no rank of the set between them
  // that has other children: one R_lite entry.
  struct Entry {
    IdSet ranks;
    IdSet cores;
    IdSet gpus;
    bool operator==(const Entry&) const = default;
  };

  // The set's ranks in ascending order, each as (rank, RankRef).
  class Ranks {
   public:
    class iterator {
     public:
      using value_type = std::pair<uint32_t, RankRef>;
      using difference_type = std::ptrdiff_t;
      using iterator_category = std::forward_iterator_tag;
      struct Arrow {
        value_type v;
        const value_type* operator->() const { return &v; }
      };
      iterator() = default;
      value_type operator*() const;
      Arrow operator->() const { return {**this}; }
      iterator& operator++();
      iterator operator++(int) {
        iterator old = *this;
        ++*this;
        return old;
      }
      bool operator==(const iterator& o) const { return index_ == o.index_; }

     private:
      friend class Ranks;
      const ResourceSet* set_ = nullptr;
      size_t entry_ = 0, range_ = 0;  // where rank_ is: entries()[entry_].ranks.ranges()[range_]
      uint32_t rank_ = 0;
      uint64_t index_ = 0;  // among all the set's ranks
    };
    iterator begin() const;
    iterator end() const;
    // The rank's position, or end().
    iterator find(uint32_t rank) const;
    bool contains(uint32_t rank) const { return find(rank) != end(); }
    // `rank` must be in the set.
    RankRef at(uint32_t rank) const;
    size_t size() const { return static_cast<size_t>(set_->body().nranks); }
    bool empty() const { return set_->body().nranks == 0; }

   private:
    friend class ResourceSet;
    explicit Ranks(const ResourceSet* set) : set_(set) {}
    const ResourceSet* set_;
  };

  static Result<ResourceSet> parse(const Json& j);
  static Result<ResourceSet> parse_text(std::string_view text);
  // One R_lite entry per Entry.
  Json to_json() const;
  // dump_json(to_json()), written without building the tree: R is
  // written for every job that starts.
  std::string to_text() const;

  // Adds `rank` (or replaces what it holds). Cheap when `rank` is above
  // every rank in the set, as when a set is built in rank order.
  void add_rank(uint32_t rank, RankResources r);
  // The same from views: nothing is copied when `rank` joins the last
  // entry (a matcher adds rank after rank).
  void add_rank(uint32_t rank, const IdSet& cores, const IdSet& gpus, std::string_view hostname);
  // Ranks lo..hi (lo <= hi), each holding `cores` and `gpus`, with the
  // host name name_of(rank) (none without name_of): add_rank() of each in
  // turn, costing one entry, not its ranks, when lo is above every rank in
  // the set (a matcher takes a run of ranks that are wholly free).
  void add_ranks(uint32_t lo, uint32_t hi, const IdSet& cores, const IdSet& gpus,
                 const std::function<std::string_view(uint32_t)>& name_of = nullptr);
  // One host name per rank in ascending order ("" for a rank without
  // one), or none when no rank has a name.
  const std::vector<std::string>& hostnames() const { return body().hostnames; }
  Ranks ranks() const { return Ranks(this); }
  const std::vector<Entry>& entries() const { return body().entries; }
  const IdSet& rank_set() const { return body().ranks; }
  bool empty() const { return body().nranks == 0; }
  uint64_t ncores() const;
  uint64_t ngpus() const;

  // The part of this R on `ranks` (a rank is never split).
  ResourceSet subset(const IdSet& ranks) const;
  ResourceSet set_union(const ResourceSet& o) const;
  // Removes o's cores and gpus; ranks left with nothing disappear.
  ResourceSet subtract(const ResourceSet& o) const;
  // True if no core or gpu is in both.
  bool disjoint(const ResourceSet& o) const;

  double starttime = 0;
  double expiration = 0;

  bool operator==(const ResourceSet& o) const;

 private:
  using RankMap = std::map<uint32_t, RankResources>;
  // Rank by rank, for the operations that are not worth doing by entries.
  RankMap to_map() const;
  void assign(RankMap m);
  // Appends `e` (its ranks all above the set's, `hosts` one name per rank
  // or none), joining it to the last entry when their children are equal.
  void append(Entry e, std::vector<std::string> hosts = {});
  // Whether `rank` is above every rank in the set.
  bool above(uint32_t rank) const;
  // For a rank above every rank in the set: counts and names it, and adds
  // it to the last entry if that has the same children. False when it
  // needs an entry of its own, which the caller appends.
  bool join_last(uint32_t rank, const IdSet& cores, const IdSet& gpus, std::string_view hostname);

  struct Body {
    // Ascending: each entry's ranks above the one's before it, and two
    // neighbours never have the same children (so that equal sets compare
    // equal, and to_json() writes what parse() would read back).
    std::vector<Entry> entries;
    uint64_t nranks = 0;
    // One per rank in ascending order, or none when no rank has a name.
    std::vector<std::string> hostnames;
    IdSet ranks;  // every entry's, kept as ranks are added (always above the set's)
  };
  static const Body kEmptyBody;
  const Body& body() const { return body_ ? *body_ : kEmptyBody; }
  // The body to change: this set's own, copied first if other sets share it.
  Body& own();

  // Shared by copies until one of them changes (copy on write): an R is
  // copied from the scheduler's pool to the job manager's job, its start
  // and its free, and a large one holds thousands of idsets. Null: empty.
  std::shared_ptr<Body> body_;
};

// "node[0-3,7]" → node0 node1 node2 node3 node7; plain names pass through.
Result<std::vector<std::string>> expand_hostlist(std::string_view s);

}  // namespace loom
