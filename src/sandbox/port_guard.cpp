#include "port_guard.hpp"

namespace sessiond::port_guard {

namespace {

std::string elements(const std::string& verb, const std::string& tableName, const std::string& port,
                     const std::string& mac, const std::string& address) {
    const std::string target = verb + " element bridge " + tableName + " ";
    return target + "ports { \"" + port + "\" }\n" + target + "bindings { \"" + port + "\" . " + mac + " . " +
           address + " }\n";
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

std::string admit(const std::string& tableName, const std::string& port, const std::string& mac,
                  const std::string& address) {
    return elements("add", tableName, port, mac, address);
}

std::string forget(const std::string& tableName, const std::string& port, const std::string& mac,
                   const std::string& address) {
    return elements("delete", tableName, port, mac, address);
}

}  // namespace sessiond::port_guard
