#include "domain_xml.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>

namespace sessiond::libvirt {

namespace {

std::string escape(const std::string& text) {
    std::string out;
    for (char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '\'': out += "&apos;"; break;
            case '"': out += "&quot;"; break;
            default: out += c;
        }
    }
    return out;
}

std::string escape(const std::filesystem::path& path) { return escape(path.string()); }

// Read-only, so the image's VMs can all open it at once (QEMU takes shared
// locks), and left to its owner by libvirt: it is readable by all.
std::string imageDiskXml(const std::filesystem::path& disk) {
    return "    <disk type='file' device='disk'>\n"
           "      <driver name='qemu' type='raw'/>\n"
           "      <source file='" + escape(disk) + "'>\n"
           "        <seclabel model='dac' relabel='no'/>\n"
           "      </source>\n"
           "      <target dev='vdb' bus='virtio'/>\n"
           "      <readonly/>\n"
           "    </disk>\n";
}

std::string channelXml(const std::filesystem::path& socket, const char* portName) {
    return "    <channel type='unix'>\n"
           "      <source mode='bind' path='" + escape(socket) + "'/>\n"
           "      <target type='virtio' name='" + std::string(portName) + "'/>\n"
           "    </channel>\n";
}

// `pciAddress`: the card's <address> element, when it must keep one.
std::string interfaceXml(const NicSpec& nic, const std::string& pciAddress = "") {
    std::string x = "    <interface type='" + std::string(nic.bridge.empty() ? "ethernet" : "bridge") + "'>\n" +
                    "      <mac address='" + escape(nic.mac) + "'/>\n";
    if (!nic.bridge.empty()) x += "      <source bridge='" + escape(nic.bridge) + "'/>\n";
    if (!nic.tap.empty()) x += "      <target dev='" + escape(nic.tap) + "'/>\n";
    x += "      <model type='virtio'/>\n";
    // Isolated ports forward only to the bridge itself: VMs share no link.
    if (!nic.bridge.empty()) x += "      <port isolated='yes'/>\n";
    if (!pciAddress.empty()) x += "      " + pciAddress + "\n";
    return x + "    </interface>\n";
}

}  // namespace

std::string domainName(const std::string& instance, const std::string& sandboxId) {
    return "sessiond-" + instance + "-" + sandboxId;
}

std::string kernelCommandLine(const std::string& language, const std::vector<std::string>& preloadModules,
                              const std::string& base) {
    std::string cmdline = base + " sessiond.language=" + language + " sessiond.preload=";
    for (std::size_t i = 0; i < preloadModules.size(); ++i) cmdline += (i ? "," : "") + preloadModules[i];
    return cmdline;
}

std::uint64_t diskMiB(const ResourceLimits& limits) { return std::max<std::uint64_t>(1, limits.tmpfsBytes >> 20); }

std::string limitParameters(const ResourceLimits& limits) {
    return " sessiond.disk=" + std::to_string(diskMiB(limits)) +
           " sessiond.nofile=" + std::to_string(limits.openFiles) +
           (limits.pids > 0 ? " sessiond.pids=" + std::to_string(limits.pids) : "");
}

std::string buildDomainXml(const DomainSpec& spec) {
    const std::uint64_t memoryKiB = (spec.memoryBytes + 1023) / 1024;
    std::ostringstream x;
    x << "<domain type='" << escape(spec.type) << "'>\n"
      << "  <name>" << escape(spec.name) << "</name>\n";
    if (!spec.uuid.empty()) x << "  <uuid>" << escape(spec.uuid) << "</uuid>\n";
    x << metadataXml(spec.metadata) << "  <memory unit='KiB'>" << memoryKiB << "</memory>\n"
      << "  <vcpu>" << spec.vcpus << "</vcpu>\n"
      // Direct kernel boot: no bootloader, no boot menu, no disk probing.
      << "  <os>\n"
      << "    <type arch='x86_64' machine='" << escape(spec.machine) << "'>hvm</type>\n"
      << "    <kernel>" << escape(spec.kernel) << "</kernel>\n";
    if (!spec.initrd.empty()) x << "    <initrd>" << escape(spec.initrd) << "</initrd>\n";
    x << "    <cmdline>" << escape(spec.cmdline) << "</cmdline>\n"
      << "  </os>\n"
      // ACPI describes the vCPUs to the guest and lets a guest poweroff end
      // the VM; without it an SMP guest and on_poweroff do not work.
      << "  <features>\n"
      << "    <acpi/>\n"
      << "    <apic/>\n"
      << "  </features>\n";
    if (spec.hostCpu) x << "  <cpu mode='host-passthrough'/>\n";
    x << "  <clock offset='utc'/>\n"
      // Whatever ends the guest ends the VM: a sandbox is never restarted in place.
      << "  <on_poweroff>destroy</on_poweroff>\n"
      << "  <on_reboot>destroy</on_reboot>\n"
      << "  <on_crash>destroy</on_crash>\n"
      << "  <devices>\n"
      // cache=unsafe ignores the guest's flushes: the layer is thrown away
      // with the VM, so durability buys nothing and flushes cost time.
      << "    <disk type='file' device='disk'>\n"
      << "      <driver name='qemu' type='qcow2' cache='unsafe'/>\n"
      << "      <source file='" << escape(spec.disk) << "'/>\n"
      // The chain spelled out, so that libvirt leaves the shared image's
      // owner alone: by default it hands every layer to QEMU's user and
      // never gives the backing layers back.
      << "      <backingStore type='file'>\n"
      << "        <format type='qcow2'/>\n"
      << "        <source file='" << escape(spec.diskBase) << "'>\n"
      << "          <seclabel model='dac' relabel='no'/>\n"
      << "        </source>\n"
      << "        <backingStore/>\n"
      << "      </backingStore>\n"
      << "      <target dev='vda' bus='virtio'/>\n"
      << "    </disk>\n"
      << (spec.imageDisk.empty() ? "" : imageDiskXml(spec.imageDisk))
      << (spec.nic ? interfaceXml(*spec.nic) : "")
      << "    <controller type='usb' model='none'/>\n"
      << channelXml(spec.agentSocket, kAgentPortName)
      << (spec.streamsSocket.empty() ? "" : channelXml(spec.streamsSocket, kStreamsPortName))
      << "    <serial type='file'>\n"
      << "      <source path='" << escape(spec.consoleLog) << "'/>\n"
      << "      <target port='0'/>\n"
      << "    </serial>\n"
      << "    <console type='file'>\n"
      << "      <source path='" << escape(spec.consoleLog) << "'/>\n"
      << "      <target type='serial' port='0'/>\n"
      << "    </console>\n"
      // Seeds the guest's entropy pool at boot: without it, Python's first
      // getrandom() can wait on a slowly emulated guest.
      << "    <rng model='virtio'>\n"
      << "      <backend model='random'>/dev/urandom</backend>\n"
      << "    </rng>\n"
      << "    <memballoon model='none'/>\n"
      << "  </devices>\n"
      << "</domain>\n";
    return x.str();
}

std::string metadataXml(const SandboxMetadata& metadata) {
    return "  <metadata>\n    <sessiond:sandbox xmlns:sessiond='" + std::string(kMetadataNamespace) + "' instance='" +
           escape(metadata.instance) + "' pool='" + escape(metadata.pool) + "' sandbox='" + escape(metadata.sandbox) +
           "'/>\n  </metadata>\n";
}

namespace {

// Replaces the text from `open` through `close` (its first occurrence).
void replaceElement(std::string& xml, const std::string& open, const std::string& close, const std::string& with) {
    const auto begin = xml.find(open);
    const auto end = begin == std::string::npos ? begin : xml.find(close, begin);
    if (end == std::string::npos) throw std::runtime_error("the saved domain XML has no " + open + " element");
    xml.replace(begin, end + close.size() - begin, with);
}

// The text of the first element from `open` through `close`; "" if none.
std::string elementText(const std::string& xml, const std::string& open, const std::string& close) {
    const auto begin = xml.find(open);
    const auto end = begin == std::string::npos ? begin : xml.find(close, begin);
    return end == std::string::npos ? "" : xml.substr(begin, end + close.size() - begin);
}

// The value of `attribute` in `element`, quoted either way; "" if none.
std::string attributeValue(const std::string& element, const std::string& attribute) {
    for (char quote : {'\'', '"'}) {
        const std::string key = attribute + "=" + quote;
        const auto at = element.find(key);
        if (at == std::string::npos) continue;
        const auto end = element.find(quote, at + key.size());
        if (end != std::string::npos) return element.substr(at + key.size(), end - at - key.size());
    }
    return "";
}

// The template's card made into the member's: on the member's bridge and
// tap, with the template's MAC and PCI address, which the restored guest
// expects where it left them.
void replaceInterface(std::string& xml, const NicSpec& nic) {
    const std::string saved = elementText(xml, "<interface", "</interface>");
    if (saved.empty()) throw std::runtime_error("the saved domain XML has no <interface> element");
    NicSpec member = nic;
    member.mac = attributeValue(elementText(saved, "<mac", ">"), "address");
    if (member.mac.empty()) throw std::runtime_error("the saved domain XML's <interface> has no MAC address");
    const std::string address = elementText(saved, "<address", "/>");
    std::string with = interfaceXml(member, address);
    with = with.substr(with.find('<'));  // the saved element's indentation stays
    with.pop_back();                     // and so does its line's end
    replaceElement(xml, "<interface", "</interface>", with);
}

}  // namespace

std::string memberDomainXml(const std::string& templateXml, const std::filesystem::path& templateDirectory,
                            const DomainSpec& member) {
    std::string xml = templateXml;
    replaceElement(xml, "<name>", "</name>", "<name>" + escape(member.name) + "</name>");
    replaceElement(xml, "<uuid>", "</uuid>", "<uuid>" + escape(member.uuid) + "</uuid>");
    // libvirt writes the element back its own way: ours replaces it whole.
    replaceElement(xml, "<metadata>", "</metadata>\n", metadataXml(member.metadata).substr(2));
    if (member.nic) replaceInterface(xml, *member.nic);
    const std::string from = escape(templateDirectory) + "/";
    const std::string to = escape(member.disk.parent_path()) + "/";
    for (auto at = xml.find(from); at != std::string::npos; at = xml.find(from, at + to.size()))
        xml.replace(at, from.size(), to);
    return xml;
}

std::optional<SandboxMetadata> parseSandboxMetadata(const std::string& xml) {
    namespace pt = boost::property_tree;
    pt::ptree tree;
    try {
        std::istringstream in(xml);
        pt::read_xml(in, tree);
    } catch (const pt::xml_parser_error&) {
        return std::nullopt;
    }
    for (const auto& [element, content] : tree) {
        // libvirt returns the element without the prefix it was written with.
        const auto colon = element.find(':');
        if ((colon == std::string::npos ? element : element.substr(colon + 1)) != "sandbox") continue;
        SandboxMetadata metadata;
        metadata.instance = content.get("<xmlattr>.instance", "");
        metadata.pool = content.get("<xmlattr>.pool", "");
        metadata.sandbox = content.get("<xmlattr>.sandbox", "");
        if (metadata.instance.empty() || metadata.sandbox.empty()) return std::nullopt;
        return metadata;
    }
    return std::nullopt;
}

}  // namespace sessiond::libvirt
