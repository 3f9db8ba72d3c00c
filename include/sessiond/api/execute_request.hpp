#pragma once
// Lenient parsing of Azure's code-execution request bodies: flat or wrapped in
// "properties", `code` or `pythonCode` (or, for Shell pools, `shellCommand`,
// `execCommandAndArgs` and `stdin`), enums in any case, an optional timeout
// cut to the pool's maximum, an optional outputStreamsMaxLength.

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "sessiond/config.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond::api {

struct ParsedExecute {
    ExecuteRequest request;
    std::optional<std::string> identifier;  // from the body, when given there
    bool asynchronous = false;               // executionType "Asynchronous"
};

struct RequestError {
    std::string code;     // Azure error code
    std::string message;
};

// Returns the request, or fills `error` and returns nullopt.
std::optional<ParsedExecute> parseExecuteBody(const std::string& body, const PoolConfig& pool, RequestError& error);

// For the audit log: the fields of an execution request body that say what
// to run (code, pythonCode, shellCommand, execCommandAndArgs, stdin), as
// sent, whatever their types; null when the body has none or is not JSON.
nlohmann::json submittedCode(const std::string& body);

}  // namespace sessiond::api
