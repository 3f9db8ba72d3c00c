// Pool administration through the API (GET/PUT/DELETE /pools/{name}) on a
// fake backend: Azure's property names, validation naming the field, updates
// that keep sessions, deletion that drains, and the state file that makes
// changes outlive the daemon.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>

#include <gtest/gtest.h>

#include "sessiond/pool/pool_store.hpp"
#include "sessiond/sandbox/namespace/namespace_backend.hpp"
#include "support/fake_backend.hpp"
#include "support/http_client.hpp"
#include "support/server_fixture.hpp"

using namespace sessiond;
using sessiond::testing::FakeBackend;
using sessiond::testing::HttpClient;
using sessiond::testing::HttpResult;
namespace beast_http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

class TemporaryDirectory {
public:
    TemporaryDirectory() {
        char pattern[] = "/tmp/sessiond-pool-admin-XXXXXX";
        path_ = mkdtemp(pattern);
    }
    ~TemporaryDirectory() { std::filesystem::remove_all(path_); }
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

class PoolAdminTest : public ::testing::Test {
protected:
    void SetUp() override {
        PoolConfig pool;
        pool.name = "default";
        pool.readySessionInstances = 1;
        config.pools = {pool};
        store.emplace(directory.path() / "pools.json");
        server.start(config, [](boost::asio::io_context& io) { return std::make_unique<FakeBackend>(io); }, &*store);
    }

    FakeBackend& backend() { return static_cast<FakeBackend&>(server.backend()); }
    std::size_t liveSandboxes() {
        return server.call([this] { return backend().live.size(); });
    }
    HttpResult put(const std::string& name, const nlohmann::json& body) {
        return HttpClient(server.port()).request(beast_http::verb::put, "/pools/" + name, body.dump());
    }
    HttpResult get(const std::string& name) { return HttpClient(server.port()).get("/pools/" + name); }
    HttpResult remove(const std::string& name) {
        return HttpClient(server.port()).request(beast_http::verb::delete_, "/pools/" + name);
    }
    bool waitForReady(const std::string& name, int ready) {
        return server.waitFor(
            [&] {
                auto r = get(name);
                return r.status == 200 && r.json()["properties"]["sessions"]["unallocated"] == ready;
            },
            5s);
    }
    void expectInvalid(const HttpResult& r, const std::string& field) {
        EXPECT_EQ(r.status, 400) << r.body;
        EXPECT_EQ(r.header("x-ms-error-code"), "InvalidSessionPoolProperties");
        auto body = r.json();
        EXPECT_EQ(body["error"]["target"], field) << r.body;
        EXPECT_EQ(body["error"]["message"].get<std::string>().rfind(field + ": ", 0), 0u) << r.body;
    }

    TemporaryDirectory directory;
    Config config;
    std::optional<PoolStore> store;
    sessiond::testing::ServerFixture server;
};

const nlohmann::json kAnalysisPool = {
    {"location", "local"},
    {"properties",
     {{"containerType", "PythonLTS"},
      {"poolManagementType", "Dynamic"},
      {"scaleConfiguration", {{"maxConcurrentSessions", 3}, {"readySessionInstances", 2}}},
      {"dynamicPoolConfiguration",
       {{"lifecycleConfiguration", {{"lifecycleType", "Timed"}, {"cooldownPeriodInSeconds", 600}}}}},
      {"sessionNetworkConfiguration", {{"status", "EgressDisabled"}}},
      {"resources", {{"cpu", 0.5}, {"memory", "1Gi"}}}}}};

}  // namespace

TEST_F(PoolAdminTest, PutCreatesAPoolThatServesSessions) {
    auto r = put("analysis", kAnalysisPool);
    ASSERT_EQ(r.status, 201) << r.body;
    auto pool = r.json();
    EXPECT_EQ(pool["name"], "analysis");
    EXPECT_EQ(pool["type"], "Microsoft.App/sessionPools");
    auto& p = pool["properties"];
    EXPECT_EQ(p["provisioningState"], "Succeeded");
    EXPECT_EQ(p["containerType"], "PythonLTS");
    EXPECT_EQ(p["scaleConfiguration"]["maxConcurrentSessions"], 3);
    EXPECT_EQ(p["scaleConfiguration"]["readySessionInstances"], 2);
    EXPECT_EQ(p["dynamicPoolConfiguration"]["lifecycleConfiguration"]["cooldownPeriodInSeconds"], 600);
    EXPECT_EQ(p["resources"]["memoryMiB"], 1024);
    EXPECT_DOUBLE_EQ(p["resources"]["cpu"].get<double>(), 0.5);

    ASSERT_TRUE(waitForReady("analysis", 2));
    auto list = HttpClient(server.port()).get("/pools").json()["value"];
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[0]["name"], "analysis");
    EXPECT_EQ(list[1]["name"], "default");

    auto executed = HttpClient(server.port()).execute("analysis", "session-1", "1+1");
    ASSERT_EQ(executed.status, 200) << executed.body;
    EXPECT_EQ(executed.json()["properties"]["stdout"], "1+1");
}

TEST_F(PoolAdminTest, PutAcceptsTheBarePropertiesAndTheLegacyCooldownShape) {
    auto r = put("legacy", {{"containerType", "Shell"},
                            {"dynamicPoolConfiguration", {{"executionType", "Timed"}, {"cooldownPeriodInSeconds", 45}}},
                            {"scaleConfiguration", {{"readySessionInstances", 0}}}});
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json()["properties"]["containerType"], "Shell");
    EXPECT_EQ(r.json()["properties"]["dynamicPoolConfiguration"]["lifecycleConfiguration"]["cooldownPeriodInSeconds"], 45);
}

TEST_F(PoolAdminTest, AGetCanBeEditedAndPutBack) {
    auto before = get("default").json();
    before["properties"]["scaleConfiguration"]["maxConcurrentSessions"] = 7;
    auto r = put("default", before);
    ASSERT_EQ(r.status, 200) << r.body;
    auto after = r.json();
    EXPECT_EQ(after["properties"]["scaleConfiguration"]["maxConcurrentSessions"], 7);
    after["properties"].erase("sessions");
    after["properties"].erase("totals");
    before["properties"].erase("sessions");
    before["properties"].erase("totals");
    EXPECT_EQ(after, before);
}

TEST_F(PoolAdminTest, InvalidPropertiesAreRefusedNamingTheFieldAndChangeNothing) {
    auto original = get("default").json()["properties"];
    original.erase("sessions");
    original.erase("totals");
    struct Case {
        nlohmann::json body;
        std::string field;
    };
    const std::vector<Case> cases = {
        {{{"properties", {{"scaleConfiguration", {{"maxConcurrentSessions", "ten"}}}}}},
         "properties.scaleConfiguration.maxConcurrentSessions"},
        {{{"properties", {{"scaleConfiguration", {{"maxConcurrentSessions", 0}}}}}},
         "properties.scaleConfiguration.maxConcurrentSessions"},
        {{{"properties", {{"scaleConfiguration", {{"readySessionInstances", -1}}}}}},
         "properties.scaleConfiguration.readySessionInstances"},
        {{{"properties", {{"dynamicPoolConfiguration", {{"lifecycleConfiguration", {{"lifecycleType", "Forever"}}}}}}}},
         "properties.dynamicPoolConfiguration.lifecycleConfiguration.lifecycleType"},
        {{{"properties",
           {{"dynamicPoolConfiguration",
             {{"lifecycleConfiguration", {{"lifecycleType", "Timed"}, {"maxAlivePeriodInSeconds", 3600}}}}}}}},
         "properties.dynamicPoolConfiguration.lifecycleConfiguration.maxAlivePeriodInSeconds"},
        {{{"properties", {{"dynamicPoolConfiguration", {{"lifecycleConfiguration", {{"cooldownPeriodInSeconds", 0}}}}}}}},
         "properties.dynamicPoolConfiguration.lifecycleConfiguration.cooldownPeriodInSeconds"},
        {{{"properties", {{"sessionNetworkConfiguration", {{"status", "EgressEverywhere"}}}}}},
         "properties.sessionNetworkConfiguration.status"},
        {{{"properties", {{"containerType", "NodeLTS"}}}}, "properties.containerType"},
        {{{"properties", {{"containerType", "CobolLTS"}}}}, "properties.containerType"},
        {{{"properties", {{"backend", "libvirt"}}}}, "properties.backend"},
        {{{"properties", {{"poolManagementType", "Manual"}}}}, "properties.poolManagementType"},
        {{{"properties", {{"resources", {{"memory", "lots"}}}}}}, "properties.resources.memory"},
        {{{"properties", {{"resources", {{"cpu", -1}}}}}}, "properties.resources.cpu"},
        {{{"properties", {{"scaleConfig", {{"maxConcurrentSessions", 3}}}}}}, "properties.scaleConfig"},
        {{{"properties", {{"name", "other"}}}}, "properties.name"},
        {{{"name", "other"}, {"properties", nlohmann::json::object()}}, "name"},
        {{{"tags", {{"a", "b"}}}, {"properties", nlohmann::json::object()}}, "tags"},
        {{{"properties", "PythonLTS"}}, "properties"},
        {nlohmann::json::array(), "(body)"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.body.dump());
        expectInvalid(put("default", c.body), c.field);
    }
    auto notJson = HttpClient(server.port()).request(beast_http::verb::put, "/pools/default", "{\"properties\":");
    expectInvalid(notJson, "(body)");
    expectInvalid(put("Bad_Name", {{"properties", nlohmann::json::object()}}), "properties.name");

    auto after = get("default").json()["properties"];
    after.erase("sessions");
    after.erase("totals");
    EXPECT_EQ(after, original);
    EXPECT_EQ(get("Bad_Name").status, 404);
    EXPECT_FALSE(std::filesystem::exists(directory.path() / "pools.json")) << "a refused change was stored";
}

TEST_F(PoolAdminTest, AnUpdateKeepsSessionsAndReplacesReadySandboxesOfAnOldTemplate) {
    ASSERT_TRUE(waitForReady("default", 1));
    HttpClient client(server.port());
    auto upload = client.upload("/pools/default/files?identifier=keeper&api-version=2024-10-02-preview", "kept.txt", "state");
    ASSERT_EQ(upload.status, 200) << upload.body;
    ASSERT_TRUE(waitForReady("default", 1));
    const auto readyBefore = server.call([this] {
        std::set<std::string> ids = backend().live;
        return ids;
    });

    // More ready sandboxes and a new memory size: the ready ones are replaced.
    auto r = put("default", {{"properties",
                              {{"scaleConfiguration", {{"readySessionInstances", 2}}},
                               {"resources", {{"memoryMiB", 512}}}}}});
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_TRUE(waitForReady("default", 2));
    const auto readyAfter = server.call([this] { return backend().live; });
    std::size_t kept = 0;
    for (const auto& id : readyBefore) kept += readyAfter.count(id);
    EXPECT_EQ(kept, 1u) << "only the session's sandbox should survive the new template";

    auto download = client.get("/pools/default/files/kept.txt/content?identifier=keeper&api-version=2024-10-02-preview");
    EXPECT_EQ(download.status, 200) << download.body;
    EXPECT_EQ(download.body, "state");

    // Fewer ready sandboxes: the extra one goes, without a new template.
    r = put("default", {{"properties", {{"scaleConfiguration", {{"readySessionInstances", 0}}},
                                        {"resources", {{"memoryMiB", 512}}}}}});
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_TRUE(waitForReady("default", 0));
    EXPECT_TRUE(server.waitFor([this] { return liveSandboxes() == 1; }, 2s));
}

TEST_F(PoolAdminTest, DeleteDrainsRunningWorkThenDestroysEverySandbox) {
    ASSERT_TRUE(waitForReady("default", 1));
    server.call([this] { backend().executeDelay = 600ms; });
    auto running = std::async(std::launch::async, [this] {
        return HttpClient(server.port()).execute("default", "busy-session", "long()");
    });
    ASSERT_TRUE(server.waitFor([this] { return get("default").json()["properties"]["sessions"]["allocated"] == 1; }, 2s));

    auto started = std::chrono::steady_clock::now();
    auto deleted = std::async(std::launch::async, [this] { return remove("default"); });
    ASSERT_TRUE(server.waitFor([this] { return get("default").json()["properties"]["provisioningState"] == "Deleting"; }, 2s));
    // Deleting: no new work, and the pool is gone from the data plane.
    auto refused = HttpClient(server.port()).execute("default", "another-session", "1");
    EXPECT_EQ(refused.status, 404) << refused.body;
    EXPECT_EQ(put("default", {{"properties", nlohmann::json::object()}}).status, 409);
    EXPECT_EQ(remove("default").status, 202);

    auto answer = running.get();
    EXPECT_EQ(answer.status, 200) << answer.body;
    EXPECT_EQ(answer.json()["properties"]["stdout"], "long()");
    auto result = deleted.get();
    EXPECT_EQ(result.status, 204) << result.body;
    EXPECT_GE(std::chrono::steady_clock::now() - started, 300ms) << "the deletion did not wait for the running execution";
    EXPECT_EQ(get("default").status, 404);
    EXPECT_TRUE(server.waitFor([this] { return liveSandboxes() == 0; }, 2s));
    EXPECT_EQ(remove("default").status, 404);

    // The name can be used again.
    EXPECT_EQ(put("default", {{"properties", {{"scaleConfiguration", {{"readySessionInstances", 1}}}}}}).status, 201);
    EXPECT_TRUE(waitForReady("default", 1));
}

TEST_F(PoolAdminTest, ChangesAreStoredAndLaidOverTheConfigurationAtTheNextStart) {
    ASSERT_EQ(put("analysis", kAnalysisPool).status, 201);
    ASSERT_EQ(remove("default").status, 204);

    PoolConfig configured;
    configured.name = "default";
    PoolConfig other;
    other.name = "other";
    PoolStore reread(directory.path() / "pools.json");
    auto pools = reread.overlay({configured, other});
    ASSERT_EQ(pools.size(), 2u);
    EXPECT_EQ(pools[0].name, "other");
    EXPECT_EQ(pools[1].name, "analysis");
    EXPECT_EQ(pools[1].maxConcurrentSessions, 3u);
    EXPECT_EQ(pools[1].cooldownPeriod, 600s);
    EXPECT_EQ(pools[1].resources.memoryBytes, 1024ull << 20);

    // Creating a deleted name again brings it back.
    ASSERT_EQ(put("default", {{"properties", {{"containerType", "NodeLTS"}}}}).status, 201);
    pools = PoolStore(directory.path() / "pools.json").overlay({configured});
    ASSERT_EQ(pools.size(), 2u);
    EXPECT_EQ(pools[1].name, "default");
    EXPECT_EQ(pools[1].containerType, "NodeLTS");
}

TEST_F(PoolAdminTest, AChangeThatCannotBeStoredIsNotMade) {
    // The state file's directory is a file: nothing can be written there. The
    // store is replaced in place, where the pool manager points.
    std::ofstream(directory.path() / "blocker") << "x";
    PoolStore blocked(directory.path() / "blocker" / "pools.json");
    store.reset();
    store.emplace(std::move(blocked));
    auto r = put("analysis", kAnalysisPool);
    EXPECT_EQ(r.status, 500) << r.body;
    EXPECT_EQ(r.header("x-ms-error-code"), "SessionPoolStateNotSaved");
    EXPECT_EQ(get("analysis").status, 404);
    r = remove("default");
    EXPECT_EQ(r.status, 500) << r.body;
    EXPECT_EQ(get("default").status, 200);
}

TEST(PoolStore, ACorruptStateFileIsRefusedNamingTheFileAndField) {
    TemporaryDirectory directory;
    const auto file = directory.path() / "pools.json";
    std::ofstream(file) << R"({"pools":[{"name":"ok"},{"name":"bad","scaleConfiguration":{"maxConcurrentSessions":0}}]})";
    try {
        PoolStore store(file);
        FAIL() << "a corrupt state file was accepted";
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.field(), file.string() + ": pools[1].scaleConfiguration.maxConcurrentSessions");
    }
    std::ofstream(file) << "{not json";
    EXPECT_THROW(PoolStore{file}, ConfigError);
    EXPECT_NO_THROW(PoolStore(directory.path() / "absent.json"));
}

// Found by fuzzing (tests/fuzz/request_body): a pool whose maximum timeout was
// below the default one was stored with both, and the next start refused it.
TEST(PoolStore, APoolWithAMaximumTimeoutBelowTheDefaultSurvivesARestart) {
    TemporaryDirectory directory;
    const auto file = directory.path() / "pools.json";
    const PoolConfig pool = sessiond::parsePool(nlohmann::json{{"name", "short"}, {"execution", {{"maxTimeoutInSeconds", 30}}}}, "");
    PoolStore(file).saveDefinition(pool);
    std::vector<PoolConfig> pools;
    ASSERT_NO_THROW(pools = PoolStore(file).overlay({}));
    ASSERT_EQ(pools.size(), 1u);
    EXPECT_EQ(pools[0].maxExecutionTimeout.count(), 30);
    EXPECT_EQ(pools[0].defaultExecutionTimeout.count(), 30);
}

// Pool definitions through the API on a real namespace backend.
TEST(PoolAdminNamespace, EgressWithoutZygoteAndCustomContainerPoolsAreDefinedAndSecretsStayHidden) {
    sessiond::Config config;
    config.cgroupName = "sessiond-test-" + std::to_string(getpid());
    config.namespaceSandbox.zygote = false;
    sessiond::testing::ServerFixture server;
    server.startNamespace(config);
    sessiond::testing::HttpClient client(server.port());
    const nlohmann::json body = {{"properties",
                                  {{"scaleConfiguration", {{"readySessionInstances", 0}}},
                                   {"sessionNetworkConfiguration", {{"status", "EgressEnabled"}}}}}};
    auto r = client.request(boost::beast::http::verb::put, "/pools/web", body.dump());
    EXPECT_EQ(r.status, 201) << r.body;

    // A custom container pool: its definition comes back, its secrets' values never.
    const nlohmann::json custom = {
        {"properties",
         {{"containerType", "CustomContainer"},
          {"scaleConfiguration", {{"readySessionInstances", 0}}},
          {"customContainerTemplate",
           {{"containers", {{{"image", "oci:/srv/images/web"}, {"env", {{{"name", "K"}, {"secretRef", "k"}}}}}}},
            {"ingress", {{"targetPort", 8080}}}}},
          {"secrets", {{{"name", "k"}, {"value", "hidden-value"}}}}}}};
    r = client.request(boost::beast::http::verb::put, "/pools/box", custom.dump());
    ASSERT_EQ(r.status, 201) << r.body;
    r = client.get("/pools/box");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body.find("hidden-value"), std::string::npos) << r.body;
    const auto properties = r.json()["properties"];
    EXPECT_EQ(properties["secrets"], (nlohmann::json{{{"name", "k"}}}));
    EXPECT_EQ(properties["customContainerTemplate"]["ingress"]["targetPort"], 8080);
    EXPECT_EQ(properties["customContainerTemplate"]["containers"][0]["image"], "oci:/srv/images/web");
}
