// Durable storage behind the KVS: one interface, one SQLite implementation
// (docs/storage.md has the schema). Writes are batched: the KVS gathers
// every commit that arrived in one loop turn into one write().
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"

namespace loom {

struct StoredOp {
  // Stored in the journal (docs/storage.md): never renumber.
  enum Kind { kPut = 0, kAppend = 1, kUnlink = 2, kNamespaceCreate = 3, kNamespaceRemove = 4 };
  Kind kind = kPut;
  std::string ns;
  std::string key;     // unlink also removes every key below "key."
  std::string value;   // put, append
  uint32_t seq = 0;    // append: the segment number of this piece
  uint32_t owner = 0;  // namespace-create
};

struct StoredNamespace {
  uint32_t owner = 0;
  // key → (value, a segment number above every stored one: the next
  // append's number may be this or more)
  std::map<std::string, std::pair<std::string, uint32_t>> keys;
};

enum class Synchronous { kOff, kNormal, kFull };
Result<Synchronous> parse_synchronous(const std::string& s);

class Storage {
 public:
  virtual ~Storage() = default;
  // Everything stored, by namespace name.
  virtual Result<std::map<std::string, StoredNamespace>> load() = 0;
  // Applies `ops` atomically: all or none. Durable when it returns
  // (against a process crash; against power loss with Synchronous::kFull).
  virtual Status write(const std::vector<StoredOp>& ops) = 0;
};

// How many journalled operations a store holds before a write folds them
// into its key table (docs/storage.md).
inline constexpr size_t kFoldAfter = 8192;

// Opens (creating if needed) the store in `dir`. Refuses, changing nothing,
// a directory that holds something other than a loom store, a store of a
// newer format, or a corrupt one. A store of an older format is upgraded.
Result<std::unique_ptr<Storage>> open_sqlite_storage(const std::string& dir, Synchronous sync,
                                                     size_t fold_after = kFoldAfter);

inline constexpr int kStorageFormatVersion = 2;

}  // namespace loom
