#include "sessiond/sandbox/egress_resolver.hpp"

#include <sys/random.h>

#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

namespace sessiond {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

constexpr std::size_t kMaxExchanges = 1024;
constexpr std::size_t kMaxTcpConnections = 64;
constexpr std::size_t kMaxTcpQueryBytes = 4096;
constexpr auto kTcpIdleTimeout = std::chrono::seconds(10);
constexpr int kRefusalLogsPerSecond = 10;

// Unpredictable, so an off-path sender cannot guess which answer to forge.
std::uint16_t randomId() {
    std::uint16_t id = 0;
    while (::getrandom(&id, sizeof id, 0) != sizeof id) {
    }
    return id;
}

udp::endpoint endpointOf(const std::string& text) {
    if (!text.empty() && text[0] == '[') {
        const auto close = text.find("]:");
        return {asio::ip::make_address(text.substr(1, close - 1)),
                static_cast<unsigned short>(std::stoul(text.substr(close + 2)))};
    }
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(text, ec);
    if (!ec) return {address, 53};
    const auto colon = text.rfind(':');
    return {asio::ip::make_address(text.substr(0, colon)),
            static_cast<unsigned short>(std::stoul(text.substr(colon + 1)))};
}

}  // namespace

struct EgressResolver::Exchange {
    Exchange(asio::io_context& io) : upstream(io), timer(io) {}
    std::string query;
    dns::Message parsed;
    std::uint32_t source = 0;
    EgressSessions::Session session;
    Answer answer;
    udp::socket upstream;
    asio::steady_timer timer;
    std::uint16_t upstreamId = 0;
    int attempt = 0;
    std::vector<char> buffer = std::vector<char>(65535);
};

// DNS over TCP: two-byte length, then the message; queries on one
// connection are answered one after the other.
class EgressResolver::TcpConnection : public std::enable_shared_from_this<TcpConnection> {
public:
    TcpConnection(EgressResolver& resolver, tcp::socket socket, std::uint32_t source)
        : resolver_(resolver), socket_(std::move(socket)), timer_(socket_.get_executor()), source_(source) {}

    void start() { readLength(); }
    void close() {
        boost::system::error_code ignored;
        socket_.close(ignored);
        timer_.cancel();
    }

private:
    void readLength() {
        armTimer();
        asio::async_read(socket_, asio::buffer(length_),
                         [self = shared_from_this(), alive = std::weak_ptr<int>(resolver_.lifetime_)](
                             boost::system::error_code ec, std::size_t) {
                             if (alive.expired()) return;
                             const std::size_t bytes = std::size_t(self->length_[0]) << 8 | self->length_[1];
                             if (ec || bytes < dns::kHeaderBytes || bytes > kMaxTcpQueryBytes) return self->end();
                             self->readQuery(bytes);
                         });
    }
    void readQuery(std::size_t bytes) {
        query_.resize(bytes);
        asio::async_read(socket_, asio::buffer(query_),
                         [self = shared_from_this(), alive = std::weak_ptr<int>(resolver_.lifetime_)](
                             boost::system::error_code ec, std::size_t) {
                             if (alive.expired()) return;
                             if (ec) return self->end();
                             self->timer_.cancel();
                             self->resolver_.handle(self->query_, self->source_,
                                                    [self](std::string wire) { self->write(std::move(wire)); });
                         });
    }
    void write(std::string wire) {
        if (!socket_.is_open()) return;
        if (wire.size() > 65535) return end();
        auto out = std::make_shared<std::string>();
        out->push_back(static_cast<char>(wire.size() >> 8));
        out->push_back(static_cast<char>(wire.size() & 0xFF));
        *out += wire;
        asio::async_write(socket_, asio::buffer(*out),
                          [self = shared_from_this(), out, alive = std::weak_ptr<int>(resolver_.lifetime_)](
                              boost::system::error_code ec, std::size_t) {
                              if (alive.expired()) return;
                              if (ec) return self->end();
                              self->readLength();
                          });
    }
    void armTimer() {
        timer_.expires_after(kTcpIdleTimeout);
        timer_.async_wait([self = shared_from_this(), alive = std::weak_ptr<int>(resolver_.lifetime_)](
                              boost::system::error_code ec) {
            if (!ec && !alive.expired()) self->end();
        });
    }
    void end() {
        close();
        resolver_.connections_.erase(this);
    }

    EgressResolver& resolver_;
    tcp::socket socket_;
    asio::steady_timer timer_;
    std::uint32_t source_;
    unsigned char length_[2] = {};
    std::string query_;
};

EgressResolver::EgressResolver(asio::io_context& io, EgressSessions& sessions, Options options,
                               metrics::Registry& metrics)
    : io_(io), sessions_(sessions), options_(std::move(options)), metrics_(metrics), udp_(io), tcp_(io) {
    const auto address = asio::ip::make_address_v4(options_.listenAddress);
    try {
        udp_.open(udp::v4());
        udp_.bind({address, 53});
        tcp_.open(tcp::v4());
        tcp_.set_option(tcp::acceptor::reuse_address(true));
        tcp_.bind({address, 53});
        tcp_.listen();
    } catch (const boost::system::system_error& e) {
        // Another DNS server listening on every address, port 53, holds it.
        throw std::runtime_error("the sessions' resolver cannot listen on " + options_.listenAddress +
                                 ":53: " + e.code().message());
    }
    if (options_.upstreams.empty()) throw std::runtime_error("the sessions' resolver has no upstream server");
    std::string upstreams;
    for (const auto& upstream : options_.upstreams)
        upstreams += (upstreams.empty() ? "" : ", ") + upstream.address().to_string() + ":" +
                     std::to_string(upstream.port());
    spdlog::info("egress network: sessions' resolver on {}:53, forwarding to {}", options_.listenAddress, upstreams);
    receiveUdp();
    acceptTcp();
}

EgressResolver::~EgressResolver() {
    boost::system::error_code ignored;
    udp_.close(ignored);
    tcp_.close(ignored);
    for (auto& [_, exchange] : exchanges_) {
        exchange->upstream.close(ignored);
        exchange->timer.cancel();
    }
    for (auto& [_, connection] : connections_) connection->close();
}

std::vector<udp::endpoint> EgressResolver::upstreams(const std::vector<std::string>& configured) {
    std::vector<udp::endpoint> out;
    for (const auto& text : configured) out.push_back(endpointOf(text));
    if (!configured.empty()) return out;
    std::ifstream file("/etc/resolv.conf");
    std::string line;
    while (std::getline(file, line)) {
        std::istringstream words(line);
        std::string keyword, address;
        if (!(words >> keyword >> address) || keyword != "nameserver") continue;
        boost::system::error_code ec;
        const auto parsed = asio::ip::make_address(address, ec);
        if (!ec) out.emplace_back(parsed, 53);
    }
    if (out.empty()) out.emplace_back(asio::ip::make_address("127.0.0.1"), 53);
    return out;
}

void EgressResolver::receiveUdp() {
    udp_.async_receive_from(
        asio::buffer(buffer_), sender_,
        [this, alive = std::weak_ptr<int>(lifetime_)](boost::system::error_code ec, std::size_t bytes) {
            if (alive.expired() || ec == asio::error::operation_aborted) return;
            if (!ec && sender_.address().is_v4()) {
                const udp::endpoint client = sender_;
                handle(std::string(buffer_.data(), bytes), client.address().to_v4().to_uint(),
                       [this, client, alive](std::string wire) {
                           if (alive.expired()) return;
                           auto out = std::make_shared<std::string>(std::move(wire));
                           udp_.async_send_to(asio::buffer(*out), client,
                                              [out](boost::system::error_code, std::size_t) {});
                       });
            }
            receiveUdp();
        });
}

void EgressResolver::acceptTcp() {
    tcp_.async_accept([this, alive = std::weak_ptr<int>(lifetime_)](boost::system::error_code ec, tcp::socket socket) {
        if (alive.expired() || ec == asio::error::operation_aborted) return;
        boost::system::error_code peerError;
        const auto peer = socket.remote_endpoint(peerError);
        if (!ec && !peerError && peer.address().is_v4() && connections_.size() < kMaxTcpConnections) {
            auto connection = std::make_shared<TcpConnection>(*this, std::move(socket), peer.address().to_v4().to_uint());
            connections_.emplace(connection.get(), connection);
            connection->start();
        }
        acceptTcp();
    });
}

void EgressResolver::handle(std::string query, std::uint32_t source, Answer answer) {
    const auto parsed = dns::parseQuery(query);
    if (!parsed) return;  // not a query: no answer, as to noise
    const EgressSessions::Session* session = sessions_.sessionAt(source);
    if (!session) return answer(dns::reply(query, *parsed, dns::Refused));
    const dns::Question& question = parsed->question;
    if (session->restricted()) {
        const bool asksForAddresses =
            question.type == dns::A || question.type == dns::AAAA || question.type == dns::CNAME;
        if (!asksForAddresses || question.klass != dns::kClassIn || !question.printable ||
            !session->allowList->allowsName(question.name)) {
            count(session->pool, "refused");
            logRefused(*session, question);
            return answer(dns::reply(query, *parsed, dns::Refused));
        }
        if (question.type == dns::AAAA) {
            count(session->pool, "answered");
            return answer(dns::reply(query, *parsed, dns::NoError));
        }
    }
    if (exchanges_.size() >= kMaxExchanges) {
        count(session->pool, "failed");
        return answer(dns::reply(query, *parsed, dns::ServFail));
    }
    auto exchange = std::make_shared<Exchange>(io_);
    exchange->query = std::move(query);
    exchange->parsed = *parsed;
    exchange->source = source;
    exchange->session = *session;
    exchange->answer = std::move(answer);
    exchanges_.emplace(exchange.get(), exchange);
    forward(exchange);
}

void EgressResolver::forward(std::shared_ptr<Exchange> exchange) {
    // Round robin over the servers, a fresh socket (so a fresh source port)
    // and a fresh id for each attempt.
    const udp::endpoint server = options_.upstreams[nextUpstream_++ % options_.upstreams.size()];
    boost::system::error_code ec;
    exchange->upstream.close(ec);
    exchange->upstream.open(server.protocol(), ec);
    if (!ec) exchange->upstream.connect(server, ec);
    if (ec) {
        spdlog::warn("egress resolver: cannot reach {}: {}", server.address().to_string(), ec.message());
        exchange->timer.expires_after(std::chrono::seconds(0));
    } else {
        exchange->upstreamId = randomId();
        std::string query = exchange->query;
        dns::setId(query, exchange->upstreamId);
        exchange->upstream.send(asio::buffer(query), 0, ec);
        exchange->timer.expires_after(options_.attemptTimeout);
        awaitAnswer(exchange);
    }
    exchange->timer.async_wait([this, exchange, alive = std::weak_ptr<int>(lifetime_)](boost::system::error_code ec) {
        if (ec || alive.expired() || !exchanges_.count(exchange.get())) return;
        if (++exchange->attempt < options_.attempts) return forward(exchange);
        complete(exchange, dns::reply(exchange->query, exchange->parsed, dns::ServFail), "failed");
    });
}

// Waits for the answer to this attempt; anything else that arrives is ignored.
void EgressResolver::awaitAnswer(std::shared_ptr<Exchange> exchange) {
    exchange->upstream.async_receive(
        asio::buffer(exchange->buffer),
        [this, exchange, alive = std::weak_ptr<int>(lifetime_)](boost::system::error_code ec, std::size_t bytes) {
            if (alive.expired() || ec == asio::error::operation_aborted || !exchanges_.count(exchange.get())) return;
            if (ec) return;  // an ICMP error: the timer tries the next server
            received(exchange, bytes);
        });
}

void EgressResolver::received(std::shared_ptr<Exchange> exchange, std::size_t bytes) {
    std::string wire(exchange->buffer.data(), bytes);
    const auto response = dns::parseResponse(wire);
    if (!response || response->id != exchange->upstreamId || !(response->question == exchange->parsed.question))
        return awaitAnswer(exchange);
    exchange->timer.cancel();
    boost::system::error_code ignored;
    exchange->upstream.close(ignored);
    dns::setId(wire, exchange->parsed.id);
    const auto addresses = exchange->session.restricted()
                               ? dns::addressesOf(*response, exchange->parsed.question.name)
                               : std::vector<dns::Address>{};
    if (addresses.empty()) return complete(exchange, std::move(wire), "answered");
    // The rules first: the session connects as soon as it has the answer.
    sessions_.allow(exchange->source, addresses,
                    [this, exchange, wire = std::move(wire), alive = std::weak_ptr<int>(lifetime_)](bool ok) mutable {
                        if (alive.expired()) return;
                        if (ok) return complete(exchange, std::move(wire), "answered");
                        complete(exchange, dns::reply(exchange->query, exchange->parsed, dns::ServFail), "failed");
                    });
}

void EgressResolver::complete(std::shared_ptr<Exchange> exchange, std::string wire, const char* result) {
    boost::system::error_code ignored;
    exchange->upstream.close(ignored);
    exchange->timer.cancel();
    count(exchange->session.pool, result);
    exchange->answer(std::move(wire));
    exchanges_.erase(exchange.get());
}

void EgressResolver::count(const std::string& pool, const char* result) {
    metrics_
        .counter("sessiond_egress_dns_queries_total",
                 "DNS queries of sessions with egress, by pool and result: answered (relayed or answered empty), "
                 "refused (off the pool's allowedDestinations) or failed (no upstream answer).",
                 {{"pool", pool}, {"result", result}})
        .inc();
}

void EgressResolver::logRefused(const EgressSessions::Session& session, const dns::Question& question) {
    const auto now = std::chrono::steady_clock::now();
    if (now - logWindow_ >= std::chrono::seconds(1)) {
        logWindow_ = now;
        logged_ = 0;
    }
    if (logged_++ >= kRefusalLogsPerSecond) {
        ++unlogged_;
        return;
    }
    const std::string name = question.printable ? question.name : "(a name with unprintable bytes)";
    spdlog::info("pool {}: sandbox {}: refused a DNS query for {} (type {}): not in allowedDestinations{}", session.pool,
                 session.sandbox, name, question.type,
                 unlogged_ ? " (and " + std::to_string(unlogged_) + " more refusals not logged)" : std::string());
    unlogged_ = 0;
}

}  // namespace sessiond
