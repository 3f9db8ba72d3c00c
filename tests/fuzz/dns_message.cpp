// Bytes as a session (a query) or an upstream server (an answer) sends them
// to the egress resolver: each is read as both, answered as a query would
// be, and its addresses looked up as the resolver does.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sessiond/sandbox/dns_message.hpp"

using namespace sessiond;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view wire(reinterpret_cast<const char*>(data), size);
    if (const auto query = dns::parseQuery(wire)) {
        const auto reply = dns::reply(wire, *query, dns::Refused);
        if (!dns::parseResponse(reply)) __builtin_trap();  // our own answers must read back
    }
    if (const auto response = dns::parseResponse(wire)) (void)dns::addressesOf(*response, response->question.name);
    return 0;
}
