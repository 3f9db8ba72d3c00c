#pragma once
// An IPv4 subnet in CIDR notation, as the egress network's configuration
// gives it: the first host address is the bridge's (the sessions' gateway),
// the ones after it are the sessions'.

#include <arpa/inet.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace sessiond {

struct Ipv4Subnet {
    std::uint32_t network = 0;  // host byte order
    int prefixLength = 0;

    // "10.213.0.0/16"; prefixes from /8 (a host's worth of sessions is far
    // fewer) to /29 (a gateway and a few sessions); host bits must be zero.
    static Ipv4Subnet parse(const std::string& cidr) {
        const auto slash = cidr.find('/');
        if (slash == std::string::npos) throw std::invalid_argument("must be an IPv4 subnet such as 10.213.0.0/16");
        in_addr address{};
        if (::inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &address) != 1)
            throw std::invalid_argument("'" + cidr.substr(0, slash) + "' is not an IPv4 address");
        const std::string prefix = cidr.substr(slash + 1);
        if (prefix.empty() || prefix.size() > 2 || prefix.find_first_not_of("0123456789") != std::string::npos)
            throw std::invalid_argument("the prefix length must be a number from 8 to 29");
        Ipv4Subnet subnet{ntohl(address.s_addr), std::stoi(prefix)};
        if (subnet.prefixLength < 8 || subnet.prefixLength > 29)
            throw std::invalid_argument("the prefix length must be from 8 to 29");
        if (subnet.network & ~subnet.mask()) throw std::invalid_argument("'" + cidr + "' has host bits set");
        return subnet;
    }

    std::uint32_t mask() const { return prefixLength == 0 ? 0 : ~std::uint32_t(0) << (32 - prefixLength); }
    std::uint32_t gateway() const { return network + 1; }
    // Session addresses: after the gateway, before the broadcast address.
    std::uint32_t firstHost() const { return network + 2; }
    std::uint32_t lastHost() const { return (network | ~mask()) - 1; }
    std::string cidr() const { return toString(network) + "/" + std::to_string(prefixLength); }

    static std::string toString(std::uint32_t address) {
        in_addr a{htonl(address)};
        char text[INET_ADDRSTRLEN] = {};
        ::inet_ntop(AF_INET, &a, text, sizeof text);
        return text;
    }
};

}  // namespace sessiond
