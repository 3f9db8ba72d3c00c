#include "sessiond/api/execute_request.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace sessiond::api {

namespace {
// What the agent keeps of each stream at most (docs/agent-protocol.md).
constexpr std::int64_t kMaxOutputStreamsLength = 8 << 20;

std::string lower(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
    return text;
}

std::optional<std::string> stringField(const nlohmann::json& object, const char* key, RequestError& error, bool& bad) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) {
        error = {"SessionRequestValidationFailed", std::string("The field '") + key + "' must be a string."};
        bad = true;
        return std::nullopt;
    }
    return it->get<std::string>();
}

// The object the request's fields are in: the body, or its "properties".
const nlohmann::json* fieldsOf(const nlohmann::json& document) {
    auto it = document.find("properties");
    return it == document.end() ? &document : &*it;
}

}  // namespace

nlohmann::json submittedCode(const std::string& body) {
    const nlohmann::json document = nlohmann::json::parse(body, nullptr, false);
    if (!document.is_object()) return nullptr;
    const nlohmann::json* fields = fieldsOf(document);
    if (!fields->is_object()) return nullptr;
    nlohmann::json code;
    for (const char* key : {"code", "pythonCode", "shellCommand", "execCommandAndArgs", "stdin"})
        if (auto it = fields->find(key); it != fields->end()) code[key] = *it;
    return code;
}

std::optional<ParsedExecute> parseExecuteBody(const std::string& body, const PoolConfig& pool, RequestError& error) {
    nlohmann::json document = nlohmann::json::parse(body, nullptr, false);
    if (document.is_discarded()) {
        error = {"SessionRequestValidationFailed", "The request body is not valid JSON."};
        return std::nullopt;
    }
    if (!document.is_object()) {
        error = {"SessionRequestValidationFailed", "The request body must be a JSON object."};
        return std::nullopt;
    }
    const nlohmann::json* fields = fieldsOf(document);
    if (!fields->is_object()) {
        error = {"SessionRequestValidationFailed", "The field 'properties' must be an object."};
        return std::nullopt;
    }

    bool bad = false;
    ParsedExecute parsed;
    const bool shell = pool.containerType == "Shell";
    auto code = stringField(*fields, "code", error, bad);
    if (!code && !bad) code = stringField(*fields, "pythonCode", error, bad);
    auto shellCommand = stringField(*fields, "shellCommand", error, bad);
    auto stdinText = stringField(*fields, "stdin", error, bad);
    auto inputType = stringField(*fields, "codeInputType", error, bad);
    auto executionType = stringField(*fields, "executionType", error, bad);
    parsed.identifier = stringField(*fields, "identifier", error, bad);
    if (bad) return std::nullopt;

    std::vector<std::string> argv;
    if (auto it = fields->find("execCommandAndArgs"); it != fields->end() && !it->is_null()) {
        bool strings = it->is_array() && !it->empty();
        for (const auto& item : *it) strings = strings && item.is_string();
        if (!strings) {
            error = {"SessionRequestValidationFailed", "The field 'execCommandAndArgs' must be a non-empty array of strings."};
            return std::nullopt;
        }
        argv = it->get<std::vector<std::string>>();
    }
    if (shell) {
        // Shell pools run `shellCommand`; `code` is taken as a command too, so
        // the older execute routes and curl users reach a Shell pool alike.
        if (shellCommand && !argv.empty()) {
            error = {"SessionRequestValidationFailed", "Give either 'shellCommand' or 'execCommandAndArgs', not both."};
            return std::nullopt;
        }
        if (!shellCommand) shellCommand = code;
        if (!shellCommand && argv.empty()) {
            error = {"SessionPropertiesMissing",
                     "The request must give the command to run in 'shellCommand' (or 'execCommandAndArgs')."};
            return std::nullopt;
        }
        parsed.request.code = shellCommand.value_or("");
        parsed.request.argv = std::move(argv);
        parsed.request.stdinText = stdinText.value_or("");
    } else {
        if (shellCommand || !argv.empty()) {
            error = {"SessionRequestValidationFailed", "'shellCommand' and 'execCommandAndArgs' need a Shell pool; the pool '" +
                                                           pool.name + "' runs " + pool.containerType + "."};
            return std::nullopt;
        }
        if (!code) {
            error = {"SessionPropertiesMissing", "The request must give the code to run in 'properties.code' (or 'code')."};
            return std::nullopt;
        }
        parsed.request.code = std::move(*code);
    }
    if (inputType && lower(*inputType) != "inline") {
        error = {"SessionRequestValidationFailed",
                 "codeInputType '" + *inputType + "' is not supported; use 'inline'."};
        return std::nullopt;
    }
    if (executionType && lower(*executionType) != "synchronous" && lower(*executionType) != "asynchronous") {
        error = {"SessionRequestValidationFailed",
                 "executionType '" + *executionType + "' is not supported; use 'synchronous' or 'asynchronous'."};
        return std::nullopt;
    }
    parsed.asynchronous = executionType && lower(*executionType) == "asynchronous";

    parsed.request.timeout = pool.defaultExecutionTimeout;
    parsed.request.maxOutputChars = pool.maxOutputChars;
    if (auto it = fields->find("timeoutInSeconds"); it != fields->end() && !it->is_null()) {
        // 60.0 is whole and taken as 60; 1.5 is not a number of seconds Azure's int32 field can hold.
        if (!it->is_number() || it->get<double>() <= 0 || it->get<double>() != std::floor(it->get<double>())) {
            error = {"SessionRequestValidationFailed", "timeoutInSeconds must be a positive whole number of seconds."};
            return std::nullopt;
        }
        // Like Azure, a longer timeout than the pool allows is cut to its maximum.
        const double requested = std::min(it->get<double>(), double(pool.maxExecutionTimeout.count()));
        parsed.request.timeout = std::chrono::seconds(static_cast<std::int64_t>(requested));
    }
    if (auto it = fields->find("outputStreamsMaxLength"); it != fields->end() && !it->is_null()) {
        if (!it->is_number_integer() || it->get<std::int64_t>() < 0 || it->get<std::int64_t>() > kMaxOutputStreamsLength) {
            error = {"SessionRequestValidationFailed",
                     "outputStreamsMaxLength must be a whole number from 0 to " + std::to_string(kMaxOutputStreamsLength) + "."};
            return std::nullopt;
        }
        parsed.request.maxOutputChars = it->get<std::size_t>();
    }
    return parsed;
}

}  // namespace sessiond::api
