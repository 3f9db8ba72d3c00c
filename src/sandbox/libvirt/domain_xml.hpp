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

struct SandboxMetadata {
    std::string instance;  // Config::cgroupName of the daemon that made it
    std::string pool;
    std::string sandbox;   // the sandbox id
};

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
};

std::string domainName(const std::string& instance, const std::string& sandboxId);

// What the guest's init (src/guest/init) expects when the image does not
// say. panic=-1 reboots at once on a kernel panic, which on_reboot=destroy
// turns into the VM ending: the backend then reports the sandbox's exit.
inline constexpr const char* kDefaultKernelCommandLine =
    "console=ttyS0 root=/dev/vda rw init=/opt/sessiond/init quiet panic=-1";

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

std::string buildDomainXml(const DomainSpec& spec);

// The <metadata> element that tags a domain as ours.
std::string metadataXml(const SandboxMetadata& metadata);

// A saved template's domain XML (as libvirt wrote it) made into a member's:
// the member's name, UUID and metadata, and its own directory (the one
// holding member.disk) in place of `templateDirectory` in every path (disk
// layer, agent socket, console log). Throws std::runtime_error when the XML
// lacks one of them.
std::string memberDomainXml(const std::string& templateXml, const std::filesystem::path& templateDirectory,
                            const DomainSpec& member);

// Reads our metadata element as virDomainGetMetadata returns it; nullopt when
// it is not ours or is malformed.
std::optional<SandboxMetadata> parseSandboxMetadata(const std::string& xml);

}  // namespace sessiond::libvirt
