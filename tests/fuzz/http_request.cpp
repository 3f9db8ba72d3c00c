// Bytes as a client sends them on one connection, read as the server reads
// them (src/http/server.cpp): Beast's parser with the server's header limit,
// the header first, the route's body limit after matching, then the body;
// requests follow each other while the connection stays alive. Every request
// goes through parseTarget, the daemon's real route table, the API key check
// and, when no route takes it, the 404/405 answer.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string_view>

#include <boost/asio.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "sessiond/api/authorizer.hpp"
#include "sessiond/api/routes.hpp"
#include "sessiond/auth/api_keys.hpp"
#include "sessiond/http/router.hpp"
#include "sessiond/http/server.hpp"
#include "sessiond/metrics/metrics.hpp"
#include "sessiond/pool/pool.hpp"

namespace {

using namespace sessiond;
namespace beast_http = boost::beast::http;
using Parser = beast_http::request_parser<beast_http::string_body>;

// The smallest limits the configuration accepts, so that inputs of a few
// kilobytes reach them.
HttpConfig fuzzLimits() {
    HttpConfig config;
    config.maxHeaderBytes = 1024;
    config.maxBodyBytes = 1024;
    config.maxUploadBytes = 1024;
    return config;
}

ApiKeyRing fuzzKeys() {
    ApiKeyEntry executor{"executor", Role::SessionExecutor, sha256("executor-key"), {"python"}};
    ApiKeyEntry admin{"admin", Role::PoolAdministrator, sha256("admin-key"), {}};
    return ApiKeyRing({executor, admin});
}

// The daemon's route table over a pool manager with no pools: routing needs
// the routes, never a pool, and no handler runs here.
struct Daemon {
    boost::asio::io_context io;
    metrics::Registry registry;
    PoolManager pools{io, {}, [](const std::string&) -> SandboxBackend& { throw std::runtime_error("no backend"); },
                      registry};
    HttpConfig http = fuzzLimits();
    http::Router router;
    api::Authorizer authorizer{fuzzKeys()};
    Daemon() {
        spdlog::set_level(spdlog::level::off);  // the authorizer logs each refusal
        api::addRoutes(router, pools, http, registry);
    }
};

// Feeds `input` to the parser until it has the header (or the whole message);
// the end of the input is the end of the connection. False on any error.
bool feed(Parser& parser, std::string_view& input, bool headerOnly) {
    parser.eager(!headerOnly);
    while (!(headerOnly ? parser.is_header_done() : parser.is_done())) {
        boost::system::error_code ec;
        if (input.empty()) {
            parser.put_eof(ec);
            return !ec && (headerOnly ? parser.is_header_done() : parser.is_done());
        }
        const std::size_t used = parser.put(boost::asio::buffer(input.data(), input.size()), ec);
        input.remove_prefix(used);
        if (ec && ec != beast_http::error::need_more) return false;
        if (used == 0) {  // everything there is was offered: the client has left
            parser.put_eof(ec);
            return !ec && (headerOnly ? parser.is_header_done() : parser.is_done());
        }
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static Daemon& daemon = *new Daemon;
    std::string_view input(reinterpret_cast<const char*>(data), size);
    for (int requests = 0; requests < 16 && !input.empty(); ++requests) {
        Parser parser;
        parser.header_limit(static_cast<std::uint32_t>(daemon.http.maxHeaderBytes));
        parser.body_limit(std::numeric_limits<std::uint64_t>::max());
        if (!feed(parser, input, true)) return 0;

        http::Request request;
        request.message.base() = parser.get().base();
        http::parseTarget(parser.get().target(), request);
        const auto match = daemon.router.match(request);
        const http::RouteOptions route = match.handler ? match.options : http::RouteOptions{};
        if (daemon.authorizer.admit(request, route)) return 0;  // refused: the connection closes
        const std::uint64_t limit = http::resolveBodyLimit(route.bodyLimit, daemon.http);
        if (auto length = parser.content_length(); length && *length > limit) return 0;  // 413
        parser.body_limit(limit);
        if (!feed(parser, input, false)) return 0;

        request.message = parser.release();
        if (auto answer = http::unmatchedResponse(request, match)) {
            if (answer->body().empty()) __builtin_trap();  // every error carries Azure's envelope
        } else if (match.pattern.empty()) {
            __builtin_trap();  // a handler without the pattern it was added with
        }
        if (!request.message.keep_alive()) return 0;
    }
    return 0;
}
