#pragma once
// The host side of sessions with egress (sessionNetworkConfiguration.status
// EgressEnabled; docs/networking.md). One per daemon: a Linux bridge holding
// the subnet's first address, each session's veth port on it isolated from
// the others, and an nftables table of its own that NATs sessions' traffic
// out through the host's routes, drops everything they send to the host
// itself and everything sent to them that is not a reply.
//
// The bridge and the table live as long as the EgressNetwork and every
// EgressPort made from it; a daemon killed before it could remove them
// removes them on its next start (removeLeftovers), when no session of the
// earlier run is left.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "sessiond/config.hpp"
#include "sessiond/ipv4_subnet.hpp"

namespace sessiond {

class EgressNetwork;

// One session's place on the egress network: an address, and once
// connected, the host's end of the session's veth pair.
class EgressPort {
public:
    ~EgressPort();
    EgressPort(const EgressPort&) = delete;
    EgressPort& operator=(const EgressPort&) = delete;

    std::string address() const { return Ipv4Subnet::toString(address_); }
    std::string gateway() const;
    int prefixLength() const;

    // Makes the veth pair, moves its other end into the network namespace
    // of `pid` as `interface`, and attaches this end to the bridge.
    void connect(pid_t pid, const std::string& interface);

private:
    friend class EgressNetwork;
    EgressPort(std::shared_ptr<EgressNetwork> network, std::uint32_t address);

    std::shared_ptr<EgressNetwork> network_;
    std::uint32_t address_;
    // The host's end of the veth pair, named after the address, so it is
    // unique on the host while subnets do not overlap.
    std::string hostInterface_;
    bool connected_ = false;
};

class EgressNetwork : public std::enable_shared_from_this<EgressNetwork> {
public:
    // Makes the bridge and the table (replacing any left by an earlier run)
    // and turns on the host's IPv4 forwarding.
    static std::shared_ptr<EgressNetwork> create(const NetworkConfig& config);
    // Removes the bridge and table an earlier run left behind, saying so in the log.
    static void removeLeftovers(const NetworkConfig& config);
    ~EgressNetwork();
    EgressNetwork(const EgressNetwork&) = delete;
    EgressNetwork& operator=(const EgressNetwork&) = delete;

    // An unused address of the subnet; throws when all are taken.
    std::unique_ptr<EgressPort> reserve();

    const NetworkConfig& config() const { return config_; }
    const Ipv4Subnet& subnet() const { return subnet_; }
    static std::string tableName(const NetworkConfig& config) { return "sessiond_" + config.bridge; }

private:
    friend class EgressPort;
    explicit EgressNetwork(const NetworkConfig& config);
    void release(std::uint32_t address);

    NetworkConfig config_;
    Ipv4Subnet subnet_;
    std::mutex mutex_;
    std::set<std::uint32_t> used_;
    std::uint32_t next_;
};

}  // namespace sessiond
