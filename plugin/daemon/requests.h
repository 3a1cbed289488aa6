// Command options parsed into typed requests, with the one-line errors a
// user sees for bad values. No I/O here: what exists is the handlers' to
// find out.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "core/arguments.h"
#include "engine/block_api.h"
#include "engine/block_writes.h"
#include "engine/snapshot_engine.h"
#include "engine/snapshot_exports.h"
#include "engine/snapshot_locks.h"
#include "hypervisor/target.h"
#include "lifecycle_policy.h"
#include "store/gc.h"

namespace virtsnap::daemon {

// create-snapshot (one disk) or create-snapshots (a set).
struct CreateRequest {
	bool oneDisk = false; // the reply is one snapshot, the events createSnapshot
	engine::SnapshotSetRequest set;
	hypervisor::Target target;
	std::string clientToken;
	std::string requestHash; // what the token was used with
};

struct DescribeRequest {
	std::vector<catalog::Filter> filters;
	std::vector<std::string> snapshotIds;
	int maxResults = 0; // 0: all
	std::string nextToken;
};

struct WaitRequest {
	std::vector<std::string> snapshotIds;
	std::chrono::seconds timeout{3600};
};

// get-snapshot-block.
struct GetBlockRequest {
	std::string snapshotId;
	uint64_t block = 0;
	std::string token;
	std::string outputFile;
};

// start-snapshot.
struct StartSnapshotRequest {
	engine::StartRequest start;
	std::string clientToken;
	std::string requestHash;
};

// put-snapshot-block.
struct PutBlockRequest {
	std::string snapshotId;
	uint64_t block = 0;
	std::string blockData; // the file holding the block
	uint64_t dataLength = 0;
	std::string checksum;  // base64 SHA-256
};

// complete-snapshot.
struct CompleteRequest {
	std::string snapshotId;
	uint64_t changedBlocks = 0;
	std::string checksum; // the LINEAR aggregate, "" for none
};

// import-image.
struct ImportImageRequest {
	std::string file;
	std::string format; // "" to tell by the image
	engine::StartRequest start;
};

// copy-snapshot.
struct CopySnapshotRequest {
	std::string sourceSnapshotId;
	std::string sourceStore;   // a store URL; "" for the destination store itself
	std::string sourceKeyFile; // its master key, with sourceStore
	std::string destinationStore; // a [store-target URL] of the config; "" for this store
	bool encrypted = false;       // --encrypted
	std::string kmsKeyId;         // --kms-key-id; "" when not given
	std::string description;
	store::Tags tags;
	std::string clientToken;
	std::string requestHash;
};

// --qmp-socket or --domain [--connect]: exactly one instance.
Result<hypervisor::Target> parseTarget(const Arguments &args, const std::string &defaultUri);
Result<CreateRequest> parseCreate(const Arguments &args, bool oneDisk, const std::string &defaultUri);
Result<DescribeRequest> parseDescribe(const Arguments &args);
// --filter "Name=status,Values=pending,completed"
Result<catalog::Filter> parseFilter(const std::string &spec);
// lock-snapshot's options (engine/snapshot_locks.h checks the rules).
Result<engine::LockRequest> parseLock(const Arguments &args);
// The Recycle Bin's options, in the AWS CLI's shorthand:
// "RetentionPeriodValue=N,RetentionPeriodUnit=DAYS" (1 to 365 days);
// resource tags as "ResourceTagKey=K[,ResourceTagValue=V]" or "K[=V]";
// "UnlockDelay={UnlockDelayValue=N,UnlockDelayUnit=DAYS}" (7 to 30).
Result<int64_t> parseRetentionPeriod(const std::string &text);
Result<store::Tags> parseResourceTags(const std::vector<std::string> &specs);
Result<int64_t> parseUnlockDelay(const std::string &text);
Result<WaitRequest> parseWait(const Arguments &args);
Result<store::GcOptions> parseGc(const Arguments &args);
// The paging of list-snapshot-blocks and list-changed-blocks:
// --starting-block-index, --max-results (100 to 10000) and --next-token,
// which, when given, says where to go on from.
Result<engine::BlockPage> parseBlockPage(const Arguments &args);
Result<GetBlockRequest> parseGetBlock(const Arguments &args);
Result<StartSnapshotRequest> parseStartSnapshot(const Arguments &args);
// serve-snapshot: the snapshot and where to listen; the handler adds the
// store's location.
Result<engine::ServeRequest> parseServe(const Arguments &args);
Result<PutBlockRequest> parsePutBlock(const Arguments &args);
Result<CompleteRequest> parseComplete(const Arguments &args);
Result<ImportImageRequest> parseImportImage(const Arguments &args);
// --source-store and --source-key-file go together.
Result<CopySnapshotRequest> parseCopySnapshot(const Arguments &args);
// --volume-id values must look like volume ids.
Result<std::vector<std::string>> parseVolumeIds(const Arguments &args);

// --policy-id: a policy's id, InvalidParameterValue for one that is not
// shaped as one.
Result<std::string> parsePolicyId(const Arguments &args);
// --policy-details: the PolicyDetails JSON itself, checked. The virtsnap
// command reads a file://PATH for its caller (as the AWS CLI does), so
// virtsnapd never opens a file a caller names here.
Result<PolicyDetails> parsePolicyDetailsOption(const Arguments &args, UtcTime now);

// get-lifecycle-policies: each given filter must match.
struct PolicyFilter {
	std::vector<std::string> policyIds;
	std::string state;     // "" for any
	PolicyTags targetTags; // the policy targets at least one of them
};
Result<PolicyFilter> parsePolicyFilter(const Arguments &args);

// One line of the socket protocol (PROTOCOL.md, "Requests") as the command
// and options it asks for: InvalidParameterValue for a line that is not
// UTF-8, not JSON, names no command the socket runs, or has bad options.
Result<Arguments> parseRequestLine(const std::string &line);

} // namespace virtsnap::daemon
