#include "kvs/storage.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "kvs/kvs.h"

namespace loom {
namespace {
namespace fs = std::filesystem;

class StorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = fs::temp_directory_path().string() + "/loom-storage-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_;
};

StoredOp op(StoredOp::Kind k, std::string ns, std::string key, std::string value = {}, uint32_t seq = 0) {
  StoredOp o;
  o.kind = k;
  o.ns = std::move(ns);
  o.key = std::move(key);
  o.value = std::move(value);
  o.seq = seq;
  return o;
}

TEST_F(StorageTest, WhatIsWrittenIsLoadedAfterReopening) {
  {
    auto s = open_sqlite_storage(dir_, Synchronous::kNormal);
    ASSERT_TRUE(s.ok()) << s.error().text;
    StoredOp ns = op(StoredOp::kNamespaceCreate, "primary", "");
    ns.owner = 1000;
    ASSERT_TRUE(
        (*s)->write({ns, op(StoredOp::kPut, "primary", "a", "1"), op(StoredOp::kAppend, "primary", "log", "x\n", 0),
                     op(StoredOp::kAppend, "primary", "log", "y\n", 1)})
            .ok());
  }
  auto s = open_sqlite_storage(dir_, Synchronous::kNormal);
  ASSERT_TRUE(s.ok()) << s.error().text;
  auto all = (*s)->load();
  ASSERT_TRUE(all.ok());
  auto& p = (*all)["primary"];
  EXPECT_EQ(p.owner, 1000u);
  EXPECT_EQ(p.keys["a"].first, "1");
  EXPECT_EQ(p.keys["log"].first, "x\ny\n");
  // Folded into one row at the close: the next append may be numbered 1 (any
  // number above the stored ones will do).
  EXPECT_GE(p.keys["log"].second, 1u);
  EXPECT_LE(p.keys["log"].second, 2u);
}

TEST_F(StorageTest, PutReplacesAppendedSegmentsAndUnlinkRemovesTheSubtree) {
  auto s = open_sqlite_storage(dir_, Synchronous::kOff);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->write({op(StoredOp::kNamespaceCreate, "primary", ""), op(StoredOp::kAppend, "primary", "k", "a", 0),
                           op(StoredOp::kAppend, "primary", "k", "b", 1), op(StoredOp::kPut, "primary", "k", "c"),
                           op(StoredOp::kPut, "primary", "d.e", "1"), op(StoredOp::kPut, "primary", "d.f.g", "2"),
                           op(StoredOp::kPut, "primary", "dx", "3"), op(StoredOp::kUnlink, "primary", "d")})
                  .ok());
  auto all = (*s)->load();
  ASSERT_TRUE(all.ok());
  auto& keys = (*all)["primary"].keys;
  EXPECT_EQ(keys["k"].first, "c");
  EXPECT_EQ(keys.count("d.e"), 0u);
  EXPECT_EQ(keys.count("d.f.g"), 0u);
  EXPECT_EQ(keys["dx"].first, "3");  // a sibling with the same prefix survives
}

TEST_F(StorageTest, RefusesADirectoryThatIsNotLoomsAndChangesNothing) {
  std::ofstream(dir_ + "/precious.txt") << "keep me";
  auto s = open_sqlite_storage(dir_, Synchronous::kNormal);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().text.find("not empty"), std::string::npos) << s.error().text;
  EXPECT_FALSE(fs::exists(dir_ + "/loom.db"));
  EXPECT_EQ(file_bytes(dir_ + "/precious.txt"), "keep me");
}

TEST_F(StorageTest, RefusesAFileThatIsNotSqlite) {
  std::ofstream(dir_ + "/loom.db") << std::string(8192, 'z');
  auto s = open_sqlite_storage(dir_, Synchronous::kNormal);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(file_bytes(dir_ + "/loom.db"), std::string(8192, 'z'));
  EXPECT_FALSE(fs::exists(dir_ + "/loom.db-wal"));
}

TEST_F(StorageTest, RefusesAForeignSqliteDatabase) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/loom.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  std::string before = file_bytes(dir_ + "/loom.db");
  auto s = open_sqlite_storage(dir_, Synchronous::kNormal);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().text.find("not loom's"), std::string::npos) << s.error().text;
  EXPECT_EQ(file_bytes(dir_ + "/loom.db"), before);
}

TEST_F(StorageTest, RefusesANewerFormatVersion) {
  { ASSERT_TRUE(open_sqlite_storage(dir_, Synchronous::kNormal).ok()); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/loom.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET v='99' WHERE k='version'", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto s = open_sqlite_storage(dir_, Synchronous::kNormal);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().text.find("newer"), std::string::npos) << s.error().text;
}

// What a store must hold after `ops`, numbered as the KVS numbers appended
// segments.
struct Model {
  std::map<std::string, StoredNamespace> nss;
  void apply(StoredOp& o) {
    switch (o.kind) {
      case StoredOp::kNamespaceCreate: nss[o.ns].owner = o.owner; return;
      case StoredOp::kNamespaceRemove: nss.erase(o.ns); return;
      default: break;
    }
    auto& keys = nss[o.ns].keys;
    if (o.kind == StoredOp::kPut) {
      keys[o.key] = {o.value, 1};
    } else if (o.kind == StoredOp::kAppend) {
      auto& e = keys[o.key];
      o.seq = e.second++;
      e.first += o.value;
    } else {
      std::erase_if(keys, [&](auto& kv) { return kv.first == o.key || kv.first.starts_with(o.key + "."); });
    }
  }
};

// Random transactions, each written by a child process that then exits
// without closing the store (as a crash would; a clean close folds the
// journal) or, every third one, closes it. The store is reopened and
// checked after each, with the journal folded into the key table after
// every transaction, sometimes, and never.
TEST_F(StorageTest, JournalAndFoldsLoadWhatWasWritten) {
  for (size_t fold_after : {size_t{1}, size_t{7}, size_t{100000}}) {
    SCOPED_TRACE("fold_after " + std::to_string(fold_after));
    fs::remove_all(dir_);
    std::mt19937 rng(static_cast<uint32_t>(fold_after));
    Model model;
    const std::vector<std::string> names = {"a", "a-b", "a.b", "a.b.c", "ab", "log", "x.y"};
    for (int round = 0; round < 40; ++round) {
      std::vector<StoredOp> tx;
      for (int i = 0, n = 1 + static_cast<int>(rng() % 6); i < n; ++i) {
        int pick = static_cast<int>(rng() % 20);
        std::string ns = pick % 3 == 0 ? "guest" : "primary";
        StoredOp o;
        if (round == 0 && i == 0) {
          o = op(StoredOp::kNamespaceCreate, "primary", "");
          o.owner = 7;
        } else if (pick == 0) {
          o = op(model.nss.count("guest") ? StoredOp::kNamespaceRemove : StoredOp::kNamespaceCreate, "guest", "");
          o.owner = 1000 + static_cast<uint32_t>(round);
        } else {
          if (!model.nss.count(ns)) ns = "primary";
          std::string key = names[rng() % names.size()];
          auto kind = pick < 8 ? StoredOp::kAppend : pick < 15 ? StoredOp::kPut : StoredOp::kUnlink;
          o = op(kind, ns, key, kind == StoredOp::kUnlink ? "" : std::to_string(round) + "." + std::to_string(i) + ";");
        }
        model.apply(o);
        tx.push_back(o);
      }
      pid_t pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        auto s = open_sqlite_storage(dir_, Synchronous::kOff, fold_after);
        bool ok = s.ok() && (*s)->write(tx).ok();
        if (round % 3 == 0) s = Error{0, ""};  // closes it
        ::_exit(ok ? 0 : 1);
      }
      int status = 0;
      ASSERT_EQ(::waitpid(pid, &status, 0), pid);
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "round " << round;
      auto s = open_sqlite_storage(dir_, Synchronous::kOff, fold_after);
      ASSERT_TRUE(s.ok()) << s.error().text;
      auto all = (*s)->load();
      ASSERT_TRUE(all.ok()) << all.error().text;
      ASSERT_EQ(all->size(), model.nss.size()) << "round " << round;
      for (auto& [name, want] : model.nss) {
        auto& got = (*all)[name];
        EXPECT_EQ(got.owner, want.owner) << name;
        // Values must match; the segment numbers only need to stay below the
        // model's (folds may join appended segments into fewer rows).
        ASSERT_EQ(got.keys.size(), want.keys.size()) << name << " round " << round;
        for (auto& [key, value] : want.keys) {
          EXPECT_EQ(got.keys[key].first, value.first) << name << " " << key << " round " << round;
          EXPECT_LE(got.keys[key].second, value.second) << name << " " << key << " round " << round;
          EXPECT_GE(got.keys[key].second, 1u) << name << " " << key << " round " << round;
        }
      }
      if (::testing::Test::HasFailure()) return;
    }
  }
}

// Folding joins appends into fewer rows, but never across a removal of
// the key, whatever keys sort between it and the ones below it.
TEST_F(StorageTest, AFoldJoinsAppendsOnlyUntilTheKeyIsRemoved) {
  {
    auto s = open_sqlite_storage(dir_, Synchronous::kOff);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(
        (*s)->write({op(StoredOp::kNamespaceCreate, "primary", ""), op(StoredOp::kAppend, "primary", "a.b", "1", 0),
                     op(StoredOp::kPut, "primary", "a-b", "x"), op(StoredOp::kAppend, "primary", "c", "1", 0),
                     op(StoredOp::kUnlink, "primary", "a"), op(StoredOp::kAppend, "primary", "a.b", "2", 0),
                     op(StoredOp::kAppend, "primary", "c", "2", 1)})
            .ok());
  }  // the clean close folds
  auto s = open_sqlite_storage(dir_, Synchronous::kOff);
  ASSERT_TRUE(s.ok());
  auto all = (*s)->load();
  ASSERT_TRUE(all.ok());
  auto& keys = (*all)["primary"].keys;
  EXPECT_EQ(keys["a.b"].first, "2");
  EXPECT_EQ(keys["a-b"].first, "x");
  EXPECT_EQ(keys["c"].first, "12");
}

// A store of format version 1 (no journal) opens, keeps what it holds, and
// is upgraded: an older loom then refuses it instead of missing the journal.
TEST_F(StorageTest, UpgradesAVersionOneStore) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ + "/loom.db").c_str(), &db), SQLITE_OK);
    const char* v1 =
        "CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
        "CREATE TABLE namespaces(name TEXT PRIMARY KEY, owner INTEGER NOT NULL);"
        "CREATE TABLE kv(ns TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,"
        "  PRIMARY KEY(ns, key, seq)) WITHOUT ROWID;"
        "INSERT INTO meta VALUES('format','loom-kvs'); INSERT INTO meta VALUES('version','1');"
        "INSERT INTO namespaces VALUES('primary', 5);"
        "INSERT INTO kv VALUES('primary','log',0,'a\n'); INSERT INTO kv VALUES('primary','log',1,'b\n');";
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  {
    auto s = open_sqlite_storage(dir_, Synchronous::kNormal);
    ASSERT_TRUE(s.ok()) << s.error().text;
    ASSERT_TRUE((*s)->write({op(StoredOp::kAppend, "primary", "log", "c\n", 2)}).ok());
    auto all = (*s)->load();
    ASSERT_TRUE(all.ok());
    EXPECT_EQ((*all)["primary"].keys["log"].first, "a\nb\nc\n");
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/loom.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k='version'", -1, &q, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(q, 0), kStorageFormatVersion);
  sqlite3_finalize(q);
  sqlite3_close(db);
}

TEST(KvsKey, ValidatesPathComponents) {
  EXPECT_TRUE(validate_key("job.42.eventlog").ok());
  EXPECT_FALSE(validate_key("").ok());
  EXPECT_FALSE(validate_key(".a").ok());
  EXPECT_FALSE(validate_key("a.").ok());
  EXPECT_FALSE(validate_key("a..b").ok());
  EXPECT_FALSE(validate_key("a b").ok());
  EXPECT_FALSE(validate_key(std::string(1025, 'a')).ok());
}

}  // namespace
}  // namespace loom
