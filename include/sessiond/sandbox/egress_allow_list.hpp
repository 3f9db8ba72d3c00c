#pragma once
// A pool's sessionNetworkConfiguration.allowedDestinations
// (docs/networking.md): domain names, "*." wildcards, IPv4 addresses and
// IPv4 CIDRs a restricted session may reach. Names are matched by the
// daemon's resolver; addresses and CIDRs go into the nftables rules as they
// are.

#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond {

struct Ipv4Network {
    std::uint32_t network = 0;  // host byte order, host bits zero
    int prefixLength = 32;

    // "a.b.c.d/len" as nftables reads it.
    std::string text() const;
};

class EgressAllowList {
public:
    // An entry that is not a name, wildcard, address or CIDR.
    class BadEntry : public std::invalid_argument {
    public:
        BadEntry(std::size_t index, const std::string& problem) : std::invalid_argument(problem), index_(index) {}
        std::size_t index() const { return index_; }

    private:
        std::size_t index_;
    };

    EgressAllowList() = default;
    // Throws BadEntry naming the first malformed entry.
    static EgressAllowList parse(const std::vector<std::string>& entries);

    // No entries: the session is not restricted at all.
    bool empty() const { return names_.empty() && suffixes_.empty() && networks_.empty(); }
    // `name` as dns::Question gives it: lower case, no trailing dot.
    bool allowsName(std::string_view name) const;
    const std::vector<Ipv4Network>& networks() const { return networks_; }

private:
    std::set<std::string, std::less<>> names_;
    std::vector<std::string> suffixes_;  // ".example.org" for "*.example.org"
    std::vector<Ipv4Network> networks_;
};

}  // namespace sessiond
