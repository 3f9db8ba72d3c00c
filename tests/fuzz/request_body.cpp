// The request bodies and query values the API parses from clients. The first
// byte picks the parser, the rest is the body:
//   0  POST .../code/execute (a Python and a Shell pool), and the audit log's
//      view of the submitted code
//   1  PUT /pools/{pool}; an accepted definition must read back from
//      poolDefinition() to the same definition, as PoolStore relies on
//   2  the configuration file, with the same check for each of its pools
//   3  file paths: "<path query>\n<file name>" and the listing's path
//   4  a session identifier and an API key list

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sessiond/api/execute_request.hpp"
#include "sessiond/api/file_path.hpp"
#include "sessiond/api/pool_definition.hpp"
#include "sessiond/config.hpp"
#include "sessiond/identifier.hpp"

namespace {

using namespace sessiond;

// A definition sessiond accepted, written out and read back (as pools.json
// is at the next start), must be accepted again, unchanged.
void roundTrip(const PoolConfig& pool) {
    const nlohmann::json written = poolDefinition(pool);
    PoolConfig again;
    try {
        again = parsePool(written, "");
    } catch (const ConfigError&) {
        __builtin_trap();
    }
    if (poolDefinition(again) != written) __builtin_trap();
}

void executeBody(const std::string& body) {
    for (const char* type : {"PythonLTS", "Shell"}) {
        PoolConfig pool;
        pool.containerType = type;
        api::RequestError error;
        if (auto parsed = api::parseExecuteBody(body, pool, error)) {
            if (parsed->request.timeout > pool.maxExecutionTimeout) __builtin_trap();
        } else if (error.code.empty()) {
            __builtin_trap();  // a refusal names its Azure error code
        }
    }
    (void)api::submittedCode(body);
}

void poolBody(const std::string& body) {
    try {
        roundTrip(api::parsePoolBody("fuzz-pool", body));
    } catch (const ConfigError&) {
    }
}

void configBody(const std::string& body) {
    const nlohmann::json document = nlohmann::json::parse(body, nullptr, false);
    if (document.is_discarded()) return;
    try {
        for (const auto& pool : parseConfig(document).pools) roundTrip(pool);
    } catch (const ConfigError&) {
    }
}

// What the API lets through must stay inside the data directory.
void checkRelative(const std::optional<std::string>& path) {
    if (!path) return;
    if (!path->empty() && (path->front() == '/' || path->back() == '/')) __builtin_trap();
    std::string_view rest = *path;
    while (!rest.empty()) {
        const std::size_t slash = rest.find('/');
        const std::string_view segment = rest.substr(0, slash);
        if (segment.empty() || segment == "." || segment == "..") __builtin_trap();
        if (slash == std::string_view::npos) break;
        rest.remove_prefix(slash + 1);
    }
}

void filePaths(const std::string& body) {
    const std::size_t newline = body.find('\n');
    const std::string directory = body.substr(0, newline);
    const std::string name = newline == std::string::npos ? "" : body.substr(newline + 1);
    std::string error;
    checkRelative(api::dataRelativePath(body, error));
    auto file = api::sessionFilePath(directory, name, error);
    checkRelative(file);
    if (file && file->empty()) __builtin_trap();  // a file name is required
}

void identifierAndKeys(const std::string& body) {
    (void)isValidSessionIdentifier(body);
    const nlohmann::json keys = nlohmann::json::parse(body, nullptr, false);
    if (keys.is_discarded()) return;
    try {
        (void)parseApiKeys(keys, "keys");
    } catch (const ConfigError&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 5) {
        case 0: executeBody(body); break;
        case 1: poolBody(body); break;
        case 2: configBody(body); break;
        case 3: filePaths(body); break;
        case 4: identifierAndKeys(body); break;
    }
    return 0;
}
