#include "port_guard.hpp"

#include "sessiond/ipv4_subnet.hpp"
#include "sessiond/sandbox/egress_network.hpp"

namespace sessiond::port_guard {

namespace {

std::string elements(const std::string& verb, const std::string& tableName, std::uint32_t address) {
    const std::string target = verb + " element bridge " + tableName + " ";
    const std::string port = "\"" + EgressPort::interfaceOf(address) + "\"";
    return target + "ports { " + port + " }\n" + target + "bindings { " + port + " . " + EgressPort::macOf(address) +
           " . " + Ipv4Subnet::toString(address) + " }\n";
}

}  // namespace

std::string table(const std::string& tableName) {
    // Frames the bridge itself sends (the gateway's) do not pass prerouting.
    return "table bridge " + tableName + " {\n"
           "  set ports { type ifname; }\n"
           "  set bindings { type ifname . ether_addr . ipv4_addr; }\n"
           "  chain from_ports {\n"
           "    type filter hook prerouting priority -10; policy accept;\n"
           "    iifname != @ports accept\n"
           "    ether type ip iifname . ether saddr . ip saddr @bindings accept\n"
           "    ether type arp iifname . ether saddr . arp saddr ip @bindings accept\n"
           "    counter drop\n"
           "  }\n"
           "}\n";
}

std::string admit(const std::string& tableName, std::uint32_t address) { return elements("add", tableName, address); }

std::string forget(const std::string& tableName, std::uint32_t address) {
    return elements("delete", tableName, address);
}

}  // namespace sessiond::port_guard
