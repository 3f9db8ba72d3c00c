// The program test container images run (tests/support/test_image.hpp): a
// small HTTP/1.1 server, linked statically so an image needs nothing else.
//
//   container-server [--port N] [--exit-after-ms N] [--start-delay-ms N] [--chatter N]
//
// --port (default 8080; 0 takes a free one) is bound on 0.0.0.0, numerically
// (a static binary cannot use glibc's resolver). Once listening it prints
// "listening PORT" on standard output. --exit-after-ms ends it with status 3
// that long after it started (0: at once, a container that exits);
// --start-delay-ms waits before listening (a slow starter); --chatter
// prints that many lines on standard output first (a chatty container).
//
// Routes: GET /hello, GET /info, POST /echo, GET /big?bytes=N,
// GET /status/{code}, GET /health, GET /ws (WebSocket echo), POST /exit,
// GET /headers, GET /fetch?host=IP&port=N (a GET from inside: egress),
// GET /interfaces; anything else is 404. One thread per connection, keep-alive.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

extern char** environ;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using nlohmann::json;

std::vector<std::string> gArgv;

// /big's bytes: position i holds 'a' + i % 26, so a client can check any slice.
char patternByte(std::uint64_t i) { return static_cast<char>('a' + i % 26); }

std::optional<std::uint64_t> parseNumber(std::string_view text) {
    if (text.empty() || text.size() > 19) return std::nullopt;
    std::uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return value;
}

std::string queryValue(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        auto amp = query.find('&');
        auto pair = query.substr(0, amp);
        auto eq = pair.find('=');
        if (pair.substr(0, eq) == name) return std::string(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return "";
}

struct Body {
    std::uint64_t bytes = 0;
    std::uint64_t fnv1a64 = 0xcbf29ce484222325ull;
};

// Reads the request body in pieces, so any size passes without being held.
Body drainBody(tcp::socket& socket, beast::flat_buffer& buffer, http::request_parser<http::empty_body>& header) {
    http::request_parser<http::buffer_body> parser(std::move(header));
    parser.body_limit((std::numeric_limits<std::uint64_t>::max)());
    Body body;
    char chunk[65536];
    while (!parser.is_done()) {
        parser.get().body().data = chunk;
        parser.get().body().size = sizeof chunk;
        beast::error_code ec;
        http::read(socket, buffer, parser, ec);
        if (ec == http::error::need_buffer) ec = {};
        if (ec) throw beast::system_error(ec);
        const std::size_t n = sizeof chunk - parser.get().body().size;
        for (std::size_t i = 0; i < n; ++i) {
            body.fnv1a64 ^= static_cast<unsigned char>(chunk[i]);
            body.fnv1a64 *= 0x100000001b3ull;
        }
        body.bytes += n;
    }
    return body;
}

// GET / of http://HOST:PORT/ (numeric), for tests of a session's egress:
// "answered BODY", "connected, no answer", or "blocked: why".
std::string fetch(const std::string& host, std::uint64_t port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) return "blocked: not an IPv4 address";
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::string("blocked: ") + std::strerror(errno);
    timeval timeout{3, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);  // bounds connect() too
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    std::string result;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        result = std::string("blocked: ") + std::strerror(errno);
    } else {
        const std::string request = "GET / HTTP/1.0\r\nHost: " + host + "\r\n\r\n";
        std::string answer;
        char buffer[4096];
        if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()))
            for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) answer.append(buffer, static_cast<std::size_t>(n));
        const auto body = answer.find("\r\n\r\n");
        result = body == std::string::npos ? "connected, no answer" : "answered " + answer.substr(body + 4);
    }
    ::close(fd);
    return result;
}

json info() {
    json env = json::object();
    for (char** e = environ; *e; ++e) {
        std::string entry(*e);
        auto eq = entry.find('=');
        env[entry.substr(0, eq)] = eq == std::string::npos ? "" : entry.substr(eq + 1);
    }
    char cwd[4096] = "";
    if (!::getcwd(cwd, sizeof cwd)) std::strcpy(cwd, "?");
    char hostname[256] = "";
    ::gethostname(hostname, sizeof hostname - 1);
    return {{"uid", ::getuid()}, {"gid", ::getgid()}, {"cwd", cwd}, {"env", env},
            {"argv", gArgv},     {"hostname", hostname}, {"pid", ::getpid()}};
}

void webSocketEcho(tcp::socket& socket, const http::request<http::empty_body>& request) {
    websocket::stream<tcp::socket&> ws(socket);
    ws.accept(request);
    beast::flat_buffer message;
    for (;;) {
        beast::error_code ec;
        ws.read(message, ec);
        if (ec) return;  // closed by the client, or gone
        ws.text(ws.got_text());
        ws.write(message.data());
        message.consume(message.size());
    }
}

void sendBig(tcp::socket& socket, unsigned version, bool keepAlive, std::uint64_t size) {
    http::response<http::empty_body> response{http::status::ok, version};
    response.set(http::field::content_type, "application/octet-stream");
    response.chunked(true);
    response.keep_alive(keepAlive);
    http::response_serializer<http::empty_body> serializer(response);
    http::write_header(socket, serializer);
    char chunk[65536];
    for (std::uint64_t sent = 0; sent < size;) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(sizeof chunk, size - sent));
        for (std::size_t i = 0; i < n; ++i) chunk[i] = patternByte(sent + i);
        asio::write(socket, http::make_chunk(asio::buffer(chunk, n)));
        sent += n;
    }
    asio::write(socket, http::make_chunk_last());
}

// Serves one connection's requests until it closes.
void serve(tcp::socket socket) {
    beast::flat_buffer buffer;
    for (;;) {
        http::request_parser<http::empty_body> header;
        header.header_limit(64 * 1024);
        // Checked against Content-Length as soon as the header is read.
        header.body_limit((std::numeric_limits<std::uint64_t>::max)());
        beast::error_code ec;
        http::read_header(socket, buffer, header, ec);
        if (ec) return;
        const auto request = header.get();  // a copy: drainBody takes the parser
        const std::string target(request.target());
        const auto query = target.find('?');
        const std::string path = target.substr(0, query);
        const std::string queryString = query == std::string::npos ? "" : target.substr(query + 1);
        const bool get = request.method() == http::verb::get, post = request.method() == http::verb::post;

        if (get && path == "/ws" && websocket::is_upgrade(request)) return webSocketEcho(socket, request);
        // As servers refuse a body they will not take: the answer at once, the
        // body never read, then a lingering close (read until the peer stops).
        if (post && path == "/refuse") {
            http::response<http::string_body> refused{http::status::payload_too_large, request.version()};
            refused.set(http::field::content_type, "text/plain");
            refused.body() = "refused before reading the body";
            refused.keep_alive(false);
            refused.prepare_payload();
            beast::error_code ignored;
            http::write(socket, refused, ignored);
            socket.shutdown(tcp::socket::shutdown_send, ignored);
            char scratch[16384];
            while (!ignored) socket.read_some(asio::buffer(scratch), ignored);
            return;
        }
        const Body body = drainBody(socket, buffer, header);

        http::response<http::string_body> response{http::status::ok, request.version()};
        response.keep_alive(request.keep_alive());
        // Codes as numbers: Beast's status enum lacks some (418).
        auto reply = [&](unsigned status, const std::string& type, std::string text) {
            response.result(status);
            response.set(http::field::content_type, type);
            response.body() = std::move(text);
        };
        bool exitAfter = false;
        if (get && path == "/hello") {
            reply(200, "text/plain", "hello");
        } else if (get && path == "/info") {
            reply(200, "application/json", info().dump());
        } else if (post && path == "/echo") {
            char hex[17];
            std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(body.fnv1a64));
            reply(200, "application/json", json{{"bytes", body.bytes}, {"fnv1a64", hex}}.dump());
        } else if (get && path == "/big") {
            auto size = parseNumber(queryValue(queryString, "bytes"));
            if (size) {
                sendBig(socket, request.version(), request.keep_alive(), *size);
                if (!request.keep_alive()) break;
                continue;
            }
            reply(400, "text/plain", "bytes=N is required");
        } else if (get && path.rfind("/status/", 0) == 0) {
            auto code = parseNumber(path.substr(8));
            if (code && *code >= 200 && *code <= 599 && *code != 204 && *code != 304) {
                reply(static_cast<unsigned>(*code), "text/plain", "status " + path.substr(8));
            } else if (code && (*code == 204 || *code == 304)) {
                response.result(static_cast<unsigned>(*code));  // no body, no length
            } else {
                reply(400, "text/plain", "a status from 200 to 599");
            }
        } else if (get && path == "/fetch") {
            auto port = parseNumber(queryValue(queryString, "port"));
            reply(200, "text/plain", port ? fetch(queryValue(queryString, "host"), *port) : "blocked: port=N is required");
        } else if (get && path == "/interfaces") {
            // Network interfaces the container sees, one per line.
            std::string names;
            std::FILE* dev = std::fopen("/proc/net/dev", "r");
            char line[512];
            for (int n = 0; dev && std::fgets(line, sizeof line, dev); ++n) {
                if (n < 2) continue;
                std::string entry(line);
                entry = entry.substr(0, entry.find(':'));
                entry.erase(0, entry.find_first_not_of(' '));
                names += entry + "\n";
            }
            if (dev) std::fclose(dev);
            reply(200, "text/plain", names);
        } else if (get && path == "/health") {
            reply(200, "application/json", R"({"message":"healthy"})");
        } else if (post && path == "/exit") {
            reply(200, "application/json", R"({"exiting":true})");
            response.keep_alive(false);
            exitAfter = true;
        } else if (get && path == "/headers") {
            json headers = json::object();
            for (const auto& field : request) {
                std::string name(field.name_string());
                for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                std::string value(field.value());
                headers[name] = headers.contains(name) ? headers[name].get<std::string>() + ", " + value : value;
            }
            reply(200, "application/json",
                  json{{"method", std::string(request.method_string())}, {"target", target}, {"headers", headers}}
                      .dump());
        } else {
            reply(404, "text/plain", "not found");
        }
        if (response.result_int() != 204 && response.result_int() != 304) response.prepare_payload();
        http::write(socket, response, ec);
        if (exitAfter) {
            socket.shutdown(tcp::socket::shutdown_send, ec);
            std::_Exit(0);
        }
        if (ec || !response.keep_alive()) break;
    }
    beast::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
}

[[noreturn]] void usage(const std::string& problem) {
    std::cerr << "container-server: " << problem
              << "\nusage: container-server [--port N] [--exit-after-ms N] [--start-delay-ms N] [--chatter N]\n";
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    gArgv.assign(argv, argv + argc);
    std::uint64_t port = 8080;
    std::optional<std::uint64_t> exitAfterMs, startDelayMs;
    std::uint64_t chatter = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string option = argv[i];
        if (i + 1 == argc) usage("missing value after " + option);
        auto value = parseNumber(argv[++i]);
        if (!value) usage("not a number after " + option + ": " + argv[i]);
        if (option == "--port" && *value <= 65535)
            port = *value;
        else if (option == "--exit-after-ms")
            exitAfterMs = value;
        else if (option == "--start-delay-ms")
            startDelayMs = value;
        else if (option == "--chatter")
            chatter = *value;
        else
            usage("unknown option or bad value: " + option);
    }
    // As a container's pid 1 it would ignore SIGTERM without a handler.
    std::signal(SIGTERM, [](int) { std::_Exit(0); });
    std::signal(SIGPIPE, SIG_IGN);
    if (exitAfterMs) {
        if (*exitAfterMs == 0) return 3;
        std::thread([ms = *exitAfterMs] {
            std::this_thread::sleep_for(std::chrono::milliseconds(ms));
            std::_Exit(3);
        }).detach();
    }
    for (std::uint64_t i = 0; i < chatter; ++i) std::cout << "chatter line " << i << "\n";
    std::cout.flush();
    if (startDelayMs) std::this_thread::sleep_for(std::chrono::milliseconds(*startDelayMs));

    asio::io_context io;
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::any(), static_cast<unsigned short>(port)));
    std::cout << "listening " << acceptor.local_endpoint().port() << std::endl;
    for (;;) {
        tcp::socket socket(io);
        beast::error_code ec;
        acceptor.accept(socket, ec);
        if (ec) {  // out of descriptors, say: let some connections end
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            continue;
        }
        std::thread([socket = std::move(socket)]() mutable {
            try {
                serve(std::move(socket));
            } catch (const std::exception&) {
                // The client went away mid-request: only its connection ends.
            }
        }).detach();
    }
}
