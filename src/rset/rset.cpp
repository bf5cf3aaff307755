#include "rset/rset.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

#include "base/assert.h"
#include "base/quote.h"

namespace loom {

namespace {
Error bad(const std::string& why) { return Error{EINVAL, "R: " + why}; }
// Ranks in one R, hosts in one hostlist.
constexpr uint64_t kMaxRanks = 1'000'000;
}  // namespace

Result<std::vector<std::string>> expand_hostlist(std::string_view s) {
  std::vector<std::string> out;
  // Split on commas outside brackets.
  size_t depth = 0, start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i < s.size() && s[i] == '[') ++depth;
    if (i < s.size() && s[i] == ']') {
      if (depth == 0) return bad("unbalanced ']' in hostlist " + quote_input(s));
      --depth;
    }
    if (i < s.size() && (s[i] != ',' || depth > 0)) continue;
    std::string_view part = s.substr(start, i - start);
    start = i + 1;
    if (part.empty()) return bad("empty host in hostlist " + quote_input(s));
    auto lb = part.find('[');
    if (lb == std::string_view::npos) {
      out.emplace_back(part);
      continue;
    }
    auto rb = part.find(']', lb);
    if (rb == std::string_view::npos) return bad("unbalanced '[' in hostlist " + quote_input(s));
    if (part.find_first_of("[]", rb + 1) != std::string_view::npos) {
      // "a[1]b[2]" would name "a1b[2]", which reads back as "a1b2".
      return bad("hostlist " + quote_input(s) + ": one [...] range per host");
    }
    std::string_view inner = part.substr(lb + 1, rb - lb - 1);
    if (inner.empty()) return bad("hostlist " + quote_input(s) + ": empty [] names no host");
    auto ids = IdSet::parse(inner);
    if (!ids.ok()) return bad("hostlist " + quote_input(s) + ": " + ids.error().text);
    // Keep zero padding: "node[01-03]" → node01 node02 node03.
    size_t width = 0;
    if (inner.size() > 1 && inner[0] == '0')
      width = inner.find_first_of("-,") == std::string_view::npos ? inner.size() : inner.find_first_of("-,");
    if (out.size() + ids->count() > kMaxRanks) return bad("hostlist too large");
    for (uint32_t n : ids->to_vector()) {
      std::string num = std::to_string(n);
      if (num.size() < width) num.insert(0, width - num.size(), '0');
      out.push_back(std::string(part.substr(0, lb)) + num + std::string(part.substr(rb + 1)));
    }
  }
  if (depth != 0) return bad("unbalanced '[' in hostlist " + quote_input(s));
  return out;
}

Result<ResourceSet> ResourceSet::parse_text(std::string_view text) {
  auto j = parse_json(text);
  if (!j.ok()) return bad(j.error().text);
  return parse(*j);
}

Result<ResourceSet> ResourceSet::parse(const Json& j) {
  if (!j.is_object()) return bad("must be an object");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int64_t>() != 1) {
    return bad("version must be 1");
  }
  if (!j.contains("execution") || !j["execution"].is_object()) return bad("missing execution");
  const Json& ex = j["execution"];
  if (!ex.contains("R_lite") || !ex["R_lite"].is_array()) return bad("execution.R_lite must be a list");
  std::vector<Entry> got;
  uint64_t total = 0;
  bool ascending = true;  // each entry's ranks above the one's before it
  for (const Json& e : ex["R_lite"]) {
    if (!e.is_object() || !e.contains("rank") || !e["rank"].is_string())
      return bad("each R_lite entry needs a rank idset");
    auto ranks = IdSet::parse(e["rank"].get_ref<const std::string&>());
    if (!ranks.ok()) return bad(ranks.error().text);
    if (!e.contains("children") || !e["children"].is_object()) return bad("each R_lite entry needs children");
    Entry entry;
    for (auto& [type, ids] : e["children"].items()) {
      if (!ids.is_string()) return bad("children." + quote_input(type) + " must be an idset string");
      auto set = IdSet::parse(ids.get_ref<const std::string&>());
      if (!set.ok()) return bad(set.error().text);
      if (type == "core") entry.cores = std::move(*set);
      else if (type == "gpu") entry.gpus = std::move(*set);
      else return bad("unknown resource type " + quote_input(type) + " in children");
    }
    if (ranks->empty()) continue;
    // The bound is on the whole R, not each entry: the encoder may join
    // entries, and it keeps a few lines of text from naming billions of ranks.
    total += ranks->count();
    if (total > kMaxRanks) return bad("too many ranks (at most " + std::to_string(kMaxRanks) + ")");
    if (!got.empty() && *ranks->first() <= *got.back().ranks.last()) ascending = false;
    entry.ranks = std::move(*ranks);
    got.push_back(std::move(entry));
  }
  ResourceSet rs;
  if (ascending) {
    for (Entry& e : got) rs.append(std::move(e));
  } else {
    // Entries out of order, or naming a rank twice: sorted out rank by rank.
    RankMap m;
    for (const Entry& e : got) {
      for (uint32_t r : e.ranks.to_vector()) {
        if (!m.emplace(r, RankResources{e.cores, e.gpus, ""}).second) {
          return bad("rank " + std::to_string(r) + " appears twice");
        }
      }
    }
    rs.assign(std::move(m));
  }
  if (ex.contains("nodelist")) {
    if (!ex["nodelist"].is_array()) return bad("nodelist must be a list of hostlists");
    std::vector<std::string> hosts;
    for (const Json& h : ex["nodelist"]) {
      if (!h.is_string()) return bad("nodelist must be a list of strings");
      auto more = expand_hostlist(h.get_ref<const std::string&>());
      if (!more.ok()) return more.error();
      hosts.insert(hosts.end(), std::make_move_iterator(more->begin()), std::make_move_iterator(more->end()));
      if (hosts.size() > rs.body().nranks) break;  // too many: said below, without expanding the rest
    }
    if (hosts.size() != rs.body().nranks) {
      if (hosts.size() > rs.body().nranks) {
        return bad("nodelist names more hosts than the " + std::to_string(rs.body().nranks) + " ranks");
      }
      return bad("nodelist names " + std::to_string(hosts.size()) + " hosts for " + std::to_string(rs.body().nranks) +
                 " ranks");
    }
    rs.own().hostnames = std::move(hosts);
  }
  for (const char* k : {"starttime", "expiration"}) {
    if (!ex.contains(k)) continue;
    if (!ex[k].is_number() || !std::isfinite(ex[k].get<double>()) || ex[k].get<double>() < 0) {
      return bad(std::string(k) + " must be a non-negative number");
    }
  }
  rs.starttime = ex.value("starttime", 0.0);
  rs.expiration = ex.value("expiration", 0.0);
  return rs;
}

const ResourceSet::Body ResourceSet::kEmptyBody;

ResourceSet::Body& ResourceSet::own() {
  // Only this set holds a body counted once: no other can copy it meanwhile.
  if (!body_) {
    body_ = std::make_shared<Body>();
  } else if (body_.use_count() > 1) {
    body_ = std::make_shared<Body>(*body_);
  }
  return *body_;
}

bool ResourceSet::operator==(const ResourceSet& o) const {
  if (starttime != o.starttime || expiration != o.expiration) return false;
  if (body_ == o.body_) return true;
  const Body& a = body();
  const Body& b = o.body();
  return a.nranks == b.nranks && a.entries == b.entries && a.hostnames == b.hostnames;
}

Json ResourceSet::to_json() const {
  Json lite = Json::array();
  for (const Entry& e : body().entries) {
    Json children = Json::object();
    if (!e.cores.empty()) children["core"] = e.cores.encode();
    if (!e.gpus.empty()) children["gpu"] = e.gpus.encode();
    lite.push_back({{"rank", e.ranks.encode()}, {"children", std::move(children)}});
  }
  // Moved, not copied, into their parents: R is written for every job.
  Json ex = {{"R_lite", std::move(lite)}, {"starttime", starttime}, {"expiration", expiration}};
  if (!body().hostnames.empty()) ex["nodelist"] = body().hostnames;
  return {{"version", 1}, {"execution", std::move(ex)}};
}

std::string ResourceSet::to_text() const {
  // The keys in the order dump_json writes them: sorted, as nlohmann's
  // objects hold them ("R_lite" before "expiration": capitals first).
  const auto& entries = body().entries;
  const auto& hostnames = body().hostnames;
  std::string out = "{\"execution\":{\"R_lite\":[";
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (i > 0) out += ',';
    // (An idset's text needs no escapes: it is written as it is.)
    out += "{\"children\":{";
    if (!e.cores.empty()) {
      out += "\"core\":\"";
      e.cores.encode_to(out);
      out += '"';
    }
    if (!e.gpus.empty()) {
      if (!e.cores.empty()) out += ',';
      out += "\"gpu\":\"";
      e.gpus.encode_to(out);
      out += '"';
    }
    out += "},\"rank\":\"";
    e.ranks.encode_to(out);
    out += "\"}";
  }
  out += "],\"expiration\":";
  append_json_number(out, expiration);
  if (!hostnames.empty()) {
    out += ",\"nodelist\":[";
    for (size_t i = 0; i < hostnames.size(); ++i) {
      if (i > 0) out += ',';
      append_json_string(out, hostnames[i]);
    }
    out += ']';
  }
  out += ",\"starttime\":";
  append_json_number(out, starttime);
  out += "},\"version\":1}";
  return out;
}

void ResourceSet::append(Entry e, std::vector<std::string> hosts) {
  auto& [entries, nranks, hostnames, all] = own();
  const uint64_t n = e.ranks.count();
  if (!hosts.empty() || !hostnames.empty()) {
    hostnames.resize(nranks);  // "" for the ranks before, if they had no names
    if (hosts.empty()) hosts.resize(n);
    LOOM_ASSERT(hosts.size() == n);
    hostnames.insert(hostnames.end(), std::make_move_iterator(hosts.begin()), std::make_move_iterator(hosts.end()));
  }
  nranks += n;
  for (auto [lo, hi] : e.ranks.ranges()) all.insert_range(lo, hi);
  if (!entries.empty() && entries.back().cores == e.cores && entries.back().gpus == e.gpus) {
    IdSet& ranks = entries.back().ranks;
    for (auto [lo, hi] : e.ranks.ranges()) ranks.insert_range(lo, hi);
    return;
  }
  entries.push_back(std::move(e));
}

void ResourceSet::add_rank(uint32_t rank, RankResources r) {
  if (above(rank)) {
    if (!join_last(rank, r.cores, r.gpus, r.hostname)) {
      own().entries.push_back(Entry{IdSet{rank}, std::move(r.cores), std::move(r.gpus)});
    }
    return;
  }
  RankMap m = to_map();
  m[rank] = std::move(r);
  assign(std::move(m));
}

void ResourceSet::add_rank(uint32_t rank, const IdSet& cores, const IdSet& gpus, std::string_view hostname) {
  if (!above(rank)) return add_rank(rank, RankResources{cores, gpus, std::string(hostname)});
  if (!join_last(rank, cores, gpus, hostname)) own().entries.push_back(Entry{IdSet{rank}, cores, gpus});
}

void ResourceSet::add_ranks(uint32_t lo, uint32_t hi, const IdSet& cores, const IdSet& gpus,
                            const std::function<std::string_view(uint32_t)>& name_of) {
  LOOM_ASSERT(lo <= hi);
  if (!above(lo)) {
    for (uint64_t r = lo; r <= hi; ++r) {
      const auto rank = static_cast<uint32_t>(r);
      add_rank(rank, cores, gpus, name_of ? name_of(rank) : std::string_view());
    }
    return;
  }
  auto& [entries, nranks, hostnames, all] = own();
  bool names = !hostnames.empty();
  for (uint64_t r = lo; name_of && !names && r <= hi; ++r) names = !name_of(static_cast<uint32_t>(r)).empty();
  if (names) {
    hostnames.resize(nranks);  // "" for the ranks before, if they had no names
    for (uint64_t r = lo; r <= hi; ++r) {
      hostnames.emplace_back(name_of ? name_of(static_cast<uint32_t>(r)) : std::string_view());
    }
  }
  nranks += uint64_t{hi} - lo + 1;
  all.insert_range(lo, hi);
  if (!entries.empty() && entries.back().cores == cores && entries.back().gpus == gpus) {
    entries.back().ranks.insert_range(lo, hi);
    return;
  }
  IdSet ranks;
  ranks.insert_range(lo, hi);
  entries.push_back(Entry{std::move(ranks), cores, gpus});
}

bool ResourceSet::above(uint32_t rank) const {
  const auto& entries = body().entries;
  return entries.empty() || rank > *entries.back().ranks.last();
}

bool ResourceSet::join_last(uint32_t rank, const IdSet& cores, const IdSet& gpus, std::string_view hostname) {
  auto& [entries, nranks, hostnames, all] = own();
  if (!hostname.empty() || !hostnames.empty()) {
    hostnames.resize(nranks);  // "" for the ranks before, if they had no names
    hostnames.emplace_back(hostname);
  }
  ++nranks;
  all.insert(rank);
  if (entries.empty() || entries.back().cores != cores || entries.back().gpus != gpus) return false;
  entries.back().ranks.insert(rank);
  return true;
}

ResourceSet::RankMap ResourceSet::to_map() const {
  RankMap m;
  for (const auto& [rank, rr] : ranks()) m.emplace_hint(m.end(), rank, rr);
  return m;
}

void ResourceSet::assign(RankMap m) {
  body_.reset();
  const bool named = std::any_of(m.begin(), m.end(), [](const auto& kv) { return !kv.second.hostname.empty(); });
  for (auto& [rank, rr] : m) {
    std::vector<std::string> host;
    if (named) host.push_back(std::move(rr.hostname));
    append(Entry{IdSet{rank}, std::move(rr.cores), std::move(rr.gpus)}, std::move(host));
  }
}

uint64_t ResourceSet::ncores() const {
  uint64_t n = 0;
  for (const Entry& e : body().entries) n += e.ranks.count() * e.cores.count();
  return n;
}

uint64_t ResourceSet::ngpus() const {
  uint64_t n = 0;
  for (const Entry& e : body().entries) n += e.ranks.count() * e.gpus.count();
  return n;
}

ResourceSet ResourceSet::subset(const IdSet& ranks) const {
  ResourceSet out;
  out.starttime = starttime;
  out.expiration = expiration;
  if (!body().hostnames.empty()) {
    RankMap m;
    for (const auto& [rank, rr] : this->ranks()) {
      if (ranks.contains(rank)) m.emplace_hint(m.end(), rank, rr);
    }
    out.assign(std::move(m));
    return out;
  }
  for (const Entry& e : body().entries) {
    IdSet keep = e.ranks.intersect(ranks);
    if (!keep.empty()) out.append(Entry{std::move(keep), e.cores, e.gpus});
  }
  return out;
}

ResourceSet ResourceSet::set_union(const ResourceSet& o) const {
  RankMap m = to_map();
  for (const auto& [rank, rr] : o.ranks()) {
    auto& mine = m[rank];
    mine.cores = mine.cores.set_union(rr.cores);
    mine.gpus = mine.gpus.set_union(rr.gpus);
    if (mine.hostname.empty()) mine.hostname = rr.hostname;
  }
  ResourceSet out;
  out.starttime = starttime;
  out.expiration = expiration;
  out.assign(std::move(m));
  return out;
}

ResourceSet ResourceSet::subtract(const ResourceSet& o) const {
  const RankMap theirs = o.to_map();
  RankMap m;
  for (const auto& [rank, rr] : ranks()) {
    RankResources left = rr;
    if (auto it = theirs.find(rank); it != theirs.end()) {
      left.cores = left.cores.subtract(it->second.cores);
      left.gpus = left.gpus.subtract(it->second.gpus);
    }
    if (!left.cores.empty() || !left.gpus.empty()) m.emplace_hint(m.end(), rank, std::move(left));
  }
  ResourceSet out;
  out.starttime = starttime;
  out.expiration = expiration;
  out.assign(std::move(m));
  return out;
}

bool ResourceSet::disjoint(const ResourceSet& o) const {
  const RankMap theirs = o.to_map();
  for (const auto& [rank, rr] : ranks()) {
    auto it = theirs.find(rank);
    if (it == theirs.end()) continue;
    if (!rr.cores.intersect(it->second.cores).empty() || !rr.gpus.intersect(it->second.gpus).empty()) return false;
  }
  return true;
}

// --- ranks() ---

ResourceSet::Ranks::iterator::value_type ResourceSet::Ranks::iterator::operator*() const {
  static const std::string kNoName;
  const Body& body = set_->body();
  const Entry& e = body.entries[entry_];
  const std::string& host = body.hostnames.empty() ? kNoName : body.hostnames[index_];
  return {rank_, RankRef{e.cores, e.gpus, host}};
}

ResourceSet::Ranks::iterator& ResourceSet::Ranks::iterator::operator++() {
  ++index_;
  const auto& entries = set_->body().entries;
  const auto& ranges = entries[entry_].ranks.ranges();
  if (rank_ < ranges[range_].second) {
    ++rank_;
  } else if (++range_ < ranges.size()) {
    rank_ = ranges[range_].first;
  } else if (range_ = 0; ++entry_ < entries.size()) {
    rank_ = entries[entry_].ranks.ranges()[0].first;
  }
  return *this;
}

ResourceSet::Ranks::iterator ResourceSet::Ranks::begin() const {
  iterator it;
  it.set_ = set_;
  const auto& entries = set_->body().entries;
  if (!entries.empty()) it.rank_ = entries[0].ranks.ranges()[0].first;
  return it;
}

ResourceSet::Ranks::iterator ResourceSet::Ranks::end() const {
  iterator it;
  it.set_ = set_;
  it.entry_ = set_->body().entries.size();
  it.index_ = set_->body().nranks;
  return it;
}

ResourceSet::Ranks::iterator ResourceSet::Ranks::find(uint32_t rank) const {
  const auto& es = set_->body().entries;
  // The first entry that reaches `rank`, then the first of its ranges.
  auto e = std::partition_point(es.begin(), es.end(), [&](const Entry& x) { return *x.ranks.last() < rank; });
  if (e == es.end()) return end();
  const auto& ranges = e->ranks.ranges();
  auto g = std::partition_point(ranges.begin(), ranges.end(), [&](const auto& p) { return p.second < rank; });
  if (g->first > rank) return end();
  iterator it;
  it.set_ = set_;
  it.entry_ = static_cast<size_t>(e - es.begin());
  it.range_ = static_cast<size_t>(g - ranges.begin());
  it.rank_ = rank;
  for (auto x = es.begin(); x != e; ++x) it.index_ += x->ranks.count();
  for (auto p = ranges.begin(); p != g; ++p) it.index_ += uint64_t{p->second} - p->first + 1;
  it.index_ += rank - g->first;
  return it;
}

RankRef ResourceSet::Ranks::at(uint32_t rank) const {
  auto it = find(rank);
  LOOM_ASSERT(it != end());
  return (*it).second;
}

}  // namespace loom
