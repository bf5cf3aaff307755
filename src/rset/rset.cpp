#include "rset/rset.h"

#include <cmath>
#include <utility>

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
  ResourceSet rs;
  for (const Json& e : ex["R_lite"]) {
    if (!e.is_object() || !e.contains("rank") || !e["rank"].is_string())
      return bad("each R_lite entry needs a rank idset");
    auto ranks = IdSet::parse(e["rank"].get<std::string>());
    if (!ranks.ok()) return bad(ranks.error().text);
    if (!e.contains("children") || !e["children"].is_object()) return bad("each R_lite entry needs children");
    RankResources rr;
    for (auto& [type, ids] : e["children"].items()) {
      if (!ids.is_string()) return bad("children." + quote_input(type) + " must be an idset string");
      auto set = IdSet::parse(ids.get<std::string>());
      if (!set.ok()) return bad(set.error().text);
      if (type == "core") rr.cores = *set;
      else if (type == "gpu") rr.gpus = *set;
      else return bad("unknown resource type " + quote_input(type) + " in children");
    }
    // The bound is on the whole R, not each entry: the encoder may join
    // entries, and it keeps a few lines of text from naming billions of ranks.
    if (rs.ranks_.size() + ranks->count() > kMaxRanks) {
      return bad("too many ranks (at most " + std::to_string(kMaxRanks) + ")");
    }
    for (uint32_t r : ranks->to_vector()) {
      if (rs.ranks_.count(r)) return bad("rank " + std::to_string(r) + " appears twice");
      rs.ranks_[r] = rr;
    }
  }
  if (ex.contains("nodelist")) {
    if (!ex["nodelist"].is_array()) return bad("nodelist must be a list of hostlists");
    std::vector<std::string> hosts;
    for (const Json& h : ex["nodelist"]) {
      if (!h.is_string()) return bad("nodelist must be a list of strings");
      auto more = expand_hostlist(h.get<std::string>());
      if (!more.ok()) return more.error();
      hosts.insert(hosts.end(), more->begin(), more->end());
      if (hosts.size() > rs.ranks_.size()) break;  // too many: said below, without expanding the rest
    }
    if (hosts.size() != rs.ranks_.size()) {
      if (hosts.size() > rs.ranks_.size()) {
        return bad("nodelist names more hosts than the " + std::to_string(rs.ranks_.size()) + " ranks");
      }
      return bad("nodelist names " + std::to_string(hosts.size()) + " hosts for " + std::to_string(rs.ranks_.size()) +
                 " ranks");
    }
    size_t i = 0;
    for (auto& [r, rr] : rs.ranks_) rr.hostname = hosts[i++];
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

Json ResourceSet::to_json() const {
  Json lite = Json::array();
  // Consecutive runs of ranks with the same children share an entry.
  const RankResources* prev = nullptr;
  IdSet run;
  auto flush = [&] {
    if (!prev) return;
    Json children = Json::object();
    if (!prev->cores.empty()) children["core"] = prev->cores.encode();
    if (!prev->gpus.empty()) children["gpu"] = prev->gpus.encode();
    lite.push_back({{"rank", run.encode()}, {"children", std::move(children)}});
  };
  for (auto& [r, rr] : ranks_) {
    if (!prev || prev->cores != rr.cores || prev->gpus != rr.gpus) {
      flush();
      run = IdSet{};
      prev = &rr;
    }
    run.insert(r);
  }
  flush();
  Json nodelist = Json::array();
  bool named = false;
  for (auto& [r, rr] : ranks_) {
    nodelist.push_back(rr.hostname);
    named = named || !rr.hostname.empty();
  }
  // Moved, not copied, into their parents: R is written for every job.
  Json ex = {{"R_lite", std::move(lite)}, {"starttime", starttime}, {"expiration", expiration}};
  if (named) ex["nodelist"] = std::move(nodelist);
  return {{"version", 1}, {"execution", std::move(ex)}};
}

void ResourceSet::add_rank(uint32_t rank, RankResources r) { ranks_[rank] = std::move(r); }

IdSet ResourceSet::rank_set() const {
  IdSet s;
  for (auto& [r, rr] : ranks_) s.insert(r);
  return s;
}

uint64_t ResourceSet::ncores() const {
  uint64_t n = 0;
  for (auto& [r, rr] : ranks_) n += rr.cores.count();
  return n;
}

uint64_t ResourceSet::ngpus() const {
  uint64_t n = 0;
  for (auto& [r, rr] : ranks_) n += rr.gpus.count();
  return n;
}

ResourceSet ResourceSet::subset(const IdSet& ranks) const {
  ResourceSet out;
  out.starttime = starttime;
  out.expiration = expiration;
  for (auto& [r, rr] : ranks_) {
    if (ranks.contains(r)) out.ranks_[r] = rr;
  }
  return out;
}

ResourceSet ResourceSet::set_union(const ResourceSet& o) const {
  ResourceSet out = *this;
  for (auto& [r, rr] : o.ranks_) {
    auto& mine = out.ranks_[r];
    mine.cores = mine.cores.set_union(rr.cores);
    mine.gpus = mine.gpus.set_union(rr.gpus);
    if (mine.hostname.empty()) mine.hostname = rr.hostname;
  }
  return out;
}

ResourceSet ResourceSet::subtract(const ResourceSet& o) const {
  ResourceSet out;
  out.starttime = starttime;
  out.expiration = expiration;
  for (auto& [r, rr] : ranks_) {
    auto it = o.ranks_.find(r);
    RankResources left = rr;
    if (it != o.ranks_.end()) {
      left.cores = rr.cores.subtract(it->second.cores);
      left.gpus = rr.gpus.subtract(it->second.gpus);
    }
    if (!left.cores.empty() || !left.gpus.empty()) out.ranks_[r] = std::move(left);
  }
  return out;
}

bool ResourceSet::disjoint(const ResourceSet& o) const {
  for (auto& [r, rr] : ranks_) {
    auto it = o.ranks_.find(r);
    if (it == o.ranks_.end()) continue;
    if (!rr.cores.intersect(it->second.cores).empty() || !rr.gpus.intersect(it->second.gpus).empty()) return false;
  }
  return true;
}

}  // namespace loom
