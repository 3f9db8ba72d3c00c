// docs/openapi.json describes exactly the routes the server registers: every
// documented operation is served, and every served route is documented.

#include <fstream>
#include <cctype>
#include <set>

#include <boost/asio.hpp>
#include <gtest/gtest.h>

#include "sessiond/api/routes.hpp"
#include "sessiond/http/router.hpp"
#include "sessiond/pool/pool.hpp"

using namespace sessiond;

namespace {

std::string lower(std::string text) {
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

// "{name*}" captures the rest of a path: the document spells out the
// shapes clients use under it.
std::set<std::string> documentedFormsOf(const std::string& method, const std::string& pattern) {
    const std::string rest = "{name*}";
    if (pattern.size() < rest.size() || pattern.compare(pattern.size() - rest.size(), rest.size(), rest) != 0)
        return {method + " " + pattern};
    const std::string base = pattern.substr(0, pattern.size() - rest.size());
    std::set<std::string> forms{method + " " + base + "{name}"};
    if (method == "get") forms.insert({method + " " + base + "content/{name}", method + " " + base + "{name}/content"});
    return forms;
}

}  // namespace

TEST(OpenApi, DocumentsExactlyTheServedRoutes) {
    std::ifstream in(SESSIOND_SOURCE_DIR "/docs/openapi.json");
    ASSERT_TRUE(in) << "docs/openapi.json is missing";
    auto document = nlohmann::json::parse(in, nullptr, false);
    ASSERT_TRUE(document.is_object()) << "docs/openapi.json is not JSON";
    EXPECT_EQ(document["openapi"].get<std::string>().rfind("3.", 0), 0u);

    std::set<std::string> documented;
    for (const auto& [path, operations] : document["paths"].items())
        for (const auto& [method, operation] : operations.items()) {
            documented.insert(method + " " + path);
            EXPECT_TRUE(operation.contains("responses")) << method << " " << path;
        }

    boost::asio::io_context io;
    metrics::Registry registry;
    PoolManager pools(io, {}, {}, registry);
    http::Router router;
    api::addRoutes(router, pools, HttpConfig{}, registry);
    std::set<std::string> served;
    for (const auto& [verb, pattern] : router.routes())
        for (const auto& form : documentedFormsOf(lower(std::string(boost::beast::http::to_string(verb))), pattern))
            served.insert(form);

    for (const auto& operation : served) EXPECT_TRUE(documented.count(operation)) << "not documented: " << operation;
    for (const auto& operation : documented) EXPECT_TRUE(served.count(operation)) << "not served: " << operation;
}
