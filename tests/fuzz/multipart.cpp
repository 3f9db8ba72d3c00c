// An upload as the file route reads it (src/api/file_routes.cpp): the first
// line of the input is the request's Content-Type, the rest its body. Every
// part's content is read, so that a view outside the body shows under ASan.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sessiond/http/multipart.hpp"

namespace {

void check(const sessiond::http::MultipartResult& result, std::string_view body, std::size_t maxParts) {
    if (!result.ok()) {
        if (!result.parts.empty()) __builtin_trap();  // a refused body has no parts
        return;
    }
    if (result.parts.size() > maxParts) __builtin_trap();
    volatile unsigned sum = 0;
    for (const auto& part : result.parts) {
        if (!part.content.empty() &&
            (part.content.data() < body.data() || part.content.data() + part.content.size() > body.data() + body.size()))
            __builtin_trap();  // content is a view into the body
        for (char c : part.content) sum = sum + static_cast<unsigned char>(c);
    }
    if (const auto* file = sessiond::http::findUploadFile(result.parts)) sum = sum + file->name.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t newline = input.find('\n');
    if (newline == std::string_view::npos) return 0;
    const std::string contentType(input.substr(0, newline));
    // A copy of exactly the body's bytes, so that reading past it is caught.
    const std::string body(input.substr(newline + 1));

    std::string error;
    sessiond::http::multipartBoundary(contentType, &error);
    check(sessiond::http::parseMultipart(contentType, body), body, sessiond::http::MultipartLimits{}.maxParts);
    // Small limits, as the server's, reached by small inputs.
    const sessiond::http::MultipartLimits small{.maxParts = 3, .maxPartHeaderBytes = 64};
    check(sessiond::http::parseMultipart(contentType, body, small), body, small.maxParts);
    return 0;
}
