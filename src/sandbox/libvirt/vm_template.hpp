#pragma once
// A pool template's saved VM: booted once, its interpreter warmed up (the
// agent's hello), then saved by libvirt, so that the pool's VMs are restored
// from it instead of booting (docs/microvm.md, "Restoring instead of
// booting"). Blocking work: the backend runs it on a worker thread.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include <boost/asio.hpp>
#include <libvirt/libvirt.h>

#include "domain_xml.hpp"
#include "saved_state.hpp"
#include "sessiond/sandbox/agent_channel.hpp"
#include "vm_files.hpp"

namespace sessiond::libvirt {

// What a template is made of, in a directory of its own that goes with it
// (members have copies of what they need, so they outlive it).
struct VmTemplate {
    explicit VmTemplate(std::filesystem::path path) : directory(std::move(path)) {}

    std::filesystem::path stateFile() const { return directory.path() / "state"; }
    // The disk layer as it was when the memory was saved: each member
    // starts from a copy, so its disk matches what its memory remembers.
    std::filesystem::path disk() const { return directory.path() / "disk.qcow2"; }

    SandboxDirectory directory;
    SavedState saved;
};

// Kernel parameters a template boots with on top of the pool's: freed pages
// are zeroed, so that what the guest does not use is saved as zero pages
// (a flag each) and costs a restore nothing.
inline constexpr const char* kTemplateKernelParameters = " init_on_free=1";

struct TemplateBuild {
    virConnectPtr connection = nullptr;
    unsigned startFlags = 0;  // for virDomainCreateXML
    // The template domain; its disk, agent socket and console log lie in
    // the template's directory.
    DomainSpec spec;
    std::chrono::milliseconds helloTimeout{60000};
    const std::atomic<bool>* abandon = nullptr;  // checked while waiting
};

// Connects to a VM's agent socket, waiting a little for QEMU to make it.
// Throws std::runtime_error.
AgentChannel::Socket connectAgentSocket(boost::asio::io_context& io, const std::filesystem::path& path);

// Boots `build.spec` in a new `directory`, waits for the agent's hello, has
// the agent prepare for the save, and saves the VM. Throws
// std::runtime_error saying which step failed; the domain and every file
// are gone by then.
std::shared_ptr<const VmTemplate> buildTemplate(const TemplateBuild& build, const std::filesystem::path& directory);

}  // namespace sessiond::libvirt
