#include "kvs/storage.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
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
  EXPECT_EQ(p.keys["log"].second, 2u);
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
