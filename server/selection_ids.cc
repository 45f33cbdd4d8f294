#include "server/selection_ids.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <mutex>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace curation::server {
namespace {

constexpr char kKeyName[] = "selection_id_key";
constexpr size_t kTagHexDigits = 32;

std::mutex& KeyMutex() {
  static std::mutex mu;
  return mu;
}

std::string& Key() {
  static std::string key;
  return key;
}

std::string CurrentKey() {
  std::lock_guard<std::mutex> lock(KeyMutex());
  // Making an id without a key would make it guessable: a start-up bug, never a fallback.
  if (Key().empty()) std::abort();
  return Key();
}

// HMAC-SHA256 of `message` under the key: 32 raw bytes.
std::string Hmac(absl::string_view message) {
  const std::string key = CurrentKey();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

std::string Tag(uint64_t dataset_id, int64_t seq) {
  return absl::BytesToHexString(absl::string_view(
      Hmac(absl::StrCat("selection/", dataset_id, "/", seq)).data(), kTagHexDigits / 2));
}

}  // namespace

std::string MemberKey() { return absl::BytesToHexString(Hmac("member calls/v1")); }

absl::Status InitSelectionIds(store::Store& store) {
  std::string fresh(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(fresh.data()), 32) != 1) {
    return absl::InternalError("no randomness for the selection id key");
  }
  auto key = store.GetOrCreateMeta(kKeyName, fresh);
  if (!key.ok()) return key.status();
  if (key->size() < 16) return absl::DataLossError("the stored selection id key is too short");
  SetSelectionIdKey(*std::move(key));
  return absl::OkStatus();
}

void SetSelectionIdKey(std::string key) {
  if (key.size() < 16) std::abort();
  std::lock_guard<std::mutex> lock(KeyMutex());
  Key() = std::move(key);
}

std::string MakeSelectionId(uint64_t dataset_internal_id, int64_t seq) {
  return absl::StrCat("sel-", dataset_internal_id, "-", seq, "-", Tag(dataset_internal_id, seq));
}

std::string MakeSelectionId(const storage::DatasetRecord& dataset, int64_t seq) {
  return MakeSelectionId(dataset.internal_id(), seq);
}

std::optional<SelectionIdParts> ParseSelectionId(absl::string_view id) {
  std::vector<absl::string_view> parts = absl::StrSplit(id, '-');
  if (parts.size() != 3 && parts.size() != 4) return std::nullopt;
  SelectionIdParts out;
  if (parts[0] != "sel" || !absl::SimpleAtoi(parts[1], &out.dataset_id) ||
      !absl::SimpleAtoi(parts[2], &out.seq) || out.seq < 0) {
    return std::nullopt;
  }
  // Only the canonical spelling of the numbers: "sel-01-2" must not name "sel-1-2".
  if (parts[1] != absl::StrCat(out.dataset_id) || parts[2] != absl::StrCat(out.seq)) {
    return std::nullopt;
  }
  if (parts.size() == 3) {
    out.legacy = true;
    return out;
  }
  const std::string expected = Tag(out.dataset_id, out.seq);
  if (parts[3].size() != expected.size() ||
      CRYPTO_memcmp(parts[3].data(), expected.data(), expected.size()) != 0) {
    return std::nullopt;
  }
  return out;
}

}  // namespace curation::server
