#include "sessiond/sandbox/egress_network.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "sessiond/host_tool.hpp"

namespace sessiond {

namespace {

// The sessions' rules. Forwarded traffic between two ports of the bridge
// only passes these hooks with br_netfilter loaded; the ports' isolation
// stops it either way.
std::string ruleset(const NetworkConfig& config, const Ipv4Subnet& subnet) {
    const std::string table = EgressNetwork::tableName(config);
    const std::string bridge = "\"" + config.bridge + "\"";
    return "table inet " + table + " {\n"
           "  chain sessions_to_host {\n"
           "    type filter hook input priority -10; policy accept;\n"
           "    iifname " + bridge + " counter drop\n"
           "  }\n"
           "  chain sessions_forward {\n"
           "    type filter hook forward priority -10; policy accept;\n"
           "    iifname " + bridge + " oifname " + bridge + " counter drop\n"
           "    oifname " + bridge + " ct state established,related accept\n"
           "    oifname " + bridge + " counter drop\n"
           "    iifname " + bridge + " meta nfproto ipv6 counter drop\n"
           "    iifname " + bridge + " ip saddr != " + subnet.cidr() + " counter drop\n"
           "  }\n"
           "  chain sessions_nat {\n"
           "    type nat hook postrouting priority 100; policy accept;\n"
           "    ip saddr " + subnet.cidr() + " oifname != " + bridge + " masquerade\n"
           "  }\n"
           "}\n";
}

bool interfaceExists(const std::string& name) { return std::filesystem::exists("/sys/class/net/" + name); }

// Whether there was anything to remove.
bool removeBridgeAndTable(const NetworkConfig& config) {
    bool found = false;
    try {
        runHostTool({"nft", "delete", "table", "inet", EgressNetwork::tableName(config)});
        found = true;
    } catch (const std::exception&) {
        // There was none (or nft is missing, which create() reports).
    }
    if (interfaceExists(config.bridge)) {
        runHostTool({"ip", "link", "del", config.bridge});
        found = true;
    }
    return found;
}

}  // namespace

EgressNetwork::EgressNetwork(const NetworkConfig& config)
    : config_(config), subnet_(Ipv4Subnet::parse(config.subnet)), next_(subnet_.firstHost()) {}

std::shared_ptr<EgressNetwork> EgressNetwork::create(const NetworkConfig& config) {
    removeLeftovers(config);
    std::shared_ptr<EgressNetwork> network(new EgressNetwork(config));
    const Ipv4Subnet& subnet = network->subnet_;
    const std::string gateway = Ipv4Subnet::toString(subnet.gateway()) + "/" + std::to_string(subnet.prefixLength);
    // From here the destructor removes whatever was made.
    runHostTool({"ip", "-batch", "-"}, "link add " + config.bridge + " type bridge\n" +
                                            "addr add " + gateway + " dev " + config.bridge + "\n" +
                                            "link set " + config.bridge + " up\n");
    runHostTool({"nft", "-f", "-"}, ruleset(config, subnet));
    std::ofstream forwarding("/proc/sys/net/ipv4/ip_forward");
    forwarding << "1\n";
    forwarding.flush();
    if (!forwarding) throw std::runtime_error("cannot turn on IPv4 forwarding (/proc/sys/net/ipv4/ip_forward)");
    spdlog::info("egress network: bridge {} at {}, nftables table inet {}", config.bridge, gateway, tableName(config));
    return network;
}

void EgressNetwork::removeLeftovers(const NetworkConfig& config) {
    if (removeBridgeAndTable(config))
        spdlog::warn("removed the egress bridge {} and its nftables table left by an earlier run", config.bridge);
}

EgressNetwork::~EgressNetwork() {
    try {
        removeBridgeAndTable(config_);
    } catch (const std::exception& e) {
        spdlog::error("egress network: {}", e.what());
    }
}

std::unique_ptr<EgressPort> EgressNetwork::reserve() {
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

EgressPort::EgressPort(std::shared_ptr<EgressNetwork> network, std::uint32_t address)
    : network_(std::move(network)), address_(address) {
    char name[16];
    std::snprintf(name, sizeof name, "sv%08x", address);
    hostInterface_ = name;
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
    network_->release(address_);
}

std::string EgressPort::gateway() const { return Ipv4Subnet::toString(network_->subnet().gateway()); }

int EgressPort::prefixLength() const { return network_->subnet().prefixLength; }

void EgressPort::connect(pid_t pid, const std::string& interface) {
    const std::string& bridge = network_->config().bridge;
    connected_ = true;
    runHostTool({"ip", "-batch", "-"},
                "link add " + hostInterface_ + " type veth peer name " + interface + " netns " + std::to_string(pid) +
                    "\n" + "link set " + hostInterface_ + " master " + bridge + " up\n" + "link set " +
                    hostInterface_ + " type bridge_slave isolated on\n");
}

}  // namespace sessiond
