#include <gtest/gtest.h>

#include "sessiond/api/execute_request.hpp"
#include "sessiond/http/router.hpp"
#include "sessiond/identifier.hpp"

using namespace sessiond;
namespace beast_http = boost::beast::http;

TEST(Identifier, FollowsAzureRules) {
    EXPECT_TRUE(isValidSessionIdentifier("abcd"));
    EXPECT_TRUE(isValidSessionIdentifier("5f1b3c2e-8d7a-4e0b-9c6f-2a1d3e4f5a6b"));
    EXPECT_TRUE(isValidSessionIdentifier("a|b-c&d^e%f$g#h(i)j{k}l[m]n;o<p>q_r"));
    EXPECT_TRUE(isValidSessionIdentifier(std::string(128, 'x')));
    EXPECT_FALSE(isValidSessionIdentifier("abc"));
    EXPECT_FALSE(isValidSessionIdentifier(std::string(129, 'x')));
    EXPECT_FALSE(isValidSessionIdentifier("has space"));
    EXPECT_FALSE(isValidSessionIdentifier("../../etc"));
    EXPECT_FALSE(isValidSessionIdentifier("abc/def"));
    EXPECT_FALSE(isValidSessionIdentifier(std::string("abc\0def", 7)));
    EXPECT_FALSE(isValidSessionIdentifier("caf\xc3\xa9"));
}

TEST(Router, MatchesParamsAndReportsAllowedMethods) {
    http::Router router;
    int hit = 0;
    router.add(beast_http::verb::post, "/pools/{pool}/code/execute", [&](http::Request&, http::Responder) { hit = 1; });
    router.add(beast_http::verb::get, "/pools/{pool}", [&](http::Request&, http::Responder) { hit = 2; });
    router.add(beast_http::verb::get, "/pools/{pool}/files/content/{path*}", [&](http::Request&, http::Responder) { hit = 3; });

    http::Request request;
    request.message.method(beast_http::verb::post);
    request.path = "/pools/default/code/execute";
    auto match = router.match(request);
    ASSERT_NE(match.handler, nullptr);
    (*match.handler)(request, nullptr);
    EXPECT_EQ(hit, 1);
    EXPECT_EQ(request.params.at("pool"), "default");

    request.message.method(beast_http::verb::get);
    match = router.match(request);
    EXPECT_EQ(match.handler, nullptr);
    EXPECT_EQ(match.allowedMethods, "POST");

    request.path = "/pools/default/files/content/a/b%20c.txt";
    match = router.match(request);
    ASSERT_NE(match.handler, nullptr);
    EXPECT_EQ(request.params.at("path"), "a/b c.txt");

    request.path = "/pools/default/nothing";
    match = router.match(request);
    EXPECT_EQ(match.handler, nullptr);
    EXPECT_TRUE(match.allowedMethods.empty());

    request.path = "/pools";
    EXPECT_EQ(router.match(request).handler, nullptr);
}

// The pattern, never the path: metrics label answers by it.
TEST(Router, MatchReportsTheRoutePattern) {
    http::Router router;
    router.add(beast_http::verb::post, "/pools/{pool}/code/execute", [](http::Request&, http::Responder) {});
    router.add(beast_http::verb::get, "/pools/{pool}/files/content/{path*}", [](http::Request&, http::Responder) {});

    http::Request request;
    request.message.method(beast_http::verb::post);
    request.path = "//pools/default/code/execute";
    EXPECT_EQ(router.match(request).pattern, "/pools/{pool}/code/execute");

    request.message.method(beast_http::verb::get);
    EXPECT_EQ(router.match(request).pattern, "/pools/{pool}/code/execute") << "a 405 names the path's route";

    request.path = "/pools/default/files/content/a/b.txt";
    EXPECT_EQ(router.match(request).pattern, "/pools/{pool}/files/content/{path*}");

    request.path = "/pools/default/nothing";
    EXPECT_EQ(router.match(request).pattern, "");
}

TEST(Router, MatchCarriesTheRouteOptions) {
    http::Router router;
    router.add(beast_http::verb::post, "/pools/{pool}/files/upload", [](http::Request&, http::Responder) {},
               http::RouteOptions{http::BodyLimit::Upload});
    router.add(beast_http::verb::post, "/pools/{pool}/code/execute", [](http::Request&, http::Responder) {});

    http::Request request;
    request.message.method(beast_http::verb::post);
    request.path = "/pools/default/files/upload";
    auto match = router.match(request);
    ASSERT_NE(match.handler, nullptr);
    EXPECT_EQ(match.options.bodyLimit, http::BodyLimit::Upload);

    request.path = "/pools/default/code/execute";
    match = router.match(request);
    ASSERT_NE(match.handler, nullptr);
    EXPECT_EQ(match.options.bodyLimit, http::BodyLimit::Default);

    // No match (wrong method, unknown path): default options.
    request.message.method(beast_http::verb::get);
    request.path = "/pools/default/files/upload";
    match = router.match(request);
    EXPECT_EQ(match.handler, nullptr);
    EXPECT_EQ(match.options.bodyLimit, http::BodyLimit::Default);
}

TEST(Router, SplitsAndDecodes) {
    EXPECT_EQ(http::splitPath("//pools///default/"), (std::vector<std::string>{"pools", "default"}));
    EXPECT_EQ(http::percentDecode("a%2Fb+c%zz%4", false), "a/b+c%zz%4");
    EXPECT_EQ(http::percentDecode("a+b%3D", true), "a b=");
}

TEST(Router, ParsesTheTarget) {
    http::Request request;
    http::parseTarget("//pools///a%20b/files?identifier=x%2By+z&identifier=second&&=v&flag&path=%2Fmnt", request);
    EXPECT_EQ(request.path, "/pools/a%20b/files");
    EXPECT_EQ(request.query, (std::map<std::string, std::string>{{"identifier", "x+y z"}, {"flag", ""}, {"path", "/mnt"}}));
    http::Request bare;
    http::parseTarget("?", bare);
    EXPECT_EQ(bare.path, "");
    EXPECT_TRUE(bare.query.empty());
}

TEST(Router, UnmatchedRequestsGet404Or405) {
    http::Router router;
    router.add(beast_http::verb::get, "/pools/{pool}", [](http::Request&, http::Responder) {});
    router.add(beast_http::verb::put, "/pools/{pool}", [](http::Request&, http::Responder) {});
    http::Request request;
    request.message.method(beast_http::verb::delete_);
    request.path = "/pools/a";
    auto answer = http::unmatchedResponse(request, router.match(request));
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->result(), beast_http::status::method_not_allowed);
    EXPECT_EQ((*answer)[beast_http::field::allow], "GET, PUT");
    request.path = "/nothing";
    answer = http::unmatchedResponse(request, router.match(request));
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->result(), beast_http::status::not_found);
    EXPECT_EQ((*answer)["x-ms-error-code"], "NotFound");
    request.message.method(beast_http::verb::get);
    request.path = "/pools/a";
    EXPECT_FALSE(http::unmatchedResponse(request, router.match(request)));
}

namespace {
PoolConfig pool() {
    PoolConfig p;
    p.name = "default";
    return p;
}
std::optional<api::ParsedExecute> parse(const std::string& body, api::RequestError& error) {
    return api::parseExecuteBody(body, pool(), error);
}
}  // namespace

TEST(ExecuteBody, AcceptsEveryClientShape) {
    api::RequestError error;
    auto wrapped = parse(R"({"properties":{"codeInputType":"inline","executionType":"synchronous","code":"1+1"}})", error);
    ASSERT_TRUE(wrapped);
    EXPECT_EQ(wrapped->request.code, "1+1");
    EXPECT_EQ(wrapped->request.timeout.count(), 100);

    auto flat = parse(R"({"codeInputType":"Inline","executionType":"Synchronous","code":"2","timeoutInSeconds":60})", error);
    ASSERT_TRUE(flat);
    EXPECT_EQ(flat->request.timeout.count(), 60);

    auto legacy = parse(R"({"properties":{"identifier":"abcd-1","pythonCode":"3"}})", error);
    ASSERT_TRUE(legacy);
    EXPECT_EQ(legacy->request.code, "3");
    EXPECT_EQ(*legacy->identifier, "abcd-1");

    // Longer than the pool allows: cut to its maximum, as Azure does (the
    // Shell tutorial sends 600).
    auto tooLong = parse(R"({"code":"1","timeoutInSeconds":600,"outputStreamsMaxLength":100})", error);
    ASSERT_TRUE(tooLong);
    EXPECT_EQ(tooLong->request.timeout.count(), 220);
    EXPECT_EQ(tooLong->request.maxOutputChars, 100u);
}

TEST(ExecuteBody, ShellPoolsTakeCommands) {
    PoolConfig shell;
    shell.name = "sh";
    shell.containerType = "Shell";
    api::RequestError error;
    auto command = api::parseExecuteBody(R"({"shellCommand":"echo hi","stdin":"x"})", shell, error);
    ASSERT_TRUE(command);
    EXPECT_EQ(command->request.code, "echo hi");
    EXPECT_EQ(command->request.stdinText, "x");
    auto argv = api::parseExecuteBody(
        R"({"codeInputType":"Inline","executionType":"Synchronous","execCommandAndArgs":["ls","-l"]})", shell, error);
    ASSERT_TRUE(argv);
    EXPECT_EQ(argv->request.argv, (std::vector<std::string>{"ls", "-l"}));
    auto code = api::parseExecuteBody(R"({"properties":{"code":"pwd"}})", shell, error);
    ASSERT_TRUE(code);
    EXPECT_EQ(code->request.code, "pwd");
    EXPECT_FALSE(api::parseExecuteBody(R"({"shellCommand":"a","execCommandAndArgs":["b"]})", shell, error));
    EXPECT_FALSE(api::parseExecuteBody(R"({"execCommandAndArgs":[]})", shell, error));
    EXPECT_FALSE(api::parseExecuteBody(R"({"stdin":"only"})", shell, error));
    EXPECT_EQ(error.code, "SessionPropertiesMissing");
}

TEST(ExecuteBody, RejectsBadInputWithAzureCodes) {
    api::RequestError error;
    EXPECT_FALSE(parse("{not json", error));
    EXPECT_EQ(error.code, "SessionRequestValidationFailed");
    EXPECT_FALSE(parse(R"({"properties":{"codeInputType":"inline"}})", error));
    EXPECT_EQ(error.code, "SessionPropertiesMissing");
    EXPECT_FALSE(parse(R"({"properties":{"code":42}})", error));
    EXPECT_EQ(error.code, "SessionRequestValidationFailed");
    EXPECT_FALSE(parse(R"({"properties":{"code":"1","timeoutInSeconds":0}})", error));
    EXPECT_FALSE(parse(R"({"properties":{"code":"1","timeoutInSeconds":"60"}})", error));
    EXPECT_FALSE(parse(R"({"properties":{"code":"1","outputStreamsMaxLength":-1}})", error));
    EXPECT_FALSE(parse(R"({"shellCommand":"ls"})", error));
    EXPECT_NE(error.message.find("Shell pool"), std::string::npos);
    EXPECT_FALSE(parse(R"({"properties":{"code":"1","codeInputType":"blob"}})", error));
    EXPECT_FALSE(parse(R"([1,2])", error));
    EXPECT_FALSE(parse(R"({"properties":"x"})", error));
}
