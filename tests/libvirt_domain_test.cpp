// The libvirt backend's pure parts: the domain XML, our metadata (also
// through libvirt's test driver, which needs no daemon), and the accelerator
// choice on this host.

#include <unistd.h>

#include <sstream>

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>
#include <gtest/gtest.h>

#include "../src/sandbox/libvirt/accelerator.hpp"
#include "../src/sandbox/libvirt/connection.hpp"
#include "../src/sandbox/libvirt/domain_xml.hpp"

using namespace sessiond::libvirt;
namespace pt = boost::property_tree;

namespace {

DomainSpec exampleSpec() {
    DomainSpec spec;
    spec.type = "qemu";
    spec.name = domainName("sessiond", "default-3");
    spec.uuid = "6f1c7b52-54a4-4d7e-9a53-0b5b1f3c2a11";
    spec.metadata = {"sessiond", "default", "default-3"};
    spec.vcpus = 2;
    spec.memoryBytes = 768ull << 20;
    spec.kernel = "/images/v1/vmlinuz";
    spec.cmdline = kernelCommandLine("python", {"numpy", "pandas"});
    spec.disk = "/vms/sessiond/default-3/disk.qcow2";
    spec.agentSocket = "/vms/sessiond/default-3/agent.sock";
    spec.consoleLog = "/vms/sessiond/default-3/console.log";
    return spec;
}

pt::ptree parse(const std::string& xml) {
    pt::ptree tree;
    std::istringstream in(xml);
    pt::read_xml(in, tree);
    return tree.get_child("domain");
}

std::string attr(const pt::ptree& node, const std::string& name) { return node.get("<xmlattr>." + name, "<none>"); }

std::size_t countChildren(const pt::ptree& node, const std::string& name) { return node.count(name); }

}  // namespace

TEST(LibvirtDomainXml, DescribesTheSandboxVm) {
    DomainSpec spec = exampleSpec();
    pt::ptree domain = parse(buildDomainXml(spec));

    EXPECT_EQ(attr(domain, "type"), "qemu");
    EXPECT_EQ(domain.get<std::string>("name"), "sessiond-sessiond-default-3");
    EXPECT_EQ(domain.get<std::string>("uuid"), spec.uuid);
    EXPECT_EQ(attr(domain.get_child("memory"), "unit"), "KiB");
    EXPECT_EQ(domain.get<std::uint64_t>("memory"), 768u * 1024);
    EXPECT_EQ(domain.get<unsigned>("vcpu"), 2u);

    const pt::ptree& os = domain.get_child("os");
    EXPECT_EQ(os.get<std::string>("type"), "hvm");
    EXPECT_EQ(attr(os.get_child("type"), "arch"), "x86_64");
    EXPECT_EQ(attr(os.get_child("type"), "machine"), "q35");
    EXPECT_EQ(os.get<std::string>("kernel"), "/images/v1/vmlinuz");
    EXPECT_EQ(countChildren(os, "initrd"), 0u);
    EXPECT_EQ(countChildren(os, "boot"), 0u);
    EXPECT_EQ(os.get<std::string>("cmdline"),
              "console=ttyS0 root=/dev/vda rw init=/opt/sessiond/init quiet panic=-1 sessiond.language=python sessiond.preload=numpy,pandas");

    EXPECT_EQ(countChildren(domain.get_child("features"), "acpi"), 1u);
    EXPECT_EQ(countChildren(domain, "cpu"), 0u);  // TCG: QEMU's default model
    EXPECT_EQ(domain.get<std::string>("on_poweroff"), "destroy");
    EXPECT_EQ(domain.get<std::string>("on_reboot"), "destroy");
    EXPECT_EQ(domain.get<std::string>("on_crash"), "destroy");

    const pt::ptree& metadata = domain.get_child("metadata").get_child("sessiond:sandbox");
    EXPECT_EQ(attr(metadata, "xmlns:sessiond"), "urn:sessiond:sandbox:1");
    EXPECT_EQ(attr(metadata, "instance"), "sessiond");
    EXPECT_EQ(attr(metadata, "pool"), "default");
    EXPECT_EQ(attr(metadata, "sandbox"), "default-3");

    const pt::ptree& devices = domain.get_child("devices");
    for (const char* absent : {"interface", "graphics", "video", "sound", "input", "hostdev", "filesystem"})
        EXPECT_EQ(countChildren(devices, absent), 0u) << absent;
    EXPECT_EQ(countChildren(devices, "disk"), 1u);
    const pt::ptree& disk = devices.get_child("disk");
    EXPECT_EQ(attr(disk, "type"), "file");
    EXPECT_EQ(attr(disk, "device"), "disk");
    EXPECT_EQ(attr(disk.get_child("driver"), "name"), "qemu");
    EXPECT_EQ(attr(disk.get_child("driver"), "type"), "qcow2");
    EXPECT_EQ(attr(disk.get_child("driver"), "cache"), "unsafe");
    EXPECT_EQ(attr(disk.get_child("source"), "file"), "/vms/sessiond/default-3/disk.qcow2");
    EXPECT_EQ(attr(disk.get_child("target"), "dev"), "vda");
    EXPECT_EQ(attr(disk.get_child("target"), "bus"), "virtio");

    EXPECT_EQ(attr(devices.get_child("controller"), "type"), "usb");
    EXPECT_EQ(attr(devices.get_child("controller"), "model"), "none");
    EXPECT_EQ(attr(devices.get_child("memballoon"), "model"), "none");

    const pt::ptree& channel = devices.get_child("channel");
    EXPECT_EQ(attr(channel, "type"), "unix");
    EXPECT_EQ(attr(channel.get_child("source"), "mode"), "bind");
    EXPECT_EQ(attr(channel.get_child("source"), "path"), "/vms/sessiond/default-3/agent.sock");
    EXPECT_EQ(attr(channel.get_child("target"), "type"), "virtio");
    EXPECT_EQ(attr(channel.get_child("target"), "name"), "org.sessiond.agent.0");

    const pt::ptree& serial = devices.get_child("serial");
    EXPECT_EQ(attr(serial, "type"), "file");
    EXPECT_EQ(attr(serial.get_child("source"), "path"), "/vms/sessiond/default-3/console.log");
    const pt::ptree& console = devices.get_child("console");
    EXPECT_EQ(attr(console.get_child("target"), "type"), "serial");
}

TEST(LibvirtDomainXml, KvmGetsTheHostCpuAndAnInitrdWhenGiven) {
    DomainSpec spec = exampleSpec();
    spec.type = "kvm";
    spec.hostCpu = true;
    spec.initrd = "/images/v1/initrd.img";
    pt::ptree domain = parse(buildDomainXml(spec));
    EXPECT_EQ(attr(domain, "type"), "kvm");
    EXPECT_EQ(attr(domain.get_child("cpu"), "mode"), "host-passthrough");
    EXPECT_EQ(domain.get<std::string>("os.initrd"), "/images/v1/initrd.img");
}

TEST(LibvirtDomainXml, SizesAndTheEmptyPreloadList) {
    DomainSpec spec = exampleSpec();
    spec.memoryBytes = 1000;  // rounded up to whole KiB
    spec.cmdline = kernelCommandLine("python", {});
    pt::ptree domain = parse(buildDomainXml(spec));
    EXPECT_EQ(domain.get<std::uint64_t>("memory"), 1u);
    EXPECT_EQ(domain.get<std::string>("os.cmdline"),
              "console=ttyS0 root=/dev/vda rw init=/opt/sessiond/init quiet panic=-1 sessiond.language=python sessiond.preload=");
}

TEST(LibvirtDomainXml, EscapesWhatItEmbeds) {
    DomainSpec spec = exampleSpec();
    spec.disk = "/vms/it's <&> \"odd\"/disk.qcow2";
    spec.metadata.pool = "a'b&c";
    pt::ptree domain = parse(buildDomainXml(spec));
    EXPECT_EQ(attr(domain.get_child("devices.disk.source"), "file"), spec.disk.string());
    EXPECT_EQ(attr(domain.get_child("metadata").get_child("sessiond:sandbox"), "pool"), "a'b&c");
}

TEST(LibvirtMetadata, ParsesWhatLibvirtReturns) {
    auto metadata = parseSandboxMetadata("<sandbox instance=\"sessiond\" pool=\"default\" sandbox=\"default-7\"/>");
    ASSERT_TRUE(metadata);
    EXPECT_EQ(metadata->instance, "sessiond");
    EXPECT_EQ(metadata->pool, "default");
    EXPECT_EQ(metadata->sandbox, "default-7");

    EXPECT_TRUE(parseSandboxMetadata("<s:sandbox xmlns:s='urn:sessiond:sandbox:1' instance='x' sandbox='y'/>"));
    EXPECT_FALSE(parseSandboxMetadata("<sandbox pool='default'/>"));
    EXPECT_FALSE(parseSandboxMetadata("<other instance='x' sandbox='y'/>"));
    EXPECT_FALSE(parseSandboxMetadata("not xml <"));
    EXPECT_FALSE(parseSandboxMetadata(""));
}

TEST(LibvirtMetadata, RoundTripsThroughLibvirt) {
    Connection connection("test:///default");
    DomainSpec spec = exampleSpec();
    spec.uuid.clear();
    spec.name = "sessiond-metadata-test-" + std::to_string(getpid());
    spec.metadata = {"metadata-test", "pool-a", "pool-a-1"};
    DomainRef domain(virDomainCreateXML(connection.get(), buildDomainXml(spec).c_str(), 0));
    ASSERT_TRUE(domain) << lastError();

    auto metadata = readSandboxMetadata(domain.get());
    EXPECT_EQ(destroyDomain(domain.get()), "");
    ASSERT_TRUE(metadata);
    EXPECT_EQ(metadata->instance, "metadata-test");
    EXPECT_EQ(metadata->pool, "pool-a");
    EXPECT_EQ(metadata->sandbox, "pool-a-1");

    // The test driver's own domain carries no metadata of ours.
    DomainRef other(virDomainLookupByName(connection.get(), "test"));
    ASSERT_TRUE(other);
    EXPECT_FALSE(readSandboxMetadata(other.get()));
}

TEST(LibvirtAccelerator, ForcedTcg) {
    auto [type, reason] = chooseAccelerator("tcg");
    EXPECT_EQ(type, "tcg");
    EXPECT_FALSE(reason.empty());
}

TEST(LibvirtAccelerator, WithoutKvmAutoFallsBackToTcgAndForcedKvmFails) {
    if (::access("/dev/kvm", F_OK) == 0) GTEST_SKIP() << "this host has /dev/kvm";
    auto [type, reason] = chooseAccelerator("auto");
    EXPECT_EQ(type, "tcg");
    EXPECT_NE(reason.find("/dev/kvm"), std::string::npos) << reason;

    try {
        chooseAccelerator("kvm");
        ADD_FAILURE() << "forcing kvm without /dev/kvm must fail";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("/dev/kvm"), std::string::npos) << e.what();
    }
}
