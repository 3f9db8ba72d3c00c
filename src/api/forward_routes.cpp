// Custom container pools (docs/custom-containers.md): every request under
// /pools/{pool}/ but the .management routes goes to the session's container,
// on its ingress.targetPort, with the path after the pool's endpoint and the
// query string as they came.

#include <string_view>

#include "sessiond/api/routes.hpp"
#include "route_groups.hpp"
#include "route_support.hpp"

namespace sessiond::api {

namespace {

// The raw target after "/pools/{pool}", starting with its "/"; empty when
// nothing follows the pool's own endpoint. Raw: the container gets the
// path as the client encoded it.
std::string targetAfterPool(std::string_view target) {
    std::size_t at = 0;
    for (int segment = 0; segment < 2; ++segment) {
        while (at < target.size() && target[at] == '/') ++at;
        while (at < target.size() && target[at] != '/' && target[at] != '?') ++at;
    }
    if (at >= target.size() || target[at] != '/') return "";
    return std::string(target.substr(at));
}

void connectToContainer(PoolManager& pools, boost::asio::io_context& io, http::Request& request,
                        http::UpstreamHandler onUpstream) {
    Pool* pool = pools.find(request.params.at("pool"));
    if (!pool || !pool->config().customContainer())
        return onUpstream(errorResponse(status::not_found, "SessionPoolNotFound",
                                        "There is no session pool named '" + request.params.at("pool") + "'."));
    std::optional<http::Response> refusal;
    auto identifier = sessionIdentifier(request, std::nullopt, [&refusal](http::Response r) { refusal = std::move(r); });
    if (!identifier) return onUpstream(std::move(*refusal));
    const std::uint16_t port = pool->config().container.targetPort;
    auto answered = std::make_shared<http::UpstreamHandler>(std::move(onUpstream));
    pool->withSession(
        *identifier,
        SessionWork{
            [&io, port, answered](Sandbox& sandbox, std::function<void()> finished) {
                sandbox.connect(port, [&io, port, answered, finished](Outcome<UniqueFd> connected) {
                    if (!connected.ok()) {
                        finished();
                        return (*answered)(errorResponse(status::bad_gateway, "ContainerUnreachable",
                                                         "The session's container accepts no connection on port " +
                                                             std::to_string(port) + ": " + connected.error));
                    }
                    boost::asio::ip::tcp::socket socket(io);
                    boost::system::error_code ec;
                    socket.assign(boost::asio::ip::tcp::v4(), connected.value.get(), ec);
                    if (ec) {
                        finished();
                        return (*answered)(errorResponse(status::bad_gateway, "ContainerUnreachable", ec.message()));
                    }
                    connected.value.release();
                    (*answered)(http::Upstream{std::move(socket), finished});
                });
            },
            [answered](PoolError error, const std::string& message) {
                (*answered)(poolErrorResponse(error, message));
            }});
}

}  // namespace

http::Forwarder containerForwarder(PoolManager& pools, boost::asio::io_context& io) {
    return [&pools, &io](http::Request& request) -> std::optional<http::Forward> {
        const auto segments = http::splitPath(request.path);
        if (segments.size() < 2 || segments[0] != "pools") return std::nullopt;
        Pool* pool = pools.find(segments[1]);
        if (!pool || !pool->config().customContainer()) return std::nullopt;
        if (segments.size() >= 3 && segments[2] == ".management") return std::nullopt;
        std::string target = targetAfterPool(request.message.target());
        if (target.empty()) return std::nullopt;
        request.params["pool"] = segments[1];
        return http::Forward{std::move(target), "/pools/{pool}/{path*}", {},
                             [&pools, &io](http::Request& header, http::UpstreamHandler onUpstream) {
                                 connectToContainer(pools, io, header, std::move(onUpstream));
                             }};
    };
}

}  // namespace sessiond::api
