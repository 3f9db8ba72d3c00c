#include "sessiond/sandbox/libvirt/libvirt_backend.hpp"

#include <sys/random.h>
#include <sys/stat.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>
#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>

#include "accelerator.hpp"
#include "connection.hpp"
#include "domain_xml.hpp"
#include "image_disk.hpp"
#include "sessiond/auth/api_keys.hpp"
#include "sessiond/sandbox/agent_protocol.hpp"
#include "sessiond/sandbox/agent_sandbox.hpp"
#include "sessiond/sandbox/container_launch.hpp"
#include "sessiond/sandbox/custom_container_sandbox.hpp"
#include "sessiond/sandbox/egress_network.hpp"
#include "sessiond/sandbox/stream_mux.hpp"
#include "sessiond/sandbox/worker_thread.hpp"
#include "vm_files.hpp"
#include "vm_template.hpp"

namespace sessiond {

namespace fs = std::filesystem;

namespace {

class LibvirtSandbox;

// QEMU creates the agent socket before virDomainCreateXML returns; the
// retries cover a hypervisor that is slower to do so.
constexpr int kConnectAttempts = 20;
constexpr auto kConnectRetryDelay = std::chrono::milliseconds(50);
// A template that could not be made, or whose state could not be restored,
// is not made again for this long: its pool's VMs boot meanwhile.
constexpr auto kTemplateRetryDelay = std::chrono::minutes(5);
// Fresh entropy for a restored VM's kernel, in bytes.
constexpr std::size_t kRestoreEntropyBytes = 64;
// Beside the sandboxes' directories; no sandbox id has an underscore.
constexpr const char* kTemplatesDirectory = "_templates";

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

std::int64_t millisecondsSince(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
}

// What one VM is made of. Created and released on the worker thread; the
// domain goes before the directory, whose files QEMU holds open, and before
// its address on the egress network, whose tap goes with the domain.
struct Vm {
    std::atomic<bool> abandoned{false};  // the sandbox was destroyed: start nothing
    std::unique_ptr<EgressPort> egress;
    std::optional<libvirt::SandboxDirectory> directory;
    libvirt::OwnedDomain domain;
};

// What starting one VM takes, whether it boots or is restored.
struct VmJob {
    libvirt::DomainSpec spec;  // the image's files and the command line still unset
    std::string pool;
    std::string language;
    std::vector<std::string> preloadModules;
    fs::path directory;
    std::chrono::milliseconds helloTimeout{};
    std::string limitParameters;  // appended to the kernel command line
};

// A file's version: a rebuilt image or an updated QEMU gives another key.
std::string fileIdentity(const fs::path& file) {
    struct stat info {};
    if (file.empty() || ::stat(file.c_str(), &info) != 0) return file.string() + ":none";
    std::ostringstream out;
    out << file.string() << ':' << info.st_dev << ':' << info.st_ino << ':' << info.st_size << ':'
        << info.st_mtim.tv_sec << '.' << info.st_mtim.tv_nsec;
    return out.str();
}

// libvirt's version and QEMU's binary: a saved VM may not restore with
// another of either.
std::string emulatorIdentity(virConnectPtr connection, const std::string& accelerator) {
    unsigned long libraryVersion = 0;
    virConnectGetLibVersion(connection, &libraryVersion);
    std::string identity = "libvirt " + std::to_string(libraryVersion);
    std::unique_ptr<char, decltype(&std::free)> capabilities(
        virConnectGetDomainCapabilities(connection, nullptr, "x86_64", nullptr,
                                        accelerator == "kvm" ? "kvm" : "qemu", 0),
        &std::free);
    const std::string xml = capabilities ? capabilities.get() : "";
    const auto path = xml.find("<path>"), end = xml.find("</path>");
    if (path != std::string::npos && end != std::string::npos)
        identity += " " + fileIdentity(xml.substr(path + 6, end - path - 6));
    return identity;
}

}  // namespace

struct LibvirtBackend::State {
    State(boost::asio::io_context& io, const Config& config, metrics::Registry* metrics)
        : io(io),
          metrics(metrics),
          instance(config.cgroupName),
          imageDirectory(config.libvirt.imageDirectory),
          runtimeDirectory(config.libvirt.runtimeDirectory),
          network(config.network),
          containerDirectory(config.containers.directory),
          maxConcurrentStarts(config.libvirt.maxConcurrentStarts ? config.libvirt.maxConcurrentStarts
                                                                 : SandboxBackend::hostCores()) {}

    fs::path instanceDirectory() const { return runtimeDirectory / instance; }
    // The daemon's egress network, made by the first VM that needs it. io thread.
    std::shared_ptr<EgressNetwork> egressNetwork() {
        if (!egress) egress = EgressNetwork::shared(io, network, metrics);
        return egress;
    }
    fs::path templatesDirectory() const { return instanceDirectory() / kTemplatesDirectory; }
    void onLifecycle(const std::string& uuid, int event, int detail);

    // `job`'s domain with the image's files and the kernel command line.
    libvirt::DomainSpec completeSpec(const VmJob& job, const libvirt::GuestImage& image) const;
    // Restores `job`'s VM from `saved` if there is one and that works, else
    // boots it. Worker thread. A restored VM comes back running with its
    // agent channel connected; a booted one, without (null).
    std::shared_ptr<AgentChannel::Socket> launch(Vm& vm, const VmJob& job,
                                                 const std::shared_ptr<const libvirt::VmTemplate>& saved);
    void boot(Vm& vm, const VmJob& job);
    std::shared_ptr<AgentChannel::Socket> restore(Vm& vm, const VmJob& job, const libvirt::VmTemplate& saved);

    // The template `job`'s pool restores from, made first if need be; null
    // when the VM is to boot. Template worker thread.
    std::shared_ptr<const libvirt::VmTemplate> templateFor(const VmJob& job);
    std::string templateKey(const libvirt::DomainSpec& spec, const libvirt::GuestImage& image) const;
    // Drops a template whose state could not be restored. Any thread.
    void forgetTemplate(const std::shared_ptr<const libvirt::VmTemplate>& saved);
    // Drops the pool's template unless another pool uses it. Any thread,
    // holding templatesMutex.
    void releaseTemplate(const std::string& pool);

    boost::asio::io_context& io;
    metrics::Registry* const metrics;  // for the egress network's resolver; may be null
    const std::string instance;
    const fs::path imageDirectory;
    const fs::path runtimeDirectory;
    const NetworkConfig network;
    std::shared_ptr<EgressNetwork> egress;
    const fs::path containerDirectory;
    // Custom container pools' images, unpacked with their own owners (a
    // VM's ids are its own) and made into disks; made when first needed.
    std::unique_ptr<ContainerPlanner> planner;
    ContainerPlanner& containerPlanner() {
        if (!planner)
            planner = std::make_unique<ContainerPlanner>(io, containerDirectory / "vm-images", 0,
                                                         [](ContainerLaunch& launch) {
                                                             launch.imageDisk = libvirt::imageDisk(launch.rootfs);
                                                         });
        return *planner;
    }
    const std::size_t maxConcurrentStarts;
    std::string accelerator;  // "kvm" or "tcg"
    unsigned startFlags = 0;  // for virDomainCreateXML
    bool restoring = false;   // libvirt.start is restore and the driver saves QEMU's way
    std::string versions;     // libvirt's and QEMU's, part of every template key
    std::atomic<bool> stopping{false};
    std::atomic<std::size_t> templatesSaved{0}, restored{0}, booted{0}, restoreFailures{0};
    std::unique_ptr<libvirt::Connection> connection;
    std::unique_ptr<libvirt::LifecycleSubscription> subscription;
    std::map<std::string, LibvirtSandbox*> sandboxes;  // by domain UUID; io thread only
    std::size_t liveSandboxes = 0;

    // A template is held by this map while a pool uses it and by each
    // restore in progress; its files go with the last holder.
    std::mutex templatesMutex;
    std::map<std::string, std::shared_ptr<const libvirt::VmTemplate>> templates;  // by key
    std::map<std::string, std::string> templateOfPool;                            // pool -> key
    std::map<std::string, std::chrono::steady_clock::time_point> failedTemplates; // key -> when

    // Declared last, so they stop (finishing every queued teardown) while
    // the connection is still open. Template boots take seconds: they have
    // a thread of their own, so teardowns never wait for one.
    std::unique_ptr<WorkerThread> worker;
    std::unique_ptr<WorkerThread> templateWorker;
};

namespace {

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

    // Makes this VM a custom container's (before start()): it boots with
    // the image's disk and a streams port, runs no interpreter, and its
    // agent starts `launch` once the VM is up.
    void runContainer(ContainerLaunch launch) { container_ = std::move(launch); }
    fs::path streamsSocket() const { return directory_ / "streams.sock"; }
    std::string consoleTail() const { return libvirt::consoleTail(consoleLog()); }

    void onDomainEvent(int event, int detail) {
        if (event != VIR_DOMAIN_EVENT_STOPPED && event != VIR_DOMAIN_EVENT_CRASHED) return;
        std::string reason = describeEvent(event, detail);
        std::string console = libvirt::consoleTail(consoleLog());
        spdlog::warn("sandbox {}: {}; {}{}", id(), reason,
                     console.empty() ? "its console is empty" : "the end of its console:\n", console);
        reportExit(reason);
    }

protected:
    void launch(LaunchHandler onLaunched) override {
        libvirt::checkSocketPath(agentSocket());
        // A container's VM runs its agent without an interpreter: the shell
        // session type has none until a command comes, and none comes.
        VmJob job{domainSpec(), pool_.name, container_ ? "shell" : agentLanguage(pool_),
                  container_ ? std::vector<std::string>{} : pool_.preloadModules, directory_,
                  std::chrono::duration_cast<std::chrono::milliseconds>(pool_.sandboxStartTimeout),
                  libvirt::limitParameters(pool_.resources)};
        vm_ = std::make_shared<Vm>();
        if (pool_.egressEnabled) {
            vm_->egress = state_.egressNetwork()->reserve(EgressTenant::of(pool_, id()));
            const EgressPort& port = *vm_->egress;
            job.spec.nic = libvirt::NicSpec{state_.network.bridge, port.hostInterface(), port.mac()};
            network_ = GuestNetwork{port.mac(), port.address(), port.prefixLength(), port.gateway(), port.resolvConf()};
        }
        if (container_) {
            libvirt::checkSocketPath(streamsSocket());
            job.spec.imageDisk = container_->imageDisk;
            job.spec.streamsSocket = streamsSocket();
        }
        uuid_ = job.spec.uuid;
        state_.sandboxes[uuid_] = this;
        auto start = [this, alive = std::weak_ptr<int>(lifetime_), state = &state_, vm = vm_, job,
                      onLaunched](std::shared_ptr<const libvirt::VmTemplate> saved) {
            std::string error;
            std::shared_ptr<AgentChannel::Socket> restored;
            try {
                if (!vm->abandoned) restored = state->launch(*vm, job, saved);
            } catch (const std::exception& e) {
                error = e.what();
            }
            saved.reset();  // its files may go now, here rather than on the io thread
            boost::asio::post(state->io, [this, alive, onLaunched, error, restored] {
                if (alive.expired()) return onLaunched("the sandbox was destroyed while starting", std::nullopt);
                if (!error.empty()) return onLaunched(error, std::nullopt);
                restored_ = restored != nullptr;
                if (!restored) return connectAgent(onLaunched, 1);
                onLaunched("", std::move(*restored));
            });
        };
        // Container VMs boot: their image's disk is not a template's.
        if (!state_.restoring || container_) return state_.worker->post([start] { start(nullptr); });
        // Making the template can take a boot: its thread does it, then the
        // VM's own start joins the queue of the worker that tears VMs down.
        state_.templateWorker->post([state = &state_, vm = vm_, job, start] {
            std::shared_ptr<const libvirt::VmTemplate> saved;
            if (!vm->abandoned) saved = state->templateFor(job);
            state->worker->post([start, saved] { start(saved); });
        });
    }

    std::optional<nlohmann::json> handshakeRequest() override {
        if (!restored_) return std::nullopt;
        std::string entropy(kRestoreEntropyBytes, '\0');
        for (std::size_t filled = 0; filled < entropy.size();) {
            const ssize_t got = ::getrandom(entropy.data() + filled, entropy.size() - filled, 0);
            if (got > 0) filled += static_cast<std::size_t>(got);
        }
        std::string machineId = uuid_;
        std::erase(machineId, '-');
        return makeSnapshotRestoreMessage(entropy, std::chrono::system_clock::now(), machineId);
    }

    // The card first: a container's /etc/resolv.conf is the guest's.
    std::vector<nlohmann::json> setupRequests() override {
        std::vector<nlohmann::json> requests;
        if (network_) requests.push_back(makeNetworkMessage(*network_));
        if (container_)
            requests.push_back(makeContainerMessage(*container_, libvirt::diskMiB(pool_.resources)));
        return requests;
    }

    // The guest's memory limit is the VM's: its kernel's OOM killer writes
    // one "Killed process" line per kill to the console, which the host
    // reads. Refused forks come in the agent's replies instead.
    LimitCounters limitCounters() const override {
        oomKills_ += libvirt::countNewLines(consoleLog(), "Killed process", consoleOffset_);
        return {pool_.resources.memoryBytes, oomKills_, 0, 0};
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
    bool restored_ = false;
    std::optional<GuestNetwork> network_;  // with egress
    std::optional<ContainerLaunch> container_;
    boost::asio::steady_timer retryTimer_;
    mutable std::uint64_t consoleOffset_ = 0;  // of the console log, read up to here for OOM lines
    mutable std::uint64_t oomKills_ = 0;
    std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);
};

// A custom container session in a microVM of its own
// (docs/custom-containers.md): the VM boots the guest image with the
// container image's disk; its agent starts the container; the host reaches
// the container's ports through the VM's streams port, so a VM without a
// network card serves requests too.
class LibvirtContainerSandbox : public CustomContainerSandbox {
public:
    LibvirtContainerSandbox(LibvirtBackend::State& state, const PoolConfig& pool, const std::string& id)
        : CustomContainerSandbox(state.io, pool, id, state.containerPlanner()), state_(state) {}

    ~LibvirtContainerSandbox() override {
        if (streams_) streams_->close();
        vm_.reset();
    }

    void connect(std::uint16_t port, Handler<UniqueFd> onDone) override {
        if (!streams_ || !streams_->isOpen()) return onDone({"the container's VM is not running", UniqueFd(), ""});
        streams_->open(port, [onDone = std::move(onDone)](std::string error, UniqueFd stream) {
            onDone({std::move(error), std::move(stream), ""});
        });
    }

private:
    void launch(const ContainerLaunch& launch, std::function<void(std::string error)> onRunning) override {
        vm_ = std::make_unique<LibvirtSandbox>(state_, pool_, id());
        vm_->runContainer(launch);
        vm_->setExitHandler([this, alive = alive()](std::string reason) {
            if (!alive.expired()) exited(reason);
        });
        vm_->start([this, alive = alive(), onRunning](std::string error) {
            if (alive.expired()) return;
            if (!error.empty()) return onRunning(error);
            connectStreams(onRunning);
        });
    }

    std::string lastOutput() const override { return vm_ ? vm_->consoleTail() : ""; }

    void connectStreams(std::function<void(std::string error)> onRunning) {
        auto socket = std::make_shared<StreamMux::Socket>(io_);
        socket->async_connect(
            boost::asio::local::stream_protocol::endpoint(vm_->streamsSocket().string()),
            [this, alive = alive(), socket, onRunning](boost::system::error_code ec) {
                if (alive.expired()) return;
                if (ec) return onRunning("cannot connect to the VM's streams port: " + ec.message());
                streams_ = std::make_shared<StreamMux>(std::move(*socket));
                streams_->setClosedHandler([this, alive](std::string reason) {
                    if (!alive.expired()) exited("the VM's streams port closed: " + reason);
                });
                onRunning("");
            });
    }

    LibvirtBackend::State& state_;
    std::unique_ptr<LibvirtSandbox> vm_;
    std::shared_ptr<StreamMux> streams_;
};

}  // namespace

void LibvirtBackend::State::onLifecycle(const std::string& uuid, int event, int detail) {
    auto it = sandboxes.find(uuid);
    if (it != sandboxes.end()) it->second->onDomainEvent(event, detail);
}

libvirt::DomainSpec LibvirtBackend::State::completeSpec(const VmJob& job, const libvirt::GuestImage& image) const {
    libvirt::DomainSpec spec = job.spec;
    spec.kernel = image.kernel;
    spec.initrd = image.initrd;
    spec.cmdline = image.cmdline.empty() ? libvirt::kernelCommandLine(job.language, job.preloadModules)
                                         : libvirt::kernelCommandLine(job.language, job.preloadModules, image.cmdline);
    spec.cmdline += job.limitParameters;
    if (spec.nic) spec.cmdline += libvirt::kNicKernelParameter;
    if (!spec.streamsSocket.empty()) spec.cmdline += libvirt::kStreamsKernelParameter;
    spec.diskBase = image.rootfs;
    return spec;
}

std::shared_ptr<AgentChannel::Socket> LibvirtBackend::State::launch(
    Vm& vm, const VmJob& job, const std::shared_ptr<const libvirt::VmTemplate>& saved) {
    if (saved) {
        const auto started = std::chrono::steady_clock::now();
        try {
            auto channel = restore(vm, job, *saved);
            ++restored;
            spdlog::info("sandbox {}: VM restored from its pool's template in {} ms", job.spec.metadata.sandbox,
                         millisecondsSince(started));
            return channel;
        } catch (const std::exception& e) {
            ++restoreFailures;
            spdlog::warn("sandbox {}: cannot restore the VM from {} ({}); booting it instead",
                         job.spec.metadata.sandbox, saved->stateFile().string(), e.what());
            vm.domain.reset();
            vm.directory.reset();
            forgetTemplate(saved);
        }
    }
    boot(vm, job);
    ++booted;
    return nullptr;
}

void LibvirtBackend::State::boot(Vm& vm, const VmJob& job) {
    const libvirt::DomainSpec spec = completeSpec(job, libvirt::resolveGuestImage(imageDirectory));
    vm.directory.emplace(job.directory);
    libvirt::createOverlay(spec.diskBase, spec.disk);
    std::string xml = libvirt::buildDomainXml(spec);
    spdlog::trace("domain XML of {}:\n{}", spec.name, xml);
    vm.domain.reset(virDomainCreateXML(connection->get(), xml.c_str(), startFlags));
    if (!vm.domain) {
        const std::string error = libvirt::lastError();
        libvirt::removeDomainLog(connection->get(), spec.name);  // its error is in ours
        throw std::runtime_error("libvirt could not start VM " + spec.name + ": " + error);
    }
}

std::shared_ptr<AgentChannel::Socket> LibvirtBackend::State::restore(Vm& vm, const VmJob& job,
                                                                    const libvirt::VmTemplate& saved) {
    const libvirt::DomainSpec& spec = job.spec;
    const auto copying = std::chrono::steady_clock::now();
    vm.directory.emplace(job.directory);
    fs::copy_file(saved.disk(), spec.disk);
    // libvirt restores a saved domain under its own name and UUID only: the
    // member's copy of the state names the member instead.
    const fs::path stateFile = job.directory / "state";
    const std::string xml = libvirt::memberDomainXml(saved.saved.xml, saved.directory.path(), spec);
    spdlog::trace("domain XML of {}:\n{}", spec.name, xml);
    libvirt::writeSavedStateCopy(saved.stateFile(), saved.saved, xml, stateFile);
    const auto copied = std::chrono::steady_clock::now();
    // Paused: see below.
    const bool failed = virDomainRestoreFlags(connection->get(), stateFile.c_str(), nullptr, VIR_DOMAIN_SAVE_PAUSED) < 0;
    const std::string error = failed ? libvirt::lastError() : "";
    const auto restored = std::chrono::steady_clock::now();
    // QEMU has read all of it by now; it costs as much disk as the template's.
    std::error_code ignored;
    fs::remove(stateFile, ignored);
    if (failed) {
        libvirt::removeDomainLog(connection->get(), spec.name);
        throw std::runtime_error("libvirt could not restore VM " + spec.name + ": " + error);
    }
    vm.domain.reset(virDomainLookupByUUIDString(connection->get(), spec.uuid.c_str()));
    if (!vm.domain) throw std::runtime_error("the restored VM " + spec.name + " is gone: " + libvirt::lastError());
    // Its vCPUs run only once the agent channel is connected: a guest that
    // saw its host end closed would take the host for gone, and end.
    auto channel = std::make_shared<AgentChannel::Socket>(libvirt::connectAgentSocket(io, spec.agentSocket));
    if (virDomainResume(vm.domain.get()) < 0)
        throw std::runtime_error("libvirt could not resume the restored VM " + spec.name + ": " + libvirt::lastError());
    auto between = [](auto from, auto to) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
    };
    spdlog::debug("VM {}: its files copied in {} ms, restored by libvirt in {} ms, connected and resumed in {} ms",
                  spec.name, between(copying, copied), between(copied, restored), millisecondsSince(restored));
    return channel;
}

std::string LibvirtBackend::State::templateKey(const libvirt::DomainSpec& spec, const libvirt::GuestImage& image) const {
    std::ostringstream inputs;
    inputs << versions << '\n' << spec.type << ' ' << spec.machine << ' ' << spec.hostCpu << ' ' << spec.vcpus << ' '
           << spec.memoryBytes << '\n' << spec.cmdline << '\n';
    for (const fs::path& file : {image.kernel, image.initrd, image.rootfs}) inputs << fileIdentity(file) << '\n';
    return toHex(sha256(inputs.str())).substr(0, 16);
}

std::shared_ptr<const libvirt::VmTemplate> LibvirtBackend::State::templateFor(const VmJob& job) {
    libvirt::GuestImage image;
    try {
        image = libvirt::resolveGuestImage(imageDirectory);
    } catch (const std::exception&) {
        return nullptr;  // the boot says why
    }
    const libvirt::DomainSpec memberSpec = completeSpec(job, image);
    const std::string key = templateKey(memberSpec, image);
    {
        std::lock_guard lock(templatesMutex);
        auto previous = templateOfPool.find(job.pool);
        const bool changed = previous != templateOfPool.end() && previous->second != key;
        if (changed) spdlog::info("pool {}: its template changed (image or definition): a new VM is saved", job.pool);
        if (changed) releaseTemplate(job.pool);
        templateOfPool[job.pool] = key;
        if (auto found = templates.find(key); found != templates.end()) return found->second;
        auto failed = failedTemplates.find(key);
        if (failed != failedTemplates.end() && std::chrono::steady_clock::now() - failed->second < kTemplateRetryDelay)
            return nullptr;
    }

    const std::string id = std::string("_template-") + key;
    const fs::path directory = templatesDirectory() / key;
    libvirt::TemplateBuild build;
    build.connection = connection->get();
    build.startFlags = startFlags;
    build.spec = memberSpec;
    build.spec.name = libvirt::domainName(instance, id);
    build.spec.uuid = boost::uuids::to_string(boost::uuids::random_generator()());
    build.spec.metadata = {instance, job.pool, id};
    build.spec.cmdline += libvirt::kTemplateKernelParameters;
    // Each member gets its own address and bridge port; the template saves
    // a card on no bridge, never used.
    if (build.spec.nic) build.spec.nic = libvirt::NicSpec{"", "", libvirt::kTemplateMac};
    build.spec.disk = directory / "disk.qcow2";
    build.spec.agentSocket = directory / "agent.sock";
    build.spec.consoleLog = directory / "console.log";
    build.helloTimeout = job.helloTimeout;
    build.abandon = &stopping;
    const auto started = std::chrono::steady_clock::now();
    std::shared_ptr<const libvirt::VmTemplate> made;
    try {
        made = libvirt::buildTemplate(build, directory);
    } catch (const std::exception& e) {
        spdlog::warn("pool {}: cannot make its template VM ({}); its VMs boot instead, for {} minutes at least", job.pool,
                     e.what(), std::chrono::duration_cast<std::chrono::minutes>(kTemplateRetryDelay).count());
        std::lock_guard lock(templatesMutex);
        failedTemplates[key] = std::chrono::steady_clock::now();
        return nullptr;
    }
    ++templatesSaved;
    spdlog::info("pool {}: template VM booted and saved in {} ms; its VMs are restored from {}", job.pool,
                 millisecondsSince(started), made->stateFile().string());
    std::lock_guard lock(templatesMutex);
    // Unless the pool went or changed meanwhile: then only this VM uses it.
    auto pool = templateOfPool.find(job.pool);
    if (pool != templateOfPool.end() && pool->second == key) templates[key] = made;
    return made;
}

void LibvirtBackend::State::forgetTemplate(const std::shared_ptr<const libvirt::VmTemplate>& saved) {
    std::lock_guard lock(templatesMutex);
    for (auto it = templates.begin(); it != templates.end(); ++it) {
        if (it->second != saved) continue;
        failedTemplates[it->first] = std::chrono::steady_clock::now();
        templates.erase(it);
        return;
    }
}

void LibvirtBackend::State::releaseTemplate(const std::string& pool) {
    auto it = templateOfPool.find(pool);
    if (it == templateOfPool.end()) return;
    const std::string key = it->second;
    templateOfPool.erase(it);
    for (const auto& [other, otherKey] : templateOfPool)
        if (otherKey == key) return;
    templates.erase(key);
}

LibvirtBackend::LibvirtBackend(boost::asio::io_context& io, const Config& config, metrics::Registry* metrics)
    : state_(std::make_shared<State>(io, config, metrics)) {
    std::filesystem::path guestKernel;  // none without an image: the probe's test guest decides alone
    try {
        guestKernel = libvirt::resolveGuestImage(config.libvirt.imageDirectory).kernel;
    } catch (const std::exception&) {
    }
    auto [accelerator, reason] = libvirt::chooseAccelerator(config.libvirt.accelerator, guestKernel);
    state_->accelerator = accelerator;
    spdlog::info("libvirt backend: accelerator {} ({}); a guest boots in about {}", accelerator, reason,
                 accelerator == "kvm" ? "1 s" : "15 s under emulation");

    state_->connection = std::make_unique<libvirt::Connection>(config.libvirt.uri);
    // Autodestroy: if sessiond dies, libvirt kills its VMs as the connection
    // drops, instead of leaving them to the next start's cleanup. The QEMU
    // driver has it; others (the test driver) refuse the flag.
    const char* driver = virConnectGetType(state_->connection->get());
    const bool qemu = driver && std::string(driver) == "QEMU";
    if (qemu) state_->startFlags = VIR_DOMAIN_START_AUTODESTROY;
    // Restoring rewrites the QEMU driver's save files (saved_state.hpp).
    state_->restoring = config.libvirt.start == "restore" && qemu;
    if (config.libvirt.start == "restore" && !qemu)
        spdlog::warn("libvirt backend: VMs boot: restoring saved VMs needs libvirt's QEMU driver, not {}",
                     driver ? driver : "an unknown one");
    else
        spdlog::info("libvirt backend: new VMs {}", state_->restoring ? "are restored from a VM saved once per pool template"
                                                                      : "boot (libvirt.start is boot)");
    if (state_->restoring) state_->versions = emulatorIdentity(state_->connection->get(), state_->accelerator);
    // Events arrive on libvirt's thread; sandboxes live on the io_context.
    std::weak_ptr<State> weak = state_;
    state_->subscription = std::make_unique<libvirt::LifecycleSubscription>(
        *state_->connection, [&io, weak](const std::string& uuid, const std::string&, int event, int detail) {
            boost::asio::post(io, [weak, uuid, event, detail] {
                if (auto state = weak.lock()) state->onLifecycle(uuid, event, detail);
            });
        });
    state_->worker = std::make_unique<WorkerThread>();
    state_->templateWorker = std::make_unique<WorkerThread>();
}

LibvirtBackend::~LibvirtBackend() {
    if (state_->liveSandboxes)
        spdlog::error("libvirt backend destroyed before {} of its sandboxes; their VMs may be left running",
                      state_->liveSandboxes);
    state_->stopping = true;  // a template being made gives up
    state_->templateWorker.reset();
    state_->worker.reset();
    {
        std::lock_guard lock(state_->templatesMutex);
        state_->templates.clear();  // and their files
    }
    std::error_code ec;
    // Only if empty: files we did not make stay.
    fs::remove(state_->templatesDirectory(), ec);
    fs::remove(state_->instanceDirectory(), ec);
}

const std::string& LibvirtBackend::accelerator() const { return state_->accelerator; }

LibvirtBackend::Counts LibvirtBackend::counts() const {
    return {state_->templatesSaved, state_->restored, state_->booted, state_->restoreFailures};
}

std::unique_ptr<Sandbox> LibvirtBackend::create(const PoolConfig& pool, const std::string& sandboxId) {
    if (pool.customContainer()) return std::make_unique<LibvirtContainerSandbox>(*state_, pool, sandboxId);
    return std::make_unique<LibvirtSandbox>(*state_, pool, sandboxId);
}

// A VM's boot or restore keeps a core busy (under emulation for seconds).
std::size_t LibvirtBackend::maxConcurrentStarts() const { return state_->maxConcurrentStarts; }

void LibvirtBackend::poolRemoved(const std::string& pool) {
    std::lock_guard lock(state_->templatesMutex);
    state_->releaseTemplate(pool);
}

namespace {

std::vector<libvirt::DomainRef> listDomains(const libvirt::Connection& connection) {
    virDomainPtr* list = nullptr;
    int count = virConnectListAllDomains(connection.get(), &list, 0);
    if (count < 0)
        throw std::runtime_error("cannot list the domains at '" + connection.uri() + "': " + libvirt::lastError());
    std::vector<libvirt::DomainRef> domains;
    for (int i = 0; i < count; ++i) domains.emplace_back(list[i]);
    std::free(list);
    return domains;
}

}  // namespace

void LibvirtBackend::cleanupLeftovers() {
    std::size_t removedDomains = 0;
    std::set<std::string> stillRunning;  // sandbox ids whose directory QEMU may still use
    for (const auto& domain : listDomains(*state_->connection)) {
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
    // libvirt's own logs of this instance's domains that no longer exist.
    // The name prefix alone could match another instance's (instance names
    // may hold dashes), so no existing domain's log is touched. Listed again
    // now: a VM of the killed run may have powered itself off meanwhile (its
    // agent's channel closed), its metadata unreadable while it went.
    std::set<std::string> otherDomains;  // names whose libvirt logs stay
    for (const auto& domain : listDomains(*state_->connection)) otherDomains.insert(virDomainGetName(domain.get()));
    const std::size_t removedLogs = libvirt::removeDomainLogs(libvirt::domainLogDirectory(state_->connection->uri()),
                                                              libvirt::domainName(state_->instance, ""), otherDomains);
    if (removedDomains || removedDirectories || removedLogs)
        spdlog::warn("removed {} VMs, {} VM directories and {} libvirt VM logs left by an earlier run", removedDomains,
                     removedDirectories, removedLogs);
    // After the VMs, whose taps were ports of its bridge.
    EgressNetwork::removeLeftovers(state_->network);
}

}  // namespace sessiond
