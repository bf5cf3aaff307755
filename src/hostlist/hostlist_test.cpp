#include "hostlist/hostlist.h"

#include <gtest/gtest.h>

#include <random>

namespace loom {

namespace {
using Names = std::vector<std::string>;

Names decode(std::string_view text) {
  auto h = Hostlist::parse(text);
  EXPECT_TRUE(h.ok()) << text << ": " << h.error().text;
  return h.ok() ? h->hosts() : Names{};
}

std::string encode(const Names& names) {
  Hostlist h;
  for (const auto& n : names) EXPECT_TRUE(h.append(n).ok()) << n;
  return h.encode();
}

std::string why(std::string_view text) {
  auto h = Hostlist::parse(text);
  return h.ok() ? "" : h.error().text;
}
}  // namespace

TEST(Hostlist, ReadsTheTestVectorsOfRfc29) {
  EXPECT_EQ(decode(""), Names{});
  EXPECT_EQ(decode("foox,fooy,fooz"), (Names{"foox", "fooy", "fooz"}));
  EXPECT_EQ(decode("[1-3,5-6]"), (Names{"1", "2", "3", "5", "6"}));
  EXPECT_EQ(decode("foo[1-5]"), (Names{"foo1", "foo2", "foo3", "foo4", "foo5"}));
  EXPECT_EQ(decode("foo[0-4]-eth2"), (Names{"foo0-eth2", "foo1-eth2", "foo2-eth2", "foo3-eth2", "foo4-eth2"}));
  EXPECT_EQ(decode("foo1,foo1,foo1"), (Names{"foo1", "foo1", "foo1"}));
  EXPECT_EQ(decode("[00-02]"), (Names{"00", "01", "02"}));
  EXPECT_EQ(decode("[00-2]"), (Names{"00", "01", "02"}));
  EXPECT_EQ(decode("foo[1,1,2,1]"), (Names{"foo1", "foo1", "foo2", "foo1"}));
}

TEST(Hostlist, ExpandsRangesListsAndSuffixesInOrder) {
  auto sixteen = decode("node[0-15]");
  ASSERT_EQ(sixteen.size(), 16u);
  EXPECT_EQ(sixteen.front(), "node0");
  EXPECT_EQ(sixteen.back(), "node15");
  EXPECT_EQ(decode("a[1-3,7],b,c[2-4]"), (Names{"a1", "a2", "a3", "a7", "b", "c2", "c3", "c4"}));
  EXPECT_EQ(decode("node[1-2]-ib"), (Names{"node1-ib", "node2-ib"}));
  EXPECT_EQ(decode("n[3,1-2]"), (Names{"n3", "n1", "n2"}));  // the order written, not sorted
  EXPECT_EQ(decode("login.example.org,n[1-2].example.org"),
            (Names{"login.example.org", "n1.example.org", "n2.example.org"}));
}

TEST(Hostlist, KeepsTheFirstElementsZeroPadding) {
  auto padded = decode("node[00-15]");
  ASSERT_EQ(padded.size(), 16u);
  EXPECT_EQ(padded[3], "node03");
  EXPECT_EQ(padded[15], "node15");
  EXPECT_EQ(decode("n[08-10]"), (Names{"n08", "n09", "n10"}));
  EXPECT_EQ(decode("n[007,12]"), (Names{"n007", "n012"}));
  EXPECT_EQ(decode("n[98-100]"), (Names{"n98", "n99", "n100"}));
  EXPECT_EQ(decode("n[1,02]"), (Names{"n1", "n2"}));  // only the first element sets it
  EXPECT_EQ(decode("n[0-1]"), (Names{"n0", "n1"}));   // a lone 0 is not padding
}

TEST(Hostlist, EncodesRunsOfOnePrefixAsOneBracketGroup) {
  EXPECT_EQ(encode({"a1", "a2", "a3", "a7", "b", "c2", "c3", "c4"}), "a[1-3,7],b,c[2-4]");
  EXPECT_EQ(encode({"node1-ib", "node2-ib"}), "node[1-2]-ib");
  EXPECT_EQ(encode({"n5"}), "n5");
  EXPECT_EQ(encode({"n1", "n2"}), "n[1-2]");
  EXPECT_EQ(encode({"login", "n1", "n2", "n3", "n5"}), "login,n[1-3,5]");
  EXPECT_EQ(encode({"rack2-node3", "rack2-node4"}), "rack2-node[3-4]");  // the last number counts
  EXPECT_EQ(encode({"n3", "n1", "n2"}), "n[3,1-2]");
  EXPECT_EQ(encode({"foo1", "foo1", "foo2", "foo1"}), "foo[1,1-2,1]");
  EXPECT_EQ(encode({"n1", "m2", "n3"}), "n1,m2,n3");  // order is kept over compression
  EXPECT_EQ(encode({"n1.a", "n2.a", "n1.b"}), "n[1-2].a,n1.b");
  EXPECT_EQ(encode({}), "");
}

TEST(Hostlist, EncodesPaddingOnlyWhereOneIdlistCanSayIt) {
  EXPECT_EQ(encode({"n08", "n09", "n10"}), "n[08-10]");
  EXPECT_EQ(encode({"n08", "n100"}), "n[08,100]");
  EXPECT_EQ(encode({"n9", "n10"}), "n[9-10]");
  EXPECT_EQ(encode({"n10", "n08"}), "n10,n08");  // "n[10,08]" would read as n10 n8
  EXPECT_EQ(encode({"n1", "n01"}), "n1,n01");
  EXPECT_EQ(encode({"n01", "n1"}), "n01,n1");
  EXPECT_EQ(encode({"n0", "n1"}), "n[0-1]");
  EXPECT_EQ(encode({"n00", "n01"}), "n[00-01]");
}

TEST(Hostlist, ReadsBackWhatItWrites) {
  // Random lists of names built from a few prefixes, suffixes and paddings.
  std::mt19937 rng(29);
  const char* prefixes[] = {"", "n", "node", "rack1-n", "x0"};
  const char* suffixes[] = {"", "-ib", ".lan"};
  for (int round = 0; round < 2000; ++round) {
    Names names;
    size_t n = rng() % 12;
    for (size_t i = 0; i < n; ++i) {
      std::string num = std::to_string(rng() % 12);
      if (rng() % 3 == 0) num.insert(0, rng() % 3, '0');
      if (rng() % 10 == 0) num.clear();  // no number at all
      std::string name = std::string(prefixes[rng() % 5]) + num + suffixes[rng() % 3];
      if (name.empty()) name = "h";
      names.push_back(name);
    }
    std::string text = encode(names);
    ASSERT_EQ(decode(text), names) << text;
    ASSERT_EQ(encode(decode(text)), text);
  }
}

TEST(Hostlist, RefusesMalformedTextInOneLine) {
  struct Case {
    const char* text;
    const char* why;
  };
  for (auto [text, expected] : std::initializer_list<Case>{
           {"node[1-", "'[' without ']'"},
           {"node1]", "']' without '['"},
           {"n[1[2]]", "'[' inside [...]"},
           {"n[5-3]", "range \"5-3\" is reversed"},
           {"a,,b", "empty host name between two ','"},
           {",a", "empty host name before the first ','"},
           {"a,", "empty host name after the last ','"},
           {"x[]", "empty [] names no host"},
           {"x[1,,2]", "empty element in \"[1,,2]\""},
           {"x[1-]", "\"1-\" is neither a number nor a range"},
           {"x[a]", "\"a\" is neither"},
           {"x[1-2-3]", "is neither"},
           {"x[-1]", "is neither"},
           {"x[1]y[2]", "one [...] per host name"},
           {"a b", "a space (at byte 1) may not appear in a host name"},
           {"n[1]\t", "byte 0x09 (at byte 4)"},
           {"x[1234567890123456789]", "more than 18 digits"},
       }) {
    std::string got = why(text);
    EXPECT_NE(got.find(expected), std::string::npos) << text << " → " << got;
    EXPECT_TRUE(got.starts_with("invalid hostlist \"")) << got;
    EXPECT_EQ(got.find('\n'), std::string::npos) << got;
  }
}

TEST(Hostlist, RefusesMoreHostsThanTheCapBeforeAllocating) {
  EXPECT_NE(why("n[0-4294967295]").find("more than 1000000 hosts"), std::string::npos);
  EXPECT_NE(why("n[0-999999999999999999]").find("more than 1000000 hosts"), std::string::npos);
  EXPECT_NE(why("a,n[1-999999],b").find("more than 1000000 hosts"), std::string::npos);
  EXPECT_NE(why(std::string(100, 'x') + "[1-999999]").find("MiB of host names"), std::string::npos);
  auto most = Hostlist::parse("n[1-999999],b");
  ASSERT_TRUE(most.ok());
  EXPECT_EQ(most->size(), Hostlist::kMaxHosts);
  EXPECT_EQ(most->encode(), "n[1-999999],b");
}

TEST(Hostlist, AppendTakesOnlyNamesThatReadBackAsThemselves) {
  Hostlist h;
  EXPECT_TRUE(h.append("node7").ok());
  for (const char* name : {"", "a,b", "x[1]", "a b", "tab\t"}) {
    auto st = h.append(name);
    EXPECT_FALSE(st.ok()) << name;
  }
  EXPECT_EQ(h.hosts(), Names{"node7"});
}

}  // namespace loom
