// Bad input on every route the server registers: each bad request gets a 4xx
// with Azure's error envelope, a matching x-ms-error-code header and a
// message naming what is wrong, and changes nothing: no session appears for
// the identifier it names, and a session set up beforehand keeps its sandbox,
// its interpreter state and its files.
//
// The cases live in one table keyed by route pattern ("POST
// /pools/{pool}/code/execute"). RoutesHaveBadInputCases fails for any route
// the server registers without an entry, so a new route needs its cases here.

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <boost/asio.hpp>
#include <gtest/gtest.h>

#include "sessiond/api/routes.hpp"
#include "sessiond/http/router.hpp"
#include "sessiond/http/server.hpp"
#include "sessiond/pool/pool.hpp"
#include "support/fake_backend.hpp"
#include "support/raw_http.hpp"
#include "support/server_fixture.hpp"

using namespace sessiond;
using sessiond::testing::FakeBackend;
using sessiond::testing::RawConnection;
using verb = boost::beast::http::verb;
using namespace std::chrono_literals;

namespace {

// Limits small enough to exceed cheaply.
constexpr std::size_t kMaxBodyBytes = 16 * 1024;
constexpr std::size_t kMaxUploadBytes = 2 * 1024;

// The session set up before the bad requests, and one that must never exist.
const std::string kExisting = "kept-session-0001";
const std::string kFresh = "fresh-session-0001";
const std::string kKeptFile = "keep.txt";
const std::string kKeptContent = "kept";

const std::string kJson = "application/json";
const std::string kValidation = "SessionRequestValidationFailed";
const std::string kPropertiesMissing = "SessionPropertiesMissing";
const std::string kNoSession = "SessionWithIdentifierNotFound";
const std::string kTooLarge = "RequestBodyTooLarge";
const std::string kBoundary = "bad-input-boundary";
const std::string kUnknownExecution = "0b6f1c1e-6a44-4f3e-9d2b-6c1f0e7d9a11";

// Which identifiers a case is sent with: "{session}" in its target (and body)
// becomes each of them in turn.
enum class Against {
    Both,      // a new identifier (no session may appear) and the existing session (it must be intact)
    Fresh,     // only a new identifier: with the existing one the request would be valid
    Existing,  // only the existing session: a new identifier would rightly create a session
};

struct BadRequest {
    std::string what;
    verb method = verb::get;
    std::string methodName;  // sent instead of `method` when set (an unknown method)
    std::string target;
    std::string body;
    std::string contentType;
    std::vector<std::pair<std::string, std::string>> headers;
    int status = 400;
    std::string code = kValidation;
    std::string mentions;  // the error message names this (case-insensitive)
    Against against = Against::Both;

    BadRequest withTarget(std::string t) const { auto c = *this; c.target = std::move(t); return c; }
    BadRequest withBody(std::string b, std::string type) const {
        auto c = *this;
        c.body = std::move(b);
        c.contentType = std::move(type);
        return c;
    }
    BadRequest withHeader(std::string name, std::string value) const {
        auto c = *this;
        c.headers.emplace_back(std::move(name), std::move(value));
        return c;
    }
    BadRequest expect(int s, std::string errorCode, std::string mention) const {
        auto c = *this;
        c.status = s;
        c.code = std::move(errorCode);
        c.mentions = std::move(mention);
        return c;
    }
    BadRequest only(Against a) const { auto c = *this; c.against = a; return c; }
};

using Cases = std::vector<BadRequest>;

Cases operator+(Cases a, const Cases& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

std::string replaceAll(std::string text, const std::string& from, const std::string& to) {
    for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
        text.replace(at, from.size(), to);
    return text;
}

// A valid request to a route, which the cases spoil one way each. `path` is
// what follows /pools/{pool}; "{name}" in it or in `query` stands for a file
// name (the kept file unless a case says otherwise), "{id}" for an execution id.
struct Endpoint {
    verb method;
    std::string path;
    std::string query;  // besides identifier
    std::string body;
    std::string contentType;

    // `identifierParam` is the whole "identifier=..." pair; "" leaves it out.
    std::string target(const std::string& identifierParam = "identifier={session}",
                       const std::string& pool = "default", const std::string& name = kKeptFile) const {
        std::string q = identifierParam;
        if (!query.empty()) q += (q.empty() ? "" : "&") + query;
        return replaceAll(replaceAll("/pools/" + pool + path + (q.empty() ? "" : "?" + q), "{name}", name), "{id}",
                          kUnknownExecution);
    }

    BadRequest request(std::string what) const {
        BadRequest r;
        r.what = std::move(what);
        r.method = method;
        r.target = target();
        r.body = body;
        r.contentType = contentType;
        return r;
    }
};

// A method no route has, answered 405 with Allow.
BadRequest wrongMethod(const std::string& path) {
    BadRequest r;
    r.what = "PATCH, which no route serves";
    r.method = verb::patch;
    r.target = path;
    return r.expect(405, "MethodNotAllowed", "PATCH");
}

Cases unknownPool(const Endpoint& e) {
    return {e.request("an unknown pool")
                .withTarget(e.target("identifier={session}", "no-such-pool"))
                .expect(404, "SessionPoolNotFound", "no-such-pool")};
}

// The identifier rules of include/sessiond/identifier.hpp, broken one at a
// time; values are as sent on the wire (percent-encoded).
Cases identifierCases(const Endpoint& e) {
    const std::pair<const char*, std::string> kBad[] = {
        {"an empty identifier", "identifier="},
        {"an identifier parameter without a value", "identifier"},
        {"an identifier of 3 characters", "identifier=abc"},
        {"an identifier of 129 characters", "identifier=" + std::string(129, 'a')},
        {"an identifier with a NUL", "identifier=abcd%00efgh"},
        {"an identifier with a control character", "identifier=abcd%01efgh"},
        {"an identifier with a newline", "identifier=abcd%0Aefgh"},
        {"an identifier with a space", "identifier=abcd%20efgh"},
        {"an identifier with a slash", "identifier=..%2F..%2Fetc"},
        {"an identifier with a dot", "identifier=abcd.efgh"},
        {"an identifier with a colon", "identifier=abcd:efgh"},
        {"an identifier with a non-ASCII letter", "identifier=caf%C3%A9-1234"},
    };
    Cases cases = unknownPool(e);
    cases.push_back(e.request("no identifier").withTarget(e.target("")).expect(400, kValidation, "identifier"));
    for (const auto& [what, param] : kBad)
        cases.push_back(e.request(what).withTarget(e.target(param)).expect(400, kValidation, "identifier"));
    return cases;
}

// An execute route's JSON body, each field wrong in turn, flat and wrapped in
// "properties" alike.
Cases executeBodyCases(const Endpoint& e) {
    auto invalid = [&e](std::string what, std::string body, std::string code, std::string mentions) {
        return e.request(std::move(what)).withBody(std::move(body), kJson).expect(400, std::move(code), std::move(mentions));
    };
    Cases cases = {
        invalid("invalid JSON", R"({"code":"1")", kValidation, "JSON"),
        invalid("a JSON array", R"([{"code":"1"}])", kValidation, "object"),
        invalid("a JSON string", R"j("print(1)")j", kValidation, "object"),
        invalid("a JSON number", "42", kValidation, "object"),
        invalid("JSON null", "null", kValidation, "object"),
        invalid("deeply nested arrays", std::string(5000, '[') + std::string(5000, ']'), kValidation, "object"),
        invalid("properties nested 1000 deep", replaceAll(std::string(1000, '{'), "{", R"({"properties":)") + "1" +
                                                   std::string(1000, '}'),
                kPropertiesMissing, "code"),
        invalid("an empty body", "", kValidation, "body"),
        invalid("properties as a string", R"({"properties":"code"})", kValidation, "properties"),
        invalid("properties as an array", R"({"properties":[{"code":"1"}]})", kValidation, "properties"),
        invalid("properties as a number", R"({"properties":1})", kValidation, "properties"),
        e.request("a text/plain body").withBody(R"({"code":"1"})", "text/plain").expect(415, "UnsupportedMediaType", "JSON"),
        e.request("a body over the limit")
            .withBody(R"({"code":")" + std::string(kMaxBodyBytes + 1, 'x') + "\"}", kJson)
            .expect(413, kTooLarge, "limit"),
    };
    const std::tuple<const char*, std::string, std::string, std::string> kFields[] = {
        {"no code", R"("codeInputType":"inline","executionType":"synchronous")", kPropertiesMissing, "code"},
        {"no fields at all", "", kPropertiesMissing, "code"},
        {"code as a number", R"("code":1)", kValidation, "'code'"},
        {"code as an array", R"j("code":["print(1)"])j", kValidation, "'code'"},
        {"code as an object", R"("code":{"text":"1"})", kValidation, "'code'"},
        {"pythonCode as a boolean", R"("pythonCode":true)", kValidation, "pythonCode"},
        {"timeoutInSeconds as a string", R"("code":"1","timeoutInSeconds":"60")", kValidation, "timeoutInSeconds"},
        {"a negative timeoutInSeconds", R"("code":"1","timeoutInSeconds":-5)", kValidation, "timeoutInSeconds"},
        {"a zero timeoutInSeconds", R"("code":"1","timeoutInSeconds":0)", kValidation, "timeoutInSeconds"},
        {"a fractional timeoutInSeconds", R"("code":"1","timeoutInSeconds":1.5)", kValidation, "timeoutInSeconds"},
        {"timeoutInSeconds as a boolean", R"("code":"1","timeoutInSeconds":true)", kValidation, "timeoutInSeconds"},
        {"an unknown executionType", R"("code":"1","executionType":"Eventually")", kValidation, "executionType"},
        {"executionType as a number", R"("code":"1","executionType":1)", kValidation, "executionType"},
        {"an unknown codeInputType", R"("code":"1","codeInputType":"url")", kValidation, "codeInputType"},
        {"codeInputType as an object", R"("code":"1","codeInputType":{})", kValidation, "codeInputType"},
        {"identifier as a number", R"("code":"1","identifier":1234)", kValidation, "identifier"},
        {"a negative outputStreamsMaxLength", R"("code":"1","outputStreamsMaxLength":-1)", kValidation, "outputStreamsMaxLength"},
        {"outputStreamsMaxLength as a string", R"("code":"1","outputStreamsMaxLength":"10")", kValidation, "outputStreamsMaxLength"},
        {"shellCommand for a Python pool", R"("code":"1","shellCommand":"ls")", kValidation, "shellCommand"},
        {"execCommandAndArgs as a string", R"("code":"1","execCommandAndArgs":"ls")", kValidation, "execCommandAndArgs"},
        {"an empty execCommandAndArgs", R"("code":"1","execCommandAndArgs":[])", kValidation, "execCommandAndArgs"},
        {"stdin as a number", R"("code":"1","stdin":5)", kValidation, "stdin"},
    };
    for (const auto& [what, fields, code, mentions] : kFields) {
        cases.push_back(invalid(std::string(what) + " (flat)", "{" + fields + "}", code, mentions));
        cases.push_back(invalid(std::string(what) + " (in properties)", R"({"properties":{)" + fields + "}}", code, mentions));
    }
    // Legacy clients put the identifier in the body; it obeys the same rules.
    const Endpoint noQuery{e.method, e.path, e.query, "", kJson};
    cases.push_back(noQuery.request("a malformed identifier in the body")
                        .withTarget(noQuery.target(""))
                        .withBody(R"({"properties":{"identifier":"a b","code":"1"}})", kJson)
                        .expect(400, kValidation, "identifier"));
    return cases;
}

// The Shell pool's command fields.
Cases shellBodyCases(const Endpoint& e) {
    const std::tuple<const char*, std::string, std::string, std::string> kFields[] = {
        {"no command for a Shell pool", R"({"codeInputType":"inline"})", kPropertiesMissing, "shellCommand"},
        {"shellCommand as a number", R"({"shellCommand":1})", kValidation, "shellCommand"},
        {"shellCommand and execCommandAndArgs both", R"({"shellCommand":"ls","execCommandAndArgs":["ls"]})", kValidation,
         "execCommandAndArgs"},
        {"execCommandAndArgs with a number", R"({"execCommandAndArgs":["ls",1]})", kValidation, "execCommandAndArgs"},
        {"stdin as an array", R"({"shellCommand":"cat","stdin":["a"]})", kValidation, "stdin"},
    };
    Cases cases;
    for (const auto& [what, body, code, mentions] : kFields)
        cases.push_back(e.request(what)
                            .withTarget(e.target("identifier={session}", "shell"))
                            .withBody(body, kJson)
                            .expect(400, code, mentions));
    return cases;
}

Cases executeCases(const Endpoint& e) { return identifierCases(e) + executeBodyCases(e) + shellBodyCases(e); }

std::string multipartPart(const std::string& disposition, const std::string& content) {
    return "--" + kBoundary + "\r\nContent-Disposition: form-data; " + disposition +
           "\r\nContent-Type: application/octet-stream\r\n\r\n" + content + "\r\n";
}
std::string multipartBody(const std::string& filename, const std::string& content) {
    return multipartPart("name=\"file\"; filename=\"" + filename + "\"", content) + "--" + kBoundary + "--\r\n";
}
const std::string kMultipart = "multipart/form-data; boundary=" + kBoundary;

// File names that leave the data directory or could not be stored as given,
// and a word the error message must contain.
const std::pair<const char*, std::string> kBadNames[] = {
    {"..", "'..'"},
    {"../escape.txt", "'..'"},
    {"sub/../../escape.txt", "'..'"},
    {"./keep.txt", "'.'"},
    {"/etc/passwd", "outside"},
    {"/mnt/data/../escape.txt", "'..'"},
    {"/mnt/database/x.txt", "outside"},
    {"\xff\xfe.txt", "UTF-8"},
};

// An upload route's multipart body, broken in each way clients get it wrong.
Cases uploadCases(const Endpoint& e) {
    auto form = [&e](std::string what, std::string body, std::string type) {
        return e.request(std::move(what)).withBody(std::move(body), std::move(type));
    };
    const std::string valid = multipartBody("new.txt", "data");
    Cases cases = {
        form("a JSON body", R"({"file":"data"})", kJson).expect(415, "UnsupportedMediaType", "multipart"),
        // A multipart body under another type is read (Semantic Kernel Python
        // sends one as JSON); a body that is not multipart is not.
        form("no Content-Type and no multipart body", "file=data", "").expect(415, "UnsupportedMediaType", "multipart"),
        form("no boundary", valid, "multipart/form-data").expect(400, kValidation, "boundary"),
        form("an empty boundary", valid, "multipart/form-data; boundary=").expect(400, kValidation, "boundary"),
        form("another boundary than the body's", valid, "multipart/form-data; boundary=other").expect(400, kValidation, "boundary"),
        form("an empty body", "", kMultipart).expect(400, kValidation, "boundary"),
        form("no file part", multipartPart("name=\"note\"", "data") + "--" + kBoundary + "--\r\n", kMultipart)
            .expect(400, kPropertiesMissing, "'file'"),
        form("a body cut short", valid.substr(0, valid.size() - 12), kMultipart).expect(400, kValidation, "closing boundary"),
        form("a part without Content-Disposition", "--" + kBoundary + "\r\n\r\ndata\r\n--" + kBoundary + "--\r\n", kMultipart)
            .expect(400, kValidation, "Content-Disposition"),
        form("an empty file name", multipartBody("", "data"), kMultipart).expect(400, kValidation, "name"),
        form("a file part without a filename", multipartPart("name=\"file\"", "data") + "--" + kBoundary + "--\r\n", kMultipart)
            .expect(400, kValidation, "name"),
        form("the data directory as the file name", multipartBody("/mnt/data", "data"), kMultipart)
            .expect(400, kValidation, "name"),
        form("a file name with a control character", multipartBody("bad\x01name.txt", "data"), kMultipart)
            .expect(400, kValidation, "control character"),
        form("a file name with a tab", multipartBody("bad\tname.txt", "data"), kMultipart)
            .expect(400, kValidation, "control character"),
        form("an encoded file name with a NUL",
             multipartPart("name=\"file\"; filename*=utf-8''bad%00name.txt", "data") + "--" + kBoundary + "--\r\n",
             kMultipart)
            .expect(400, kValidation, "control character"),
        form("a file name over 255 bytes", multipartBody(std::string(256, 'n'), "data"), kMultipart)
            .expect(400, kValidation, "255"),
        form("more than 100 parts", [] {
            std::string body;
            for (int i = 0; i <= 100; ++i) body += multipartPart("name=\"field\"", "x");
            return body + multipartBody("new.txt", "data");
        }(), kMultipart)
            .expect(400, kValidation, "100 parts"),
        form("a part header over 16 KiB",
             multipartPart("name=\"file\"; filename=\"new.txt\"; x=\"" + std::string(17 * 1024, 'h') + "\"", "data") + "--" +
                 kBoundary + "--\r\n",
             kMultipart)
            .expect(400, kValidation, "headers exceed"),
        form("a file over the upload limit", multipartBody("big.bin", std::string(kMaxUploadBytes + 1, 'x')), kMultipart)
            .expect(413, kTooLarge, "limit"),
        form("a body over the upload limit and its framing",
             multipartBody("big.bin", std::string(kMaxUploadBytes + http::kUploadFramingBytes + 1, 'x')), kMultipart)
            .expect(413, kTooLarge, "limit"),
    };
    for (const auto& [name, mentions] : kBadNames)
        cases.push_back(form(std::string("the file name ") + name, multipartBody(name, "data"), kMultipart)
                            .expect(400, kValidation, mentions));
    cases.push_back(form("a path query of ..", valid, kMultipart)
                        .withTarget(e.target() + "&path=..")
                        .expect(400, kValidation, "'..'"));
    cases.push_back(form("a path query outside the data directory", valid, kMultipart)
                        .withTarget(e.target() + "&path=%2Fetc")
                        .expect(400, kValidation, "outside"));
    return cases;
}

// The `path` query of the listing routes.
Cases directoryCases(const Endpoint& e) {
    return {
        e.request("a path query of ..").withTarget(e.target() + "&path=..").expect(400, kValidation, "'..'"),
        e.request("a path query outside the data directory").withTarget(e.target() + "&path=%2Fetc").expect(400, kValidation, "outside"),
        e.request("a path query with a control character").withTarget(e.target() + "&path=a%01b").expect(400, kValidation, "control character"),
        e.request("a path query that is not UTF-8").withTarget(e.target() + "&path=%FF").expect(400, kValidation, "UTF-8"),
    };
}

// Routes that name one file ("{name}" in the endpoint): traversal in every
// spelling a URL allows, and a file that is not there.
Cases fileNameCases(const Endpoint& e) {
    auto named = [&e](std::string what, const std::string& name) {
        return e.request(std::move(what)).withTarget(e.target("identifier={session}", "default", name));
    };
    // In a URL path a leading '/' merges into the one before it (duplicate
    // slashes collapse), so there an absolute name can only be sent encoded.
    const bool inPath = e.path.find("{name}") != std::string::npos;
    Cases cases;
    for (const auto& [name, mentions] : kBadNames) {
        if (!(inPath && name[0] == '/'))
            cases.push_back(named(std::string("the name ") + name, name).expect(400, kValidation, mentions));
        cases.push_back(named(std::string("the name ") + name + " percent-encoded",
                              replaceAll(replaceAll(name, "/", "%2F"), ".", "%2E"))
                            .expect(400, kValidation, mentions));
    }
    cases.push_back(named("a name with a NUL", "keep%00.txt").expect(400, kValidation, "control character"));
    cases.push_back(named("a name with a newline", "keep%0A.txt").expect(400, kValidation, "control character"));
    cases.push_back(named("a name over 255 bytes", std::string(256, 'n')).expect(400, kValidation, "255"));
    cases.push_back(named("a path query of ..", kKeptFile).withTarget(e.target() + "&path=..").expect(400, kValidation, "'..'"));
    cases.push_back(named("a path query outside the data directory", kKeptFile)
                        .withTarget(e.target() + "&path=%2Fetc")
                        .expect(400, kValidation, "outside"));
    cases.push_back(named("a missing file", "missing.txt").expect(404, "FileNotFound", "missing.txt").only(Against::Existing));
    cases.push_back(named("a missing file in a directory", "sub/missing.txt")
                        .expect(404, "FileNotFound", "missing.txt")
                        .only(Against::Existing));
    return cases;
}

// Routes that read or end a session: naming one that does not exist.
Cases noSessionCases(const Endpoint& e) {
    return {e.request("an identifier with no session").expect(400, kNoSession, kFresh).only(Against::Fresh)};
}

Cases skipCases(const Endpoint& e) {
    const std::pair<const char*, const char*> kSkips[] = {
        {"a negative skip", "-1"},      {"an empty skip", ""},           {"a word for skip", "ten"},
        {"a fractional skip", "1.5"},   {"a hexadecimal skip", "0x10"},  {"a skip with a sign", "+1"},
        {"a skip beyond any count", "99999999999999999999"},
    };
    Cases cases = unknownPool(e);
    for (const auto& [what, value] : kSkips)
        cases.push_back(e.request(what).withTarget(e.target("skip=" + std::string(value))).expect(400, kValidation, "skip"));
    return cases;
}

// Ids of GET executions/{id} and of POST executions' operation-id header.
Cases executionIdCases(const Endpoint& e) {
    auto withId = [&e](std::string what, const std::string& id) {
        return e.request(std::move(what)).withTarget(replaceAll(e.target(), kUnknownExecution, id));
    };
    return {
        withId("an unknown execution id", kUnknownExecution).expect(404, "ExecutionNotFound", kUnknownExecution),
        withId("an execution id with a NUL", "abc%00def").expect(400, kValidation, "execution id"),
        withId("an execution id with a space", "abc%20def").expect(400, kValidation, "execution id"),
        withId("an execution id with a slash", "abc%2Fdef").expect(400, kValidation, "execution id"),
        withId("an execution id of 129 characters", std::string(129, 'e')).expect(400, kValidation, "execution id"),
    };
}

Cases operationIdCases(const Endpoint& e) {
    const std::pair<const char*, std::string> kIds[] = {
        {"an operation-id with a slash", "abc/def"},
        {"an operation-id with a query", "abc?x=1"},
        {"an operation-id with a space", "abc def"},
        {"an operation-id with a non-ASCII letter", "caf\xc3\xa9"},
        {"an operation-id of 129 characters", std::string(129, 'o')},
    };
    Cases cases;
    for (const auto& [what, id] : kIds)
        cases.push_back(e.request(what).withHeader("operation-id", id).expect(400, kValidation, "operation-id"));
    return cases;
}

// PUT /pools/{pool}: a pool definition, each part wrong in turn. unchanged()
// checks that every pool keeps its definition.
Cases poolDefinitionCases() {
    auto put = [](std::string what, std::string target, std::string body, std::string mentions) {
        BadRequest r;
        r.what = std::move(what);
        r.method = verb::put;
        r.target = std::move(target);
        return r.withBody(std::move(body), kJson).expect(400, "InvalidSessionPoolProperties", std::move(mentions));
    };
    const std::string pool = "/pools/default";
    return {
        put("invalid JSON", pool, R"({"properties":)", "(body)"),
        put("a JSON array", pool, "[]", "(body)"),
        put("an empty body", pool, "", "(body)"),
        put("properties as a string", pool, R"({"properties":"PythonLTS"})", "properties"),
        put("an unknown property", pool, R"({"properties":{"scaleConfig":{}}})", "properties.scaleConfig"),
        put("an unknown field beside properties", pool, R"({"tags":{},"properties":{}})", "tags"),
        put("maxConcurrentSessions of 0", pool, R"({"properties":{"scaleConfiguration":{"maxConcurrentSessions":0}}})",
            "maxConcurrentSessions"),
        put("readySessionInstances as a string", pool,
            R"({"properties":{"scaleConfiguration":{"readySessionInstances":"2"}}})", "readySessionInstances"),
        put("a cooldown of 0", pool,
            R"({"properties":{"dynamicPoolConfiguration":{"lifecycleConfiguration":{"cooldownPeriodInSeconds":0}}}})",
            "cooldownPeriodInSeconds"),
        put("a changed containerType", pool, R"({"properties":{"containerType":"NodeLTS"}})", "containerType"),
        put("a changed backend", pool, R"({"properties":{"backend":"libvirt"}})", "backend"),
        put("an unknown egress status", pool, R"({"properties":{"sessionNetworkConfiguration":{"status":"Egress"}}})",
            "status"),
        put("a memory quantity without a unit", pool, R"({"properties":{"resources":{"memory":"512"}}})", "memory"),
        put("a name unlike the path's", pool, R"({"name":"other","properties":{}})", "name"),
        put("an invalid pool name", "/pools/Bad_Name", R"({"properties":{}})", "name"),
        put("a body over the limit", pool, R"({"properties":{"x":")" + std::string(kMaxBodyBytes, 'x') + "\"}}", "")
            .expect(413, kTooLarge, "limit"),
    };
}

// Every route the server registers, with its bad requests. A new route gets
// an entry here: a valid request to it as an Endpoint, the case groups above
// that fit it, and cases of its own; unchanged() says what must stay intact.
std::map<std::string, Cases> badInputByRoute() {
    const std::string executeBody = R"({"properties":{"codeInputType":"inline","executionType":"synchronous","code":"1"}})";
    const Endpoint codeExecute{verb::post, "/code/execute", "api-version=2024-02-02-preview", executeBody, kJson};
    const Endpoint executeAlias{verb::post, "/execute", "", executeBody, kJson};
    const Endpoint executions{verb::post, "/executions", "api-version=2024-10-02-preview", R"({"code":"1"})", kJson};
    const Endpoint pythonExecute{verb::post, "/python/execute", "", R"({"properties":{"pythonCode":"1"}})", kJson};
    const Endpoint getExecution{verb::get, "/executions/{id}", "api-version=2024-10-02-preview", "", ""};

    const std::string upload = multipartBody("new.txt", "data");
    const Endpoint uploadV1{verb::post, "/files/upload", "api-version=2024-02-02-preview", upload, kMultipart};
    const Endpoint uploadV2{verb::post, "/files", "api-version=2024-10-02-preview", upload, kMultipart};
    const Endpoint uploadLegacy{verb::post, "/python/uploadFile", "", upload, kMultipart};
    const Endpoint listFiles{verb::get, "/files", "api-version=2024-10-02-preview", "", ""};
    const Endpoint listLegacy{verb::get, "/python/files", "", "", ""};
    const Endpoint downloadLegacy{verb::get, "/python/downloadFile", "filename={name}", "", ""};
    const Endpoint fileMetadata{verb::get, "/files/{name}", "api-version=2024-10-02-preview", "", ""};
    const Endpoint contentV1{verb::get, "/files/content/{name}", "api-version=2024-02-02-preview", "", ""};
    const Endpoint contentV2{verb::get, "/files/{name}/content", "api-version=2024-10-02-preview", "", ""};
    const Endpoint deleteFile{verb::delete_, "/files/{name}", "api-version=2024-10-02-preview", "", ""};

    const Endpoint getSession{verb::get, "/session", "api-version=2025-02-02-preview", "", ""};
    const Endpoint deleteSession{verb::delete_, "/session", "api-version=2025-02-02-preview", "", ""};
    const Endpoint postGetSession{verb::post, "/.management/getSession", "api-version=2025-02-02-preview", "", ""};
    const Endpoint getGetSession{verb::get, "/.management/getSession", "api-version=2025-02-02-preview", "", ""};
    const Endpoint stopSession{verb::post, "/.management/stopSession", "api-version=2025-02-02-preview", "", ""};
    const Endpoint listSessions{verb::get, "/listSessions", "api-version=2025-02-02-preview", "", ""};
    const Endpoint postManagementList{verb::post, "/.management/listSessions", "", "", ""};
    const Endpoint getManagementList{verb::get, "/.management/listSessions", "", "", ""};
    const Endpoint metadata{verb::get, "/metadata", "api-version=2025-02-02-preview", "", ""};
    const Endpoint poolStatus{verb::get, "", "", "", ""};

    auto sessionRoute = [](const Endpoint& e) { return identifierCases(e) + noSessionCases(e); };
    return {
        {"GET /healthz", {wrongMethod("/healthz")}},
        {"GET /pools", {wrongMethod("/pools")}},
        {"GET /metrics", {wrongMethod("/metrics")}},
        {"GET /pools/{pool}", unknownPool(poolStatus) + Cases{wrongMethod("/pools/default")}},
        {"PUT /pools/{pool}", poolDefinitionCases()},
        {"DELETE /pools/{pool}", Cases{BadRequest{.what = "an unknown pool", .method = verb::delete_,
                                                  .target = "/pools/no-such-pool"}
                                           .expect(404, "SessionPoolNotFound", "no-such-pool")}},
        {"GET /pools/{pool}/metadata", unknownPool(metadata) + Cases{wrongMethod("/pools/default/metadata")}},

        {"POST /pools/{pool}/code/execute", executeCases(codeExecute) +
                                                 Cases{codeExecute.request("an asynchronous execution")
                                                           .withBody(R"({"executionType":"Asynchronous","code":"1"})", kJson)
                                                           .expect(400, "SessionRequestNotSupported", "Asynchronous"),
                                                       wrongMethod("/pools/default/code/execute")}},
        {"POST /pools/{pool}/execute", executeCases(executeAlias)},
        {"POST /pools/{pool}/executions", executeCases(executions) + operationIdCases(executions)},
        {"POST /pools/{pool}/python/execute", executeCases(pythonExecute)},
        {"GET /pools/{pool}/executions/{id}",
         identifierCases(getExecution) + executionIdCases(getExecution) +
             Cases{wrongMethod("/pools/default/executions/" + std::string(36, 'a'))}},

        {"POST /pools/{pool}/files/upload", identifierCases(uploadV1) + uploadCases(uploadV1)},
        {"POST /pools/{pool}/files", identifierCases(uploadV2) + uploadCases(uploadV2) +
                                         Cases{wrongMethod("/pools/default/files")}},
        {"POST /pools/{pool}/python/uploadFile", identifierCases(uploadLegacy) + uploadCases(uploadLegacy)},
        {"GET /pools/{pool}/files", identifierCases(listFiles) + directoryCases(listFiles)},
        {"GET /pools/{pool}/python/files", identifierCases(listLegacy) + directoryCases(listLegacy) +
                                               Cases{wrongMethod("/pools/default/python/files")}},
        {"GET /pools/{pool}/python/downloadFile",
         identifierCases(downloadLegacy) + fileNameCases(downloadLegacy) +
             Cases{downloadLegacy.request("no filename")
                       .withTarget(replaceAll(downloadLegacy.target(), "&filename=" + kKeptFile, ""))
                       .expect(400, kValidation, "filename"),
                   downloadLegacy.request("an empty filename")
                       .withTarget(downloadLegacy.target("identifier={session}", "default", ""))
                       .expect(400, kValidation, "filename")}},
        {"GET /pools/{pool}/files/{name*}", identifierCases(fileMetadata) + fileNameCases(fileMetadata) +
                                                fileNameCases(contentV1) + fileNameCases(contentV2) +
                                                Cases{wrongMethod("/pools/default/files/" + kKeptFile)}},
        // Every name here but the missing ones is refused before the sandbox
        // sees it, so the kept file's survival shows nothing was deleted.
        {"DELETE /pools/{pool}/files/{name*}", identifierCases(deleteFile) + fileNameCases(deleteFile)},

        {"GET /pools/{pool}/session", sessionRoute(getSession) + Cases{wrongMethod("/pools/default/session")}},
        {"DELETE /pools/{pool}/session", sessionRoute(deleteSession)},
        {"POST /pools/{pool}/.management/getSession",
         sessionRoute(postGetSession) + Cases{wrongMethod("/pools/default/.management/getSession")}},
        {"GET /pools/{pool}/.management/getSession", sessionRoute(getGetSession)},
        {"POST /pools/{pool}/.management/stopSession",
         sessionRoute(stopSession) + Cases{wrongMethod("/pools/default/.management/stopSession")}},
        {"GET /pools/{pool}/listSessions", skipCases(listSessions) + Cases{wrongMethod("/pools/default/listSessions")}},
        {"POST /pools/{pool}/.management/listSessions", skipCases(postManagementList)},
        {"GET /pools/{pool}/.management/listSessions",
         skipCases(getManagementList) + Cases{wrongMethod("/pools/default/.management/listSessions")}},
    };
}

// Requests no route matches.
Cases unroutedCases() {
    auto notFound = [](std::string what, verb method, std::string target) {
        BadRequest r;
        r.what = std::move(what);
        r.method = method;
        r.target = std::move(target);
        return r.expect(404, "NotFound", "No route");
    };
    BadRequest unknownMethod = wrongMethod("/pools/default/code/execute?identifier={session}");
    unknownMethod.what = "a method HTTP does not define";
    unknownMethod.methodName = "BREW";
    unknownMethod.mentions = "BREW";
    return {
        notFound("an unknown top-level path", verb::get, "/nope"),
        notFound("an unknown pool route", verb::get, "/pools/default/nope?identifier={session}"),
        notFound("a misspelt execute route", verb::post, "/pools/default/code/executes?identifier={session}")
            .withBody(R"({"code":"1"})", kJson),
        notFound("an unknown .management route", verb::post, "/pools/default/.management/deleteEverything?identifier={session}"),
        notFound("a path below executions/{id}", verb::get, "/pools/default/executions/a/b?identifier={session}"),
        notFound("the root", verb::get, "/"),
        unknownMethod,
    };
}

std::string verbName(verb method) { return std::string(boost::beast::http::to_string(method)); }

std::string lower(std::string text) {
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

// A header's value from a raw response head; "" if absent.
std::string headerValue(const std::string& head, const std::string& name) {
    const std::string lowered = lower(head);
    const std::size_t at = lowered.find("\r\n" + lower(name) + ":");
    if (at == std::string::npos) return "";
    const std::size_t start = head.find_first_not_of(' ', at + name.size() + 3);
    return head.substr(start, head.find("\r\n", start) - start);
}

// What Router::routes() serves, as the table's keys spell them.
std::vector<std::string> servedRoutes() {
    boost::asio::io_context io;
    metrics::Registry registry;
    PoolManager pools(io, {}, {}, registry);
    http::Router router;
    api::addRoutes(router, pools, HttpConfig{}, registry);
    std::vector<std::string> served;
    for (const auto& [method, pattern] : router.routes()) served.push_back(verbName(method) + " " + pattern);
    return served;
}

class BadInput : public ::testing::Test {
protected:
    void SetUp() override {
        config.http.maxBodyBytes = kMaxBodyBytes;
        config.http.maxUploadBytes = kMaxUploadBytes;
        PoolConfig pool;
        pool.name = "default";
        pool.readySessionInstances = 1;
        pool.maxConcurrentSessions = 4;
        PoolConfig shell = pool;
        shell.name = "shell";
        shell.containerType = "Shell";
        shell.readySessionInstances = 0;
        config.pools = {pool, shell};
        server.start(config, [](boost::asio::io_context& io) { return std::make_unique<FakeBackend>(io); });
        definitions = poolDefinitions();
        setUpExistingSession();
    }

    // Every pool's definition, without its live counts.
    nlohmann::json poolDefinitions() {
        auto listed = send(verb::get, "/pools");
        if (!listed || listed->status != 200) return nullptr;
        auto pools = nlohmann::json::parse(listed->body)["value"];
        for (auto& pool : pools) {
            pool["properties"].erase("sessions");
            pool["properties"].erase("totals");
        }
        return pools;
    }

    // The session every case must leave alone: one execution (the fake
    // sandbox counts them; the count stands for its interpreter state) and
    // one file.
    void setUpExistingSession() {
        auto executed = send(verb::post, "/pools/default/code/execute?identifier=" + kExisting, R"({"code":"1"})", kJson);
        ASSERT_TRUE(executed && executed->status == 200);
        sandbox = nlohmann::json::parse(executed->body)["properties"]["result"]["sandbox"];
        ASSERT_EQ(executionsIn(sandbox), 1);
        auto uploaded = send(verb::post, "/pools/default/files/upload?identifier=" + kExisting,
                             multipartBody(kKeptFile, kKeptContent), kMultipart);
        ASSERT_TRUE(uploaded && uploaded->status == 200);
    }

    void TearDown() override {
        // Last of all, the interpreter state and the file, read the way a client would.
        auto executed = send(verb::post, "/pools/default/code/execute?identifier=" + kExisting, R"({"code":"2"})", kJson);
        ASSERT_TRUE(executed && executed->status == 200);
        auto result = nlohmann::json::parse(executed->body)["properties"]["result"];
        EXPECT_EQ(result["sandbox"], sandbox) << "the existing session's sandbox was replaced";
        EXPECT_EQ(result["count"], 2) << "code ran for a refused request, or the interpreter was restarted";
        auto content = send(verb::get, "/pools/default/files/content/" + kKeptFile + "?identifier=" + kExisting);
        ASSERT_TRUE(content);
        EXPECT_EQ(content->status, 200);
        EXPECT_EQ(content->body, kKeptContent);
    }

    // How many executions the fake sandbox `id` has run; -1 if it is gone.
    int executionsIn(const nlohmann::json& id) {
        return server.call([&] {
            auto& fake = static_cast<FakeBackend&>(server.backend());
            auto it = fake.sandboxes.find(id.get<std::string>());
            return it == fake.sandboxes.end() ? -1 : it->second->executions();
        });
    }

    std::optional<RawConnection::Response> send(verb method, const std::string& target, const std::string& body = "",
                                                const std::string& contentType = "",
                                                const std::vector<std::pair<std::string, std::string>>& headers = {},
                                                const std::string& methodName = "") {
        RawConnection connection(server.port());
        std::string request = (methodName.empty() ? verbName(method) : methodName) + " " + target +
                              " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
        if (!contentType.empty()) request += "Content-Type: " + contentType + "\r\n";
        for (const auto& [name, value] : headers) request += name + ": " + value + "\r\n";
        request += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        if (!connection.send(request)) return std::nullopt;
        return connection.readResponse(5s);
    }

    // The existing session alone, with its sandbox, its interpreter state and
    // its one file. After a failure the state is set up afresh, so each case
    // is judged on its own.
    void expectNothingChanged() {
        if (!unchanged()) {
            send(verb::delete_, "/pools/default/session?identifier=" + kExisting);
            setUpExistingSession();
        }
    }

    bool unchanged() {
        bool same = true;
        auto expect = [&same](bool ok, const std::string& otherwise) {
            if (!ok) ADD_FAILURE() << otherwise;
            same = same && ok;
            return ok;
        };
        bool existing = false;
        for (const std::string pool : {"default", "shell"}) {
            auto listed = send(verb::get, "/pools/" + pool + "/listSessions");
            if (!expect(listed && listed->status == 200, "listSessions failed")) return false;
            const auto sessions = nlohmann::json::parse(listed->body)["value"];
            for (const auto& session : sessions) {
                const std::string identifier = session["identifier"];
                if (pool == "default" && identifier == kExisting) {
                    existing = true;
                    expect(session["etag"] == sandbox, "the existing session was recreated");
                } else {
                    expect(false, "a refused request created the session " + identifier + " in the pool " + pool);
                    send(verb::delete_, "/pools/" + pool + "/session?identifier=" + identifier);
                }
            }
        }
        expect(existing, "the existing session is gone");
        expect(poolDefinitions() == definitions, "a pool was created, changed or deleted: " + poolDefinitions().dump());
        EXPECT_EQ(server.counts("default").waitingForSandbox, 0u);

        expect(executionsIn(sandbox) == 1, "code ran in the existing session, or its sandbox is gone");
        auto files = send(verb::get, "/pools/default/files?identifier=" + kExisting);
        if (!expect(files && files->status == 200, "listing the existing session's files failed")) return false;
        const auto value = nlohmann::json::parse(files->body)["value"];
        expect(value.size() == 1 && value[0]["name"] == kKeptFile && value[0]["sizeInBytes"] == kKeptContent.size(),
               "the existing session's files changed: " + value.dump());
        return same;
    }

    // Sends the case with each identifier it applies to, and checks the refusal
    // and that nothing changed. `route` is the table key ("" for no route).
    void expectRefused(const std::string& route, const BadRequest& bad) {
        std::vector<std::string> identifiers;
        if (bad.against != Against::Existing) identifiers.push_back(kFresh);
        if (bad.against != Against::Fresh) identifiers.push_back(kExisting);
        const bool namesSession = (bad.target + bad.body).find("{session}") != std::string::npos;
        if (!namesSession) identifiers.resize(1);
        for (const auto& identifier : identifiers) {
            SCOPED_TRACE(route + ": " + bad.what + (namesSession ? " (identifier " + identifier + ")" : ""));
            const std::string target = replaceAll(bad.target, "{session}", identifier);
            auto response = send(bad.method, target, replaceAll(bad.body, "{session}", identifier), bad.contentType,
                                 bad.headers, bad.methodName);
            if (!response)
                ADD_FAILURE() << "no answer within 5 s to " << target;
            else
                expectErrorResponse(route, bad, *response);
            expectNothingChanged();
        }
    }

    // The status, the envelope, the header and a message that says what is wrong.
    static void expectErrorResponse(const std::string& route, const BadRequest& bad, const RawConnection::Response& response) {
        EXPECT_EQ(response.status, bad.status) << response.body;
        EXPECT_GE(response.status, 400);
        EXPECT_LT(response.status, 500);
        auto body = nlohmann::json::parse(response.body, nullptr, false);
        ASSERT_TRUE(body.is_object() && body.contains("error") && body["error"].is_object())
            << "no error envelope: " << response.body;
        const auto& error = body["error"];
        ASSERT_TRUE(error.contains("code") && error["code"].is_string()) << response.body;
        ASSERT_TRUE(error.contains("message") && error["message"].is_string()) << response.body;
        EXPECT_EQ(error["code"], bad.code) << response.body;
        EXPECT_EQ(headerValue(response.head, "x-ms-error-code"), error["code"].get<std::string>());
        EXPECT_NE(lower(headerValue(response.head, "Content-Type")).find("application/json"), std::string::npos);
        const std::string message = error["message"];
        EXPECT_NE(lower(message).find(lower(bad.mentions)), std::string::npos)
            << "the message does not mention '" << bad.mentions << "': " << message;
        if (bad.status == 405) {
            const std::string allowed = headerValue(response.head, "Allow");
            EXPECT_FALSE(allowed.empty()) << "a 405 without Allow";
            if (!route.empty()) {
                EXPECT_NE(allowed.find(route.substr(0, route.find(' '))), std::string::npos)
                    << "Allow: " << allowed << " does not list " << route;
            }
        }
    }

    Config config;
    sessiond::testing::ServerFixture server;
    nlohmann::json sandbox;      // the existing session's sandbox id
    nlohmann::json definitions;  // every pool's, at the start
};

class BadInputOnRoute : public BadInput, public ::testing::WithParamInterface<std::string> {};

std::vector<std::string> tableRoutes() {
    std::vector<std::string> routes;
    for (const auto& [route, cases] : badInputByRoute()) routes.push_back(route);
    return routes;
}

}  // namespace

TEST(BadInputTable, RoutesHaveBadInputCases) {
    const auto table = badInputByRoute();
    const auto served = servedRoutes();
    ASSERT_FALSE(served.empty());
    for (const auto& route : served) {
        auto it = table.find(route);
        EXPECT_TRUE(it != table.end() && !it->second.empty())
            << "route " << route << " has no bad-input cases: add an entry for it to badInputByRoute() in "
            << "tests/bad_input_test.cpp";
    }
    for (const auto& [route, cases] : table)
        EXPECT_NE(std::find(served.begin(), served.end(), route), served.end())
            << "badInputByRoute() has cases for " << route << ", which the server does not serve";
}

TEST_P(BadInputOnRoute, IsRefusedAndChangesNothing) {
    const std::string& route = GetParam();
    const auto table = badInputByRoute();
    for (const auto& bad : table.at(route)) expectRefused(route, bad);
}

INSTANTIATE_TEST_SUITE_P(Routes, BadInputOnRoute, ::testing::ValuesIn(tableRoutes()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                             std::string name;
                             for (char c : info.param)
                                 name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                             return name;
                         });

TEST_F(BadInput, UnroutedRequestsAre404Or405) {
    for (const auto& bad : unroutedCases()) expectRefused("", bad);
}
