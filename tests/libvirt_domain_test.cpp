// The libvirt backend's pure parts: the domain XML, our metadata (also
// through libvirt's test driver, which needs no daemon), the accelerator
// choice on this host, and the reading of a guest's console log.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>
#include <gtest/gtest.h>

#include "../src/sandbox/libvirt/accelerator.hpp"
#include "../src/sandbox/libvirt/connection.hpp"
#include "../src/sandbox/libvirt/domain_xml.hpp"
#include "../src/sandbox/libvirt/saved_state.hpp"
#include "../src/sandbox/libvirt/vm_files.hpp"
#include "sessiond/host_tool.hpp"
#include "support/vm_files.hpp"

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

TEST(LibvirtDomainXml, LimitParametersForTheGuestsInit) {
    sessiond::ResourceLimits limits;
    limits.tmpfsBytes = 32ull << 20;
    limits.openFiles = 256;
    limits.pids = 64;
    EXPECT_EQ(limitParameters(limits), " sessiond.disk=32 sessiond.nofile=256 sessiond.pids=64");
    limits.tmpfsBytes = 1000;  // never a size of 0, which tmpfs takes for no limit
    limits.pids = 0;           // no limit
    EXPECT_EQ(limitParameters(limits), " sessiond.disk=1 sessiond.nofile=256");
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

// What "auto" picks must boot the guest kernel: some nested KVMs run the
// probe's test guest and then hang a real kernel early in its boot, before
// its first line, and every VM start would time out.
TEST(LibvirtAccelerator, AutoPicksAnAcceleratorThatBootsTheGuestKernel) {
    std::filesystem::path kernel;
    try {
        kernel = resolveGuestImage(sessiond::testing::guestImageDirectory()).kernel;
    } catch (const std::exception& e) {
        GTEST_SKIP() << "no guest image: " << e.what();
    }
    auto [type, reason] = chooseAccelerator("auto", kernel);
    const std::string output = sessiond::runHostToolUntil(
        {"qemu-system-x86_64", "-accel", type, "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-display",
         "none", "-no-reboot", "-serial", "stdio", "-kernel", kernel.string(), "-append", "console=ttyS0 panic=-1"},
        "Linux version", std::chrono::seconds(60));
    EXPECT_NE(output.find("Linux version"), std::string::npos)
        << type << " (" << reason << ") did not get " << kernel << " to its first line:\n" << output;
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

TEST(LibvirtDomainXml, AMemberOfASavedTemplateGetsItsOwnIdentityAndFiles) {
    // As libvirt writes a saved domain back: its own quoting and layout.
    const std::string saved =
        "<domain type='qemu'>\n  <name>sessiond-sessiond-_template-ab12</name>\n"
        "  <uuid>11111111-2222-3333-4444-555555555555</uuid>\n  <metadata>\n"
        "    <sessiond:sandbox xmlns:sessiond=\"urn:sessiond:sandbox:1\" instance=\"sessiond\" pool=\"a\" "
        "sandbox=\"_template-ab12\"/>\n  </metadata>\n  <memory unit='KiB'>786432</memory>\n"
        "  <devices>\n    <disk type='file' device='disk'>\n"
        "      <source file='/vms/sessiond/_templates/ab12/disk.qcow2'/>\n"
        "      <backingStore type='file'><source file='/images/v1/rootfs.qcow2'/></backingStore>\n    </disk>\n"
        "    <serial type='file'><source path='/vms/sessiond/_templates/ab12/console.log'/></serial>\n"
        "    <channel type='unix'><source mode='bind' path='/vms/sessiond/_templates/ab12/agent.sock'/></channel>\n"
        "  </devices>\n</domain>\n";
    DomainSpec member = exampleSpec();
    member.metadata.pool = "b";
    const std::string xml = memberDomainXml(saved, "/vms/sessiond/_templates/ab12", member);
    pt::ptree domain = parse(xml);
    EXPECT_EQ(domain.get<std::string>("name"), member.name);
    EXPECT_EQ(domain.get<std::string>("uuid"), member.uuid);
    auto metadata = parseSandboxMetadata(xml.substr(xml.find("<sessiond:sandbox"), xml.find("</metadata>") - xml.find("<sessiond:sandbox")));
    ASSERT_TRUE(metadata);
    EXPECT_EQ(metadata->pool, "b");
    EXPECT_EQ(metadata->sandbox, "default-3");
    EXPECT_EQ(xml.find("_templates"), std::string::npos) << xml;
    EXPECT_NE(xml.find("<source file='/vms/sessiond/default-3/disk.qcow2'/>"), std::string::npos) << xml;
    EXPECT_NE(xml.find("path='/vms/sessiond/default-3/agent.sock'"), std::string::npos) << xml;
    EXPECT_NE(xml.find("path='/vms/sessiond/default-3/console.log'"), std::string::npos) << xml;
    EXPECT_NE(xml.find("<source file='/images/v1/rootfs.qcow2'/>"), std::string::npos) << "the shared image stays";
    EXPECT_THROW(memberDomainXml("<domain><name>x</name></domain>", "/vms", member), std::runtime_error);
}

TEST(LibvirtDomainXml, AVmWithEgressHasOneVirtioCardOnAnIsolatedBridgePort) {
    DomainSpec spec = exampleSpec();
    EXPECT_EQ(countChildren(parse(buildDomainXml(spec)).get_child("devices"), "interface"), 0u) << "no egress, no card";
    spec.nic = NicSpec{"sessiond0", "sv0ad50005", "52:54:0a:d5:00:05"};
    const pt::ptree withCard = parse(buildDomainXml(spec));
    const pt::ptree& devices = withCard.get_child("devices");
    ASSERT_EQ(countChildren(devices, "interface"), 1u);
    const pt::ptree& card = devices.get_child("interface");
    EXPECT_EQ(attr(card, "type"), "bridge");
    EXPECT_EQ(attr(card.get_child("source"), "bridge"), "sessiond0");
    EXPECT_EQ(attr(card.get_child("target"), "dev"), "sv0ad50005");
    EXPECT_EQ(attr(card.get_child("mac"), "address"), "52:54:0a:d5:00:05");
    EXPECT_EQ(attr(card.get_child("model"), "type"), "virtio");
    EXPECT_EQ(attr(card.get_child("port"), "isolated"), "yes");

    // A template's card is on no bridge, and libvirt names its tap.
    spec.nic = NicSpec{"", "", kTemplateMac};
    const pt::ptree templateDomain = parse(buildDomainXml(spec));
    const pt::ptree& unattached = templateDomain.get_child("devices").get_child("interface");
    EXPECT_EQ(attr(unattached, "type"), "ethernet");
    EXPECT_EQ(unattached.count("source"), 0u);
    EXPECT_EQ(unattached.count("target"), 0u);
}

TEST(LibvirtDomainXml, ACustomContainersVmHasItsImagesDiskReadOnlyAndAStreamsPort) {
    DomainSpec spec = exampleSpec();
    spec.imageDisk = "/containers/vm-images/ab12/disk.ext4";
    spec.streamsSocket = "/vms/sessiond/default-3/streams.sock";
    const std::string xml = buildDomainXml(spec);
    const pt::ptree domain = parse(xml);
    std::vector<std::string> disks, ports;
    for (const auto& [name, device] : domain.get_child("devices")) {
        if (name == "disk") disks.push_back(attr(device.get_child("target"), "dev"));
        if (name == "channel") ports.push_back(attr(device.get_child("target"), "name"));
        if (name == "disk" && attr(device.get_child("target"), "dev") == "vdb") {
            EXPECT_EQ(device.count("readonly"), 1u);
            EXPECT_EQ(attr(device.get_child("source"), "file"), spec.imageDisk.string());
            EXPECT_EQ(attr(device.get_child("driver"), "type"), "raw");
        }
    }
    EXPECT_EQ(disks, (std::vector<std::string>{"vda", "vdb"})) << "the root disk stays the first";
    EXPECT_EQ(ports, (std::vector<std::string>{kAgentPortName, kStreamsPortName}));
    EXPECT_EQ(countChildren(parse(buildDomainXml(exampleSpec())).get_child("devices"), "channel"), 1u);
}

TEST(LibvirtDomainXml, AMemberKeepsItsTemplatesCardButJoinsTheBridgeOnItsOwnTap) {
    const std::string saved =
        "<domain type='qemu'>\n  <name>t</name>\n  <uuid>11111111-2222-3333-4444-555555555555</uuid>\n"
        "  <metadata>\n    <sessiond:sandbox xmlns:sessiond=\"urn:sessiond:sandbox:1\" instance=\"s\" pool=\"a\" "
        "sandbox=\"_template-ab12\"/>\n  </metadata>\n  <devices>\n"
        "    <disk type='file' device='disk'><source file='/vms/s/_templates/ab12/disk.qcow2'/></disk>\n"
        "    <interface type='ethernet'>\n      <mac address='52:54:00:00:00:01'/>\n"
        "      <target dev='vnet7' managed='yes'/>\n      <model type='virtio'/>\n"
        "      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>\n    </interface>\n"
        "  </devices>\n</domain>\n";
    DomainSpec member = exampleSpec();
    member.disk = "/vms/s/default-3/disk.qcow2";
    member.nic = NicSpec{"sessiond0", "sv0ad50005", "52:54:0a:d5:00:05"};
    const std::string xml = memberDomainXml(saved, "/vms/s/_templates/ab12", member);
    const pt::ptree domain = parse(xml);
    const pt::ptree& card = domain.get_child("devices").get_child("interface");
    EXPECT_EQ(attr(card, "type"), "bridge");
    EXPECT_EQ(attr(card.get_child("source"), "bridge"), "sessiond0");
    EXPECT_EQ(attr(card.get_child("target"), "dev"), "sv0ad50005");
    EXPECT_EQ(attr(card.get_child("port"), "isolated"), "yes");
    // libvirt refuses a restore that changes the card; the guest takes its
    // own MAC from the agent's network message instead.
    EXPECT_EQ(attr(card.get_child("mac"), "address"), "52:54:00:00:00:01");
    EXPECT_EQ(attr(card.get_child("address"), "slot"), "0x00");
    EXPECT_EQ(attr(card.get_child("address"), "bus"), "0x01");
    EXPECT_EQ(xml.find("vnet7"), std::string::npos) << xml;

    DomainSpec noCard = member;
    noCard.nic.reset();
    EXPECT_NE(memberDomainXml(saved, "/vms/s/_templates/ab12", noCard).find("vnet7"), std::string::npos)
        << "a member without egress leaves the XML's card alone (its template has none)";
    const std::string cardless = "<domain><name>t</name><uuid>u</uuid><metadata>\n</metadata>\n</domain>";
    EXPECT_THROW(memberDomainXml(cardless, "/vms/s/_templates/ab12", member), std::runtime_error);
}

namespace {

// A save image as libvirt's QEMU driver lays it out (qemu_saveimage.h):
// magic, version 2, data length, was running, compressed, cookie offset,
// 14 unused words; XML, NUL, cookie, NUL, padding; then QEMU's stream.
std::string saveImage(const std::string& magic, std::uint32_t compressed, const std::string& xml,
                      const std::string& cookie, const std::string& stream) {
    std::string data = xml + '\0' + cookie + '\0' + std::string(100, '\0');
    std::uint32_t words[19] = {2, static_cast<std::uint32_t>(data.size()), 1, compressed,
                               static_cast<std::uint32_t>(xml.size() + 1)};
    return magic + std::string(reinterpret_cast<const char*>(words), sizeof words) + data + stream;
}

struct ScratchDirectory {
    ScratchDirectory() {
        std::string pattern = (std::filesystem::temp_directory_path() / "sessiond-saved-XXXXXX").string();
        path = ::mkdtemp(pattern.data());
    }
    ~ScratchDirectory() { std::filesystem::remove_all(path); }
    std::filesystem::path path;
};

void writeFile(const std::filesystem::path& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
}

std::string readFile(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(LibvirtSavedState, ACopyHoldsTheNewDomainAndTheSameStream) {
    ScratchDirectory dir;
    const std::string stream = "QEVM" + std::string(70000, 'x') + "end";
    writeFile(dir.path / "template", saveImage("LibvirtQemudSave", 0, "<domain>t</domain>", "<cookie/>", stream));
    SavedState saved = readSavedState(dir.path / "template");
    EXPECT_EQ(saved.xml, "<domain>t</domain>");
    EXPECT_EQ(saved.cookie, "<cookie/>");
    EXPECT_EQ(saved.wasRunning, 1u);

    writeSavedStateCopy(dir.path / "template", saved, "<domain>member, longer</domain>", dir.path / "member");
    SavedState copy = readSavedState(dir.path / "member");
    EXPECT_EQ(copy.xml, "<domain>member, longer</domain>");
    EXPECT_EQ(copy.cookie, "<cookie/>");
    EXPECT_EQ(copy.wasRunning, 1u);
    EXPECT_EQ(readFile(dir.path / "member").substr(copy.streamOffset), stream);
    EXPECT_EQ(std::filesystem::status(dir.path / "member").permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TEST(LibvirtSavedState, RefusesWhatItCannotRestoreFrom) {
    ScratchDirectory dir;
    auto refusal = [&](const std::string& bytes) {
        writeFile(dir.path / "state", bytes);
        try {
            readSavedState(dir.path / "state");
        } catch (const std::runtime_error& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_NE(refusal(saveImage("LibvirtQemudPart", 0, "<d/>", "", "s")).find("incomplete"), std::string::npos);
    EXPECT_NE(refusal(saveImage("SomethingElse!!!", 0, "<d/>", "", "s")).find("not a libvirt"), std::string::npos);
    EXPECT_NE(refusal(saveImage("LibvirtQemudSave", 1, "<d/>", "", "s")).find("compressed"), std::string::npos);
    EXPECT_NE(refusal(saveImage("LibvirtQemudSave", 0, "<d/>", "", "")).find("no guest state"), std::string::npos);
    EXPECT_NE(refusal("LibvirtQemudSave").find("truncated"), std::string::npos);
    EXPECT_EQ(refusal(saveImage("LibvirtQemudSave", 0, "<d/>", "", "s")), "accepted");
    EXPECT_THROW(readSavedState(dir.path / "missing"), std::runtime_error);
}

TEST(LibvirtConsoleLog, CountsNewWholeLinesAndStartsOverWhenTheLogWasRotated) {
    const std::filesystem::path log =
        std::filesystem::temp_directory_path() / ("sessiond-console-" + std::to_string(::getpid()) + ".log");
    std::uint64_t offset = 0;
    EXPECT_EQ(countNewLines(log, "Killed process", offset), 0u);  // no log yet
    {
        std::ofstream out(log, std::ios::binary);
        out << "boot\nOut of memory: Killed process 12 (python3)\nKilled process 13 (python3";
    }
    EXPECT_EQ(countNewLines(log, "Killed process", offset), 1u);
    EXPECT_EQ(countNewLines(log, "Killed process", offset), 0u) << "a line is counted once";
    {
        std::ofstream out(log, std::ios::binary | std::ios::app);
        out << ")\n";
    }
    EXPECT_EQ(countNewLines(log, "Killed process", offset), 1u) << "a line is counted once it is whole";
    {
        std::ofstream out(log, std::ios::binary | std::ios::trunc);  // rotated: a new, shorter log
        out << "Killed process 14\n";
    }
    EXPECT_EQ(countNewLines(log, "Killed process", offset), 1u);
    std::filesystem::remove(log);
}
