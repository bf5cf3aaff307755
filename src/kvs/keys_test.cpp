// A namespace's keys (Kvs::Keys): an ordered map with a hash index of its
// keys. Random puts, finds and erases, by key and by a walk below a
// prefix as an unlink does, against a plain std::map: the same keys, the
// same values, in the same order, and every lookup agrees.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <utility>

#include "kvs/kvs.h"

namespace loom {
namespace {

TEST(KvsKeys, AgreeWithAnOrderedMap) {
  std::mt19937 rng(16);
  Kvs::Keys keys;
  std::map<std::string, std::string> model;
  // Few enough names to hit the same keys again, long enough to be
  // held outside the string itself, as job keys are.
  auto name = [&] {
    return "job." + std::to_string(1000000000000 + rng() % 40) + (rng() % 3 == 0 ? ".eventlog" : ".R");
  };
  for (int step = 0; step < 20000; ++step) {
    const std::string k = name();
    switch (rng() % 5) {
      case 0:
      case 1: {  // put (a new key or an old one)
        const std::string v = std::to_string(step);
        keys[k].value = v;
        model[k] = v;
        break;
      }
      case 2: {  // erase one key
        ASSERT_EQ(keys.erase(k), model.erase(k));
        break;
      }
      case 3: {  // erase what is below a job's directory, as an unlink does
        const std::string prefix = k.substr(0, k.rfind('.') + 1);
        for (auto it = keys.lower_bound(prefix); it != keys.end() && it->first.starts_with(prefix);) {
          it = keys.erase(it);
        }
        for (auto it = model.lower_bound(prefix); it != model.end() && it->first.starts_with(prefix);) {
          it = model.erase(it);
        }
        break;
      }
      default: {  // look up
        auto it = keys.find(k);
        auto m = model.find(k);
        ASSERT_EQ(it == keys.end(), m == model.end()) << k;
        if (m != model.end()) {
          ASSERT_EQ(it->first, k);
          ASSERT_EQ(it->second.value, m->second);
        }
        ASSERT_EQ(keys.count(k), model.count(k));
        break;
      }
    }
    ASSERT_EQ(keys.size(), model.size());
  }
  // In order, and each found where it is.
  auto m = model.begin();
  for (auto it = keys.begin(); it != keys.end(); ++it, ++m) {
    ASSERT_EQ(it->first, m->first);
    ASSERT_EQ(it->second.value, m->second);
    ASSERT_TRUE(keys.find(it->first) == it);
  }
  EXPECT_TRUE(m == model.end());
  // Moved, the index comes along.
  Kvs::Keys moved = std::move(keys);
  for (const auto& [k, v] : model) {
    auto it = moved.find(k);
    ASSERT_TRUE(it != moved.end());
    EXPECT_EQ(it->second.value, v);
  }
  EXPECT_GT(model.size(), 10u);
}

}  // namespace
}  // namespace loom
