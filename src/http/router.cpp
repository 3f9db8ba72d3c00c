#include "sessiond/http/router.hpp"

#include <cctype>

namespace sessiond::http {

namespace {
int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
}  // namespace

std::string percentDecode(std::string_view text, bool plusIsSpace) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '%' && i + 2 < text.size()) {
            int hi = hexValue(text[i + 1]), lo = hexValue(text[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out.push_back(static_cast<char>(hi * 16 + lo));
                i += 2;
                continue;
            }
        }
        out.push_back(plusIsSpace && c == '+' ? ' ' : c);
    }
    return out;
}

std::string percentEncode(std::string_view text) {
    static constexpr char kDigits[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(kDigits[c >> 4]);
            out.push_back(kDigits[c & 15]);
        }
    }
    return out;
}

std::vector<std::string> splitPath(const std::string& path) {
    std::vector<std::string> segments;
    std::size_t start = 0;
    while (start <= path.size()) {
        std::size_t end = path.find('/', start);
        if (end == std::string::npos) end = path.size();
        if (end > start) segments.push_back(percentDecode(std::string_view(path).substr(start, end - start), false));
        start = end + 1;
    }
    return segments;
}

void Router::add(beast_http::verb method, const std::string& pattern, Handler handler, RouteOptions options) {
    Route route{method, {}, {}, std::move(handler), options};
    std::size_t start = 0;
    while (start <= pattern.size()) {
        std::size_t end = pattern.find('/', start);
        if (end == std::string::npos) end = pattern.size();
        if (end > start) route.segments.push_back(pattern.substr(start, end - start));
        start = end + 1;
    }
    for (const auto& segment : route.segments) route.pattern += "/" + segment;
    if (route.pattern.empty()) route.pattern = "/";
    routes_.push_back(std::move(route));
}

std::vector<std::pair<beast_http::verb, std::string>> Router::routes() const {
    std::vector<std::pair<beast_http::verb, std::string>> out;
    for (const auto& route : routes_) out.emplace_back(route.method, route.pattern);
    return out;
}

bool Router::matches(const Route& route, const std::vector<std::string>& segments,
                     std::map<std::string, std::string>* params) {
    std::map<std::string, std::string> captured;
    std::size_t i = 0;
    for (; i < route.segments.size(); ++i) {
        const std::string& want = route.segments[i];
        bool isParam = want.size() > 2 && want.front() == '{' && want.back() == '}';
        if (isParam && want[want.size() - 2] == '*') {
            if (i >= segments.size()) return false;
            std::string rest;
            for (std::size_t j = i; j < segments.size(); ++j) rest += (j > i ? "/" : "") + segments[j];
            captured[want.substr(1, want.size() - 3)] = rest;
            if (params) *params = std::move(captured);
            return true;
        }
        if (i >= segments.size()) return false;
        if (isParam)
            captured[want.substr(1, want.size() - 2)] = segments[i];
        else if (want != segments[i])
            return false;
    }
    if (i != segments.size()) return false;
    if (params) *params = std::move(captured);
    return true;
}

Router::Match Router::match(Request& request) const {
    auto segments = splitPath(request.path);
    Match result;
    for (const auto& route : routes_) {
        if (route.method == request.message.method()) {
            if (matches(route, segments, &request.params)) {
                result.handler = &route.handler;
                result.options = route.options;
                result.pattern = route.pattern;
                result.allowedMethods.clear();
                return result;
            }
        } else if (matches(route, segments, nullptr)) {
            if (result.pattern.empty()) result.pattern = route.pattern;
            std::string name(beast_http::to_string(route.method));
            if (result.allowedMethods.find(name) == std::string::npos)
                result.allowedMethods += (result.allowedMethods.empty() ? "" : ", ") + name;
        }
    }
    return result;
}

void parseTarget(std::string_view target, Request& request) {
    std::size_t q = target.find('?');
    std::string_view rawPath = target.substr(0, q);
    request.path.clear();
    for (char c : rawPath)
        if (!(c == '/' && !request.path.empty() && request.path.back() == '/')) request.path.push_back(c);
    if (q == std::string_view::npos) return;
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
        std::size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        std::size_t eq = pair.find('=');
        std::string key = percentDecode(pair.substr(0, eq), true);
        std::string value = eq == std::string_view::npos ? "" : percentDecode(pair.substr(eq + 1), true);
        if (!key.empty()) request.query.emplace(std::move(key), std::move(value));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
}

std::optional<Response> unmatchedResponse(const Request& request, const Router::Match& match) {
    if (match.handler) return std::nullopt;
    const std::string method(request.message.method_string());
    if (!match.allowedMethods.empty()) {
        auto response = errorResponse(beast_http::status::method_not_allowed, "MethodNotAllowed",
                                      "The method " + method + " is not allowed on " + request.path +
                                          "; allowed: " + match.allowedMethods + ".");
        response.set(beast_http::field::allow, match.allowedMethods);
        return response;
    }
    return errorResponse(beast_http::status::not_found, "NotFound",
                         "No route matches " + method + " " + request.path + ".");
}

}  // namespace sessiond::http
