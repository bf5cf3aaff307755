// A Histogram (base/histogram.h) as it travels in a stats response:
// {"bounds":[...],"counts":[...],"sum":S,"count":N}, counts per bucket
// (not cumulative), one more than bounds (the last is above every bound).
#pragma once

#include "base/histogram.h"
#include "msg/json.h"

namespace loom {

inline Json histogram_json(const Histogram& h) {
  return Json{{"bounds", h.bounds()}, {"counts", h.counts()}, {"sum", h.sum()}, {"count", h.count()}};
}

}  // namespace loom
