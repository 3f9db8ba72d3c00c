// API keys: hashing, key entries in the configuration, and the decision the
// Authorizer makes for each route and role.

#include <set>

#include <gtest/gtest.h>

#include "sessiond/api/authorizer.hpp"
#include "sessiond/auth/api_keys.hpp"

using namespace sessiond;
namespace beast_http = boost::beast::http;

namespace {

ApiKeyEntry entry(const std::string& name, const std::string& key, Role role, std::vector<std::string> pools = {}) {
    ApiKeyEntry e;
    e.name = name;
    e.role = role;
    e.sha256 = sha256(key);
    e.pools = std::move(pools);
    return e;
}

http::Request request(beast_http::verb method, const std::string& path, const std::string& authorization,
                      const std::string& pool = "") {
    http::Request r;
    r.message.method(method);
    r.message.target(path);
    r.path = path;
    r.remoteAddress = "192.0.2.7";
    if (!authorization.empty()) r.message.set(beast_http::field::authorization, authorization);
    if (!pool.empty()) r.params["pool"] = pool;
    return r;
}

// The admission of a request made for the check alone.
std::optional<http::Response> admit(const api::Authorizer& authorizer, http::Request request,
                                    const http::RouteOptions& route) {
    return authorizer.admit(request, route);
}

const http::RouteOptions kDataPlane{};
const http::RouteOptions kAdministration{.access = http::Access::PoolAdministrator};
const http::RouteOptions kPublic{.access = http::Access::Public};

}  // namespace

TEST(ApiKeys, Sha256MatchesTheStandardVector) {
    EXPECT_EQ(toHex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ApiKeys, NewKeysAreLongRandomAndUrlSafe) {
    std::set<std::string> seen;
    for (int i = 0; i < 100; ++i) {
        const std::string key = newApiKey();
        ASSERT_EQ(key.size(), 46u) << key;
        EXPECT_EQ(key.rfind("sk-", 0), 0u);
        EXPECT_EQ(key.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 3),
                  std::string::npos)
            << key;
        seen.insert(key);
    }
    EXPECT_EQ(seen.size(), 100u);
}

TEST(ApiKeys, TheRingFindsOnlyConfiguredKeys) {
    ApiKeyRing ring({entry("app", "key-one", Role::SessionExecutor), entry("ops", "key-two", Role::PoolAdministrator)});
    ASSERT_NE(ring.find("key-one"), nullptr);
    EXPECT_EQ(ring.find("key-one")->name, "app");
    EXPECT_EQ(ring.find("key-two")->name, "ops");
    EXPECT_EQ(ring.find("key-on"), nullptr);
    EXPECT_EQ(ring.find("key-one "), nullptr);
    EXPECT_EQ(ring.find(""), nullptr);
}

TEST(ApiKeys, EntriesAreValidatedNamingTheField) {
    const std::string hash(64, 'a');
    auto failingField = [](const nlohmann::json& keys) -> std::string {
        try {
            parseApiKeys(keys, "auth.keys");
        } catch (const ConfigError& e) {
            return e.field();
        }
        return "(accepted)";
    };
    EXPECT_EQ(failingField({{{"name", "a"}, {"sha256", hash}}}), "(accepted)");
    EXPECT_EQ(failingField({{{"name", "a"}, {"sha256", hash}, {"role", "Root"}}}), "auth.keys[0].role");
    EXPECT_EQ(failingField({{{"name", "a"}, {"sha256", "abc"}}}), "auth.keys[0].sha256");
    EXPECT_EQ(failingField({{{"name", "a"}, {"sha256", std::string(63, 'a') + "g"}}}), "auth.keys[0].sha256");
    EXPECT_EQ(failingField({{{"sha256", hash}}}), "auth.keys[0].name");
    EXPECT_EQ(failingField({{{"name", "a"}, {"sha256", hash}}, {{"name", "a"}, {"sha256", hash}}}), "auth.keys[1].name");
    EXPECT_EQ(failingField({{{"name", "a"}, {"sha256", hash}, {"key", "plain"}}}), "auth.keys[0].key");
    EXPECT_EQ(failingField({{{"name", "a"}, {"sha256", hash}, {"pools", "default"}}}), "auth.keys[0].pools");
    EXPECT_EQ(failingField(nlohmann::json::object()), "auth.keys");

    auto keys = parseApiKeys({{{"name", "ops"}, {"role", "PoolAdministrator"}, {"sha256", toHex(sha256("k"))},
                               {"pools", {"default"}}}},
                             "auth.keys");
    ASSERT_EQ(keys.size(), 1u);
    EXPECT_EQ(keys[0].role, Role::PoolAdministrator);
    EXPECT_EQ(keys[0].sha256, sha256("k"));
    EXPECT_EQ(keys[0].pools, std::vector<std::string>{"default"});
}

TEST(Authorizer, WithoutKeysEverythingIsLetThrough) {
    api::Authorizer authorizer{ApiKeyRing{}};
    EXPECT_FALSE(admit(authorizer, request(beast_http::verb::put, "/pools/x", "", "x"), kAdministration));
    EXPECT_FALSE(admit(authorizer, request(beast_http::verb::post, "/pools/x/executions", "Bearer whatever", "x"),
                                  kDataPlane));
}

TEST(Authorizer, RefusesMissingAndUnknownKeysWith401) {
    api::Authorizer authorizer{ApiKeyRing({entry("app", "right-key", Role::SessionExecutor)})};
    struct Case {
        std::string authorization, code;
    };
    for (const Case& c : std::vector<Case>{{"", "AuthenticationFailed"},
                                           {"Bearer", "AuthenticationFailed"},
                                           {"Bearer   ", "AuthenticationFailed"},
                                           {"Basic cmlnaHQta2V5", "AuthenticationFailed"},
                                           {"right-key", "AuthenticationFailed"},
                                           {"Bearer wrong-key", "InvalidAuthenticationToken"},
                                           {"Bearer right-keyx", "InvalidAuthenticationToken"}}) {
        SCOPED_TRACE(c.authorization);
        auto refused = admit(authorizer, request(beast_http::verb::post, "/pools/d/code/execute", c.authorization, "d"),
                                        kDataPlane);
        ASSERT_TRUE(refused);
        EXPECT_EQ(refused->result(), beast_http::status::unauthorized);
        EXPECT_EQ(refused->at("x-ms-error-code"), c.code);
        EXPECT_EQ(refused->at(beast_http::field::www_authenticate), "Bearer realm=\"sessiond\"");
        auto body = nlohmann::json::parse(refused->body());
        EXPECT_EQ(body["error"]["code"], c.code);
        EXPECT_EQ(refused->body().find("right-key"), std::string::npos);
    }
    for (const char* good : {"Bearer right-key", "bearer right-key", "BEARER  right-key "})
        EXPECT_FALSE(admit(authorizer, request(beast_http::verb::post, "/pools/d/code/execute", good, "d"), kDataPlane))
            << good;
    EXPECT_FALSE(admit(authorizer, request(beast_http::verb::get, "/healthz", ""), kPublic));
}

TEST(Authorizer, RolesAndPoolLimitsAreEnforcedWith403) {
    api::Authorizer authorizer{ApiKeyRing({entry("app", "exec", Role::SessionExecutor),
                                           entry("ops", "admin", Role::PoolAdministrator),
                                           entry("team", "limited", Role::SessionExecutor, {"analysis"})})};
    auto forbidden = admit(authorizer, request(beast_http::verb::put, "/pools/new", "Bearer exec", "new"), kAdministration);
    ASSERT_TRUE(forbidden);
    EXPECT_EQ(forbidden->result(), beast_http::status::forbidden);
    EXPECT_EQ(forbidden->at("x-ms-error-code"), "AuthorizationFailed");
    EXPECT_NE(forbidden->body().find("PoolAdministrator"), std::string::npos);

    EXPECT_FALSE(admit(authorizer, request(beast_http::verb::put, "/pools/new", "Bearer admin", "new"), kAdministration));
    EXPECT_FALSE(admit(authorizer, request(beast_http::verb::post, "/pools/d/executions", "Bearer admin", "d"), kDataPlane));
    EXPECT_FALSE(admit(authorizer, request(beast_http::verb::post, "/pools/d/executions", "Bearer exec", "d"), kDataPlane));

    EXPECT_FALSE(admit(authorizer, request(beast_http::verb::post, "/pools/analysis/executions", "Bearer limited", "analysis"),
                                  kDataPlane));
    auto otherPool = admit(authorizer, request(beast_http::verb::post, "/pools/d/executions", "Bearer limited", "d"), kDataPlane);
    ASSERT_TRUE(otherPool);
    EXPECT_EQ(otherPool->result(), beast_http::status::forbidden);
    EXPECT_NE(otherPool->body().find("'d'"), std::string::npos);

    // Keys replaced at run time take effect at once.
    authorizer.replaceKeys(ApiKeyRing({entry("ops", "rotated", Role::PoolAdministrator)}));
    EXPECT_TRUE(admit(authorizer, request(beast_http::verb::post, "/pools/d/executions", "Bearer exec", "d"), kDataPlane));
    EXPECT_FALSE(admit(authorizer, request(beast_http::verb::post, "/pools/d/executions", "Bearer rotated", "d"), kDataPlane));
}

// The audit log names the key a request came with, admitted or refused by
// role, and never a key that is not configured.
TEST(Authorizer, NamesTheKeyARequestPresented) {
    api::Authorizer authorizer{ApiKeyRing({entry("app", "exec", Role::SessionExecutor)})};
    auto admitted = request(beast_http::verb::post, "/pools/d/executions", "Bearer exec", "d");
    EXPECT_FALSE(authorizer.admit(admitted, kDataPlane));
    EXPECT_EQ(admitted.principal, "app");
    auto forbidden = request(beast_http::verb::put, "/pools/d", "Bearer exec", "d");
    EXPECT_TRUE(authorizer.admit(forbidden, kAdministration));
    EXPECT_EQ(forbidden.principal, "app");
    auto unknown = request(beast_http::verb::post, "/pools/d/executions", "Bearer guess", "d");
    EXPECT_TRUE(authorizer.admit(unknown, kDataPlane));
    EXPECT_EQ(unknown.principal, "");
    auto liveness = request(beast_http::verb::get, "/healthz", "Bearer exec");
    EXPECT_FALSE(authorizer.admit(liveness, kPublic));
    EXPECT_EQ(liveness.principal, "app");
}
