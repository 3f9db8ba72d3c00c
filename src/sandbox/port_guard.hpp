#pragma once
// What each port of the egress bridge may send (docs/networking.md): frames
// from a session's port pass only with that session's MAC and IPv4 address,
// as sender of an IPv4 packet or of an ARP message. Code in a microVM runs as
// root and can give its card any address; without this it could take a
// neighbour's, or one the allow-list admits for another session. Ports not
// in the table's `ports` set (another daemon's, say) are left alone.
//
// nftables text only: EgressNetwork applies it.

#include <cstdint>
#include <string>

namespace sessiond::port_guard {

// The bridge-family table, named as the inet one is (`tableName`).
std::string table(const std::string& tableName);

// Adding and removing the binding of the session at `address`: its port
// (EgressPort::interfaceOf), its MAC (EgressPort::macOf) and the address.
std::string admit(const std::string& tableName, std::uint32_t address);
std::string forget(const std::string& tableName, std::uint32_t address);

}  // namespace sessiond::port_guard
