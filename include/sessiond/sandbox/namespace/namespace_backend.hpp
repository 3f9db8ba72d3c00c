#pragma once
// The namespace backend: each sandbox runs the agent under the host's Python
// in namespaces, a cgroup and a seccomp filter of its own. By default it is
// forked from its pool's zygote (src/sandbox/namespace/zygote.hpp), which
// has imported everything once; with namespaceSandbox.zygote off, each is a
// fresh sessiond-nsinit jail (see jail.hpp) that starts Python anew.

#include <filesystem>
#include <map>
#include <memory>

#include <boost/asio.hpp>

#include "sessiond/config.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond {

struct BackendPaths {
    std::filesystem::path nsinit;          // the sessiond-nsinit binary
    std::filesystem::path agentDirectory;  // the agent's Python sources
    // libsessiond-jail.so, which zygotes load; it is built beside nsinit.
    std::filesystem::path jailLibrary() const { return nsinit.parent_path() / "libsessiond-jail.so"; }
    // sessiond-reap, which each forked session's pid 1 execs; built beside nsinit too.
    std::filesystem::path reaper() const { return nsinit.parent_path() / "sessiond-reap"; }
};

class Zygote;
class EgressNetwork;
class WorkerThread;
class ContainerPlanner;

namespace metrics {
class Registry;
}

class NamespaceBackend : public SandboxBackend {
public:
    // `metrics`, if given, counts the egress resolver's queries.
    NamespaceBackend(boost::asio::io_context& io, const Config& config, BackendPaths paths,
                     metrics::Registry* metrics = nullptr);
    ~NamespaceBackend() override;

    std::string name() const override { return "namespace"; }
    void cleanupLeftovers() override;
    std::unique_ptr<Sandbox> create(const PoolConfig& pool, const std::string& sandboxId) override;
    void poolRemoved(const std::string& pool) override;
    std::size_t maxConcurrentStarts() const override;

private:
    std::shared_ptr<Zygote> zygoteFor(const PoolConfig& pool);
    // Made when the first session with egress starts; kept until the backend goes.
    std::shared_ptr<EgressNetwork> egressNetwork();
    void retireUnusedZygotes();

    boost::asio::io_context& io_;
    NamespaceSandboxConfig sandbox_;
    NetworkConfig network_;
    std::string cgroupName_;
    BackendPaths paths_;
    // Keyed by what a zygote has loaded (language and preload modules), so
    // pools that load the same share one.
    std::map<std::string, std::shared_ptr<Zygote>> zygotes_;
    std::map<std::string, std::string> zygoteKeyOfPool_;
    std::uint64_t zygotesStarted_ = 0;
    std::shared_ptr<EgressNetwork> egress_;
    std::filesystem::path containerDirectory_;
    metrics::Registry* metrics_;
    // Custom container pools' images; made when the first such pool starts.
    std::unique_ptr<ContainerPlanner> planner_;
    // Sandboxes' cgroup moves and teardowns (worker_thread.hpp).
    std::unique_ptr<WorkerThread> worker_;
};

}  // namespace sessiond
