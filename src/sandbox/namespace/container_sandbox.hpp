#pragma once
// A custom container session in a namespace jail (docs/custom-containers.md):
// sessiond-nsinit runs the image's program on an overlay of the image with
// a writable layer of its own, in its own namespaces, cgroup and seccomp
// filter, with loopback only unless its pool has egress. The daemon reaches
// its server through a socket made in the sandbox's network namespace. Its
// cgroup is made, and it is torn down, on the backend's worker thread.

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio.hpp>

#include "sessiond/config.hpp"
#include "sessiond/sandbox/container_launch.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond {

class EgressNetwork;
class WorkerThread;

std::unique_ptr<Sandbox> makeNamespaceContainerSandbox(boost::asio::io_context& io, const PoolConfig& pool,
                                                       const std::string& id, const NamespaceSandboxConfig& sandbox,
                                                       const std::string& cgroupName,
                                                       const std::filesystem::path& nsinit,
                                                       ContainerPlanner& planner,
                                                       std::function<std::shared_ptr<EgressNetwork>()> egressNetwork,
                                                       WorkerThread& worker);

}  // namespace sessiond
