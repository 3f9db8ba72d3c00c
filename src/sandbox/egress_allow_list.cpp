#include "sessiond/sandbox/egress_allow_list.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>

#include "sessiond/ipv4_subnet.hpp"

namespace sessiond {

namespace {

std::string lower(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); });
    return text;
}

// A host name as DNS carries it: labels of letters, digits, hyphens and
// underscores (SRV-style names), 1 to 63 bytes each, 253 in all.
bool validName(const std::string& name) {
    if (name.empty() || name.size() > 253) return false;
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = name.find('.', start);
        const std::size_t end = dot == std::string::npos ? name.size() : dot;
        const std::size_t length = end - start;
        if (length == 0 || length > 63 || name[start] == '-' || name[end - 1] == '-') return false;
        for (std::size_t i = start; i < end; ++i) {
            const char c = name[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
        }
        if (dot == std::string::npos) return true;
        start = dot + 1;
    }
}

std::optional<std::uint32_t> ipv4(const std::string& text) {
    in_addr address{};
    if (::inet_pton(AF_INET, text.c_str(), &address) != 1) return std::nullopt;
    return ntohl(address.s_addr);
}

// Digits, dots and at most one slash: meant as an address or CIDR, never a name.
bool looksNumeric(const std::string& text) {
    return text.find_first_not_of("0123456789./") == std::string::npos;
}

Ipv4Network network(const std::string& entry) {
    const auto slash = entry.find('/');
    const auto address = ipv4(entry.substr(0, slash));
    if (!address) throw std::invalid_argument("'" + entry + "' is not an IPv4 address or CIDR");
    if (slash == std::string::npos) return {*address, 32};
    const std::string prefix = entry.substr(slash + 1);
    if (prefix.empty() || prefix.size() > 2 || prefix.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(prefix) > 32)
        throw std::invalid_argument("'" + entry + "': the prefix length must be a number from 0 to 32");
    const int length = std::stoi(prefix);
    const std::uint32_t mask = length == 0 ? 0 : ~std::uint32_t(0) << (32 - length);
    if (*address & ~mask) throw std::invalid_argument("'" + entry + "' has host bits set");
    return {*address, length};
}

}  // namespace

std::string Ipv4Network::text() const { return Ipv4Subnet::toString(network) + "/" + std::to_string(prefixLength); }

EgressAllowList EgressAllowList::parse(const std::vector<std::string>& entries) {
    EgressAllowList list;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        std::string entry = lower(entries[i]);
        try {
            if (looksNumeric(entry)) {
                list.networks_.push_back(network(entry));
                continue;
            }
            if (!entry.empty() && entry.back() == '.') entry.pop_back();  // fully qualified
            const bool wildcard = entry.rfind("*.", 0) == 0;
            const std::string name = wildcard ? entry.substr(2) : entry;
            if (!validName(name))
                throw std::invalid_argument("'" + entries[i] +
                                            "' is not a domain name, *.domain, IPv4 address or IPv4 CIDR");
            if (wildcard)
                list.suffixes_.push_back("." + name);
            else
                list.names_.insert(name);
        } catch (const std::invalid_argument& e) {
            throw BadEntry(i, e.what());
        }
    }
    return list;
}

bool EgressAllowList::allowsName(std::string_view name) const {
    if (names_.count(name)) return true;
    return std::any_of(suffixes_.begin(), suffixes_.end(), [&](const std::string& suffix) {
        return name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
    });
}

}  // namespace sessiond
