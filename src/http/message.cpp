#include "sessiond/http/message.hpp"

namespace sessiond::http {

const std::string* Request::queryValue(const std::string& key) const {
    auto it = query.find(key);
    return it == query.end() ? nullptr : &it->second;
}

Response jsonResponse(beast_http::status status, const nlohmann::json& body) {
    Response response{status, 11};
    response.set(beast_http::field::content_type, "application/json; charset=utf-8");
    response.body() = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    response.prepare_payload();
    return response;
}

Response errorResponse(beast_http::status status, const std::string& code, const std::string& message,
                       const std::string& target) {
    nlohmann::json error = {{"code", code}, {"message", message}};
    if (!target.empty()) error["target"] = target;
    Response response = jsonResponse(status, {{"error", error}});
    response.set("x-ms-error-code", code);
    return response;
}

}  // namespace sessiond::http
