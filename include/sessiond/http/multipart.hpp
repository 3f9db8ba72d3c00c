#pragma once
// multipart/form-data (RFC 7578 over RFC 2046) for file uploads, tolerant of
// what real clients write: python-requests, aiohttp, .NET MultipartFormDataContent
// and JS FormData (undici, browsers).
//
// The parser works on a body already read whole (the HTTP layer bounds its size),
// copies nothing of the content: each part's `content` is a view into the body
// given to parseMultipart, valid only as long as that body is.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::http {

struct MultipartPart {
    std::string name;                     // Content-Disposition `name` ("" if absent)
    // Content-Disposition `filename*` (RFC 5987, decoded) when present and
    // decodable, else `filename` (quotes removed; an RFC 2047 "=?utf-8?B?...?="
    // word, as .NET writes non-ASCII names, decoded; percent-escapes are kept as
    // sent, as browsers' %22 and aiohttp's percent-encoded names arrive).
    // nullopt: no filename at all (a plain form field); "" when sent empty.
    std::optional<std::string> filename;
    std::string contentType;              // the part's Content-Type as sent, "" if absent
    std::string_view content;             // the part's bytes, a view into the body
};

struct MultipartLimits {
    std::size_t maxParts = 100;
    std::size_t maxPartHeaderBytes = 16 * 1024;  // one part's header block
};

struct MultipartResult {
    std::vector<MultipartPart> parts;
    std::string error;  // non-empty when the body was refused; `parts` is then empty
    bool ok() const { return error.empty(); }
};

// `contentType` is the request's Content-Type header value, which must be
// multipart/form-data with a boundary parameter (quoted or not). Part header
// lines may end in CRLF or a bare LF; a preamble and an epilogue are ignored.
// A body without its closing boundary is an error, as are more parts than
// `limits.maxParts` and a part header block over `limits.maxPartHeaderBytes`.
MultipartResult parseMultipart(std::string_view contentType, std::string_view body,
                               const MultipartLimits& limits = {});

// The boundary parameter of a multipart Content-Type value; nullopt (and
// `error` set, if given) when the value is not multipart/form-data or has none.
std::optional<std::string> multipartBoundary(std::string_view contentType, std::string* error = nullptr);

// The upload's file part, as Azure picks it: the first part named "file", else
// the first part with a non-empty filename; null when there is neither.
const MultipartPart* findUploadFile(const std::vector<MultipartPart>& parts);

}  // namespace sessiond::http
