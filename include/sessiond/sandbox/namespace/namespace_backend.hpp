#pragma once
// The namespace backend: each sandbox is a sessiond-nsinit jail (see jail.hpp)
// in its own cgroup, running the agent under the host's Python.

#include <filesystem>

#include <boost/asio.hpp>

#include "sessiond/config.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond {

struct BackendPaths {
    std::filesystem::path nsinit;          // the sessiond-nsinit binary
    std::filesystem::path agentDirectory;  // the agent's Python sources
};

class NamespaceBackend : public SandboxBackend {
public:
    NamespaceBackend(boost::asio::io_context& io, const Config& config, BackendPaths paths);

    std::string name() const override { return "namespace"; }
    void cleanupLeftovers() override;
    std::unique_ptr<Sandbox> create(const PoolConfig& pool, const std::string& sandboxId) override;

private:
    boost::asio::io_context& io_;
    NamespaceSandboxConfig sandbox_;
    std::string cgroupName_;
    BackendPaths paths_;
};

}  // namespace sessiond
