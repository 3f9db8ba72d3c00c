// The HTTP server and the Azure routes, end to end over TCP, on a fake backend:
// request and response shapes, and a clear error for every kind of bad input.

#include <gtest/gtest.h>

#include "support/fake_backend.hpp"
#include "support/http_client.hpp"
#include "support/raw_http.hpp"
#include "support/server_fixture.hpp"

using namespace sessiond;
using sessiond::testing::FakeBackend;
using sessiond::testing::HttpClient;
using sessiond::testing::HttpResult;
namespace beast_http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

class ApiTest : public ::testing::Test {
protected:
    void SetUp() override {
        config.http.maxBodyBytes = 64 * 1024;
        config.http.maxConnections = 8;
        PoolConfig pool;
        pool.name = "default";
        pool.readySessionInstances = 1;
        pool.maxConcurrentSessions = 2;
        config.pools = {pool};
        server.start(config, [](boost::asio::io_context& io) { return std::make_unique<FakeBackend>(io); });
    }

    void expectError(const HttpResult& r, int status, const std::string& code) {
        EXPECT_EQ(r.status, status) << r.body;
        auto body = r.json();
        ASSERT_TRUE(body.is_object()) << r.body;
        EXPECT_EQ(body["error"]["code"], code) << r.body;
        EXPECT_FALSE(body["error"]["message"].get<std::string>().empty());
        EXPECT_EQ(r.header("x-ms-error-code"), code);
    }

    Config config;
    sessiond::testing::ServerFixture server;
};

const std::string kTarget = "/pools/default/code/execute?identifier=abcd-1&api-version=2024-02-02-preview";

}  // namespace

TEST_F(ApiTest, ExecuteAnswersInAzuresShape) {
    HttpClient client(server.port());
    auto r = client.execute("default", "abcd-1", "print(1)");
    ASSERT_EQ(r.status, 200) << r.body;
    auto body = r.json();
    EXPECT_EQ(body["$id"], "1");
    auto& p = body["properties"];
    EXPECT_EQ(p["status"], "Success");
    EXPECT_EQ(p["stdout"], "print(1)");
    EXPECT_EQ(p["stderr"], "");
    EXPECT_TRUE(p.contains("result"));
    EXPECT_EQ(p["result"], p["executionResult"]);
    EXPECT_TRUE(p["executionTimeInMilliseconds"].is_number_integer());
    EXPECT_NE(r.header("Content-Type").find("application/json"), std::string::npos);
}

TEST_F(ApiTest, KeepAliveServesManyRequestsOnOneConnection) {
    HttpClient client(server.port());
    for (int i = 0; i < 20; ++i) ASSERT_EQ(client.get("/healthz").status, 200);
    EXPECT_EQ(client.get("/healthz").json()["status"], "ok");
}

TEST_F(ApiTest, IdentifierMayComeFromTheBodyAndSlashesCollapse) {
    HttpClient client(server.port());
    auto r = client.post("//pools//default/code/execute?api-version=2024-02-02-preview",
                         R"({"properties":{"identifier":"from-body","pythonCode":"1"}})");
    EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(ApiTest, PoolStatusCountsEachState) {
    HttpClient client(server.port());
    ASSERT_TRUE(server.waitFor([&] { return server.counts("default").unallocated == 1; }, 5s));
    client.execute("default", "abcd-1", "1");
    ASSERT_TRUE(server.waitFor([&] { return server.counts("default").unallocated == 1; }, 5s));
    auto r = client.get("/pools/default");
    ASSERT_EQ(r.status, 200);
    auto sessions = r.json()["properties"]["sessions"];
    EXPECT_EQ(sessions["allocated"], 1);
    EXPECT_EQ(sessions["unallocated"], 1);
    EXPECT_EQ(sessions["pending"], 0);
    EXPECT_EQ(r.json()["properties"]["scaleConfiguration"]["maxConcurrentSessions"], 2);
    EXPECT_EQ(client.get("/pools").json()["value"].size(), 1u);
}

TEST_F(ApiTest, BadInputGetsTheErrorEnvelope) {
    HttpClient client(server.port());
    expectError(client.post(kTarget, "{\"properties\":"), 400, "SessionRequestValidationFailed");
    expectError(client.post(kTarget, R"({"properties":{"codeInputType":"inline"}})"), 400, "SessionPropertiesMissing");
    expectError(client.post(kTarget, R"({"properties":{"code":"1"}})", "text/plain"), 415, "UnsupportedMediaType");
    expectError(client.execute("nopool", "abcd-1", "1"), 404, "SessionPoolNotFound");
    expectError(client.get("/no/such/route"), 404, "NotFound");
    auto wrongMethod = client.get(kTarget);
    expectError(wrongMethod, 405, "MethodNotAllowed");
    EXPECT_EQ(wrongMethod.header("Allow"), "POST");
    expectError(client.execute("default", "abc", "1"), 400, "SessionRequestValidationFailed");
    expectError(client.execute("default", "bad%20id%20here", "1"), 400, "SessionRequestValidationFailed");
    expectError(client.post("/pools/default/code/execute", R"({"properties":{"code":"1"}})"), 400,
                "SessionRequestValidationFailed");
    expectError(client.execute("default", "abcd-1", "1", -5), 400, "SessionRequestValidationFailed");
    // After all that, the same connection and the daemon still serve.
    EXPECT_EQ(client.execute("default", "abcd-1", "1").status, 200);
}

TEST_F(ApiTest, OversizeBodyIs413AndTheServerKeepsServing) {
    HttpClient client(server.port());
    std::string huge(128 * 1024, 'x');
    auto r = client.post(kTarget, R"({"properties":{"code":")" + huge + "\"}}");
    expectError(r, 413, "RequestBodyTooLarge");
    HttpClient again(server.port());
    EXPECT_EQ(again.execute("default", "abcd-1", "1").status, 200);
}

TEST_F(ApiTest, OversizeHeadersAre431) {
    HttpClient client(server.port());
    boost::beast::http::request<boost::beast::http::string_body> req;
    auto r = client.get("/healthz?x=" + std::string(32 * 1024, 'a'));
    expectError(r, 431, "RequestHeadersTooLarge");
}

TEST_F(ApiTest, PastTheCapIs404WithTheEnvelope) {
    HttpClient client(server.port());
    EXPECT_EQ(client.execute("default", "sess-1", "1").status, 200);
    EXPECT_EQ(client.execute("default", "sess-2", "1").status, 200);
    expectError(client.execute("default", "sess-3", "1"), 404, "SessionPoolCapacityExceeded");
    EXPECT_EQ(client.execute("default", "sess-1", "1").status, 200);
}

TEST_F(ApiTest, ConnectionsBeyondTheLimitAreRefused) {
    std::vector<std::unique_ptr<HttpClient>> clients;
    for (int i = 0; i < 8; ++i) {
        clients.push_back(std::make_unique<HttpClient>(server.port()));
        ASSERT_EQ(clients.back()->get("/healthz").status, 200);
    }
    HttpClient extra(server.port());
    expectError(extra.get("/healthz"), 503, "TooManyConnections");
    clients.pop_back();
    // The freed slot is usable again.
    ASSERT_TRUE(server.waitFor([&] { return true; }, 100ms));
    std::this_thread::sleep_for(100ms);
    HttpClient later(server.port());
    EXPECT_EQ(later.get("/healthz").status, 200);
}

TEST_F(ApiTest, SessionsCanBeReadListedDeletedAndStopped) {
    HttpClient client(server.port());
    const std::string q = "?identifier=abcd-1&api-version=2025-02-02-preview";
    expectError(client.get("/pools/default/session" + q), 400, "SessionWithIdentifierNotFound");
    ASSERT_EQ(client.execute("default", "abcd-1", "1").status, 200);

    auto session = client.get("/pools/default/session" + q);
    ASSERT_EQ(session.status, 200) << session.body;
    auto body = session.json();
    EXPECT_EQ(body["identifier"], "abcd-1");
    EXPECT_FALSE(body["etag"].get<std::string>().empty());
    EXPECT_EQ(body["expireAt"], body["expiresAt"]);
    EXPECT_GT(body["expireAt"].get<std::string>(), body["lastAccessedAt"].get<std::string>());

    auto managed = client.post("/pools/default/.management/getSession" + q, "");
    EXPECT_EQ(managed.json()["identifier"], "abcd-1") << managed.body;

    for (const std::string route : {"listSessions", ".management/listSessions"}) {
        auto listed = route == "listSessions" ? client.get("/pools/default/" + route)
                                              : client.post("/pools/default/" + route + "?skip=0", "");
        ASSERT_EQ(listed.status, 200) << listed.body;
        auto list = listed.json();
        ASSERT_EQ(list["value"].size(), 1u) << listed.body;
        EXPECT_EQ(list["value"], list["sessions"]);
        EXPECT_EQ(list["count"], 1);
        EXPECT_TRUE(list["nextLink"].is_null());
        EXPECT_EQ(list["value"][0]["identifier"], "abcd-1");
    }
    expectError(client.get("/pools/default/listSessions?skip=-1"), 400, "SessionRequestValidationFailed");

    // A deleted identifier is a fresh session on its next use.
    auto first = client.execute("default", "abcd-1", "x").json()["properties"]["result"];
    auto deleted = client.request(beast_http::verb::delete_, "/pools/default/session" + q);
    EXPECT_EQ(deleted.status, 204);
    expectError(client.request(beast_http::verb::delete_, "/pools/default/session" + q), 400,
                "SessionWithIdentifierNotFound");
    auto fresh = client.execute("default", "abcd-1", "x").json()["properties"]["result"];
    EXPECT_NE(fresh["sandbox"], first["sandbox"]);
    EXPECT_EQ(fresh["count"], 1);

    auto stopped = client.post("/pools/default/.management/stopSession" + q, "");
    EXPECT_EQ(stopped.status, 200);
    EXPECT_EQ(stopped.body, "Session abcd-1 in session pool default stopped.");
    EXPECT_EQ(stopped.header("Content-Type").rfind("text/plain", 0), 0u);
    expectError(client.post("/pools/default/.management/stopSession" + q, ""), 400, "SessionWithIdentifierNotFound");
}

TEST_F(ApiTest, LegacyRoutesAnswerFlat) {
    HttpClient client(server.port());
    // LlamaIndexTS: identifier and pythonCode in the body, flat response.
    auto r = client.post("/pools/default/python/execute?api-version=2024-02-02-preview",
                         R"({"properties":{"identifier":"legacy-1","codeInputType":"inline",)"
                         R"("executionType":"synchronous","pythonCode":"1+1"}})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["status"], "Success");
    EXPECT_EQ(r.json()["stdout"], "1+1");
    EXPECT_TRUE(r.json().contains("result"));
    EXPECT_FALSE(r.json().contains("properties"));

    EXPECT_EQ(client.post("/pools/default/execute?identifier=legacy-1", R"({"code":"2"})").json()["properties"]["status"],
              "Success");

    const std::string form = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello\r\n--b--\r\n";
    auto uploaded = client.post("/pools/default/python/uploadFile?identifier=legacy-1", form, "multipart/form-data; boundary=b");
    ASSERT_EQ(uploaded.status, 200) << uploaded.body;
    EXPECT_EQ(uploaded.json()["$values"][0]["filename"], "a.txt");
    EXPECT_EQ(uploaded.json()["$values"][0]["size"], 5);
    auto files = client.get("/pools/default/python/files?identifier=legacy-1");
    EXPECT_EQ(files.json()["$values"][0]["filename"], "a.txt") << files.body;
    auto content = client.get("/pools/default/python/downloadFile?identifier=legacy-1&filename=a.txt");
    EXPECT_EQ(content.body, "hello");
}

TEST_F(ApiTest, AsynchronousExecutionsArePolled) {
    HttpClient client(server.port());
    const std::string q = "?identifier=async-1&api-version=2024-10-02-preview";
    auto started = client.post("/pools/default/executions" + q,
                               R"({"codeInputType":"Inline","executionType":"Asynchronous","code":"6*7","timeoutInSeconds":60})");
    ASSERT_EQ(started.status, 202) << started.body;
    const std::string id = started.header("operation-id");
    ASSERT_FALSE(id.empty());
    EXPECT_EQ(started.json()["id"], id);
    EXPECT_EQ(started.json()["status"], "Running");
    const std::string location = started.header("Operation-Location");
    EXPECT_EQ(location, "/pools/default/executions/" + id + q);

    HttpResult polled;
    ASSERT_TRUE(server.waitFor(
        [&] {
            polled = client.get(location);
            return polled.json()["status"] != "Running";
        },
        5s));
    EXPECT_EQ(polled.status, 200);
    EXPECT_EQ(polled.json()["status"], "Succeeded");
    EXPECT_EQ(polled.json()["executionType"], "Asynchronous");
    EXPECT_EQ(polled.json()["result"]["stdout"], "6*7");

    // An identifier with characters that mean something in a URL is encoded.
    auto odd = client.post("/pools/default/executions?identifier=a%23b%26c%25d%24&api-version=2024-10-02-preview",
                           R"({"executionType":"Asynchronous","code":"odd"})");
    ASSERT_EQ(odd.status, 202) << odd.body;
    EXPECT_EQ(odd.header("Operation-Location"), "/pools/default/executions/" + odd.header("operation-id") +
                                                    "?identifier=a%23b%26c%25d%24&api-version=2024-10-02-preview");
    ASSERT_TRUE(server.waitFor([&] { return client.get(odd.header("Operation-Location")).json()["status"] == "Succeeded"; }, 5s));
    EXPECT_EQ(client.get(odd.header("Operation-Location")).json()["identifier"], "a#b&c%d$");

    // Synchronous ones can be read back too; others' ids and identifiers cannot.
    auto sync = client.post("/pools/default/executions" + q, R"({"code":"1"})");
    EXPECT_EQ(client.get("/pools/default/executions/" + sync.header("operation-id") + q).json()["status"], "Succeeded");
    expectError(client.get("/pools/default/executions/" + id + "?identifier=other-1"), 404, "ExecutionNotFound");
    expectError(client.get("/pools/default/executions/nope" + q), 404, "ExecutionNotFound");
    expectError(client.post("/pools/default/code/execute" + q, R"({"executionType":"Asynchronous","code":"1"})"), 400,
                "SessionRequestNotSupported");
}

TEST_F(ApiTest, AHeadAnswerHasNoBodySoTheConnectionGoesOn) {
    sessiond::testing::RawConnection connection(server.port());
    ASSERT_TRUE(connection.send("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto head = connection.readResponse(2s, false);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->status, 405);
    EXPECT_NE(head->head.find("Allow: GET"), std::string::npos) << head->head;
    ASSERT_TRUE(connection.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto next = connection.readResponse(2s);
    ASSERT_TRUE(next);
    EXPECT_EQ(next->status, 200) << next->head;
    EXPECT_EQ(nlohmann::json::parse(next->body)["status"], "ok");
}
