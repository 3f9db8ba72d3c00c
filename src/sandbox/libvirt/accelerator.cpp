#include "accelerator.hpp"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstddef>
#include <chrono>
#include <cstring>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include "mapping.hpp"
#include "sessiond/host_tool.hpp"

namespace sessiond::libvirt {

namespace {

constexpr const char* kKvmDevice = "/dev/kvm";
constexpr int kKvmApiVersion = 12;
// Some nested, paravirtualised KVMs accept every ioctl and then never run
// the guest; a real one finishes the probe in well under a millisecond.
constexpr auto kProbeTimeout = std::chrono::seconds(1);
// Under a KVM that works a kernel prints its first line within half a second.
constexpr auto kKernelProbeTimeout = std::chrono::seconds(5);
constexpr const char* kKernelFirstLine = "Linux version";
constexpr std::uint64_t kGuestAddress = 0x1000;
constexpr std::size_t kGuestPage = 0x1000;

std::string errnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

// QEMU gives each vCPU the host's MSR_IA32_ARCH_CAPABILITIES when KVM lists
// it as a feature MSR. Some nested KVMs list it, run tiny guests, and then
// refuse that write, and QEMU aborts at start ("failed to set MSR 0x10a").
// Returns "" when the vCPU takes the value, as on any real KVM.
// <linux/kvm.h> declares the arrays ending kvm_msrs and kvm_cpuid2 with
// __DECLARE_FLEX_ARRAY, which in C++ puts an empty struct before them: their
// sizeof, the offset of `entries` and so the ioctl numbers come out wrong.
// These use the 8-byte header the kernel expects.
constexpr std::size_t kArrayHeaderBytes = 2 * sizeof(__u32);
constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, kArrayHeaderBytes);
constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, kArrayHeaderBytes);
constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kArrayHeaderBytes);
constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, kArrayHeaderBytes);

struct OneMsr {
    __u32 count = 1;
    __u32 pad = 0;
    kvm_msr_entry entry{};
};

std::string checkArchCapabilities() {
    UniqueFd kvm(::open(kKvmDevice, O_RDWR | O_CLOEXEC));
    if (!kvm) return errnoText("open");
    UniqueFd vm(::ioctl(kvm.get(), KVM_CREATE_VM, 0UL));
    if (!vm) return errnoText("KVM_CREATE_VM");
    UniqueFd vcpu(::ioctl(vm.get(), KVM_CREATE_VCPU, 0UL));
    if (!vcpu) return errnoText("KVM_CREATE_VCPU");

    constexpr std::uint32_t kArchCapabilities = 0x10a;
    OneMsr msr;
    msr.entry.index = kArchCapabilities;
    if (::ioctl(kvm.get(), kGetMsrs, &msr) != 1) return "";  // not offered: QEMU does not set it

    // As QEMU does, the vCPU first gets the CPUID KVM supports.
    constexpr std::uint32_t kMaxCpuidEntries = 512;
    std::vector<__u32> cpuid(2 + kMaxCpuidEntries * sizeof(kvm_cpuid_entry2) / sizeof(__u32));
    cpuid[0] = kMaxCpuidEntries;  // the header: nent, padding
    if (::ioctl(kvm.get(), kGetSupportedCpuid, cpuid.data()) < 0) return errnoText("KVM_GET_SUPPORTED_CPUID");
    if (::ioctl(vcpu.get(), kSetCpuid2, cpuid.data()) < 0) return errnoText("KVM_SET_CPUID2");
    if (::ioctl(vcpu.get(), kSetMsrs, &msr) != 1)
        return "a vCPU refuses the MSR_IA32_ARCH_CAPABILITIES value KVM reports, which QEMU sets";
    return "";
}

// Runs `mov $0x42,%al; out %al,$0x10; hlt` in real mode on one vCPU of a new
// VM. Returns "" when the guest's write to port 0x10 came back as a KVM exit
// and a fresh vCPU takes what QEMU sets up.
std::string runTinyGuest() {
    static const unsigned char code[] = {0xb0, 0x42, 0xe6, 0x10, 0xf4};

    UniqueFd kvm(::open(kKvmDevice, O_RDWR | O_CLOEXEC));
    if (!kvm) return errnoText("open");
    UniqueFd vm(::ioctl(kvm.get(), KVM_CREATE_VM, 0UL));
    if (!vm) return errnoText("KVM_CREATE_VM");

    Mapping memory(::mmap(nullptr, kGuestPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), kGuestPage);
    if (!memory) return errnoText("mmap");
    std::memcpy(memory.get(), code, sizeof code);
    kvm_userspace_memory_region region{};
    region.slot = 0;
    region.guest_phys_addr = kGuestAddress;
    region.memory_size = kGuestPage;
    region.userspace_addr = reinterpret_cast<std::uint64_t>(memory.get());
    if (::ioctl(vm.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) return errnoText("KVM_SET_USER_MEMORY_REGION");

    UniqueFd vcpu(::ioctl(vm.get(), KVM_CREATE_VCPU, 0UL));
    if (!vcpu) return errnoText("KVM_CREATE_VCPU");
    int runSize = ::ioctl(kvm.get(), KVM_GET_VCPU_MMAP_SIZE, 0UL);
    if (runSize < static_cast<int>(sizeof(kvm_run))) return errnoText("KVM_GET_VCPU_MMAP_SIZE");
    Mapping runMapping(::mmap(nullptr, runSize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu.get(), 0), runSize);
    if (!runMapping) return errnoText("mmap of the vCPU");
    auto* run = static_cast<kvm_run*>(runMapping.get());

    kvm_sregs sregs{};
    if (::ioctl(vcpu.get(), KVM_GET_SREGS, &sregs) < 0) return errnoText("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (::ioctl(vcpu.get(), KVM_SET_SREGS, &sregs) < 0) return errnoText("KVM_SET_SREGS");
    kvm_regs regs{};
    regs.rip = kGuestAddress;
    regs.rflags = 0x2;  // bit 1 is reserved and must be set
    if (::ioctl(vcpu.get(), KVM_SET_REGS, &regs) < 0) return errnoText("KVM_SET_REGS");

    int ran;
    do ran = ::ioctl(vcpu.get(), KVM_RUN, 0UL);
    while (ran < 0 && errno == EINTR);
    if (ran < 0) return errnoText("KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO) return "KVM_RUN exited with reason " + std::to_string(run->exit_reason);
    const auto* data = reinterpret_cast<const unsigned char*>(run) + run->io.data_offset;
    if (run->io.direction != KVM_EXIT_IO_OUT || run->io.port != 0x10 || *data != 0x42)
        return "the test guest's port write came back wrong";
    return checkArchCapabilities();
}

// Some nested KVMs run the tiny guest above, long mode and paging included,
// and still hang a real kernel early in its boot, once its real-mode setup
// is done: the guest kernel itself is the last probe. QEMU boots it with no
// disk and no initrd, and is killed once it has printed its first line.
std::string bootKernel(const std::filesystem::path& kernel) {
    const std::string output = runHostToolUntil(
        {"qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1", "-nodefaults",
         "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio", "-kernel", kernel.string(),
         "-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1"},
        kKernelFirstLine, kKernelProbeTimeout);
    if (output.find(kKernelFirstLine) != std::string::npos) return "";
    return "the guest kernel " + kernel.string() + " printed nothing within " +
           std::to_string(kKernelProbeTimeout.count()) + " s under /dev/kvm";
}

// {usable, why}
std::pair<bool, std::string> probeKvm(const std::filesystem::path& guestKernel) {
    if (::access(kKvmDevice, F_OK) != 0) return {false, "/dev/kvm does not exist"};
    UniqueFd kvm(::open(kKvmDevice, O_RDWR | O_CLOEXEC));
    if (!kvm) return {false, errnoText("/dev/kvm cannot be opened read/write")};
    int version = ::ioctl(kvm.get(), KVM_GET_API_VERSION, 0UL);
    if (version != kKvmApiVersion)
        return {false, "/dev/kvm has API version " + std::to_string(version) + ", not " + std::to_string(kKvmApiVersion)};

    // A hung KVM_RUN cannot be interrupted: the probe runs on a thread that
    // is abandoned on timeout, owning everything it opened.
    auto result = std::make_shared<std::promise<std::string>>();
    auto outcome = result->get_future();
    std::thread([result] { result->set_value(runTinyGuest()); }).detach();
    if (outcome.wait_for(kProbeTimeout) != std::future_status::ready)
        return {false, "/dev/kvm accepted a test guest but did not run it within 1 s"};
    std::string error = outcome.get();
    if (!error.empty()) return {false, "/dev/kvm cannot run a test guest (" + error + ")"};
    std::error_code missing;
    if (guestKernel.empty() || !std::filesystem::exists(guestKernel, missing)) return {true, "/dev/kvm runs guests"};
    try {
        error = bootKernel(guestKernel);
    } catch (const std::exception& e) {
        error = e.what();
    }
    if (!error.empty()) return {false, "/dev/kvm runs a test guest, but " + error};
    return {true, "/dev/kvm runs guests and boots the guest kernel"};
}

}  // namespace

std::pair<std::string, std::string> chooseAccelerator(const std::string& setting,
                                                      const std::filesystem::path& guestKernel) {
    if (setting == "tcg") return {"tcg", "libvirt.accelerator is tcg"};
    auto [usable, why] = probeKvm(guestKernel);
    if (setting == "kvm") {
        if (!usable) throw std::runtime_error("libvirt.accelerator is kvm but " + why);
        return {"kvm", "libvirt.accelerator is kvm and " + why};
    }
    if (setting != "auto") throw std::runtime_error("unknown libvirt.accelerator '" + setting + "'");
    if (usable) return {"kvm", why};
    return {"tcg", why + "; emulating instead"};
}

}  // namespace sessiond::libvirt
