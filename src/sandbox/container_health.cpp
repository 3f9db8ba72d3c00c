#include "sessiond/sandbox/container_health.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace sessiond {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace beast_http = beast::http;

namespace {

// One HTTP probe over a connected socket: GET, then the status line.
struct HttpProbe : std::enable_shared_from_this<HttpProbe> {
    HttpProbe(asio::io_context& io, const ContainerProbe& probe, int fd, std::function<void(std::string)> onDone)
        : stream(asio::ip::tcp::socket(io, asio::ip::tcp::v4(), fd)), onDone(std::move(onDone)) {
        request.method(beast_http::verb::get);
        request.target(probe.path.empty() ? "/" : probe.path);
        request.version(11);
        request.set(beast_http::field::host, "localhost:" + std::to_string(probe.port));
        request.set(beast_http::field::user_agent, "sessiond-probe");
        for (const auto& [name, value] : probe.httpHeaders) request.set(name, value);
        request.keep_alive(false);
        timeout = probe.timeout;
    }

    void start() {
        stream.expires_after(timeout);
        beast_http::async_write(stream, request, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return self->onDone("the request failed: " + ec.message());
            self->parser.body_limit(1 << 20);
            beast_http::async_read_header(self->stream, self->buffer, self->parser,
                                          [self](beast::error_code ec, std::size_t) {
                                              if (ec == beast::error::timeout)
                                                  return self->onDone("no answer within " +
                                                                      std::to_string(self->timeout.count()) + " s");
                                              if (ec) return self->onDone("no answer: " + ec.message());
                                              const unsigned status = self->parser.get().result_int();
                                              if (status >= 200 && status < 400) return self->onDone("");
                                              self->onDone("it answered " + std::to_string(status));
                                          });
        });
    }

    beast::tcp_stream stream;
    beast_http::request<beast_http::empty_body> request;
    beast::flat_buffer buffer;
    beast_http::response_parser<beast_http::string_body> parser;
    std::chrono::seconds timeout;
    std::function<void(std::string)> onDone;
};

std::string probeName(const ContainerProbe& probe) {
    std::string kind = probe.type == ContainerProbe::Type::Startup ? "startup" : "liveness";
    return probe.httpGet ? kind + " probe GET " + probe.path + " on port " + std::to_string(probe.port)
                         : kind + " probe tcpSocket on port " + std::to_string(probe.port);
}

}  // namespace

void probeContainer(asio::io_context& io, const ContainerProbe& probe, const ContainerConnect& connect,
                    std::function<void(std::string failure)> onDone) {
    // A probe's timeout covers the connection too; the first answer wins.
    auto answered = std::make_shared<bool>(false);
    auto timer = std::make_shared<asio::steady_timer>(io, probe.timeout);
    auto finish = [answered, timer, onDone = std::move(onDone), name = probeName(probe)](const std::string& failure) {
        if (std::exchange(*answered, true)) return;
        timer->cancel();
        onDone(failure.empty() ? "" : name + ": " + failure);
    };
    timer->async_wait([finish, seconds = probe.timeout.count()](boost::system::error_code ec) {
        if (!ec) finish("no answer within " + std::to_string(seconds) + " s");
    });
    connect(probe.port, [&io, probe, finish, answered](Outcome<UniqueFd> connected) {
        if (*answered) return;
        if (!connected.ok()) return finish("no connection: " + connected.error);
        if (!probe.httpGet) return finish("");
        auto attempt = std::make_shared<HttpProbe>(io, probe, connected.value.get(), finish);
        connected.value.release();
        attempt->start();
    });
}

struct ContainerHealth::Schedule {
    Schedule(asio::io_context& io, ContainerProbe probe) : probe(std::move(probe)), timer(io) {}
    ContainerProbe probe;
    std::chrono::milliseconds interval{0};
    bool untilPassed = false;        // a startup probe: done once it passes
    bool giveUp = true;              // false: the default start check, bounded by the caller only
    std::uint32_t failures = 0, successes = 0;
    asio::steady_timer timer;
    std::function<void(std::string)> onOutcome;
};

ContainerHealth::ContainerHealth(asio::io_context& io, ContainerTemplate container, ContainerConnect connect)
    : io_(io), container_(std::move(container)), connect_(std::move(connect)) {}

ContainerHealth::~ContainerHealth() {
    for (auto* schedule : {&startup_, &liveness_})
        if (*schedule) {
            (*schedule)->onOutcome = nullptr;
            (*schedule)->timer.cancel();
        }
}

void ContainerHealth::waitUntilStarted(std::function<void(std::string failure)> onDone) {
    ContainerProbe probe;
    probe.type = ContainerProbe::Type::Startup;
    probe.httpGet = false;
    probe.port = container_.targetPort;
    bool configured = false;
    for (const auto& p : container_.probes)
        if (p.type == ContainerProbe::Type::Startup) probe = p, configured = true;
    startup_ = std::make_shared<Schedule>(io_, probe);
    startup_->untilPassed = true;
    startup_->giveUp = configured;
    startup_->interval = configured ? std::chrono::milliseconds(probe.period) : std::chrono::milliseconds(50);
    startup_->onOutcome = std::move(onDone);
    startup_->timer.expires_after(configured ? std::chrono::milliseconds(probe.initialDelay) : startup_->interval);
    run(startup_);
}

void ContainerHealth::watchLiveness(std::function<void(std::string failure)> onUnhealthy) {
    for (const auto& p : container_.probes) {
        if (p.type != ContainerProbe::Type::Liveness) continue;
        liveness_ = std::make_shared<Schedule>(io_, p);
        liveness_->interval = p.period;
        liveness_->onOutcome = std::move(onUnhealthy);
        liveness_->timer.expires_after(std::max<std::chrono::milliseconds>(p.initialDelay, p.period));
        run(liveness_);
        return;
    }
}

void ContainerHealth::run(std::shared_ptr<Schedule> schedule) {
    std::weak_ptr<Schedule> weak = schedule;
    schedule->timer.async_wait([this, weak](boost::system::error_code ec) {
        auto schedule = weak.lock();
        if (ec || !schedule || !schedule->onOutcome) return;
        probeContainer(io_, schedule->probe, connect_, [this, weak](std::string failure) {
            auto schedule = weak.lock();
            if (!schedule || !schedule->onOutcome) return;
            if (failure.empty()) {
                schedule->failures = 0;
                if (schedule->untilPassed && ++schedule->successes >= schedule->probe.successThreshold)
                    return std::exchange(schedule->onOutcome, nullptr)("");
            } else {
                schedule->successes = 0;
                if (schedule->giveUp && ++schedule->failures >= schedule->probe.failureThreshold)
                    return std::exchange(schedule->onOutcome, nullptr)(
                        failure + " (" + std::to_string(schedule->failures) + " times in a row)");
            }
            schedule->timer.expires_after(schedule->interval);
            run(schedule);
        });
    });
}

}  // namespace sessiond
