#pragma once
// The domain definition of one sandbox VM, as libvirt XML, and the metadata
// element that marks a domain as ours. Pure functions: no libvirt calls.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "sessiond/config.hpp"

namespace sessiond::libvirt {

// Namespace of the <metadata> element that tags our domains.
inline constexpr const char* kMetadataNamespace = "urn:sessiond:sandbox:1";
// The virtio-serial port the guest's agent opens (/dev/virtio-ports/<name>).
inline constexpr const char* kAgentPortName = "org.sessiond.agent.0";
// A custom container's VM's second port: TCP streams to its ports
// (docs/agent-protocol.md, Streams port).
inline constexpr const char* kStreamsPortName = "org.sessiond.streams.0";

struct SandboxMetadata {
    std::string instance;  // Config::cgroupName of the daemon that made it
    std::string pool;
    std::string sandbox;   // the sandbox id
};

// The VM's network card, for pools with egress (docs/networking.md).
struct NicSpec {
    // The host bridge its tap joins, as an isolated port; empty: a tap on
    // no bridge, as a template has (members restored from it get theirs).
    std::string bridge;
    std::string tap;  // the tap's name; empty: libvirt names it
    std::string mac;  // what QEMU's card is made with
};

// What a template's card is made with. A member restored from it keeps it
// (libvirt refuses a restore that changes it) and its guest takes its own
// address at once, so the one value never appears on a bridge.
inline constexpr const char* kTemplateMac = "52:54:00:00:00:01";

struct DomainSpec {
    std::string type = "qemu";  // "kvm", or "qemu" for TCG
    std::string name;
    std::string uuid;           // empty: libvirt picks one
    SandboxMetadata metadata;
    unsigned vcpus = 1;
    std::uint64_t memoryBytes = 512ull << 20;
    std::string machine = "q35";
    bool hostCpu = false;       // host-passthrough; only meaningful with KVM
    std::filesystem::path kernel;
    std::filesystem::path initrd;  // empty: none
    std::string cmdline;
    std::filesystem::path disk;         // the sandbox's qcow2 overlay
    std::filesystem::path diskBase;     // the shared qcow2 image under it
    std::filesystem::path agentSocket;  // host end of the agent's port
    std::filesystem::path consoleLog;   // the guest's serial console
    std::optional<NicSpec> nic;         // none: the VM has no network at all
    // A custom container's VM: its image's disk (read-only, shared by the
    // image's VMs) and the host end of its streams port.
    std::filesystem::path imageDisk;
    std::filesystem::path streamsSocket;
};

std::string domainName(const std::string& instance, const std::string& sandboxId);

// What the guest's init (src/guest/init) expects when the image does not
// say. panic=-1 reboots at once on a kernel panic, which on_reboot=destroy
// turns into the VM ending: the backend then reports the sandbox's exit.
inline constexpr const char* kDefaultKernelCommandLine =
    "console=ttyS0 root=/dev/vda rw init=/opt/sessiond/init quiet panic=-1";

// On the kernel command line of a VM with a card: the guest's init loads
// its driver, which nothing else would (there is no udev).
inline constexpr const char* kNicKernelParameter = " sessiond.nic=1";
// And of a custom container's VM: its init starts the streams program.
inline constexpr const char* kStreamsKernelParameter = " sessiond.streams=1";

// `base` plus sessiond.language=<python|node|shell> and
// sessiond.preload=<modules joined by ','>, which the guest's init hands to
// the agent.
std::string kernelCommandLine(const std::string& language, const std::vector<std::string>& preloadModules,
                              const std::string& base = kDefaultKernelCommandLine);

// The pool's limits that the guest's init applies itself, as kernel
// parameters: sessiond.disk=<MiB> sizes the /mnt/data, /tmp and /dev/shm tmpfs,
// sessiond.nofile=<n> is the agent's RLIMIT_NOFILE, sessiond.pids=<n> the
// process limit of the agent's cgroup, left out for no limit (docs/hardening.md).
std::string limitParameters(const ResourceLimits& limits);
// The size of the guest's tmpfs file systems (and a container's writable
// layer), in whole MiB, at least 1.
std::uint64_t diskMiB(const ResourceLimits& limits);

std::string buildDomainXml(const DomainSpec& spec);

// The <metadata> element that tags a domain as ours.
std::string metadataXml(const SandboxMetadata& metadata);

// A saved template's domain XML (as libvirt wrote it) made into a member's:
// the member's name, UUID and metadata, and its own directory (the one
// holding member.disk) in place of `templateDirectory` in every path (disk
// layer, agent socket, console log), and its own network card (on the
// template's PCI address and with its MAC) when it has one. Throws std::runtime_error when the XML
// lacks one of them.
std::string memberDomainXml(const std::string& templateXml, const std::filesystem::path& templateDirectory,
                            const DomainSpec& member);

// Reads our metadata element as virDomainGetMetadata returns it; nullopt when
// it is not ours or is malformed.
std::optional<SandboxMetadata> parseSandboxMetadata(const std::string& xml);

}  // namespace sessiond::libvirt
