#include "events/event.h"

#include <cstdint>
#include <cstdio>
#include <random>

#include "core/ids.h"
#include "crypto/crypto.h"

namespace virtsnap::events {

namespace {

// A version-4 UUID, as EventBridge ids are. Ids only need to be unique, not
// secret, so a failing random source falls back to random_device instead of
// failing the event.
std::string newEventId()
{
	uint8_t b[16];
	if (!crypto::randomBytes(b)) {
		std::random_device rd;
		for (uint8_t &x : b)
			x = uint8_t(rd());
	}
	b[6] = uint8_t((b[6] & 0x0f) | 0x40);
	b[8] = uint8_t((b[8] & 0x3f) | 0x80);
	char s[37];
	std::snprintf(s, sizeof(s),
		      "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		      b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
		      b[12], b[13], b[14], b[15]);
	return s;
}

std::string snapshotArn(const std::string &region, const std::string &account, const std::string &id)
{
	return "arn:virtsnap:ec2:" + region + ":" + account + ":snapshot/" + id;
}

Json envelope(const char *detailType, const std::string &region, const std::string &account,
	      Json resources, Json detail)
{
	Json e = Json::object();
	e.set("version", Json::string("0"));
	e.set("id", Json::string(newEventId()));
	e.set("detail-type", Json::string(detailType));
	e.set("source", Json::string(kEventSource));
	e.set("account", Json::string(account));
	e.set("time", Json::string(isoTimeNow()));
	e.set("region", Json::string(region));
	e.set("resources", std::move(resources));
	e.set("detail", std::move(detail));
	return e;
}

} // namespace

Json toJson(const SnapshotNotice &n)
{
	Json resources = Json::array();
	// A job that failed before it had an id names no resource.
	if (!n.snapshotId.empty())
		resources.append(Json::string(snapshotArn(n.region, n.account, n.snapshotId)));

	Json d = Json::object();
	d.set("event", Json::string(n.event));
	d.set("result", Json::string(n.result));
	d.set("cause", Json::string(n.cause));
	d.set("request-id", Json::string(n.requestId));
	d.set("snapshot_id", Json::string(n.snapshotId));
	d.set("source", Json::string(n.source));
	d.set("startTime", Json::string(n.startTime));
	d.set("endTime", Json::string(n.endTime));
	return envelope(kSnapshotNotification, n.region, n.account, std::move(resources), std::move(d));
}

Json toJson(const MultiVolumeNotice &n)
{
	Json resources = Json::array();
	Json members = Json::array();
	for (const SetMember &m : n.snapshots) {
		if (!m.snapshotId.empty())
			resources.append(Json::string(snapshotArn(n.region, n.account, m.snapshotId)));
		Json s = Json::object();
		s.set("snapshot_id", Json::string(m.snapshotId));
		s.set("source", Json::string(m.source));
		s.set("status", Json::string(m.status));
		members.append(std::move(s));
	}

	Json d = Json::object();
	d.set("event", Json::string(n.event));
	d.set("result", Json::string(n.result));
	d.set("cause", Json::string(n.cause));
	d.set("request-id", Json::string(n.requestId));
	d.set("snapshots", std::move(members));
	d.set("startTime", Json::string(n.startTime));
	d.set("endTime", Json::string(n.endTime));
	return envelope(kMultiVolumeCompletion, n.region, n.account, std::move(resources), std::move(d));
}

Json toJson(const PolicyRunNotice &n)
{
	Json resources = Json::array();
	resources.append(Json::string("arn:virtsnap:dlm:" + n.region + ":" + n.account + ":policy/" + n.policyId));
	Json d = Json::object();
	d.set("state", Json::string("ERROR"));
	d.set("policy_id", Json::string(n.policyId));
	d.set("schedule_name", Json::string(n.scheduleName));
	d.set("cause", Json::string(n.cause));
	d.set("startTime", Json::string(n.startTime));
	d.set("endTime", Json::string(n.endTime));
	return envelope(kPolicyStateChange, n.region, n.account, std::move(resources), std::move(d));
}

Json toJson(const VolumeNotice &n)
{
	Json resources = Json::array();
	resources.append(Json::string(snapshotArn(n.region, n.account, n.snapshotId)));
	Json d = Json::object();
	d.set("event", Json::string("createVolume"));
	d.set("result", Json::string(n.result));
	d.set("cause", Json::string(n.cause));
	d.set("request-id", Json::string(n.requestId));
	d.set("snapshot_id", Json::string(n.snapshotId));
	d.set("target", Json::string(n.target));
	d.set("readyMillis", Json::integer(n.readyMillis));
	d.set("copiedMillis", Json::integer(n.copiedMillis));
	d.set("bytesServed", Json::integer(int64_t(n.bytesServed)));
	d.set("bytesFromStore", Json::integer(int64_t(n.bytesFromStore)));
	return envelope(kVolumeNotification, n.region, n.account, std::move(resources), std::move(d));
}

} // namespace virtsnap::events
