#pragma once
// A small blocking HTTP/1.1 client for tests, on Boost.Beast.

#include <string>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

namespace sessiond::testing {

struct HttpResult {
    int status = 0;
    std::string body;
    boost::beast::http::fields headers;
    nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
    std::string header(const std::string& name) const {
        auto it = headers.find(name);
        return it == headers.end() ? "" : std::string(it->value());
    }
};

inline constexpr const char* kFormBoundary = "sessiond-test-boundary-7f3a";

// A multipart/form-data body with one part named "file", as python-requests
// writes an upload.
inline std::string multipartForm(const std::string& filename, const std::string& content,
                                 const std::string& boundary = kFormBoundary,
                                 const std::string& partType = "application/octet-stream") {
    return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename +
           "\"\r\nContent-Type: " + partType + "\r\n\r\n" + content + "\r\n--" + boundary + "--\r\n";
}

class HttpClient {
public:
    explicit HttpClient(std::uint16_t port, std::string host = "127.0.0.1") : port_(port), host_(std::move(host)) {}

    // Sends "Authorization: Bearer KEY" with every request from now on.
    HttpClient& withKey(std::string key) {
        key_ = std::move(key);
        return *this;
    }

    HttpResult request(boost::beast::http::verb method, const std::string& target, const std::string& body = "",
                       const std::string& contentType = "application/json") {
        namespace http = boost::beast::http;
        ensureConnected();
        http::request<http::string_body> req{method, target, 11};
        req.set(http::field::host, host_);
        if (!key_.empty()) req.set(http::field::authorization, "Bearer " + key_);
        if (!body.empty() || method == http::verb::post) {
            if (!contentType.empty()) req.set(http::field::content_type, contentType);
            req.body() = body;
            req.prepare_payload();
        }
        http::write(*stream_, req);
        boost::beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(256u << 20);
        http::read(*stream_, buffer, parser);
        auto res = parser.release();
        HttpResult out;
        out.status = res.result_int();
        out.body = res.body();
        out.headers = res.base();
        if (!res.keep_alive()) stream_.reset();
        return out;
    }

    HttpResult get(const std::string& target) { return request(boost::beast::http::verb::get, target); }
    HttpResult post(const std::string& target, const std::string& body,
                    const std::string& contentType = "application/json") {
        return request(boost::beast::http::verb::post, target, body, contentType);
    }

    // POSTs Azure's 2024-02-02-preview execute body for `code`.
    HttpResult execute(const std::string& pool, const std::string& identifier, const std::string& code,
                       int timeoutSeconds = 0) {
        nlohmann::json properties = {{"codeInputType", "inline"}, {"executionType", "synchronous"}, {"code", code}};
        if (timeoutSeconds) properties["timeoutInSeconds"] = timeoutSeconds;
        return post("/pools/" + pool + "/code/execute?identifier=" + identifier + "&api-version=2024-02-02-preview",
                    nlohmann::json{{"properties", properties}}.dump());
    }

    // POSTs `content` as the multipart upload of `filename` to `target`.
    HttpResult upload(const std::string& target, const std::string& filename, const std::string& content,
                      const std::string& partType = "application/octet-stream") {
        return post(target, multipartForm(filename, content, kFormBoundary, partType),
                    std::string("multipart/form-data; boundary=") + kFormBoundary);
    }

    // The etag of the pool's session for `identifier`, "" when it has none.
    std::string sessionEtag(const std::string& pool, const std::string& identifier) {
        auto r = post("/pools/" + pool + "/.management/getSession?api-version=2025-02-02-preview&identifier=" +
                          identifier,
                      "");
        return r.status == 200 ? nlohmann::json::parse(r.body)["etag"].get<std::string>() : "";
    }

    // Opens a WebSocket at `target` on a connection of its own, sends `text`
    // and returns the first message that comes back.
    std::string webSocketRoundTrip(const std::string& target, const std::string& text) {
        namespace websocket = boost::beast::websocket;
        boost::asio::ip::tcp::socket socket(io_);
        socket.connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address(host_), port_));
        websocket::stream<boost::asio::ip::tcp::socket> ws(std::move(socket));
        ws.handshake(host_, target);
        ws.write(boost::asio::buffer(text));
        boost::beast::flat_buffer buffer;
        ws.read(buffer);
        ws.close(websocket::close_code::normal);
        return boost::beast::buffers_to_string(buffer.data());
    }

    void disconnect() { stream_.reset(); }

private:
    void ensureConnected() {
        if (stream_) return;
        stream_ = std::make_unique<boost::beast::tcp_stream>(io_);
        stream_->connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address(host_), port_));
    }

    boost::asio::io_context io_;
    std::uint16_t port_;
    std::string host_;
    std::string key_;
    std::unique_ptr<boost::beast::tcp_stream> stream_;
};

}  // namespace sessiond::testing
