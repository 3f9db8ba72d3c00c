#pragma once
// Maps (method, path) to a handler. Patterns are literal segments and {name}
// segments; a final {name*} captures the rest of the path.

#include <string>
#include <vector>

#include "sessiond/http/message.hpp"

namespace sessiond::http {

class Router {
public:
    void add(beast_http::verb method, const std::string& pattern, Handler handler);

    struct Match {
        const Handler* handler = nullptr;  // null: see allowedMethods
        std::string allowedMethods;         // non-empty when the path exists with other methods
    };
    // Fills request.params on success.
    Match match(Request& request) const;

private:
    struct Route {
        beast_http::verb method;
        std::vector<std::string> segments;
        Handler handler;
    };
    static bool matches(const Route& route, const std::vector<std::string>& segments,
                        std::map<std::string, std::string>* params);
    std::vector<Route> routes_;
};

// Splits "/a//b/c" into {"a","b","c"}; segments are percent-decoded.
std::vector<std::string> splitPath(const std::string& path);
std::string percentDecode(std::string_view text, bool plusIsSpace);

}  // namespace sessiond::http
