#pragma once
// The sessions' DNS resolver (docs/networking.md): listens on the egress
// bridge's address, port 53, UDP and TCP, in the host's network namespace,
// and forwards what a session may ask to the upstream servers. A session
// whose pool has an allow-list may ask only for the A, AAAA or CNAME
// records of names on it (anything else is answered REFUSED); the
// addresses of the answer are let through the nftables rules, for that
// session alone, before the answer reaches it. AAAA queries of such a
// session get an empty answer, since its IPv6 is dropped anyway.
//
// Sessions are told apart by their source address, which the egress
// network's rules keep them from spoofing.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio.hpp>

#include "sessiond/metrics/metrics.hpp"
#include "sessiond/sandbox/dns_message.hpp"
#include "sessiond/sandbox/egress_allow_list.hpp"

namespace sessiond {

// What the resolver needs of the egress network.
class EgressSessions {
public:
    struct Session {
        std::string pool;
        std::string sandbox;
        std::shared_ptr<const EgressAllowList> allowList;
        bool restricted() const { return allowList && !allowList->empty(); }
    };

    virtual ~EgressSessions() = default;
    // The session at this address (host byte order), if any.
    virtual const Session* sessionAt(std::uint32_t address) const = 0;
    // Lets the session at `address` reach `destinations`, each for its TTL
    // (at least a minute); `done(true)` once the rules let it.
    virtual void allow(std::uint32_t address, const std::vector<dns::Address>& destinations,
                       std::function<void(bool ok)> done) = 0;
};

class EgressResolver {
public:
    struct Options {
        std::string listenAddress;                             // the bridge's
        std::vector<boost::asio::ip::udp::endpoint> upstreams;  // tried in turn
        std::chrono::milliseconds attemptTimeout{2000};
        int attempts = 2;
    };

    // Binds its sockets; throws if it cannot.
    EgressResolver(boost::asio::io_context& io, EgressSessions& sessions, Options options,
                   metrics::Registry& metrics);
    ~EgressResolver();
    EgressResolver(const EgressResolver&) = delete;
    EgressResolver& operator=(const EgressResolver&) = delete;

    // network.resolvers ("ip", "ipv4:port", "[ipv6]:port"); empty: the
    // nameservers of the host's /etc/resolv.conf (127.0.0.1 if it has none,
    // as the C library would use).
    static std::vector<boost::asio::ip::udp::endpoint> upstreams(const std::vector<std::string>& configured);

private:
    struct Exchange;
    class TcpConnection;
    using Answer = std::function<void(std::string wire)>;

    void receiveUdp();
    void acceptTcp();
    void handle(std::string query, std::uint32_t source, Answer answer);
    void forward(std::shared_ptr<Exchange> exchange);
    void awaitAnswer(std::shared_ptr<Exchange> exchange);
    void received(std::shared_ptr<Exchange> exchange, std::size_t bytes);
    void complete(std::shared_ptr<Exchange> exchange, std::string wire, const char* result);
    void count(const std::string& pool, const char* result);
    void logRefused(const EgressSessions::Session& session, const dns::Question& question);

    boost::asio::io_context& io_;
    EgressSessions& sessions_;
    Options options_;
    metrics::Registry& metrics_;
    boost::asio::ip::udp::socket udp_;
    boost::asio::ip::tcp::acceptor tcp_;
    boost::asio::ip::udp::endpoint sender_;
    std::vector<char> buffer_ = std::vector<char>(65535);
    std::map<Exchange*, std::shared_ptr<Exchange>> exchanges_;
    std::map<TcpConnection*, std::shared_ptr<TcpConnection>> connections_;
    std::size_t nextUpstream_ = 0;
    // Refused names are logged at most kRefusalLogsPerSecond a second.
    std::chrono::steady_clock::time_point logWindow_{};
    int logged_ = 0;
    std::uint64_t unlogged_ = 0;
    std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);
};

}  // namespace sessiond
