#include "egress_policy.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "port_guard.hpp"
#include "sessiond/host_tool.hpp"
#include "sessiond/sandbox/egress_network.hpp"

namespace sessiond {

namespace {

constexpr std::uint32_t kMinAllowSeconds = 60;
constexpr std::uint32_t kMaxAllowSeconds = 86400;

std::string quoted(const std::string& name) { return "\"" + name + "\""; }

}  // namespace

std::string EgressPolicy::sets() {
    return "  set restricted { type ipv4_addr; }\n"
           "  set allowed_networks { type ipv4_addr . ipv4_addr; flags interval; }\n"
           "  set allowed_addresses { type ipv4_addr . ipv4_addr; flags timeout; }\n";
}

std::string EgressPolicy::inputRules(const std::string& bridge, const Ipv4Subnet& subnet) {
    const std::string from = "iifname " + quoted(bridge) + " ip saddr " + subnet.cidr() + " ip daddr " +
                             Ipv4Subnet::toString(subnet.gateway());
    return "    " + from + " udp dport 53 accept\n" + "    " + from + " tcp dport 53 accept\n";
}

// After the rules every session has: a restricted session's connections
// that were let through at their start go on, as long as they last.
std::string EgressPolicy::forwardRules(const std::string& bridge) {
    const std::string from = "iifname " + quoted(bridge) + " ip saddr @restricted";
    return "    " + from + " ct state established,related accept\n" +  //
           "    " + from + " ip saddr . ip daddr @allowed_addresses accept\n" +  //
           "    " + from + " ip saddr . ip daddr @allowed_networks accept\n" +  //
           "    " + from + " counter drop\n";
}

EgressPolicy::EgressPolicy(boost::asio::io_context& io, const NetworkConfig& config, const Ipv4Subnet& subnet,
                           metrics::Registry* metrics)
    : table_("inet " + EgressNetwork::tableName(config)), guardTable_(EgressNetwork::tableName(config)), nft_(io) {
    if (!metrics) ownMetrics_ = std::make_unique<metrics::Registry>();
    EgressResolver::Options options;
    options.listenAddress = Ipv4Subnet::toString(subnet.gateway());
    options.upstreams = EgressResolver::upstreams(config.resolvers);
    resolver_ = std::make_unique<EgressResolver>(io, *this, std::move(options), metrics ? *metrics : *ownMetrics_);
}

EgressPolicy::~EgressPolicy() = default;

std::string EgressPolicy::element(const std::string& set, std::uint32_t address,
                                  const std::string& destination) const {
    return " element " + table_ + " " + set + " { " + Ipv4Subnet::toString(address) + " . " + destination + " }\n";
}

void EgressPolicy::enroll(std::uint32_t address, const EgressTenant& tenant) {
    Enrolled session;
    session.pool = tenant.pool;
    session.sandbox = tenant.sandbox;
    session.allowList = std::make_shared<const EgressAllowList>(EgressAllowList::parse(tenant.allowedDestinations));
    const std::string source = Ipv4Subnet::toString(address);
    std::string commands = port_guard::admit(guardTable_, address);
    if (session.restricted()) {
        commands += "add element " + table_ + " restricted { " + source + " }\n";
        for (const auto& network : session.allowList->networks())
            commands += "add" + element("allowed_networks", address, network.text());
    }
    runHostTool({"nft", "-f", "-"}, commands);
    sessions_[address] = std::move(session);
}

void EgressPolicy::withdraw(std::uint32_t address, std::function<void()> released) {
    const auto it = sessions_.find(address);
    if (it == sessions_.end()) return released();
    // Each element is added before it is deleted, since a delete of one that
    // is not there (a learned address whose time ran out) fails the batch.
    // Queued behind any addition still on its way for this session.
    std::string commands = port_guard::admit(guardTable_, address) + port_guard::forget(guardTable_, address);
    const std::string source = Ipv4Subnet::toString(address);
    auto addAndDelete = [&](const std::string& set, const std::string& destination, const std::string& timeout) {
        commands += "add" + element(set, address, destination + timeout);
        commands += "delete" + element(set, address, destination);
    };
    if (it->second.restricted()) {
        for (const auto& network : it->second.allowList->networks())
            addAndDelete("allowed_networks", network.text(), "");
        for (const std::uint32_t destination : it->second.learned)
            addAndDelete("allowed_addresses", Ipv4Subnet::toString(destination), " timeout 1s");
        commands += "add element " + table_ + " restricted { " + source + " }\n";
        commands += "delete element " + table_ + " restricted { " + source + " }\n";
    }
    sessions_.erase(it);
    nft_.submit(std::move(commands), [source, released = std::move(released)](const std::string& error) {
        // Its address stays taken: another session must not inherit its rules.
        if (!error.empty()) return spdlog::error("egress network: cannot remove the rules of {}: {}", source, error);
        released();
    });
}

const EgressSessions::Session* EgressPolicy::sessionAt(std::uint32_t address) const {
    const auto it = sessions_.find(address);
    return it == sessions_.end() ? nullptr : &it->second;
}

void EgressPolicy::allow(std::uint32_t address, const std::vector<dns::Address>& destinations,
                         std::function<void(bool ok)> done) {
    const auto it = sessions_.find(address);
    if (it == sessions_.end()) return done(false);
    std::string commands;
    for (const auto& destination : destinations) {
        it->second.learned.insert(destination.address);
        const std::uint32_t seconds = std::clamp(destination.ttl, kMinAllowSeconds, kMaxAllowSeconds);
        commands += "add" + element("allowed_addresses", address,
                                    Ipv4Subnet::toString(destination.address) + " timeout " +
                                        std::to_string(seconds) + "s");
    }
    nft_.submit(std::move(commands), [done = std::move(done)](const std::string& error) {
        if (!error.empty()) spdlog::error("egress network: cannot let a session reach what it resolved: {}", error);
        done(error.empty());
    });
}

}  // namespace sessiond
