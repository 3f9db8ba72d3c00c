#include "jail_egress.hpp"

namespace sessiond {

JailEgress::JailEgress(boost::asio::io_context& io, EgressNetwork& network, const PoolConfig& pool,
                       const std::string& sandboxId, JailSpec& spec, int setupFdInJail, std::map<int, int>& fdsToPass)
    : port_(network.reserve(EgressTenant::of(pool, sandboxId))), setup_(io) {
    spec.network = JailEgress::network(*port_);
    spec.setupFd = setupFdInJail;
    fdsToPass[setup_.nsinitEnd().get()] = setupFdInJail;
}

JailNetwork JailEgress::network(const EgressPort& port) {
    return {kInterface, port.address(), port.prefixLength(), port.gateway(), port.gateway()};
}

void JailEgress::connectWhenReported(std::function<void(std::string error)> onDone) {
    setup_.nsinitEnd().reset();  // nsinit has its copy
    setup_.await(
        [this](pid_t pid) -> std::string {
            try {
                port_->connect(pid, kInterface);
            } catch (const std::exception& e) {
                return e.what();
            }
            return "";
        },
        std::move(onDone));
}

}  // namespace sessiond
