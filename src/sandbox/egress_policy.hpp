#pragma once
// Which destinations each session on the egress network may reach
// (docs/networking.md), kept in the network's nftables table: a session of
// a pool with allowedDestinations is in the `restricted` set, its CIDRs in
// `allowed_networks`, and the addresses the resolver answered it with in
// `allowed_addresses`, each for its TTL. Everything else it sends out is
// dropped. Also runs the sessions' resolver, which is what fills the last set.
// Used on the io_context's thread only.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio.hpp>

#include "nft_batch.hpp"
#include "sessiond/config.hpp"
#include "sessiond/ipv4_subnet.hpp"
#include "sessiond/metrics/metrics.hpp"
#include "sessiond/sandbox/egress_network.hpp"
#include "sessiond/sandbox/egress_resolver.hpp"

namespace sessiond {

class EgressPolicy : public EgressSessions {
public:
    // The table's sets and the rules that use them, for EgressNetwork's ruleset.
    static std::string sets();
    static std::string inputRules(const std::string& bridge, const Ipv4Subnet& subnet);
    static std::string forwardRules(const std::string& bridge);

    // Starts the resolver on the subnet's gateway, which must be up.
    EgressPolicy(boost::asio::io_context& io, const NetworkConfig& config, const Ipv4Subnet& subnet,
                 metrics::Registry* metrics);
    ~EgressPolicy() override;

    // Before anything of the session runs: its rules are in place on return.
    void enroll(std::uint32_t address, const EgressTenant& tenant);
    // When the session is gone: `released()` once none of its rules are
    // left, so its address can go to another session.
    void withdraw(std::uint32_t address, std::function<void()> released);

    const Session* sessionAt(std::uint32_t address) const override;
    void allow(std::uint32_t address, const std::vector<dns::Address>& destinations,
               std::function<void(bool ok)> done) override;

private:
    struct Enrolled : Session {
        std::set<std::uint32_t> learned;  // destinations the resolver added
    };
    std::string element(const std::string& set, std::uint32_t address, const std::string& destination) const;

    std::string table_;
    std::string guardTable_;  // the bridge family's table of the same name
    std::unique_ptr<metrics::Registry> ownMetrics_;  // when the daemon gives none
    std::map<std::uint32_t, Enrolled> sessions_;
    NftBatch nft_;
    std::unique_ptr<EgressResolver> resolver_;  // last: it uses the rest
};

}  // namespace sessiond
