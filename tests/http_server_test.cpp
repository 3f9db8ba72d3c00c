// The HTTP server's per-route body limits, over TCP: upload routes take bodies
// the default limit refuses, every limit answers 413 with the Azure envelope,
// and "Expect: 100-continue" gets its interim response. And the admission
// hook, which refuses a request from its header before the body is read.

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <spdlog/spdlog.h>

#include "sessiond/config.hpp"
#include "sessiond/http/multipart.hpp"
#include "sessiond/http/server.hpp"
#include "support/captured_log.hpp"
#include "support/http_client.hpp"
#include "support/raw_http.hpp"

using namespace sessiond;
using sessiond::testing::HttpClient;
using sessiond::testing::HttpResult;
using sessiond::testing::RawConnection;
namespace beast_http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t kDefaultLimit = 64 * 1024;
constexpr std::size_t kUploadLimit = 1024 * 1024;
const std::string kBoundary = "7d1f0c2a9e3b4c5d";
const std::string kMultipartType = "multipart/form-data; boundary=" + kBoundary;

// A python-requests style upload of `size` bytes.
std::string multipartBody(std::size_t size, const std::string& filename = "data.bin") {
    std::string content(size, '\0');
    for (std::size_t i = 0; i < size; ++i) content[i] = static_cast<char>(i * 7 % 251);
    return sessiond::testing::multipartForm(filename, content, kBoundary);
}

class HttpServerTest : public ::testing::Test {
protected:
    void SetUp() override {
        config.maxBodyBytes = kDefaultLimit;
        config.maxUploadBytes = kUploadLimit;
        config.readTimeout = std::chrono::seconds(5);
        // The upload route answers with what it parsed; the JSON route with the body size.
        router.add(
            beast_http::verb::post, "/upload",
            [this](http::Request& request, http::Responder respond) {
                ++handled;
                auto parsed = http::parseMultipart(request.message[beast_http::field::content_type],
                                                   request.message.body());
                if (!parsed.ok())
                    return respond(http::errorResponse(beast_http::status::bad_request, "BadMultipart", parsed.error));
                const auto* file = http::findUploadFile(parsed.parts);
                if (!file) return respond(http::errorResponse(beast_http::status::bad_request, "NoFile", "no file"));
                respond(http::jsonResponse(beast_http::status::ok,
                                           {{"filename", file->filename.value_or("")}, {"size", file->content.size()}}));
            },
            http::RouteOptions{http::BodyLimit::Upload});
        router.add(beast_http::verb::post, "/json", [this](http::Request& request, http::Responder respond) {
            ++handled;
            respond(http::jsonResponse(beast_http::status::ok, {{"size", request.message.body().size()}}));
        });
        server.emplace(io, config, router, admission);
        server->listen("127.0.0.1", 0);
        port = server->port();
        work.emplace(io.get_executor());
        thread = std::thread([this] { io.run(); });
    }

    void TearDown() override {
        // Let lingering connections finish (or the deadline pass) so nothing is
        // left to run when the io_context goes.
        std::promise<void> drained;
        boost::asio::post(io, [this, &drained] { server->stop(3s, [&drained] { drained.set_value(); }); });
        drained.get_future().wait_for(5s);
        work.reset();
        io.stop();
        thread.join();
        server.reset();
    }

    void expectTooLarge(const HttpResult& r, const std::string& limitText) {
        EXPECT_EQ(r.status, 413) << r.body;
        auto body = r.json();
        ASSERT_TRUE(body.is_object()) << r.body;
        EXPECT_EQ(body["error"]["code"], "RequestBodyTooLarge");
        EXPECT_EQ(r.header("x-ms-error-code"), "RequestBodyTooLarge");
        EXPECT_NE(body["error"]["message"].get<std::string>().find(limitText), std::string::npos) << r.body;
    }

    static std::string chunked(const std::string& body, std::size_t chunkSize) {
        std::string out;
        for (std::size_t i = 0; i < body.size(); i += chunkSize) {
            std::string chunk = body.substr(i, chunkSize);
            char size[32];
            std::snprintf(size, sizeof size, "%zx\r\n", chunk.size());
            out += size + chunk + "\r\n";
        }
        return out + "0\r\n\r\n";
    }

    boost::asio::io_context io;
    HttpConfig config;
    http::Router router;
    http::Admission admission;  // none unless a derived fixture sets one
    std::atomic<int> handled{0};  // handler calls
    std::optional<http::HttpServer> server;
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
    std::thread thread;
    std::uint16_t port = 0;
};

}  // namespace

TEST(BodyLimits, ResolveAgainstTheConfig) {
    HttpConfig config;
    EXPECT_EQ(http::resolveBodyLimit(http::BodyLimit::Default, config), 8u << 20);
    EXPECT_EQ(http::resolveBodyLimit(http::BodyLimit::Upload, config), (128u << 20) + http::kUploadFramingBytes);
    config.maxBodyBytes = 1000;
    config.maxUploadBytes = 5000;
    EXPECT_EQ(http::resolveBodyLimit(http::BodyLimit::Default, config), 1000u);
    EXPECT_EQ(http::resolveBodyLimit(http::BodyLimit::Upload, config), 5000u + http::kUploadFramingBytes);
}

TEST_F(HttpServerTest, BodyBetweenTheLimitsIsAcceptedOnlyOnUploadRoutes) {
    std::string body = multipartBody(256 * 1024);
    HttpClient client(port);
    auto r = client.post("/upload?identifier=abcd", body, kMultipartType);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["size"], 256 * 1024);
    EXPECT_EQ(r.json()["filename"], "data.bin");
    // The same connection keeps serving.
    EXPECT_EQ(client.post("/json", "{}").status, 200);
    EXPECT_EQ(client.post("/upload", multipartBody(10), kMultipartType).status, 200);

    HttpClient other(port);
    expectTooLarge(other.post("/json", body, kMultipartType), std::to_string(kDefaultLimit));
    HttpClient again(port);
    EXPECT_EQ(again.post("/json", std::string(kDefaultLimit, 'x')).json()["size"], kDefaultLimit);
}

TEST_F(HttpServerTest, OverTheUploadLimitIs413NamingIt) {
    HttpClient client(port);
    // A file of exactly the limit fits, framing included.
    auto r = client.post("/upload", multipartBody(kUploadLimit), kMultipartType);
    ASSERT_EQ(r.status, 200) << r.body.substr(0, 200);
    EXPECT_EQ(r.json()["size"], kUploadLimit);

    HttpClient over(port);
    auto tooBig = over.post("/upload", multipartBody(kUploadLimit + http::kUploadFramingBytes), kMultipartType);
    expectTooLarge(tooBig, std::to_string(kUploadLimit));
    EXPECT_NE(tooBig.json()["error"]["message"].get<std::string>().find("upload"), std::string::npos);
    HttpClient after(port);
    EXPECT_EQ(after.post("/upload", multipartBody(1), kMultipartType).status, 200);
}

TEST_F(HttpServerTest, ChunkedBodiesAreHeldToTheRouteLimit) {
    std::string body = multipartBody(256 * 1024);
    {
        RawConnection connection(port);
        ASSERT_TRUE(connection.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: " + kMultipartType +
                                    "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body, 10000)));
        auto response = connection.readResponse(5s);
        ASSERT_TRUE(response);
        EXPECT_EQ(response->status, 200) << response->body;
        EXPECT_NE(response->body.find("262144"), std::string::npos) << response->body;
    }
    {
        RawConnection connection(port);
        connection.send("POST /json HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body, 10000));
        auto response = connection.readResponse(5s);
        ASSERT_TRUE(response);
        EXPECT_EQ(response->status, 413);
        EXPECT_NE(response->head.find("x-ms-error-code: RequestBodyTooLarge"), std::string::npos) << response->head;
        EXPECT_NE(response->body.find(std::to_string(kDefaultLimit)), std::string::npos) << response->body;
        EXPECT_TRUE(connection.waitForClose(5s));
    }
}

TEST_F(HttpServerTest, ExpectContinueGetsAnInterimResponse) {
    std::string body = multipartBody(200 * 1024);
    RawConnection connection(port);
    auto started = std::chrono::steady_clock::now();
    ASSERT_TRUE(connection.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: " + kMultipartType +
                                "\r\nContent-Length: " + std::to_string(body.size()) +
                                "\r\nExpect: 100-continue\r\n\r\n"));
    auto interim = connection.readUntil("\r\n\r\n", 900ms);
    ASSERT_TRUE(interim) << "no 100 Continue within 900 ms";
    EXPECT_EQ(*interim, "HTTP/1.1 100 Continue\r\n\r\n");
    EXPECT_LT(std::chrono::steady_clock::now() - started, 500ms);
    ASSERT_TRUE(connection.send(body));
    auto response = connection.readResponse(5s);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200) << response->body;

    // The connection stays usable: a small JSON request with Expect too.
    ASSERT_TRUE(connection.send("POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-Continue\r\n\r\n"));
    interim = connection.readUntil("\r\n\r\n", 900ms);
    ASSERT_TRUE(interim);
    EXPECT_EQ(*interim, "HTTP/1.1 100 Continue\r\n\r\n");
    ASSERT_TRUE(connection.send("{}"));
    response = connection.readResponse(5s);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
}

TEST_F(HttpServerTest, ExpectContinueOverTheLimitGetsOnly413) {
    RawConnection connection(port);
    ASSERT_TRUE(connection.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: " + kMultipartType +
                                "\r\nContent-Length: " + std::to_string(kUploadLimit * 2) +
                                "\r\nExpect: 100-continue\r\n\r\n"));
    auto response = connection.readResponse(900ms);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 413);
    EXPECT_NE(response->head.find("x-ms-error-code: RequestBodyTooLarge"), std::string::npos);
    EXPECT_TRUE(connection.waitForClose(5s));
}

TEST_F(HttpServerTest, UnknownRoutesAndWrongMethodsStillAnswer404And405) {
    HttpClient client(port);
    EXPECT_EQ(client.get("/nothing").status, 404);
    auto wrong = client.get("/upload");
    EXPECT_EQ(wrong.status, 405);
    EXPECT_EQ(wrong.header("Allow"), "POST");
    // A body sent to an unknown route is read (default limit) and the
    // connection kept.
    EXPECT_EQ(client.post("/nothing", std::string(1000, 'x')).status, 404);
    EXPECT_EQ(client.request(beast_http::verb::put, "/upload", std::string(1000, 'x')).status, 405);
    EXPECT_EQ(client.post("/json", "{}").status, 200);
    // Unknown routes do not get the upload limit.
    HttpClient other(port);
    expectTooLarge(other.post("/nothing", std::string(kDefaultLimit + 1, 'x')), std::to_string(kDefaultLimit));

    RawConnection connection(port);
    ASSERT_TRUE(connection.send("POST /nothing HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"));
    auto interim = connection.readUntil("\r\n\r\n", 900ms);
    ASSERT_TRUE(interim);
    EXPECT_EQ(*interim, "HTTP/1.1 100 Continue\r\n\r\n");
    ASSERT_TRUE(connection.send("{}"));
    auto response = connection.readResponse(5s);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 404);
}

TEST_F(HttpServerTest, UnknownMethodsAreAnswered) {
    RawConnection connection(port);
    ASSERT_TRUE(connection.send("FROB /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"));
    auto response = connection.readResponse(5s);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 405);
    ASSERT_TRUE(connection.send("FROB /nothing HTTP/1.1\r\nHost: t\r\n\r\n"));
    response = connection.readResponse(5s);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 404);
    EXPECT_NE(response->body.find("FROB"), std::string::npos);
}

namespace {

// Admits requests with "Authorization: Bearer good" and refuses the others
// with 401, as an API-key check would; records what it was shown.
class AdmissionTest : public HttpServerTest {
protected:
    struct Seen {
        std::string path;
        std::string identifier;
        http::BodyLimit bodyLimit;
    };

    void SetUp() override {
        admission = [this](http::Request& request, const http::RouteOptions& route) -> std::optional<http::Response> {
            {
                std::lock_guard lock(mutex);
                const std::string* identifier = request.queryValue("identifier");
                seen.push_back({request.path, identifier ? *identifier : "", route.bodyLimit});
            }
            if (request.message[beast_http::field::authorization] == "Bearer good") return std::nullopt;
            return http::errorResponse(beast_http::status::unauthorized, "Unauthorized", "A valid API key is required.");
        };
        HttpServerTest::SetUp();
    }

    std::vector<Seen> seenSoFar() {
        std::lock_guard lock(mutex);
        return seen;
    }

    std::mutex mutex;
    std::vector<Seen> seen;
};

}  // namespace

TEST_F(AdmissionTest, RefusalComesInsteadOf100ContinueAndTheBodyIsNeverRead) {
    // Within the upload limit, so only the admission can refuse it.
    RawConnection connection(port);
    auto started = std::chrono::steady_clock::now();
    ASSERT_TRUE(connection.send("POST /upload?identifier=abc HTTP/1.1\r\nHost: t\r\nContent-Type: " + kMultipartType +
                                "\r\nContent-Length: " + std::to_string(kUploadLimit / 2) +
                                "\r\nExpect: 100-continue\r\n\r\n"));
    auto response = connection.readResponse(900ms);
    ASSERT_TRUE(response) << "no answer before the body was sent";
    EXPECT_LT(std::chrono::steady_clock::now() - started, 500ms);
    EXPECT_EQ(response->status, 401) << response->head;
    EXPECT_NE(response->head.find("x-ms-error-code: Unauthorized"), std::string::npos) << response->head;
    EXPECT_NE(response->head.find("Connection: close"), std::string::npos) << response->head;
    EXPECT_TRUE(connection.waitForClose(5s));
    EXPECT_EQ(handled, 0);
    auto seen = seenSoFar();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].path, "/upload");
    EXPECT_EQ(seen[0].identifier, "abc");
}

TEST_F(AdmissionTest, RefusalComesBeforeTheBodyLimit) {
    // 10 MiB declared (ten times the upload limit) and none of it sent: the
    // answer is the admission's 401, not 413.
    RawConnection connection(port);
    ASSERT_TRUE(connection.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: " + kMultipartType +
                                "\r\nContent-Length: " + std::to_string(10 << 20) + "\r\n\r\n"));
    auto response = connection.readResponse(900ms);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 401) << response->head;
    // A client that sends its body anyway gets no more than that: the
    // connection ends.
    connection.send(std::string(256 * 1024, 'x'));
    EXPECT_TRUE(connection.waitForClose(5s));
    EXPECT_EQ(handled, 0);

    // Admitted, the same request meets the body limit as before.
    RawConnection admitted(port);
    ASSERT_TRUE(admitted.send("POST /upload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer good\r\nContent-Type: " +
                              kMultipartType + "\r\nContent-Length: " + std::to_string(10 << 20) + "\r\n\r\n"));
    response = admitted.readResponse(900ms);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 413) << response->head;
}

TEST_F(AdmissionTest, RefusalWithoutABodyKeepsTheConnection) {
    RawConnection connection(port);
    ASSERT_TRUE(connection.send("GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n"));
    auto response = connection.readResponse(5s);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 401);
    EXPECT_EQ(response->head.find("Connection: close"), std::string::npos) << response->head;
    ASSERT_TRUE(connection.send("POST /json HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer good\r\nContent-Length: 2\r\n\r\n{}"));
    response = connection.readResponse(5s);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200) << response->body;
    EXPECT_EQ(handled, 1);
}

TEST_F(AdmissionTest, SeesTheMatchedRoutesOptionsAndDefaultsOtherwise) {
    HttpClient refused(port);
    EXPECT_EQ(refused.post("/json", "{}").status, 401);

    // Admitted requests are served as without an admission.
    RawConnection connection(port);
    auto send = [&](const std::string& head, const std::string& body) {
        EXPECT_TRUE(connection.send(head + "Host: t\r\nAuthorization: Bearer good\r\nContent-Length: " +
                                    std::to_string(body.size()) + "\r\n\r\n" + body));
        auto response = connection.readResponse(5s);
        return response ? response->status : 0;
    };
    std::string upload = multipartBody(100);
    EXPECT_EQ(send("POST /upload HTTP/1.1\r\nContent-Type: " + kMultipartType + "\r\n", upload), 200);
    EXPECT_EQ(send("POST /json HTTP/1.1\r\n", "{}"), 200);
    EXPECT_EQ(send("GET /upload HTTP/1.1\r\n", ""), 405);  // the path exists, not with GET
    EXPECT_EQ(send("POST /nothing HTTP/1.1\r\n", "{}"), 404);
    EXPECT_EQ(handled, 2);

    auto seen = seenSoFar();
    ASSERT_EQ(seen.size(), 5u);
    std::vector<std::pair<std::string, http::BodyLimit>> expected = {{"/json", http::BodyLimit::Default},
                                                                     {"/upload", http::BodyLimit::Upload},
                                                                     {"/json", http::BodyLimit::Default},
                                                                     {"/upload", http::BodyLimit::Default},
                                                                     {"/nothing", http::BodyLimit::Default}};
    for (std::size_t i = 0; i < expected.size(); ++i) {
        EXPECT_EQ(seen[i].path, expected[i].first) << i;
        EXPECT_EQ(seen[i].bodyLimit, expected[i].second) << i << " " << seen[i].path;
    }
}

namespace {

using sessiond::testing::CapturedLog;

}  // namespace

TEST_F(AdmissionTest, RequestsAreLoggedWithoutTheirHeaders) {
    CapturedLog log;
    RawConnection connection(port);
    ASSERT_TRUE(connection.send("GET /nothing?identifier=logged HTTP/1.1\r\nHost: t\r\n"
                                "Authorization: Bearer sk-secret-refused\r\n\r\n"));
    auto response = connection.readResponse(5s);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 401);
    ASSERT_TRUE(connection.send("POST /json HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer good\r\n"
                                "X-Api-Key: sk-secret-header\r\nContent-Length: 2\r\n\r\n{}"));
    response = connection.readResponse(5s);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
    ASSERT_TRUE(connection.send("POST /json HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sk-secret-body\r\n"
                                "Content-Length: 100000\r\n\r\n"));
    response = connection.readResponse(5s);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 401);

    std::string text = log.text();
    // The requests are logged (method, target, status)...
    EXPECT_NE(text.find("GET /nothing?identifier=logged 401"), std::string::npos) << text;
    EXPECT_NE(text.find("POST /json 200"), std::string::npos) << text;
    EXPECT_NE(text.find("POST /json 401"), std::string::npos) << text;
    // ...their headers are not.
    EXPECT_EQ(text.find("sk-secret"), std::string::npos) << text;
    EXPECT_EQ(text.find("Bearer"), std::string::npos) << text;
}
