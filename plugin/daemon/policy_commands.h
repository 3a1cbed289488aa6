// What the policy commands (policy_commands.cc) and runs (policy_run.cc)
// share: a policy as the catalog keeps it.
#pragma once

#include "catalog/catalog.h"
#include "context.h"
#include "lifecycle_policy.h"

namespace virtsnap::daemon {

// Now, to the second, as policies are checked and scheduled.
UtcTime policyNow();
// ResourceNotFoundException, as DLM, for an id that names no policy.
Result<catalog::PolicyRow> existingPolicy(Context &ctx, const std::string &id);
// The details as the catalog keeps them, checked again: a policy written
// by a newer virtsnap, or damaged, is named rather than half understood.
Result<PolicyDetails> detailsOf(const catalog::PolicyRow &row);

// Policies act for the store's default account (their snapshots, and
// the deletions of their retention, are its): only root, or a caller
// acting as that account, creates, changes, deletes or runs one. A policy
// with CrossStoreCopyRules pushes into the config file's stores, which
// copy-snapshot --destination-store leaves to root: so does it. `details`
// is the policy's new or current details, when there are any.
Result<void> checkPolicyWriter(const Context &ctx, const Call &call, const PolicyDetails *details);

// Runs one schedule of the policy now (policy_run.cc): captures, then
// retention, and records the run. Its description, as get-lifecycle-policy
// shows runs; a failed run sets *failure and deletes nothing.
Result<Json> runSchedule(Context &ctx, const catalog::PolicyRow &row, const PolicyDetails &details,
			 const PolicySchedule &schedule, std::optional<Error> *failure);

} // namespace virtsnap::daemon
