// Public ids of stored selections.
//
// An id names its dataset's internal id and the selection's sequence number, so that the
// server can find the owner without reading the record, plus a tag that makes it
// unguessable: "sel-<internal id>-<seq>-<tag>", the tag being 32 hex digits (128 bits) of
// HMAC-SHA256(server key, internal id, seq). Internal ids and sequence numbers are counters,
// so without the tag anyone could enumerate ids and time the answers; with it, an id is
// known only to whoever was given it. The key is random, created once per database and kept
// in the store's default column family (so it survives restarts and travels with backups),
// and the tag derives from the dataset's existing internal id: no per-dataset secret is
// stored.
//
// Ids made before tags existed ("sel-<internal id>-<seq>") stay valid for the selections
// stored under them: the stored selection's own id must equal the id asked for, so the
// untagged form of a newer selection's id names nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "curation/storage/records.pb.h"
#include "store/store.h"

namespace curation::server {

// Loads (creating on first start) the server-wide key from `store`. Call once at start-up,
// before any selection id is made or checked.
absl::Status InitSelectionIds(store::Store& store);
// Sets the key directly (tests). At least 16 bytes.
void SetSelectionIdKey(std::string key);

// The id of selection `seq` of `dataset`.
std::string MakeSelectionId(const storage::DatasetRecord& dataset, int64_t seq);
std::string MakeSelectionId(uint64_t dataset_internal_id, int64_t seq);

// On a cluster, where every member shares the key: the secret members prove themselves to
// one another with on internal calls that act for no caller (MemberService.PartitionStep).
// 64 hex digits, derived from the key, so it changes only with the key.
std::string MemberKey();

struct SelectionIdParts {
  uint64_t dataset_id = 0;  // the dataset's internal id
  int64_t seq = 0;
  bool legacy = false;  // made before tags: only as good as the stored record's own id
};

// Parses an id of either form and, for a tagged one, verifies its tag (in constant time).
// nullopt if the id is malformed or its tag is wrong; the caller answers NOT_FOUND either
// way, exactly as for an id that names nothing.
std::optional<SelectionIdParts> ParseSelectionId(absl::string_view id);

}  // namespace curation::server
