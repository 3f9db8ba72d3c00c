// Uploads whose Content-Type is not multipart/form-data although the body is:
// Semantic Kernel Python sends every upload after its first execution with
// the "Content-Type: application/json" it left on its httpx client
// (tests/conformance/semantic_kernel_python.py replays it end to end).

#include <gtest/gtest.h>

#include "support/fake_backend.hpp"
#include "support/http_client.hpp"
#include "support/server_fixture.hpp"

using namespace sessiond;
using sessiond::testing::FakeBackend;
using sessiond::testing::HttpClient;

namespace {

class UploadContentTypeTest : public ::testing::Test {
protected:
    void SetUp() override {
        PoolConfig pool;
        pool.name = "default";
        pool.readySessionInstances = 1;
        pool.maxConcurrentSessions = 2;
        config.pools = {pool};
        server.start(config, [](boost::asio::io_context& io) { return std::make_unique<FakeBackend>(io); });
    }

    Config config;
    sessiond::testing::ServerFixture server;
};

// What httpx writes for files={"file": ("/mnt/data/prices.csv", ..., "application/octet-stream")}.
const std::string kHttpxBody =
    "--1604615ebd27454d1b39100dfd1eb17e\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"/mnt/data/prices.csv\"\r\n"
    "Content-Type: application/octet-stream\r\n\r\n"
    "item,price\napple,3\n\r\n"
    "--1604615ebd27454d1b39100dfd1eb17e--\r\n";

}  // namespace

TEST_F(UploadContentTypeTest, AMultipartBodyLabelledJsonIsReadByTheBoundaryItOpensWith) {
    HttpClient client(server.port());
    auto r = client.post("/pools/default/files/upload?identifier=sk-python-1&api-version=2024-02-02-preview", kHttpxBody,
                         "application/json");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["value"][0]["properties"]["filename"], "prices.csv");
    EXPECT_EQ(r.json()["value"][0]["properties"]["size"], 19);
    EXPECT_EQ(client.get("/pools/default/files/content/prices.csv?identifier=sk-python-1").body, "item,price\napple,3\n");

    // The other upload routes read it too.
    r = client.post("/pools/default/files?identifier=sk-python-1", kHttpxBody, "text/plain");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["name"], "prices.csv");
}

TEST_F(UploadContentTypeTest, BodiesThatAreNotMultipartAreStill415) {
    HttpClient client(server.port());
    const std::string target = "/pools/default/files/upload?identifier=sk-python-1";
    for (const std::string& body : {std::string(R"({"file":"prices.csv"})"), std::string("--\r\nno boundary\r\n"),
                                    std::string("--has spaces at the end \r\n"),
                                    // Opens like multipart, never closes.
                                    std::string("--b\r\nContent-Disposition: form-data; name=\"file\"; "
                                                "filename=\"a.csv\"\r\n\r\nunterminated")}) {
        auto r = client.post(target, body, "application/json");
        EXPECT_EQ(r.status, 415) << body << "\n" << r.body;
        EXPECT_EQ(r.header("x-ms-error-code"), "UnsupportedMediaType") << body;
    }
    // Nothing was written.
    EXPECT_EQ(client.get("/pools/default/files?identifier=sk-python-1").json()["value"].size(), 0u);
}
