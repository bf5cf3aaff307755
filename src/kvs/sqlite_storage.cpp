#include <sqlite3.h>
#include <sys/stat.h>

#include <filesystem>

#include "kvs/storage.h"

namespace loom {

Result<Synchronous> parse_synchronous(const std::string& s) {
  if (s == "off") return Synchronous::kOff;
  if (s == "normal") return Synchronous::kNormal;
  if (s == "full") return Synchronous::kFull;
  return Error{EINVAL, "kvs synchronous must be off, normal or full (got \"" + s + "\")"};
}

namespace {
namespace fs = std::filesystem;

constexpr const char* kDbName = "loom.db";
constexpr const char* kFormatName = "loom-kvs";

// Runs `sql` (statements separated by ';'); on failure, EIO "what: why".
Status run_script(sqlite3* db, const std::string& sql, const char* what) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return Error{EIO, std::string(what) + ": " + msg};
  }
  return {};
}

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { ok_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) == SQLITE_OK; }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return ok_; }
  sqlite3_stmt* get() { return s_; }
  void bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind_blob(int i, const std::string& v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  int step() { return sqlite3_step(s_); }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  std::string text(int col) {
    auto p = static_cast<const char*>(sqlite3_column_blob(s_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, col))) : std::string();
  }
  int64_t i64(int col) { return sqlite3_column_int64(s_, col); }

 private:
  sqlite3_stmt* s_ = nullptr;
  bool ok_ = false;
};

class SqliteStorage final : public Storage {
 public:
  SqliteStorage(sqlite3* db, size_t fold_after) : db_(db), fold_after_(fold_after) {}
  ~SqliteStorage() override {
    // A clean close leaves the journal empty: everything is in kv.
    (void)fold_journal();
    jr_ins_.reset();
    put_.reset();
    del_key_.reset();
    del_tree_.reset();
    ins_seg_.reset();
    ns_ins_.reset();
    ns_del_.reset();
    ns_del_keys_.reset();
    sqlite3_close_v2(db_);
  }

  Status prepare() {
    put_ = std::make_unique<Stmt>(db_, "INSERT INTO kv(ns,key,seq,data) VALUES(?1,?2,0,?3)");
    del_key_ = std::make_unique<Stmt>(db_, "DELETE FROM kv WHERE ns=?1 AND key=?2");
    // Everything below "key." : '/' is the byte after '.'.
    del_tree_ = std::make_unique<Stmt>(db_, "DELETE FROM kv WHERE ns=?1 AND key>=?2 AND key<?3");
    ins_seg_ = std::make_unique<Stmt>(db_, "INSERT OR REPLACE INTO kv(ns,key,seq,data) VALUES(?1,?2,?3,?4)");
    ns_ins_ = std::make_unique<Stmt>(db_, "INSERT OR REPLACE INTO namespaces(name,owner) VALUES(?1,?2)");
    ns_del_ = std::make_unique<Stmt>(db_, "DELETE FROM namespaces WHERE name=?1");
    ns_del_keys_ = std::make_unique<Stmt>(db_, "DELETE FROM kv WHERE ns=?1");
    jr_ins_ = std::make_unique<Stmt>(db_, "INSERT INTO journal(kind,ns,key,seq,owner,data) VALUES(?1,?2,?3,?4,?5,?6)");
    for (auto* s : {put_.get(), del_key_.get(), del_tree_.get(), ins_seg_.get(), ns_ins_.get(), ns_del_.get(),
                    ns_del_keys_.get(), jr_ins_.get()}) {
      if (!s->ok()) return Error{EIO, std::string("sqlite prepare: ") + sqlite3_errmsg(db_)};
    }
    Stmt count(db_, "SELECT count(*) FROM journal");
    if (!count.ok() || count.step() != SQLITE_ROW) {
      return Error{EIO, std::string("reading the journal: ") + sqlite3_errmsg(db_)};
    }
    journal_rows_ = static_cast<size_t>(count.i64(0));
    return {};
  }

  Result<std::map<std::string, StoredNamespace>> load() override {
    // Everything into kv first, which is then all there is to read.
    if (auto st = fold_journal(); !st) return st.error();
    std::map<std::string, StoredNamespace> out;
    Stmt ns(db_, "SELECT name, owner FROM namespaces");
    if (!ns.ok()) return Error{EIO, sqlite3_errmsg(db_)};
    while (ns.step() == SQLITE_ROW) out[ns.text(0)].owner = static_cast<uint32_t>(ns.i64(1));
    Stmt kv(db_, "SELECT ns, key, seq, data FROM kv ORDER BY ns, key, seq");
    if (!kv.ok()) return Error{EIO, sqlite3_errmsg(db_)};
    int rc;
    while ((rc = kv.step()) == SQLITE_ROW) {
      auto it = out.find(kv.text(0));
      if (it == out.end()) continue;  // keys of a removed namespace cannot exist; be lenient
      auto& entry = it->second.keys[kv.text(1)];
      entry.first += kv.text(3);
      entry.second = static_cast<uint32_t>(kv.i64(2)) + 1;
    }
    if (rc != SQLITE_DONE) return Error{EIO, std::string("reading the store: ") + sqlite3_errmsg(db_)};
    return out;
  }

  // A transaction appends its ops to the journal: rows with increasing ids,
  // so that all of it lands in the last page or two of one table, however
  // many keys it touches. Once the journal holds fold_after_ ops, the
  // transaction folds it into kv instead, where the many changes to one
  // job's keys share their pages (docs/storage.md).
  Status write(const std::vector<StoredOp>& ops) override {
    if (ops.empty()) return {};
    if (auto st = exec("BEGIN IMMEDIATE"); !st) return st;
    bool folding = journal_rows_ + ops.size() >= fold_after_;
    Status st = folding ? fold(ops) : Status{};
    for (size_t i = 0; !folding && st && i < ops.size(); ++i) st = append_journal(ops[i]);
    if (st) st = exec("COMMIT");
    if (!st) {
      (void)exec("ROLLBACK");
      return st;
    }
    journal_rows_ = folding ? 0 : journal_rows_ + ops.size();
    return {};
  }

 private:
  Status exec(const char* sql) { return run_script(db_, sql, "sqlite"); }

  Status run(Stmt& s) {
    int rc = s.step();
    s.reset();
    if (rc != SQLITE_DONE) return Error{EIO, std::string("sqlite: ") + sqlite3_errmsg(db_)};
    return {};
  }

  Status append_journal(const StoredOp& op) {
    jr_ins_->bind(1, int64_t{op.kind});
    jr_ins_->bind(2, op.ns);
    jr_ins_->bind(3, op.key);
    jr_ins_->bind(4, int64_t{op.seq});
    jr_ins_->bind(5, int64_t{op.owner});
    jr_ins_->bind_blob(6, op.value);
    return run(*jr_ins_);
  }

  Result<std::vector<StoredOp>> read_journal() {
    std::vector<StoredOp> ops;
    Stmt q(db_, "SELECT kind, ns, key, seq, owner, data FROM journal ORDER BY id");
    if (!q.ok()) return Error{EIO, std::string("reading the journal: ") + sqlite3_errmsg(db_)};
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) {
      int64_t kind = q.i64(0);
      if (kind < StoredOp::kPut || kind > StoredOp::kNamespaceRemove) {
        return Error{EIO, "the journal holds an operation of unknown kind " + std::to_string(kind)};
      }
      StoredOp op;
      op.kind = static_cast<StoredOp::Kind>(kind);
      op.ns = q.text(1);
      op.key = q.text(2);
      op.seq = static_cast<uint32_t>(q.i64(3));
      op.owner = static_cast<uint32_t>(q.i64(4));
      op.value = q.text(5);
      ops.push_back(std::move(op));
    }
    if (rc != SQLITE_DONE) return Error{EIO, std::string("reading the journal: ") + sqlite3_errmsg(db_)};
    return ops;
  }

  // Folds the journal, if it holds anything, in a transaction of its own.
  Status fold_journal() {
    if (journal_rows_ == 0) return {};
    if (auto st = exec("BEGIN IMMEDIATE"); !st) return st;
    Status st = fold();
    if (st) st = exec("COMMIT");
    if (!st) {
      (void)exec("ROLLBACK");
      return st;
    }
    journal_rows_ = 0;
    return {};
  }

  // Within a transaction: applies the journal, then `more`, to kv and
  // empties the journal.
  Status fold(const std::vector<StoredOp>& more = {}) {
    auto ops = read_journal();
    if (!ops.ok()) return ops.error();
    ops->insert(ops->end(), more.begin(), more.end());
    for (const auto& op : coalesce(std::move(*ops))) {
      if (auto st = apply(op); !st) return st;
    }
    return exec("DELETE FROM journal");
  }

  // The same changes in fewer rows: appends to a key join the put or the
  // append before them, as long as nothing in between removed the key. A
  // job's eventlog, a line per event, becomes one row per fold.
  static std::vector<StoredOp> coalesce(std::vector<StoredOp> ops) {
    std::vector<StoredOp> out;
    out.reserve(ops.size());
    std::map<std::pair<std::string, std::string>, size_t> open;  // (ns, key) → the op in `out` to extend
    // Forgets `key` and the keys below it; every key of `ns` if `key` is "".
    auto close_below = [&](const std::string& ns, const std::string& key) {
      open.erase({ns, key});
      std::string below = key.empty() ? key : key + ".";
      for (auto it = open.lower_bound({ns, below});
           it != open.end() && it->first.first == ns && it->first.second.starts_with(below);) {
        it = open.erase(it);
      }
    };
    for (auto& op : ops) {
      switch (op.kind) {
        case StoredOp::kAppend: {
          auto it = open.find({op.ns, op.key});
          if (it != open.end()) {
            out[it->second].value += op.value;
            continue;
          }
          open[{op.ns, op.key}] = out.size();
          break;
        }
        case StoredOp::kPut: open[{op.ns, op.key}] = out.size(); break;
        case StoredOp::kUnlink: close_below(op.ns, op.key); break;
        case StoredOp::kNamespaceRemove: close_below(op.ns, ""); break;
        case StoredOp::kNamespaceCreate: break;
      }
      out.push_back(std::move(op));
    }
    return out;
  }

  Status apply(const StoredOp& op) {
    switch (op.kind) {
      case StoredOp::kPut:
        del_key_->bind(1, op.ns);
        del_key_->bind(2, op.key);
        if (auto st = run(*del_key_); !st) return st;
        put_->bind(1, op.ns);
        put_->bind(2, op.key);
        put_->bind_blob(3, op.value);
        return run(*put_);
      case StoredOp::kAppend:
        ins_seg_->bind(1, op.ns);
        ins_seg_->bind(2, op.key);
        ins_seg_->bind(3, int64_t{op.seq});
        ins_seg_->bind_blob(4, op.value);
        return run(*ins_seg_);
      case StoredOp::kUnlink: {
        del_key_->bind(1, op.ns);
        del_key_->bind(2, op.key);
        if (auto st = run(*del_key_); !st) return st;
        del_tree_->bind(1, op.ns);
        del_tree_->bind(2, op.key + ".");
        del_tree_->bind(3, op.key + "/");
        return run(*del_tree_);
      }
      case StoredOp::kNamespaceCreate:
        ns_ins_->bind(1, op.ns);
        ns_ins_->bind(2, int64_t{op.owner});
        return run(*ns_ins_);
      case StoredOp::kNamespaceRemove:
        ns_del_keys_->bind(1, op.ns);
        if (auto st = run(*ns_del_keys_); !st) return st;
        ns_del_->bind(1, op.ns);
        return run(*ns_del_);
    }
    return {};
  }

  sqlite3* db_;
  size_t fold_after_;
  size_t journal_rows_ = 0;
  std::unique_ptr<Stmt> jr_ins_;
  std::unique_ptr<Stmt> put_, del_key_, del_tree_, ins_seg_, ns_ins_, ns_del_, ns_del_keys_;
};

Error refuse(const std::string& dir, const std::string& why) {
  return Error{EINVAL, "state directory " + dir + " " + why + "; nothing was changed"};
}

}  // namespace

Result<std::unique_ptr<Storage>> open_sqlite_storage(const std::string& dir, Synchronous sync, size_t fold_after) {
  std::error_code ec;
  fs::path db_path = fs::path(dir) / kDbName;
  bool exists = fs::exists(db_path, ec);
  if (!exists) {
    if (fs::exists(dir, ec)) {
      if (!fs::is_directory(dir, ec)) return refuse(dir, "is not a directory");
      if (!fs::is_empty(dir, ec)) return refuse(dir, "is not empty and holds no " + std::string(kDbName));
    } else {
      fs::create_directories(dir, ec);
      if (ec) return Error{ec.value(), "cannot create state directory " + dir + ": " + ec.message()};
    }
  }
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (exists ? 0 : SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(db_path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return refuse(dir, "cannot be opened: " + msg);
  }
  // Only this broker uses the database (its state directory is locked):
  // exclusive locking keeps WAL's index in memory and skips the file locks
  // of every transaction. Set before the first access.
  if (sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db);
    sqlite3_close_v2(db);
    return refuse(dir, "cannot be opened: " + msg);
  }
  auto storage = std::make_unique<SqliteStorage>(db, fold_after < 1 ? 1 : fold_after);
  auto query_one = [db](const char* sql, std::string& out) -> bool {
    sqlite3_stmt* s = nullptr;
    bool ok = sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW;
    if (ok) {
      auto p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      out = p ? p : "";
    }
    sqlite3_finalize(s);
    return ok;
  };
  if (exists) {
    // Check before writing anything: a foreign, newer or corrupt file is
    // left exactly as it was.
    std::string check;
    if (!query_one("PRAGMA quick_check", check)) return refuse(dir, "holds a file that is not a SQLite database");
    if (check != "ok") return refuse(dir, "holds a corrupt database (" + check + ")");
    std::string format, version;
    if (!query_one("SELECT v FROM meta WHERE k='format'", format) || format != kFormatName) {
      return refuse(dir, "holds a database that is not loom's");
    }
    if (!query_one("SELECT v FROM meta WHERE k='version'", version)) return refuse(dir, "has no format version");
    if (std::atoi(version.c_str()) > kStorageFormatVersion) {
      return refuse(
          dir, "is of format version " + version + ", newer than this loom's " + std::to_string(kStorageFormatVersion));
    }
  }
  const char* sync_sql = sync == Synchronous::kFull     ? "PRAGMA synchronous=FULL"
                         : sync == Synchronous::kNormal ? "PRAGMA synchronous=NORMAL"
                                                        : "PRAGMA synchronous=OFF";
  std::string ignored;
  for (const char* sql : {"PRAGMA journal_mode=WAL", sync_sql}) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
      return Error{EIO, std::string("sqlite: ") + sqlite3_errmsg(db)};
    }
  }
  if (!exists) {
    std::string schema =
        "BEGIN;"
        "CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
        "CREATE TABLE namespaces(name TEXT PRIMARY KEY, owner INTEGER NOT NULL);"
        "CREATE TABLE kv(ns TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,"
        "  PRIMARY KEY(ns, key, seq)) WITHOUT ROWID;"
        "INSERT INTO meta VALUES('format','" +
        std::string(kFormatName) + "');INSERT INTO meta VALUES('version','1');COMMIT;";
    if (auto st = run_script(db, schema, "cannot create the store"); !st) return st.error();
  }
  // Version 2 adds the journal; a version 1 store gains it here (and an
  // older loom then refuses the store rather than miss what is in it).
  std::string upgrade =
      "BEGIN;"
      "CREATE TABLE IF NOT EXISTS journal(id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, ns TEXT NOT NULL,"
      "  key TEXT NOT NULL, seq INTEGER NOT NULL, owner INTEGER NOT NULL, data BLOB NOT NULL);"
      "UPDATE meta SET v='" +
      std::to_string(kStorageFormatVersion) + "' WHERE k='version' AND CAST(v AS INTEGER) < " +
      std::to_string(kStorageFormatVersion) + ";COMMIT;";
  if (auto st = run_script(db, upgrade, "cannot prepare the store"); !st) return st.error();
  if (auto st = storage->prepare(); !st) return st.error();
  return std::unique_ptr<Storage>(std::move(storage));
}

}  // namespace loom
