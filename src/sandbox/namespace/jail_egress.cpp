#include "jail_egress.hpp"

namespace sessiond {

JailEgress::JailEgress(boost::asio::io_context& io, EgressNetwork& network, JailSpec& spec, int setupFdInJail,
                       std::map<int, int>& fdsToPass)
    : port_(network.reserve()), setup_(io) {
    spec.network = {kInterface, port_->address(), port_->prefixLength(), port_->gateway()};
    spec.setupFd = setupFdInJail;
    fdsToPass[setup_.nsinitEnd().get()] = setupFdInJail;
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
