#include "sessiond/sandbox/egress_network.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "egress_policy.hpp"
#include "port_guard.hpp"
#include "sessiond/host_tool.hpp"

namespace sessiond {

namespace {

// The sessions' rules; the only service of the host's they reach is the
// resolver (egress_policy.hpp). Forwarded traffic between two ports of the bridge
// only passes these hooks with br_netfilter loaded; the ports' isolation
// stops it either way.
std::string ruleset(const NetworkConfig& config, const Ipv4Subnet& subnet) {
    const std::string table = EgressNetwork::tableName(config);
    const std::string bridge = "\"" + config.bridge + "\"";
    return "table inet " + table + " {\n"
           + EgressPolicy::sets() +
           "  chain sessions_to_host {\n"
           "    type filter hook input priority -10; policy accept;\n"
           + EgressPolicy::inputRules(config.bridge, subnet) +
           "    iifname " + bridge + " counter drop\n"
           "  }\n"
           "  chain sessions_forward {\n"
           "    type filter hook forward priority -10; policy accept;\n"
           "    iifname " + bridge + " oifname " + bridge + " counter drop\n"
           "    oifname " + bridge + " ct state established,related accept\n"
           "    oifname " + bridge + " counter drop\n"
           "    iifname " + bridge + " meta nfproto ipv6 counter drop\n"
           "    iifname " + bridge + " ip saddr != " + subnet.cidr() + " counter drop\n"
           + EgressPolicy::forwardRules(config.bridge) +
           "  }\n"
           "  chain sessions_nat {\n"
           "    type nat hook postrouting priority 100; policy accept;\n"
           "    ip saddr " + subnet.cidr() + " oifname != " + bridge + " masquerade\n"
           "  }\n"
           "}\n";
}

bool interfaceExists(const std::string& name) { return std::filesystem::exists("/sys/class/net/" + name); }

// The networks of this process, by bridge.
std::mutex liveMutex;
std::map<std::string, std::weak_ptr<EgressNetwork>> live;

// Whether there was anything to remove.
bool removeBridgeAndTable(const NetworkConfig& config) {
    bool found = false;
    for (const char* family : {"inet", "bridge"}) {
        try {
            runHostTool({"nft", "delete", "table", family, EgressNetwork::tableName(config)});
            found = true;
        } catch (const std::exception&) {
            // There was none (or nft is missing, which create() reports).
        }
    }
    if (interfaceExists(config.bridge)) {
        runHostTool({"ip", "link", "del", config.bridge});
        found = true;
    }
    return found;
}

// What an earlier run left, removed and said so. Throws when it cannot.
void removeEarlierRuns(const NetworkConfig& config) {
    if (removeBridgeAndTable(config))
        spdlog::warn("removed the egress bridge {} and its nftables tables left by an earlier run", config.bridge);
}

}  // namespace

EgressNetwork::EgressNetwork(boost::asio::io_context& io, const NetworkConfig& config)
    : io_(io), config_(config), subnet_(Ipv4Subnet::parse(config.subnet)), next_(subnet_.firstHost()) {}

std::shared_ptr<EgressNetwork> EgressNetwork::create(boost::asio::io_context& io, const NetworkConfig& config,
                                                     metrics::Registry* metrics) {
    removeEarlierRuns(config);
    std::shared_ptr<EgressNetwork> network(new EgressNetwork(io, config));
    const Ipv4Subnet& subnet = network->subnet_;
    const std::string gateway = Ipv4Subnet::toString(subnet.gateway()) + "/" + std::to_string(subnet.prefixLength);
    // From here the destructor removes whatever was made. The bridge's MAC is
    // set, as the gateway's: left to itself a bridge takes its ports' lowest
    // MAC and changes it as sessions come and go, and every session that had
    // the old one in its ARP cache would lose the gateway for seconds.
    runHostTool({"ip", "-batch", "-"}, "link add " + config.bridge + " address " +
                                            EgressPort::macOf(subnet.gateway()) + " type bridge\n" +
                                            "addr add " + gateway + " dev " + config.bridge + "\n" +
                                            "link set " + config.bridge + " up\n");
    runHostTool({"nft", "-f", "-"}, ruleset(config, subnet) + port_guard::table(tableName(config)));
    std::ofstream forwarding("/proc/sys/net/ipv4/ip_forward");
    forwarding << "1\n";
    forwarding.flush();
    if (!forwarding) throw std::runtime_error("cannot turn on IPv4 forwarding (/proc/sys/net/ipv4/ip_forward)");
    network->policy_ = std::make_unique<EgressPolicy>(io, config, subnet, metrics);
    spdlog::info("egress network: bridge {} at {}, nftables table inet {}", config.bridge, gateway, tableName(config));
    return network;
}

std::shared_ptr<EgressNetwork> EgressNetwork::shared(boost::asio::io_context& io, const NetworkConfig& config,
                                                     metrics::Registry* metrics) {
    std::lock_guard lock(liveMutex);
    if (auto network = live[config.bridge].lock()) return network;
    auto network = create(io, config, metrics);
    live[config.bridge] = network;
    return network;
}

void EgressNetwork::removeLeftovers(const NetworkConfig& config) {
    std::lock_guard lock(liveMutex);
    if (!live[config.bridge].expired()) return;
    try {
        removeEarlierRuns(config);
    } catch (const std::exception& e) {
        spdlog::error("cannot remove the egress network left by an earlier run: {}", e.what());
    }
}

EgressNetwork::~EgressNetwork() {
    policy_.reset();  // the resolver's sockets, and any nft still running
    try {
        removeBridgeAndTable(config_);
    } catch (const std::exception& e) {
        spdlog::error("egress network: {}", e.what());
    }
}

std::unique_ptr<EgressPort> EgressNetwork::reserve(const EgressTenant& tenant) {
    std::unique_ptr<EgressPort> port = reserveAddress();
    try {
        policy_->enroll(port->address_, tenant);
    } catch (...) {
        port->enrolled_ = false;
        throw;
    }
    return port;
}

std::unique_ptr<EgressPort> EgressNetwork::reserveAddress() {
    std::lock_guard lock(mutex_);
    const std::uint32_t first = subnet_.firstHost(), last = subnet_.lastHost();
    // Round robin, so a session's address is not the one a session that just
    // ended had.
    for (std::uint64_t tried = 0; tried <= last - first; ++tried) {
        const std::uint32_t candidate = next_;
        next_ = next_ == last ? first : next_ + 1;
        if (used_.insert(candidate).second)
            return std::unique_ptr<EgressPort>(new EgressPort(shared_from_this(), candidate));
    }
    throw std::runtime_error("every address of the egress subnet " + subnet_.cidr() + " is in use");
}

void EgressNetwork::release(std::uint32_t address) {
    std::lock_guard lock(mutex_);
    used_.erase(address);
}

void EgressNetwork::withdraw(std::uint32_t address) {
    // On the io_context's thread, where the policy lives, whichever thread
    // lets the port go.
    boost::asio::post(io_, [weak = weak_from_this(), address] {
        const auto network = weak.lock();
        if (!network) return;  // its table, and every rule in it, went with it
        network->policy_->withdraw(address, [weak, address] {
            if (const auto network = weak.lock()) network->release(address);
        });
    });
}

EgressPort::EgressPort(std::shared_ptr<EgressNetwork> network, std::uint32_t address)
    : network_(std::move(network)), address_(address), hostInterface_(interfaceOf(address)) {}

std::string EgressPort::interfaceOf(std::uint32_t address) {
    char name[16];
    std::snprintf(name, sizeof name, "sv%08x", address);
    return name;
}

// QEMU's prefix and the address: unique on the bridge, and the same for a
// session's veth and a VM's card.
std::string EgressPort::macOf(std::uint32_t address) {
    char mac[18];
    std::snprintf(mac, sizeof mac, "52:54:%02x:%02x:%02x:%02x", address >> 24, (address >> 16) & 0xff,
                  (address >> 8) & 0xff, address & 0xff);
    return mac;
}

EgressPort::~EgressPort() {
    // The pair goes with the session's namespace too; this removes it now,
    // before the address is handed out again.
    if (connected_ && interfaceExists(hostInterface_)) {
        try {
            runHostTool({"ip", "link", "del", hostInterface_});
        } catch (const std::exception& e) {
            if (interfaceExists(hostInterface_)) spdlog::error("egress network: {}", e.what());
        }
    }
    if (enrolled_)
        network_->withdraw(address_);
    else
        network_->release(address_);
}

std::string EgressPort::gateway() const { return Ipv4Subnet::toString(network_->subnet().gateway()); }

int EgressPort::prefixLength() const { return network_->subnet().prefixLength; }

void EgressPort::connect(pid_t pid, const std::string& interface) {
    const std::string& bridge = network_->config().bridge;
    connected_ = true;
    runHostTool({"ip", "-batch", "-"},
                "link add " + hostInterface_ + " type veth peer name " + interface + " address " + mac() + " netns " +
                    std::to_string(pid) +
                    "\n" + "link set " + hostInterface_ + " master " + bridge + " up\n" + "link set " +
                    hostInterface_ + " type bridge_slave isolated on\n");
}

}  // namespace sessiond
