#include "sessiond/sandbox/libvirt/libvirt_backend.hpp"

#include <sys/un.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>
#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>

#include "accelerator.hpp"
#include "connection.hpp"
#include "domain_xml.hpp"
#include "sessiond/sandbox/agent_sandbox.hpp"
#include "vm_files.hpp"
#include "worker.hpp"

namespace sessiond {

namespace fs = std::filesystem;

namespace {

class LibvirtSandbox;

// QEMU creates the agent socket before virDomainCreateXML returns; the
// retries cover a hypervisor that is slower to do so.
constexpr int kConnectAttempts = 20;
constexpr auto kConnectRetryDelay = std::chrono::milliseconds(50);
constexpr std::size_t kConsoleTailBytes = 2048;

std::string describeEvent(int event, int detail) {
    if (event == VIR_DOMAIN_EVENT_CRASHED)
        return detail == VIR_DOMAIN_EVENT_CRASHED_PANICKED ? "the VM crashed: the guest kernel panicked"
                                                           : "the VM crashed";
    switch (detail) {
        case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: return "the VM stopped: the guest shut down";
        case VIR_DOMAIN_EVENT_STOPPED_DESTROYED: return "the VM stopped: destroyed from outside sessiond";
        case VIR_DOMAIN_EVENT_STOPPED_CRASHED: return "the VM stopped: the guest crashed";
        case VIR_DOMAIN_EVENT_STOPPED_MIGRATED: return "the VM stopped: migrated";
        case VIR_DOMAIN_EVENT_STOPPED_SAVED: return "the VM stopped: saved";
        case VIR_DOMAIN_EVENT_STOPPED_FAILED: return "the VM stopped: QEMU ended unexpectedly";
        case VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: return "the VM stopped: a snapshot was restored";
        default: return "the VM stopped: reason " + std::to_string(detail);
    }
}

std::string consoleTail(const fs::path& log) {
    std::ifstream in(log, std::ios::binary | std::ios::ate);
    if (!in) return "";
    auto size = static_cast<std::size_t>(in.tellg());
    std::size_t start = size > kConsoleTailBytes ? size - kConsoleTailBytes : 0;
    in.seekg(static_cast<std::streamoff>(start));
    std::string tail(size - start, '\0');
    in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
    return tail;
}

// What one VM is made of. Created and released on the worker thread; the
// domain goes before the directory, whose files QEMU holds open.
struct Vm {
    std::atomic<bool> abandoned{false};  // the sandbox was destroyed: start nothing
    std::optional<libvirt::SandboxDirectory> directory;
    libvirt::DomainRef domain;

    ~Vm() {
        if (!domain) return;
        auto started = std::chrono::steady_clock::now();
        std::string error = libvirt::destroyDomain(domain.get());
        if (!error.empty())
            spdlog::error("cannot destroy VM {}: {}", virDomainGetName(domain.get()), error);
        else
            spdlog::debug("VM {} destroyed in {} ms", virDomainGetName(domain.get()),
                          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
                              .count());
    }
};

}  // namespace

struct LibvirtBackend::State {
    State(boost::asio::io_context& io, const Config& config)
        : io(io),
          instance(config.cgroupName),
          imageDirectory(config.libvirt.imageDirectory),
          runtimeDirectory(config.libvirt.runtimeDirectory) {}

    fs::path instanceDirectory() const { return runtimeDirectory / instance; }
    void onLifecycle(const std::string& uuid, int event, int detail);

    boost::asio::io_context& io;
    const std::string instance;
    const fs::path imageDirectory;
    const fs::path runtimeDirectory;
    std::string accelerator;  // "kvm" or "tcg"
    unsigned startFlags = 0;  // for virDomainCreateXML
    std::unique_ptr<libvirt::Connection> connection;
    std::unique_ptr<libvirt::LifecycleSubscription> subscription;
    std::map<std::string, LibvirtSandbox*> sandboxes;  // by domain UUID; io thread only
    std::size_t liveSandboxes = 0;
    // Declared last, so it stops (finishing every queued teardown) while
    // the connection is still open.
    std::unique_ptr<libvirt::Worker> worker;
};

namespace {

void startVm(const LibvirtBackend::State& state, Vm& vm, libvirt::DomainSpec spec,
             const std::string& language, const std::vector<std::string>& preloadModules,
             const fs::path& directory) {
    libvirt::GuestImage image = libvirt::resolveGuestImage(state.imageDirectory);
    vm.directory.emplace(directory);
    spec.kernel = image.kernel;
    spec.initrd = image.initrd;
    spec.cmdline = image.cmdline.empty() ? libvirt::kernelCommandLine(language, preloadModules)
                                         : libvirt::kernelCommandLine(language, preloadModules, image.cmdline);
    spec.diskBase = image.rootfs;
    libvirt::createOverlay(image.rootfs, spec.disk);
    std::string xml = libvirt::buildDomainXml(spec);
    spdlog::trace("domain XML of {}:\n{}", spec.name, xml);
    vm.domain.reset(virDomainCreateXML(state.connection->get(), xml.c_str(), state.startFlags));
    if (!vm.domain) throw std::runtime_error("libvirt could not start VM " + spec.name + ": " + libvirt::lastError());
}

class LibvirtSandbox : public AgentSandbox {
public:
    LibvirtSandbox(LibvirtBackend::State& state, const PoolConfig& pool, const std::string& id)
        : AgentSandbox(state.io, id, pool.sandboxStartTimeout),
          state_(state),
          pool_(pool),
          directory_(state.instanceDirectory() / id),
          retryTimer_(state.io) {
        ++state_.liveSandboxes;
    }

    ~LibvirtSandbox() override {
        if (!uuid_.empty()) state_.sandboxes.erase(uuid_);
        if (vm_) {
            // Destroying the domain can take a moment (QEMU gets SIGTERM
            // first): the worker does it, and the backend waits for it.
            vm_->abandoned = true;
            state_.worker->post([vm = std::move(vm_)]() mutable { vm.reset(); });
        }
        --state_.liveSandboxes;
    }

    void onDomainEvent(int event, int detail) {
        if (event != VIR_DOMAIN_EVENT_STOPPED && event != VIR_DOMAIN_EVENT_CRASHED) return;
        std::string reason = describeEvent(event, detail);
        std::string console = consoleTail(consoleLog());
        spdlog::warn("sandbox {}: {}; {}{}", id(), reason,
                     console.empty() ? "its console is empty" : "the end of its console:\n", console);
        reportExit(reason);
    }

protected:
    void launch(LaunchHandler onLaunched) override {
        if (agentSocket().string().size() >= sizeof(sockaddr_un::sun_path))
            throw std::runtime_error("the agent socket path " + agentSocket().string() +
                                     " is too long for a unix socket; choose a shorter libvirt.runtimeDirectory");
        libvirt::DomainSpec spec = domainSpec();
        uuid_ = spec.uuid;
        state_.sandboxes[uuid_] = this;
        vm_ = std::make_shared<Vm>();
        state_.worker->post([this, alive = std::weak_ptr<int>(lifetime_), state = &state_, vm = vm_, spec,
                             language = agentLanguage(pool_), preload = pool_.preloadModules,
                             directory = directory_, onLaunched] {
            std::string error;
            try {
                if (!vm->abandoned) startVm(*state, *vm, spec, language, preload, directory);
            } catch (const std::exception& e) {
                error = e.what();
            }
            boost::asio::post(state->io, [this, alive, onLaunched, error] {
                if (alive.expired()) return onLaunched("the sandbox was destroyed while starting", std::nullopt);
                if (!error.empty()) return onLaunched(error, std::nullopt);
                connectAgent(onLaunched, 1);
            });
        });
    }

private:
    fs::path agentSocket() const { return directory_ / "agent.sock"; }
    fs::path consoleLog() const { return directory_ / "console.log"; }

    libvirt::DomainSpec domainSpec() const {
        const bool kvm = state_.accelerator == "kvm";
        libvirt::DomainSpec spec;
        spec.type = kvm ? "kvm" : "qemu";
        spec.hostCpu = kvm;
        spec.name = libvirt::domainName(state_.instance, id());
        // Ours rather than libvirt's, so events are matched to this sandbox
        // from the start and never to an older domain of the same name.
        spec.uuid = boost::uuids::to_string(boost::uuids::random_generator()());
        spec.metadata = {state_.instance, pool_.name, id()};
        spec.vcpus = static_cast<unsigned>(std::max(1.0, std::ceil(pool_.resources.cpus)));
        spec.memoryBytes = pool_.resources.memoryBytes;
        spec.disk = directory_ / "disk.qcow2";
        spec.agentSocket = agentSocket();
        spec.consoleLog = consoleLog();
        return spec;
    }

    void connectAgent(LaunchHandler onLaunched, int attempt) {
        auto socket = std::make_shared<AgentChannel::Socket>(io_);
        socket->async_connect(
            boost::asio::local::stream_protocol::endpoint(agentSocket().string()),
            [this, alive = std::weak_ptr<int>(lifetime_), socket, onLaunched, attempt](boost::system::error_code ec) {
                if (alive.expired()) return onLaunched("the sandbox was destroyed while starting", std::nullopt);
                if (!ec) return onLaunched("", std::move(*socket));
                bool notYet = ec == boost::asio::error::connection_refused ||
                              ec == boost::system::errc::no_such_file_or_directory;
                if (!notYet || attempt >= kConnectAttempts)
                    return onLaunched("cannot connect to the agent socket " + agentSocket().string() + ": " + ec.message(),
                                      std::nullopt);
                retryTimer_.expires_after(kConnectRetryDelay);
                retryTimer_.async_wait([this, alive, onLaunched, attempt](boost::system::error_code) {
                    if (alive.expired()) return onLaunched("the sandbox was destroyed while starting", std::nullopt);
                    connectAgent(onLaunched, attempt + 1);
                });
            });
    }

    LibvirtBackend::State& state_;
    PoolConfig pool_;
    fs::path directory_;
    std::string uuid_;
    std::shared_ptr<Vm> vm_;
    boost::asio::steady_timer retryTimer_;
    std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);
};

}  // namespace

void LibvirtBackend::State::onLifecycle(const std::string& uuid, int event, int detail) {
    auto it = sandboxes.find(uuid);
    if (it != sandboxes.end()) it->second->onDomainEvent(event, detail);
}

LibvirtBackend::LibvirtBackend(boost::asio::io_context& io, const Config& config)
    : state_(std::make_shared<State>(io, config)) {
    auto [accelerator, reason] = libvirt::chooseAccelerator(config.libvirt.accelerator);
    state_->accelerator = accelerator;
    spdlog::info("libvirt backend: accelerator {} ({}); a guest boots in about {}", accelerator, reason,
                 accelerator == "kvm" ? "1 s" : "15 s under emulation");

    state_->connection = std::make_unique<libvirt::Connection>(config.libvirt.uri);
    // Autodestroy: if sessiond dies, libvirt kills its VMs as the connection
    // drops, instead of leaving them to the next start's cleanup. The QEMU
    // driver has it; others (the test driver) refuse the flag.
    const char* driver = virConnectGetType(state_->connection->get());
    if (driver && std::string(driver) == "QEMU") state_->startFlags = VIR_DOMAIN_START_AUTODESTROY;
    // Events arrive on libvirt's thread; sandboxes live on the io_context.
    std::weak_ptr<State> weak = state_;
    state_->subscription = std::make_unique<libvirt::LifecycleSubscription>(
        *state_->connection, [&io, weak](const std::string& uuid, const std::string&, int event, int detail) {
            boost::asio::post(io, [weak, uuid, event, detail] {
                if (auto state = weak.lock()) state->onLifecycle(uuid, event, detail);
            });
        });
    state_->worker = std::make_unique<libvirt::Worker>();
}

LibvirtBackend::~LibvirtBackend() {
    if (state_->liveSandboxes)
        spdlog::error("libvirt backend destroyed before {} of its sandboxes; their VMs may be left running",
                      state_->liveSandboxes);
    state_->worker.reset();
    std::error_code ec;
    fs::remove(state_->instanceDirectory(), ec);  // only if empty: files we did not make stay
}

const std::string& LibvirtBackend::accelerator() const { return state_->accelerator; }

std::unique_ptr<Sandbox> LibvirtBackend::create(const PoolConfig& pool, const std::string& sandboxId) {
    return std::make_unique<LibvirtSandbox>(*state_, pool, sandboxId);
}

void LibvirtBackend::cleanupLeftovers() {
    virDomainPtr* list = nullptr;
    int count = virConnectListAllDomains(state_->connection->get(), &list, 0);
    if (count < 0)
        throw std::runtime_error("cannot list the domains at '" + state_->connection->uri() + "': " + libvirt::lastError());
    std::vector<libvirt::DomainRef> domains;
    for (int i = 0; i < count; ++i) domains.emplace_back(list[i]);
    std::free(list);

    std::size_t removedDomains = 0;
    std::set<std::string> stillRunning;  // sandbox ids whose directory QEMU may still use
    for (const auto& domain : domains) {
        auto metadata = libvirt::readSandboxMetadata(domain.get());
        if (!metadata || metadata->instance != state_->instance) continue;
        std::string error;
        if (virDomainIsActive(domain.get()) == 1) error = libvirt::destroyDomain(domain.get());
        if (error.empty() && virDomainIsPersistent(domain.get()) == 1 &&
            virDomainUndefineFlags(domain.get(), VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                                     VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA) < 0 &&
            libvirt::lastErrorCode() != VIR_ERR_NO_DOMAIN)
            error = libvirt::lastError();
        if (!error.empty()) {
            spdlog::error("cannot remove the leftover VM {}: {}", virDomainGetName(domain.get()), error);
            if (virDomainIsActive(domain.get()) == 1) stillRunning.insert(metadata->sandbox);
            continue;
        }
        ++removedDomains;
    }

    std::vector<fs::path> leftoverDirectories;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(state_->instanceDirectory(), ec))
        if (entry.is_directory(ec) && !stillRunning.count(entry.path().filename().string()))
            leftoverDirectories.push_back(entry.path());
    std::size_t removedDirectories = 0;
    for (const auto& directory : leftoverDirectories) {
        fs::remove_all(directory, ec);
        if (ec)
            spdlog::error("cannot remove the leftover VM directory {}: {}", directory.string(), ec.message());
        else
            ++removedDirectories;
    }
    if (removedDomains || removedDirectories)
        spdlog::warn("removed {} VMs and {} VM directories left by an earlier run", removedDomains, removedDirectories);
}

}  // namespace sessiond
