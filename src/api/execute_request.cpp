#include "sessiond/api/execute_request.hpp"

#include <algorithm>
#include <cctype>

namespace sessiond::api {

namespace {
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
}  // namespace

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
    const nlohmann::json* fields = &document;
    if (auto it = document.find("properties"); it != document.end()) {
        if (!it->is_object()) {
            error = {"SessionRequestValidationFailed", "The field 'properties' must be an object."};
            return std::nullopt;
        }
        fields = &*it;
    }

    bool bad = false;
    ParsedExecute parsed;
    auto code = stringField(*fields, "code", error, bad);
    if (!code && !bad) code = stringField(*fields, "pythonCode", error, bad);
    auto inputType = stringField(*fields, "codeInputType", error, bad);
    auto executionType = stringField(*fields, "executionType", error, bad);
    parsed.identifier = stringField(*fields, "identifier", error, bad);
    if (bad) return std::nullopt;
    if (!code) {
        error = {"SessionPropertiesMissing", "The request must give the code to run in 'properties.code' (or 'code')."};
        return std::nullopt;
    }
    if (inputType && lower(*inputType) != "inline") {
        error = {"SessionRequestValidationFailed",
                 "codeInputType '" + *inputType + "' is not supported; use 'inline'."};
        return std::nullopt;
    }
    if (executionType && lower(*executionType) != "synchronous") {
        error = {"SessionRequestValidationFailed",
                 "executionType '" + *executionType + "' is not supported on this route; use 'synchronous'."};
        return std::nullopt;
    }

    parsed.request.code = std::move(*code);
    parsed.request.timeout = pool.defaultExecutionTimeout;
    parsed.request.maxOutputChars = pool.maxOutputChars;
    if (auto it = fields->find("timeoutInSeconds"); it != fields->end() && !it->is_null()) {
        if (!it->is_number_integer() || it->get<std::int64_t>() < 1 ||
            it->get<std::int64_t>() > pool.maxExecutionTimeout.count()) {
            error = {"SessionRequestValidationFailed", "timeoutInSeconds must be a whole number from 1 to " +
                                                           std::to_string(pool.maxExecutionTimeout.count()) + "."};
            return std::nullopt;
        }
        parsed.request.timeout = std::chrono::seconds(it->get<std::int64_t>());
    }
    return parsed;
}

}  // namespace sessiond::api
