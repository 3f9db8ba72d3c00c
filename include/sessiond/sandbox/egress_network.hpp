#pragma once
// The host side of sessions with egress (sessionNetworkConfiguration.status
// EgressEnabled; docs/networking.md). One per daemon: a Linux bridge holding
// the subnet's first address, each session's veth port on it isolated from
// the others, and an nftables table of its own that NATs sessions' traffic
// out through the host's routes, drops everything they send to the host
// itself and everything sent to them that is not a reply. Sessions resolve
// names through the network's own resolver on the bridge's address, which
// also keeps the rules of sessions whose pool has an allow-list
// (egress_policy.hpp).
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
#include <vector>

#include <boost/asio.hpp>

#include "sessiond/config.hpp"
#include "sessiond/ipv4_subnet.hpp"

namespace sessiond {

class EgressNetwork;
class EgressPolicy;
namespace metrics {
class Registry;
}

// Whose session an address of the egress network is (for the resolver's
// log and metrics) and what it may reach.
struct EgressTenant {
    std::string pool;
    std::string sandbox;
    std::vector<std::string> allowedDestinations;  // empty: unrestricted

    static EgressTenant of(const PoolConfig& pool, const std::string& sandbox) {
        return {pool.name, sandbox, pool.allowedDestinations};
    }
};

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
    // The session's /etc/resolv.conf: the network's resolver.
    std::string resolvConf() const { return "nameserver " + gateway() + "\n"; }
    // The host's end of the session's link (a veth's, or a VM's tap), and
    // the MAC the session's end has: the bridge lets the port send only
    // with it and the port's address (port_guard.hpp).
    const std::string& hostInterface() const { return hostInterface_; }
    std::string mac() const { return macOf(address_); }
    static std::string interfaceOf(std::uint32_t address);
    static std::string macOf(std::uint32_t address);

    // Makes the veth pair, moves its other end into the network namespace
    // of `pid` as `interface` (with the port's MAC), and attaches this end
    // to the bridge. A VM's tap is libvirt's to make.
    void connect(pid_t pid, const std::string& interface);

private:
    friend class EgressNetwork;
    EgressPort(std::shared_ptr<EgressNetwork> network, std::uint32_t address);

    std::shared_ptr<EgressNetwork> network_;
    std::uint32_t address_;
    // Named after the address, so it is unique on the host while subnets
    // do not overlap.
    std::string hostInterface_;
    bool connected_ = false;
    bool enrolled_ = true;  // its rules are in the policy
};

class EgressNetwork : public std::enable_shared_from_this<EgressNetwork> {
public:
    // The daemon's network on config.bridge, which both backends' sessions
    // join: the one that exists, or a new one. Making it makes the bridge
    // and the tables (replacing any left by an earlier run), turns on the
    // host's IPv4 forwarding and starts the sessions' resolver on `io`,
    // counting its queries in `metrics` (if given). Throws when it cannot.
    static std::shared_ptr<EgressNetwork> shared(boost::asio::io_context& io, const NetworkConfig& config,
                                                 metrics::Registry* metrics = nullptr);
    // Removes the bridge and tables an earlier run left behind, saying so
    // in the log (and what failed); leaves a network of this process alone.
    static void removeLeftovers(const NetworkConfig& config);
    ~EgressNetwork();
    EgressNetwork(const EgressNetwork&) = delete;
    EgressNetwork& operator=(const EgressNetwork&) = delete;

    // An unused address of the subnet, with the tenant's rules in place;
    // throws when all are taken.
    std::unique_ptr<EgressPort> reserve(const EgressTenant& tenant = {});

    const NetworkConfig& config() const { return config_; }
    const Ipv4Subnet& subnet() const { return subnet_; }
    static std::string tableName(const NetworkConfig& config) { return "sessiond_" + config.bridge; }

private:
    friend class EgressPort;
    EgressNetwork(boost::asio::io_context& io, const NetworkConfig& config);
    static std::shared_ptr<EgressNetwork> create(boost::asio::io_context& io, const NetworkConfig& config,
                                                 metrics::Registry* metrics);
    std::unique_ptr<EgressPort> reserveAddress();
    void release(std::uint32_t address);
    // The rules of the session at `address` go, then the address.
    void withdraw(std::uint32_t address);

    boost::asio::io_context& io_;
    NetworkConfig config_;
    Ipv4Subnet subnet_;
    std::mutex mutex_;
    std::set<std::uint32_t> used_;
    std::uint32_t next_;
    std::unique_ptr<EgressPolicy> policy_;
};

}  // namespace sessiond
