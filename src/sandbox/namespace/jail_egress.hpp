#pragma once
// Egress for a jail that sessiond-nsinit starts afresh (a custom container,
// or an agent sandbox without a zygote): its address is reserved and given
// to the spec before the spawn, and its veth pair moved into the jail's
// network namespace when nsinit reports its pid (HostSetup), before anything
// runs there. Sessions forked from a zygote do the same through the zygote.

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include <boost/asio.hpp>

#include "host_setup.hpp"
#include "sessiond/sandbox/egress_network.hpp"
#include "sessiond/sandbox/namespace/jail.hpp"

namespace sessiond {

class JailEgress {
public:
    static constexpr const char* kInterface = "eth0";

    // Fills spec.network and spec.setupFd (`setupFdInJail`), and adds the
    // setup fd to `fdsToPass`.
    JailEgress(boost::asio::io_context& io, EgressNetwork& network, const PoolConfig& pool,
               const std::string& sandboxId, JailSpec& spec, int setupFdInJail, std::map<int, int>& fdsToPass);

    // What the jail makes of `port`: the interface, and the network's
    // resolver as its nameserver.
    static JailNetwork network(const EgressPort& port);

    // After the spawn: `onDone` gets "" once the interface is in, or why not.
    void connectWhenReported(std::function<void(std::string error)> onDone);

private:
    std::unique_ptr<EgressPort> port_;
    HostSetup setup_;
};

}  // namespace sessiond
