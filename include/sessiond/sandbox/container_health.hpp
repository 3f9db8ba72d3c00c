#pragma once
// A custom container's health (docs/custom-containers.md): when it counts as
// started, and when it has stopped being alive, from Azure's Startup and
// Liveness probes (httpGet or tcpSocket). Backend-neutral: it reaches the
// container only through a connect function, which each backend provides
// (Sandbox::connect). Everything runs on the io thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio.hpp>

#include "sessiond/config.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond {

using ContainerConnect = std::function<void(std::uint16_t port, Sandbox::Handler<UniqueFd> onConnected)>;

// One attempt of `probe`: "" when it passed, else what failed.
void probeContainer(boost::asio::io_context& io, const ContainerProbe& probe, const ContainerConnect& connect,
                    std::function<void(std::string failure)> onDone);

class ContainerHealth {
public:
    ContainerHealth(boost::asio::io_context& io, ContainerTemplate container, ContainerConnect connect);
    ~ContainerHealth();
    ContainerHealth(const ContainerHealth&) = delete;
    ContainerHealth& operator=(const ContainerHealth&) = delete;

    // Calls `onDone` once: "" when the Startup probe passed, or, without
    // one, when targetPort accepted a connection (tried every 50 ms); else
    // why the Startup probe failed failureThreshold times in a row. The
    // caller bounds the wait with its own start timeout.
    void waitUntilStarted(std::function<void(std::string failure)> onDone);

    // Runs the Liveness probe, if any, from now on; calls `onUnhealthy` once
    // it failed failureThreshold times in a row.
    void watchLiveness(std::function<void(std::string failure)> onUnhealthy);

private:
    struct Schedule;
    void run(std::shared_ptr<Schedule> schedule);

    boost::asio::io_context& io_;
    ContainerTemplate container_;
    ContainerConnect connect_;
    std::shared_ptr<Schedule> startup_;
    std::shared_ptr<Schedule> liveness_;
};

}  // namespace sessiond
