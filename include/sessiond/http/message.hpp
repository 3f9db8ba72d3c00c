#pragma once
// What the HTTP layer hands to route handlers, and how they answer.

#include <functional>
#include <map>
#include <string>

#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace sessiond::http {

namespace beast_http = boost::beast::http;

using Response = beast_http::response<beast_http::string_body>;

struct Request {
    beast_http::request<beast_http::string_body> message;
    std::string path;                               // decoded, duplicate slashes collapsed
    std::map<std::string, std::string> query;       // decoded; the first of repeated keys wins
    std::map<std::string, std::string> params;      // from the route pattern's {names}
    std::string remoteAddress;
    std::string principal;  // the API key's name the admission knew it by, for the audit log

    const std::string* queryValue(const std::string& key) const;
};

// Called exactly once per request, from the io_context thread.
using Responder = std::function<void(Response)>;
using Handler = std::function<void(Request&, Responder)>;

Response jsonResponse(beast_http::status status, const nlohmann::json& body);

// The Azure (Azure.Core) error envelope: {"error":{"code","message"}} plus the
// x-ms-error-code header, used for every non-2xx answer.
// `target`, when given, names the field the error is about.
Response errorResponse(beast_http::status status, const std::string& code, const std::string& message,
                       const std::string& target = "");

}  // namespace sessiond::http
