#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>

#include <gtest/gtest.h>

#include "sessiond/config.hpp"

using nlohmann::json;
using sessiond::ConfigError;
using sessiond::parseConfig;

namespace {

json minimal() { return json::parse(R"({"pools":[{"name":"default"}]})"); }

// Parses and returns the field the error names ("" if it parsed).
std::string failingField(const json& document) {
    try {
        parseConfig(document);
    } catch (const ConfigError& e) {
        return e.field();
    }
    return "";
}

}  // namespace

TEST(Config, MinimalConfigGetsDefaults) {
    auto config = parseConfig(minimal());
    EXPECT_EQ(config.listen.address, "127.0.0.1");
    EXPECT_EQ(config.listen.port, 8080);
    ASSERT_EQ(config.pools.size(), 1u);
    EXPECT_EQ(config.pools[0].name, "default");
    EXPECT_EQ(config.pools[0].containerType, "PythonLTS");
    EXPECT_EQ(config.pools[0].cooldownPeriod.count(), 300);
    EXPECT_EQ(config.pools[0].maxExecutionTimeout.count(), 220);
    EXPECT_FALSE(config.namespaceSandbox.readOnlyPaths.empty());
    EXPECT_TRUE(config.namespaceSandbox.zygote);

    EXPECT_EQ(config.namespaceSandbox.maxConcurrentStarts, 0u);  // 0: from the host's cores
    EXPECT_EQ(config.libvirt.maxConcurrentStarts, 0u);

    auto fresh = minimal();
    fresh["namespaceSandbox"] = {{"zygote", false}, {"maxConcurrentStarts", 3}};
    fresh["libvirt"] = {{"maxConcurrentStarts", 1}};
    auto parsed = parseConfig(fresh);
    EXPECT_FALSE(parsed.namespaceSandbox.zygote);
    EXPECT_EQ(parsed.namespaceSandbox.maxConcurrentStarts, 3u);
    EXPECT_EQ(parsed.libvirt.maxConcurrentStarts, 1u);
}

TEST(Config, ReadsAzurePropertyNames) {
    auto document = json::parse(R"({
      "pools":[{"name":"p1","scaleConfiguration":{"maxConcurrentSessions":7,"readySessionInstances":3},
                "dynamicPoolConfiguration":{"lifecycleConfiguration":{"lifecycleType":"Timed","cooldownPeriodInSeconds":42}},
                "resources":{"cpu":0.5,"memoryMiB":512,"pids":64}}]})");
    auto pool = parseConfig(document).pools.at(0);
    EXPECT_EQ(pool.maxConcurrentSessions, 7u);
    EXPECT_EQ(pool.readySessionInstances, 3u);
    EXPECT_EQ(pool.cooldownPeriod.count(), 42);
    EXPECT_DOUBLE_EQ(pool.resources.cpus, 0.5);
    EXPECT_EQ(pool.resources.memoryBytes, 512ull << 20);
    EXPECT_EQ(pool.resources.pids, 64u);
}

TEST(Config, ErrorsNameTheField) {
    auto d = minimal();
    d["listen"] = {{"port", "80"}};
    EXPECT_EQ(failingField(d), "listen.port");

    d = minimal();
    d["listen"] = {{"port", 70000}};
    EXPECT_EQ(failingField(d), "listen.port");

    d = minimal();
    d["pools"][0]["scaleConfiguration"] = {{"maxConcurrentSessions", 0}};
    EXPECT_EQ(failingField(d), "pools[0].scaleConfiguration.maxConcurrentSessions");

    d = minimal();
    d["pools"][0]["scaleConfiguration"] = {{"readySessionInstances", -1}};
    EXPECT_EQ(failingField(d), "pools[0].scaleConfiguration.readySessionInstances");

    d = minimal();
    d["pools"][0]["dynamicPoolConfiguration"] = {{"lifecycleConfiguration", {{"lifecycleType", "Forever"}}}};
    EXPECT_EQ(failingField(d), "pools[0].dynamicPoolConfiguration.lifecycleConfiguration.lifecycleType");

    d = minimal();
    d["pools"][0]["containerType"] = "CobolLTS";
    EXPECT_EQ(failingField(d), "pools[0].containerType");

    d = minimal();
    d["pools"][0]["name"] = "Bad_Name";
    EXPECT_EQ(failingField(d), "pools[0].name");

    d = minimal();
    d["pools"].push_back({{"name", "default"}});
    EXPECT_EQ(failingField(d), "pools[1].name");

    d = minimal();
    d["pools"][0]["resources"] = {{"cpu", 0}};
    EXPECT_EQ(failingField(d), "pools[0].resources.cpu");

    d = minimal();
    d["logLevel"] = "chatty";
    EXPECT_EQ(failingField(d), "logLevel");

    d = minimal();
    d["namespaceSandbox"] = {{"readOnlyPaths", {"usr"}}};
    EXPECT_EQ(failingField(d), "namespaceSandbox.readOnlyPaths[0]");

    d = minimal();
    d["libvirt"] = {{"maxConcurrentStarts", -1}};
    EXPECT_EQ(failingField(d), "libvirt.maxConcurrentStarts");

    d = minimal();
    d["pools"][0]["execution"] = {{"maxTimeoutInSeconds", 10}, {"defaultTimeoutInSeconds", 20}};
    EXPECT_EQ(failingField(d), "pools[0].execution.defaultTimeoutInSeconds");
}

TEST(Config, UnknownFieldsAreRefused) {
    auto d = minimal();
    d["listn"] = {{"port", 1}};
    EXPECT_EQ(failingField(d), "listn");
    d = minimal();
    d["pools"][0]["scaleConfiguration"] = {{"maxConcurentSessions", 3}};
    EXPECT_EQ(failingField(d), "pools[0].scaleConfiguration.maxConcurentSessions");
}

TEST(Config, HttpBodyLimits) {
    auto config = parseConfig(minimal());
    EXPECT_EQ(config.http.maxBodyBytes, 8u << 20);
    EXPECT_EQ(config.http.maxUploadBytes, 128u << 20);
    EXPECT_EQ(config.http.maxDownloadBytes, 256u << 20);

    auto d = minimal();
    d["http"] = {{"maxBodyBytes", 4096}, {"maxUploadBytes", 1 << 30}, {"maxDownloadBytes", 2048}};
    config = parseConfig(d);
    EXPECT_EQ(config.http.maxBodyBytes, 4096u);
    EXPECT_EQ(config.http.maxUploadBytes, 1u << 30);
    EXPECT_EQ(config.http.maxDownloadBytes, 2048u);

    for (const char* field : {"maxUploadBytes", "maxDownloadBytes"}) {
        for (const json& bad : {json(0), json(1023), json(-1), json("128MB"), json(1.5), json((1ull << 32) + 1)}) {
            d = minimal();
            d["http"] = {{field, bad}};
            EXPECT_EQ(failingField(d), std::string("http.") + field) << bad;
        }
    }
}

TEST(Config, PoolsAreRequired) {
    EXPECT_EQ(failingField(json::object()), "pools");
    EXPECT_EQ(failingField(json{{"pools", json::array()}}), "pools");
    EXPECT_EQ(failingField(json::array()), "(top level)");
}

TEST(Config, TheDocumentedExampleIsValid) {
    auto config = sessiond::loadConfig(SESSIOND_SOURCE_DIR "/config/sessiond.json");
    ASSERT_FALSE(config.pools.empty());
    EXPECT_EQ(config.pools[0].name, "default");
    EXPECT_EQ(config.pools[0].containerType, "PythonLTS");
}

TEST(Config, UnreadableOrMalformedFilesAreClearErrors) {
    EXPECT_THROW(sessiond::loadConfig("/nonexistent/sessiond.json"), ConfigError);
    char path[] = "/tmp/sessiond-config-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "{\"pools\": [", 11), 11);
    close(fd);
    try {
        sessiond::loadConfig(path);
        FAIL() << "malformed JSON was accepted";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos);
    }
    unlink(path);
}

TEST(Config, ListenTls) {
    EXPECT_FALSE(parseConfig(minimal()).listen.tls);

    auto d = minimal();
    d["listen"] = {{"tls", {{"certificateFile", "/etc/sessiond/cert.pem"}, {"privateKeyFile", "/etc/sessiond/key.pem"}}}};
    auto config = parseConfig(d);
    ASSERT_TRUE(config.listen.tls);
    EXPECT_EQ(config.listen.tls->certificateFile, "/etc/sessiond/cert.pem");
    EXPECT_EQ(config.listen.tls->privateKeyFile, "/etc/sessiond/key.pem");

    d["listen"]["tls"] = {{"privateKeyFile", "/etc/sessiond/key.pem"}};
    EXPECT_EQ(failingField(d), "listen.tls.certificateFile");
    d["listen"]["tls"] = {{"certificateFile", "/etc/sessiond/cert.pem"}};
    EXPECT_EQ(failingField(d), "listen.tls.privateKeyFile");
    d["listen"]["tls"] = {{"certificateFile", "cert.pem"}, {"privateKeyFile", "/etc/sessiond/key.pem"}};
    EXPECT_EQ(failingField(d), "listen.tls.certificateFile");
    d["listen"]["tls"] = {{"certificateFile", "/etc/sessiond/cert.pem"}, {"privateKeyFile", 7}};
    EXPECT_EQ(failingField(d), "listen.tls.privateKeyFile");
    d["listen"]["tls"] = {{"certificateFile", "/c.pem"}, {"privateKeyFile", "/k.pem"}, {"caFile", "/ca.pem"}};
    EXPECT_EQ(failingField(d), "listen.tls.caFile");
    d["listen"]["tls"] = "/etc/sessiond/cert.pem";
    EXPECT_EQ(failingField(d), "listen.tls");
}

TEST(Config, LibvirtStartRestoresByDefault) {
    EXPECT_EQ(parseConfig(minimal()).libvirt.start, "restore");
    auto d = minimal();
    d["libvirt"] = {{"start", "boot"}};
    EXPECT_EQ(parseConfig(d).libvirt.start, "boot");
    d["libvirt"] = {{"start", "snapshot"}};
    EXPECT_EQ(failingField(d), "libvirt.start");
}

TEST(Config, AuditIsOnByDefaultAndItsFileMustBeAbsolute) {
    auto config = parseConfig(minimal());
    EXPECT_TRUE(config.audit.enabled);
    EXPECT_TRUE(config.audit.file.empty());  // the daemon's log
    EXPECT_FALSE(config.audit.includeCode);
    auto d = minimal();
    d["audit"] = {{"enabled", true}, {"file", "/var/log/sessiond/audit.log"}, {"includeCode", true}};
    config = parseConfig(d);
    EXPECT_EQ(config.audit.file, "/var/log/sessiond/audit.log");
    EXPECT_TRUE(config.audit.includeCode);
    d["audit"]["file"] = "audit.log";
    EXPECT_EQ(failingField(d), "audit.file");
    d["audit"] = {{"includeCod", true}};
    EXPECT_EQ(failingField(d), "audit.includeCod");
    d["audit"] = {{"enabled", "yes"}};
    EXPECT_EQ(failingField(d), "audit.enabled");
}

// Found by fuzzing (tests/fuzz/request_body): std::stod reads "nan", and NaN
// passed the range check.
TEST(Config, MemoryQuantitiesThatAreNotNumbersAreRefused) {
    for (const char* bad : {"nanMi", "NaNGi", "-nanMi", "infMi", "infinityGi", "1e400Mi", "Mi", "15Mi", "16 Mi"}) {
        auto d = minimal();
        d["pools"][0]["resources"] = {{"memory", bad}};
        EXPECT_EQ(failingField(d), "pools[0].resources.memory") << bad;
    }
    auto d = minimal();
    d["pools"][0]["resources"] = {{"memory", "1.5Gi"}};
    EXPECT_EQ(parseConfig(d).pools[0].resources.memoryBytes, 1536ull << 20);
}

// Found by fuzzing: a maximum below the built-in default (100 s) kept that
// default, which poolDefinition() wrote out and parsePool() then refused.
TEST(Config, AMaximumTimeoutBelowTheDefaultLowersTheDefault) {
    auto d = minimal();
    d["pools"][0]["execution"] = {{"maxTimeoutInSeconds", 30}};
    const auto pool = parseConfig(d).pools[0];
    EXPECT_EQ(pool.maxExecutionTimeout.count(), 30);
    EXPECT_EQ(pool.defaultExecutionTimeout.count(), 30);
    EXPECT_EQ(sessiond::poolDefinition(sessiond::parsePool(sessiond::poolDefinition(pool), "")),
              sessiond::poolDefinition(pool));
    // An explicit default over the maximum is still an error.
    d["pools"][0]["execution"]["defaultTimeoutInSeconds"] = 31;
    EXPECT_EQ(failingField(d), "pools[0].execution.defaultTimeoutInSeconds");
}

// Found by fuzzing (LeakSanitizer): unknown fields were refused by throwing
// from a destructor, after the pool being returned was built, and compilers
// then never destroy that pool (CWG 2176). Each refused definition leaked it.
TEST(Config, ARefusedDefinitionLeaksNothing) {
    auto d = minimal();
    d["pools"][0]["execution"] = {{"preloadModules", {std::string(1 << 20, 'm')}}};
    d["pools"][0]["unknownField"] = 1;
    auto heapInUse = [] {
        const struct mallinfo2 info = mallinfo2();
        return info.uordblks + info.hblkhd;
    };
    EXPECT_EQ(failingField(d), "pools[0].unknownField");  // the first allocations of a run are not counted
    const std::size_t before = heapInUse();
    for (int i = 0; i < 32; ++i) EXPECT_EQ(failingField(d), "pools[0].unknownField");
    EXPECT_LT(heapInUse(), before + (8u << 20)) << "32 refusals of a 1 MiB definition kept their memory";
}

TEST(Config, EgressIsPerPoolAndItsNetworkIsChecked) {
    auto d = minimal();
    d["pools"][0]["sessionNetworkConfiguration"] = {{"status", "EgressEnabled"}};
    d["network"] = {{"bridge", "sessiond1"}, {"subnet", "10.99.0.0/24"}};
    auto config = parseConfig(d);
    EXPECT_TRUE(config.pools[0].egressEnabled);
    EXPECT_EQ(config.network.bridge, "sessiond1");
    EXPECT_EQ(config.network.subnet, "10.99.0.0/24");
    EXPECT_EQ(sessiond::poolDefinition(config.pools[0])["sessionNetworkConfiguration"]["status"], "EgressEnabled");
    EXPECT_FALSE(parseConfig(minimal()).pools[0].egressEnabled);

    d = minimal();
    d["pools"][0]["sessionNetworkConfiguration"] = {{"status", "Egress"}};
    EXPECT_EQ(failingField(d), "pools[0].sessionNetworkConfiguration.status");
    // For VMs too, and sandboxes started without a zygote.
    d = minimal();
    d["pools"][0]["backend"] = "libvirt";
    d["pools"][0]["sessionNetworkConfiguration"] = {{"status", "EgressEnabled"}};
    EXPECT_EQ(failingField(d), "");
    d = minimal();
    d["namespaceSandbox"] = {{"zygote", false}};
    d["pools"][0]["sessionNetworkConfiguration"] = {{"status", "EgressEnabled"}};
    EXPECT_EQ(failingField(d), "");

    for (const char* bridge : {"", "Sessiond0", "a-bridge", "sessiond-bridge-0"}) {
        d = minimal();
        d["network"] = {{"bridge", bridge}};
        EXPECT_EQ(failingField(d), "network.bridge") << bridge;
    }
    for (const char* subnet : {"10.99.0.1/24", "10.99.0.0", "fd00::/64"}) {
        d = minimal();
        d["network"] = {{"subnet", subnet}};
        EXPECT_EQ(failingField(d), "network.subnet") << subnet;
    }
}

TEST(Config, AllowedDestinationsNeedEgressAndWellFormedEntries) {
    auto d = minimal();
    const json allowed = {"pypi.org", "*.pythonhosted.org", "Example.COM.", "203.0.113.7", "198.51.100.0/24",
                          "0.0.0.0/0"};
    d["pools"][0]["sessionNetworkConfiguration"] = {{"status", "EgressEnabled"}, {"allowedDestinations", allowed}};
    auto config = parseConfig(d);
    EXPECT_EQ(config.pools[0].allowedDestinations.size(), allowed.size());
    // Through the pool store and GET /pools, and back.
    const json definition = sessiond::poolDefinition(config.pools[0]);
    EXPECT_EQ(definition["sessionNetworkConfiguration"]["allowedDestinations"], allowed);
    EXPECT_EQ(sessiond::parsePool(definition, "pool").allowedDestinations, config.pools[0].allowedDestinations);
    // Absent or empty: unrestricted, and nothing written back.
    d["pools"][0]["sessionNetworkConfiguration"]["allowedDestinations"] = json::array();
    config = parseConfig(d);
    EXPECT_TRUE(config.pools[0].allowedDestinations.empty());
    EXPECT_FALSE(sessiond::poolDefinition(config.pools[0])["sessionNetworkConfiguration"].contains(
        "allowedDestinations"));

    d = minimal();
    d["pools"][0]["sessionNetworkConfiguration"] = {{"allowedDestinations", {"pypi.org"}}};
    EXPECT_EQ(failingField(d), "pools[0].sessionNetworkConfiguration.allowedDestinations");
    d["pools"][0]["sessionNetworkConfiguration"]["status"] = "EgressDisabled";
    EXPECT_EQ(failingField(d), "pools[0].sessionNetworkConfiguration.allowedDestinations");
    // An empty list says nothing, so it is no conflict.
    d["pools"][0]["sessionNetworkConfiguration"]["allowedDestinations"] = json::array();
    EXPECT_EQ(failingField(d), "");

    for (const char* bad : {"", "*", "*.", "a..b", "-a.org", "a-.org", "pypi.org/simple", "https://pypi.org",
                            "*.*.org", "a.*.org", "1.2.3.256", "1.2.3.4/33", "1.2.3.4/24", "10.0.0.0/", "fd00::1",
                            "bad name.org"}) {
        d = minimal();
        d["pools"][0]["sessionNetworkConfiguration"] = {{"status", "EgressEnabled"},
                                                        {"allowedDestinations", {"pypi.org", bad}}};
        EXPECT_EQ(failingField(d), "pools[0].sessionNetworkConfiguration.allowedDestinations[1]") << bad;
    }
    d["pools"][0]["sessionNetworkConfiguration"]["allowedDestinations"] = {"pypi.org", 7};
    EXPECT_EQ(failingField(d), "pools[0].sessionNetworkConfiguration.allowedDestinations[1]");
}

TEST(Config, NetworkResolversAreAddressesWithOptionalPorts) {
    auto d = minimal();
    EXPECT_TRUE(parseConfig(d).network.resolvers.empty());
    const std::vector<std::string> good = {"192.0.2.53", "192.0.2.54:5353", "2001:db8::53", "[2001:db8::53]:53"};
    d["network"] = {{"resolvers", good}};
    EXPECT_EQ(parseConfig(d).network.resolvers, good);
    for (const char* bad : {"", "dns.example", "192.0.2.53:", "192.0.2.53:0", "192.0.2.53:65536", "[192.0.2.53]:53",
                            "2001:db8::53:53x", "[2001:db8::53]"}) {
        d["network"] = {{"resolvers", {"192.0.2.1", bad}}};
        EXPECT_EQ(failingField(d), "network.resolvers[1]") << bad;
    }
}

namespace {

json customPool() {
    return json::parse(R"({"name": "web", "containerType": "CustomContainer",
        "customContainerTemplate": {
            "containers": [{"image": "oci:/srv/images/web:1.0", "name": "web",
                            "command": ["/srv/server"], "args": ["--port", "8080"],
                            "env": [{"name": "MODE", "value": "test"}, {"name": "TOKEN", "secretRef": "token"}],
                            "resources": {"cpu": 0.5, "memory": "1Gi"},
                            "probes": [{"type": "Startup", "httpGet": {"path": "/health", "port": 8080,
                                                                        "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                                        "periodSeconds": 1, "failureThreshold": 5},
                                       {"type": "Liveness", "tcpSocket": {"port": 8080}}]}],
            "ingress": {"targetPort": 8080}},
        "secrets": [{"name": "token", "value": "s3cret"}, {"name": "db", "file": "/etc/sessiond/db"}],
        "dynamicPoolConfiguration": {"lifecycleConfiguration": {"lifecycleType": "OnContainerExit",
                                                                 "maxAlivePeriodInSeconds": 600}}})");
}

json withPool(const json& pool) { return json{{"pools", json::array({pool})}}; }

}  // namespace

TEST(Config, CustomContainerPoolsReadAzuresTemplateAndRoundTrip) {
    const auto pool = parseConfig(withPool(customPool())).pools[0];
    EXPECT_TRUE(pool.customContainer());
    json inVms = customPool();
    inVms["backend"] = "libvirt";
    EXPECT_EQ(parseConfig(withPool(inVms)).pools[0].backend, "libvirt") << "a microVM per container session";
    EXPECT_EQ(pool.container.image, "oci:/srv/images/web:1.0");
    EXPECT_EQ(pool.container.command, (std::vector<std::string>{"/srv/server"}));
    EXPECT_EQ(pool.container.args, (std::vector<std::string>{"--port", "8080"}));
    ASSERT_EQ(pool.container.env.size(), 2u);
    EXPECT_EQ(pool.container.env[1].secretRef, "token");
    EXPECT_EQ(pool.container.targetPort, 8080);
    EXPECT_DOUBLE_EQ(pool.resources.cpus, 0.5);
    EXPECT_EQ(pool.resources.memoryBytes, 1024ull << 20);
    ASSERT_EQ(pool.container.probes.size(), 2u);
    const auto& startup = pool.container.probes[0];
    EXPECT_EQ(startup.type, sessiond::ContainerProbe::Type::Startup);
    EXPECT_TRUE(startup.httpGet);
    EXPECT_EQ(startup.path, "/health");
    EXPECT_EQ(startup.period, std::chrono::seconds(1));
    EXPECT_EQ(startup.failureThreshold, 5u);
    EXPECT_EQ(startup.timeout, std::chrono::seconds(1));  // Azure's default
    EXPECT_EQ(startup.httpHeaders.size(), 1u);
    EXPECT_FALSE(pool.container.probes[1].httpGet);
    EXPECT_EQ(pool.container.probes[1].failureThreshold, 3u);
    EXPECT_EQ(pool.container.probes[1].period, std::chrono::seconds(10));
    EXPECT_TRUE(pool.endOnContainerExit);
    EXPECT_EQ(pool.maxAlivePeriod, std::chrono::seconds(600));
    ASSERT_EQ(pool.secrets.size(), 2u);
    EXPECT_EQ(pool.secrets[0].value, "s3cret");
    EXPECT_EQ(pool.secrets[1].file, "/etc/sessiond/db");

    // What the pool store writes reads back to the same pool.
    const auto definition = sessiond::poolDefinition(pool);
    const auto again = sessiond::parsePool(definition, "");
    EXPECT_EQ(again.container, pool.container);
    EXPECT_EQ(again.secrets, pool.secrets);
    EXPECT_EQ(again.endOnContainerExit, pool.endOnContainerExit);
    EXPECT_EQ(again.maxAlivePeriod, pool.maxAlivePeriod);
    EXPECT_EQ(sessiond::poolDefinition(again), definition);
    // A Timed custom pool.
    auto timed = customPool();
    timed["dynamicPoolConfiguration"] = {{"lifecycleConfiguration", {{"lifecycleType", "Timed"}, {"cooldownPeriodInSeconds", 60}}}};
    const auto timedPool = parseConfig(withPool(timed)).pools[0];
    EXPECT_FALSE(timedPool.endOnContainerExit);
    EXPECT_EQ(timedPool.cooldownPeriod, std::chrono::seconds(60));
}

TEST(Config, CustomContainerMistakesNameTheirField) {
    const std::string c = "pools[0].customContainerTemplate";
    const std::string c0 = c + ".containers[0]";
    std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
        {[](json& p) { p.erase("customContainerTemplate"); }, "pools[0].customContainerTemplate"},
        {[](json& p) { p["customContainerTemplate"]["ingress"].erase("targetPort"); }, c + ".ingress.targetPort"},
        {[](json& p) { p["customContainerTemplate"]["ingress"]["targetPort"] = 70000; }, c + ".ingress.targetPort"},
        {[](json& p) { p["customContainerTemplate"]["containers"].push_back(p["customContainerTemplate"]["containers"][0]); },
         c + ".containers"},
        {[](json& p) { p["customContainerTemplate"]["containers"][0].erase("image"); }, c0 + ".image"},
        {[](json& p) { p["customContainerTemplate"]["containers"][0]["env"][1]["secretRef"] = "nope"; },
         c0 + ".env[1].secretRef"},
        {[](json& p) { p["customContainerTemplate"]["containers"][0]["env"][0]["secretRef"] = "token"; }, c0 + ".env[0]"},
        {[](json& p) { p["customContainerTemplate"]["containers"][0]["env"][0]["name"] = "1X"; }, c0 + ".env[0].name"},
        {[](json& p) { p["customContainerTemplate"]["containers"][0]["probes"][0]["type"] = "Readiness"; },
         c0 + ".probes[0].type"},
        {[](json& p) { p["customContainerTemplate"]["containers"][0]["probes"][1]["type"] = "Startup"; },
         c0 + ".probes[1].type"},
        {[](json& p) { p["customContainerTemplate"]["containers"][0]["probes"][0]["failureThreshold"] = 11; },
         c0 + ".probes[0].failureThreshold"},
        {[](json& p) { p["customContainerTemplate"]["containers"][0]["probes"][0]["httpGet"]["scheme"] = "HTTPS"; },
         c0 + ".probes[0].httpGet.scheme"},
        {[](json& p) { p["customContainerTemplate"]["containers"][0]["probes"][0]["httpGet"]["host"] = "example.com"; },
         c0 + ".probes[0].httpGet.host"},
        {[](json& p) { p["customContainerTemplate"]["containers"][0]["probes"][1]["httpGet"] = json::object(); },
         c0 + ".probes[1]"},
        {[](json& p) { p["customContainerTemplate"]["registryCredentials"] = json::object(); },
         c + ".registryCredentials"},
        {[](json& p) { p["secrets"][1]["file"] = "relative"; }, "pools[0].secrets[1].file"},
        {[](json& p) { p["secrets"][0]["file"] = "/also/a/file"; }, "pools[0].secrets[0]"},
        {[](json& p) { p["secrets"][1]["name"] = "token"; }, "pools[0].secrets[1].name"},
        {[](json& p) { p["dynamicPoolConfiguration"]["lifecycleConfiguration"]["cooldownPeriodInSeconds"] = 300; },
         "pools[0].dynamicPoolConfiguration.lifecycleConfiguration.cooldownPeriodInSeconds"},
    };
    for (const auto& [change, field] : cases) {
        json pool = customPool();
        change(pool);
        EXPECT_EQ(failingField(withPool(pool)), field) << pool.dump();
    }
    // Code-interpreter pools take neither a container template nor OnContainerExit.
    json python = {{"name", "py"}, {"customContainerTemplate", customPool()["customContainerTemplate"]}};
    EXPECT_EQ(failingField(withPool(python)), "pools[0].customContainerTemplate");
    python = {{"name", "py"},
              {"dynamicPoolConfiguration", {{"lifecycleConfiguration", {{"lifecycleType", "OnContainerExit"}}}}}};
    EXPECT_EQ(failingField(withPool(python)), "pools[0].dynamicPoolConfiguration.lifecycleConfiguration.lifecycleType");
}
