// kvs.commit as a typed payload (msg/typed_payload.h): how a service of
// the KVS's own process (the job manager, posting each job's events) hands
// it ops without building and parsing a JSON tree per op. Its JSON is the
// request's, {namespace, ops: [{op, key, value?}, ...]} (kvs/kvs.h); the
// KVS checks typed ops exactly as it checks those.
//
// Header only, like kvs/layout.h: a service names it without depending on
// the kvs service.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "kvs/layout.h"
#include "msg/json.h"

namespace loom {

struct KvsOp {
  enum Kind { kPut, kAppend, kUnlink };
  Kind kind = kPut;
  std::string key;
  std::string value;  // put, append

  static KvsOp put(std::string key, std::string value) { return KvsOp{kPut, std::move(key), std::move(value)}; }
  static KvsOp append(std::string key, std::string value) { return KvsOp{kAppend, std::move(key), std::move(value)}; }
  static KvsOp unlink(std::string key) { return KvsOp{kUnlink, std::move(key), {}}; }
};

inline const char* op_name(KvsOp::Kind k) {
  switch (k) {
    case KvsOp::kPut: return "put";
    case KvsOp::kAppend: return "append";
    case KvsOp::kUnlink: return "unlink";
  }
  return "put";
}

struct KvsCommit {
  std::string ns = kvs_key::kPrimaryNamespace;
  std::vector<KvsOp> ops;
};

inline Json payload_json_of(const KvsCommit& c) {
  Json ops = Json::array();
  for (const auto& op : c.ops) {
    Json o{{"op", op_name(op.kind)}, {"key", op.key}};
    if (op.kind != KvsOp::kUnlink) o["value"] = op.value;
    ops.push_back(std::move(o));
  }
  return Json{{"namespace", c.ns}, {"ops", std::move(ops)}};
}

}  // namespace loom
