// libvirt's XML both ways: what virtsnap reads from libvirt, and what it
// writes for libvirt, parsed back. Names carry every character XML treats
// specially, so a missed escape shows as a parse error or a changed name.
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include <gtest/gtest.h>

#include "hypervisor/domain_xml.h"

namespace virtsnap::hypervisor {
namespace {

const std::string kAwkward = R"(it's "a" <name> & more)";

// What `xpath` finds in `xml`, read with libxml2 itself rather than with
// the code under test: each match's text, in document order.
std::vector<std::string> select(const std::string &xml, const char *xpath)
{
	std::vector<std::string> out;
	xmlDoc *doc = xmlReadMemory(xml.data(), int(xml.size()), nullptr, nullptr, XML_PARSE_NONET);
	if (!doc)
		return {"(not XML)"};
	xmlXPathContext *ctx = xmlXPathNewContext(doc);
	xmlXPathObject *r = xmlXPathEvalExpression(BAD_CAST xpath, ctx);
	if (r && r->nodesetval)
		for (int i = 0; i < r->nodesetval->nodeNr; i++) {
			xmlChar *text = xmlNodeGetContent(r->nodesetval->nodeTab[i]);
			out.push_back(text ? reinterpret_cast<const char *>(text) : "");
			xmlFree(text);
		}
	xmlXPathFreeObject(r);
	xmlXPathFreeContext(ctx);
	xmlFreeDoc(doc);
	return out;
}

using Strings = std::vector<std::string>;

TEST(DomainXml, ReadsDisksBootOrderAndPowerSettings)
{
	auto d = parseDomainXml(R"(<domain type='kvm'>
		<name>vm &amp; co</name><uuid>6d0a8ba6-3a2c-4a63-9a4d-0b8f1f4c2a11</uuid>
		<pm><suspend-to-disk enabled='yes'/></pm>
		<devices>
		  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
		    <source file='/images/a&apos;b.qcow2'/><target dev='vda' bus='virtio'/>
		    <alias name='virtio-disk0'/><boot order='2'/></disk>
		  <disk type='block'><driver name='qemu' type='raw'/><source dev='/dev/sdb'/>
		    <target dev='vdb' bus='virtio'/></disk>
		  <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='sda' bus='sata'/></disk>
		  <disk type='file' device='disk'><source file='/no/target.img'/></disk>
		</devices></domain>)");
	ASSERT_TRUE(d) << d.error().toString();
	EXPECT_EQ(d->name, "vm & co");
	EXPECT_EQ(d->uuid, "6d0a8ba6-3a2c-4a63-9a4d-0b8f1f4c2a11");
	EXPECT_TRUE(d->suspendToDiskEnabled);
	ASSERT_EQ(d->disks.size(), 2u);
	EXPECT_EQ(d->disks[0].target, "vda");
	EXPECT_EQ(d->disks[0].alias, "virtio-disk0");
	EXPECT_EQ(d->disks[0].source, "/images/a'b.qcow2");
	EXPECT_EQ(d->disks[0].format, "qcow2");
	EXPECT_EQ(d->disks[0].bootOrder, 2);
	EXPECT_EQ(d->disks[1].target, "vdb");
	EXPECT_EQ(d->disks[1].source, "/dev/sdb");
	EXPECT_EQ(d->disks[1].format, "raw");
	EXPECT_EQ(d->disks[1].bootOrder, -1);
}

// A LUKS disk as libvirt 9 writes it (<encryption> in <source>) and as
// older versions did (in <disk>); restore-instance reads its secret.
TEST(DomainXml, ReadsADiskEncryptionAndItsSecret)
{
	auto d = parseDomainXml(R"(<domain type='kvm'><name>vm</name><uuid>6d0a8ba6-3a2c-4a63-9a4d-0b8f1f4c2a11</uuid>
		<devices>
		  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
		    <source file='/images/a.qcow2'><encryption format='luks'>
		      <secret type='passphrase' uuid='0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/></encryption></source>
		    <target dev='vda' bus='virtio'/></disk>
		  <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/images/b.luks'/>
		    <encryption format='luks'><secret type='passphrase' uuid='1b81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/></encryption>
		    <target dev='vdb' bus='virtio'/></disk>
		  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/images/c.qcow2'/>
		    <target dev='vdc' bus='virtio'/></disk>
		</devices></domain>)");
	ASSERT_TRUE(d) << d.error().toString();
	ASSERT_EQ(d->disks.size(), 3u);
	EXPECT_EQ(d->disks[0].encryptionFormat, "luks");
	EXPECT_EQ(d->disks[0].encryptionSecret, "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f");
	EXPECT_EQ(d->disks[1].encryptionFormat, "luks");
	EXPECT_EQ(d->disks[1].encryptionSecret, "1b81f5b2-8403-7b23-c8d6-21ccc2f80d6f");
	EXPECT_EQ(d->disks[2].encryptionFormat, "");
	EXPECT_EQ(d->disks[2].encryptionSecret, "");
}

TEST(DomainXml, RefusesWhatIsNotXmlAndADomainWithoutUuid)
{
	auto garbage = parseDomainXml("<domain><name>x</name>");
	ASSERT_FALSE(garbage);
	EXPECT_EQ(garbage.error().code, errc::kHypervisor);
	auto noUuid = parseDomainXml("<domain><name>x</name></domain>");
	ASSERT_FALSE(noUuid);
	EXPECT_NE(noUuid.error().message.find("no UUID"), std::string::npos) << noUuid.error().message;
	EXPECT_FALSE(parseCheckpointXml("not xml"));
	EXPECT_FALSE(parseBackupXml(""));
}

// Product codes in the domain's metadata, as libvirt keeps them: under the
// prefix they were set with; an element of another namespace is not ours.
TEST(DomainXml, ReadsProductCodesFromItsMetadataNamespace)
{
	const std::string head = "<domain><name>vm</name><uuid>6d0a8ba6-3a2c-4a63-9a4d-0b8f1f4c2a11</uuid><metadata>";
	auto d = parseDomainXml(head + R"(<virtsnap:product-codes xmlns:virtsnap="https://virtsnap.example/product-codes">)"
				R"(<virtsnap:product-code>abc123</virtsnap:product-code>)"
				R"(<virtsnap:product-code>dp9:devpay</virtsnap:product-code>)"
				R"(<virtsnap:product-code>abc123:devpay</virtsnap:product-code></virtsnap:product-codes>)"
				R"(<other:product-codes xmlns:other="https://example.com/x"><other:product-code>zz</other:product-code>)"
				R"(</other:product-codes></metadata></domain>)");
	ASSERT_TRUE(d) << d.error().toString();
	EXPECT_EQ(d->productCodes, (std::vector<ProductCode>{{"abc123", "marketplace"}, {"dp9", "devpay"}}));

	auto bad = parseDomainXml(head + R"(<p:product-codes xmlns:p="https://virtsnap.example/product-codes">)"
				  R"(<p:product-code>no good</p:product-code></p:product-codes></metadata></domain>)");
	ASSERT_FALSE(bad);
	EXPECT_EQ(bad.error().code, errc::kInvalidParameterValue);
	EXPECT_NE(bad.error().message.find("domain 'vm'"), std::string::npos) << bad.error().message;
}

// What virDomainGetMetadata gives for the element the example script and
// lifecycle policies read: with the namespace prefix it was set with, or
// without one.
TEST(PolicyMetadata, ReadsTheTagsWithOrWithoutTheirPrefix)
{
	using Tags = std::vector<std::pair<std::string, std::string>>;
	auto plain = parsePolicyMetadata(R"(<policy keep="14"><tag key="backup" value="nightly"/><tag key="t&amp;" value=""/></policy>)");
	ASSERT_TRUE(plain) << plain.error().toString();
	EXPECT_EQ(*plain, (Tags{{"backup", "nightly"}, {"t&", ""}}));
	auto prefixed = parsePolicyMetadata(R"(<virtsnap:policy xmlns:virtsnap="https://virtsnap.example/policy">)"
					    R"(<virtsnap:tag key="backup" value="nightly"/></virtsnap:policy>)");
	ASSERT_TRUE(prefixed) << prefixed.error().toString();
	EXPECT_EQ(*prefixed, (Tags{{"backup", "nightly"}}));
	auto other = parsePolicyMetadata(R"(<other><tag key="backup" value="nightly"/></other>)");
	ASSERT_TRUE(other);
	EXPECT_EQ(*other, Tags{}) << "only a policy element's tags";
	EXPECT_FALSE(parsePolicyMetadata("<policy>"));
}

TEST(CheckpointXml, ANewCheckpointParsesBackWithItsNameAndBitmapDisks)
{
	std::string xml = checkpointXml({kAwkward, {{"vda", true}, {"vd<b>", false}, {"vd&c", true}}, std::nullopt});
	auto c = parseCheckpointXml(xml);
	ASSERT_TRUE(c) << c.error().toString() << "\n" << xml;
	EXPECT_EQ(c->name, kAwkward);
	EXPECT_EQ(c->disks, (Strings{"vda", "vd&c"}));
	EXPECT_EQ(select(xml, "/domaincheckpoint/disks/disk/@checkpoint"), (Strings{"bitmap", "no", "bitmap"}));
	// libvirt names the bitmaps of a new checkpoint after it, and dates it.
	EXPECT_EQ(select(xml, "//@bitmap"), Strings{});
	EXPECT_EQ(select(xml, "/domaincheckpoint/creationTime"), Strings{});
}

TEST(CheckpointXml, ARedefinitionSaysWhenAndNamesEachBitmap)
{
	std::string xml = checkpointXml({kAwkward, {{"vda", true}, {"vdb", false}}, 1700000000});
	auto c = parseCheckpointXml(xml);
	ASSERT_TRUE(c) << c.error().toString() << "\n" << xml;
	EXPECT_EQ(c->name, kAwkward);
	EXPECT_EQ(c->disks, Strings{"vda"});
	EXPECT_EQ(select(xml, "/domaincheckpoint/creationTime"), Strings{"1700000000"});
	EXPECT_EQ(select(xml, "/domaincheckpoint/disks/disk[@name='vda']/@bitmap"), Strings{kAwkward});
	EXPECT_EQ(select(xml, "/domaincheckpoint/disks/disk[@name='vdb']/@bitmap"), Strings{});
}

TEST(BackupXml, APullBackupParsesBackWithItsSocketAndDisks)
{
	BackupDisk full, incremental, skipped;
	full.target = "vda";
	full.backup = true;
	full.exportName = "vda";
	full.scratchFile = "/var/tmp/d/vda.scratch";
	incremental.target = "vd'b";
	incremental.backup = true;
	incremental.exportName = "vd'b";
	incremental.incremental = kAwkward;
	incremental.exportBitmap = "backup-vd'b";
	incremental.scratchFile = "/var/tmp/d/vd'b.scratch";
	incremental.scratchSecret = "0b8c7a3e-5d1f-4e2a-9c6b-7f0e1d2c3b4a";
	skipped.target = "vd<c>";
	const std::string socket = "/var/tmp/" + kAwkward + "/nbd.sock";
	std::string xml = backupXml(socket, {full, incremental, skipped});

	auto job = parseBackupXml(xml);
	ASSERT_TRUE(job) << job.error().toString() << "\n" << xml;
	EXPECT_EQ(job->socket, socket);
	EXPECT_EQ(select(xml, "/domainbackup/@mode"), Strings{"pull"});
	EXPECT_EQ(select(xml, "/domainbackup/server/@transport"), Strings{"unix"});
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk/@name"), (Strings{"vda", "vd'b", "vd<c>"}));
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk/@backup"), (Strings{"yes", "yes", "no"}));
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk/@backupmode"), (Strings{"full", "incremental"}));
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk/@incremental"), Strings{kAwkward});
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk/@exportbitmap"), Strings{"backup-vd'b"});
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk/@exportname"), (Strings{"vda", "vd'b"}));
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk/@type"), (Strings{"file", "file"}));
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk/scratch/@file"),
		  (Strings{"/var/tmp/d/vda.scratch", "/var/tmp/d/vd'b.scratch"}));
	// Only the encrypted disk's scratch is encrypted, under the secret.
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk/scratch/encryption/@format"), Strings{"luks"});
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk[@name=\"vd'b\"]/scratch/encryption/secret/@type"),
		  Strings{"passphrase"});
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk/scratch/encryption/secret/@uuid"),
		  Strings{"0b8c7a3e-5d1f-4e2a-9c6b-7f0e1d2c3b4a"});
	// A disk left out carries nothing but its name.
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk[@backup='no']/@*").size(), 2u);
	EXPECT_EQ(select(xml, "/domainbackup/disks/disk[@backup='no']/*").size(), 0u);
}

} // namespace
} // namespace virtsnap::hypervisor
