#include "sessiond/http/multipart.hpp"

#include <string.h>  // memmem

#include <cctype>

#include "sessiond/http/router.hpp"  // percentDecode

namespace sessiond::http {

namespace {

constexpr std::size_t kMaxBoundaryLength = 200;  // RFC 2046 says 70; be generous

bool isSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && isSpace(s.front())) s.remove_prefix(1);
    while (!s.empty() && isSpace(s.back())) s.remove_suffix(1);
    return s;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

struct Param {
    std::string name;  // lower case
    std::string value;
};

// A quoted-string starting at text[pos] == '"'. A backslash escapes only a
// following quote or backslash (RFC 7230 escapes; urllib3 1.x doubles
// backslashes), other backslashes are literal (browsers and urllib3 2.x send
// them raw). If the escapes leave the string unterminated (a raw name ending in
// a backslash), it is read again up to the first quote. Returns the position
// after the closing quote, or npos.
std::size_t readQuoted(std::string_view text, std::size_t pos, std::string& out) {
    out.clear();
    for (std::size_t i = pos + 1; i < text.size(); ++i) {
        char c = text[i];
        if (c == '\\' && i + 1 < text.size() && (text[i + 1] == '"' || text[i + 1] == '\\')) {
            out.push_back(text[++i]);
        } else if (c == '"') {
            return i + 1;
        } else {
            out.push_back(c);
        }
    }
    std::size_t close = text.find('"', pos + 1);
    if (close == std::string_view::npos) return std::string_view::npos;
    out.assign(text.substr(pos + 1, close - pos - 1));
    return close + 1;
}

// Splits "type; a=b; c="d"" into the lower-cased type and its parameters.
// Values may be quoted or bare; a bare value runs to the next ';' (so an
// unquoted "my file.csv" survives). Parameters without '=' are ignored.
bool parseHeaderValue(std::string_view text, std::string& type, std::vector<Param>& params, std::string& error) {
    std::size_t semicolon = text.find(';');
    type = lower(trim(text.substr(0, semicolon)));
    params.clear();
    std::size_t pos = semicolon == std::string_view::npos ? text.size() : semicolon;
    while (pos < text.size()) {
        while (pos < text.size() && (isSpace(text[pos]) || text[pos] == ';')) ++pos;
        if (pos >= text.size()) break;
        std::size_t stop = text.find_first_of("=;", pos);
        if (stop == std::string_view::npos || text[stop] == ';') {
            pos = stop == std::string_view::npos ? text.size() : stop;
            continue;
        }
        Param param;
        param.name = lower(trim(text.substr(pos, stop - pos)));
        pos = stop + 1;
        while (pos < text.size() && isSpace(text[pos])) ++pos;
        if (pos < text.size() && text[pos] == '"') {
            pos = readQuoted(text, pos, param.value);
            if (pos == std::string_view::npos) {
                error = "unterminated quoted value for '" + param.name + "'";
                return false;
            }
            std::size_t next = text.find(';', pos);  // anything after the quotes is ignored
            pos = next == std::string_view::npos ? text.size() : next;
        } else {
            std::size_t next = text.find(';', pos);
            if (next == std::string_view::npos) next = text.size();
            param.value.assign(trim(text.substr(pos, next - pos)));
            pos = next;
        }
        params.push_back(std::move(param));
    }
    return true;
}

const std::string* findParam(const std::vector<Param>& params, std::string_view name) {
    for (const auto& p : params)
        if (p.name == name) return &p.value;
    return nullptr;
}

std::string latin1ToUtf8(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    for (unsigned char c : bytes) {
        if (c < 0x80) {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back(static_cast<char>(0xC0 | (c >> 6)));
            out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        }
    }
    return out;
}

std::optional<std::string> toUtf8(std::string_view charset, std::string bytes) {
    std::string cs = lower(charset);
    if (cs == "utf-8" || cs == "utf8" || cs == "us-ascii") return bytes;
    if (cs == "iso-8859-1" || cs == "latin1" || cs == "latin-1") return latin1ToUtf8(bytes);
    return std::nullopt;
}

// RFC 5987 ext-value: charset'language'percent-encoded.
std::optional<std::string> decodeExtValue(std::string_view value) {
    std::size_t q1 = value.find('\'');
    if (q1 == std::string_view::npos) return std::nullopt;
    std::size_t q2 = value.find('\'', q1 + 1);
    if (q2 == std::string_view::npos) return std::nullopt;
    return toUtf8(value.substr(0, q1), percentDecode(value.substr(q2 + 1), false));
}

std::optional<std::string> base64Decode(std::string_view text) {
    std::string out;
    unsigned buffer = 0;
    int bits = 0;
    for (char c : text) {
        int v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+') v = 62;
        else if (c == '/') v = 63;
        else if (c == '=') break;
        else return std::nullopt;
        buffer = (buffer << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
        }
    }
    return out;
}

int hexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// RFC 2047 encoded words ("=?utf-8?B?4oKsLnR4dA==?="), as .NET writes a
// non-ASCII filename; nullopt unless the whole value is made of them.
std::optional<std::string> decodeEncodedWords(std::string_view value) {
    if (value.size() < 8 || value.substr(0, 2) != "=?" || value.substr(value.size() - 2) != "?=") return std::nullopt;
    std::string out;
    while (true) {
        value = trim(value);
        if (value.empty()) break;
        if (value.substr(0, 2) != "=?") return std::nullopt;
        std::size_t q1 = value.find('?', 2);
        if (q1 == std::string_view::npos || q1 + 2 >= value.size() || value[q1 + 2] != '?') return std::nullopt;
        std::size_t end = value.find("?=", q1 + 3);
        if (end == std::string_view::npos) return std::nullopt;
        std::string_view charset = value.substr(2, q1 - 2);
        charset = charset.substr(0, charset.find('*'));  // RFC 2231 language suffix
        char encoding = static_cast<char>(std::toupper(static_cast<unsigned char>(value[q1 + 1])));
        std::string_view text = value.substr(q1 + 3, end - q1 - 3);
        std::string bytes;
        if (encoding == 'B') {
            auto decoded = base64Decode(text);
            if (!decoded) return std::nullopt;
            bytes = std::move(*decoded);
        } else if (encoding == 'Q') {
            for (std::size_t i = 0; i < text.size(); ++i) {
                int hi, lo;
                if (text[i] == '_')
                    bytes.push_back(' ');
                else if (text[i] == '=' && i + 2 < text.size() && (hi = hexDigit(text[i + 1])) >= 0 &&
                         (lo = hexDigit(text[i + 2])) >= 0) {
                    bytes.push_back(static_cast<char>(hi * 16 + lo));
                    i += 2;
                } else {
                    bytes.push_back(text[i]);
                }
            }
        } else {
            return std::nullopt;
        }
        auto utf8 = toUtf8(charset, std::move(bytes));
        if (!utf8) return std::nullopt;
        out += *utf8;
        value.remove_prefix(end + 2);
    }
    return out;
}

std::string decodeDisplayValue(const std::string& value) {
    auto decoded = decodeEncodedWords(value);
    return decoded ? std::move(*decoded) : value;
}

enum class DelimiterKind { None, Part, Close };

// Classifies what follows a "--boundary" ending at `after`: "--" closes the
// body; optional spaces then CRLF or LF start a part. `next` is set to where the
// part's headers (or the epilogue) begin.
DelimiterKind classify(std::string_view body, std::size_t after, std::size_t& next) {
    if (body.substr(after, 2) == "--") {
        next = after + 2;
        return DelimiterKind::Close;
    }
    std::size_t i = after;
    while (i < body.size() && isSpace(body[i])) ++i;
    if (body.substr(i, 2) == "\r\n") {
        next = i + 2;
        return DelimiterKind::Part;
    }
    if (body.substr(i, 1) == "\n") {
        next = i + 1;
        return DelimiterKind::Part;
    }
    return DelimiterKind::None;
}

struct Delimiter {
    DelimiterKind kind = DelimiterKind::None;
    std::size_t at = 0;    // the LF that starts the delimiter line
    std::size_t next = 0;  // after the delimiter line
};

// The first "\n--boundary" at or after `from` that is a real delimiter.
Delimiter findDelimiter(std::string_view body, std::size_t from, std::string_view needle) {
    Delimiter found;
    while (from < body.size()) {
        const void* hit = memmem(body.data() + from, body.size() - from, needle.data(), needle.size());
        if (!hit) break;
        std::size_t at = static_cast<std::size_t>(static_cast<const char*>(hit) - body.data());
        found.kind = classify(body, at + needle.size(), found.next);
        if (found.kind != DelimiterKind::None) {
            found.at = at;
            return found;
        }
        from = at + 1;
    }
    found.kind = DelimiterKind::None;
    return found;
}

}  // namespace

std::optional<std::string> multipartBoundary(std::string_view contentType, std::string* error) {
    auto fail = [&](std::string message) -> std::optional<std::string> {
        if (error) *error = std::move(message);
        return std::nullopt;
    };
    std::string type, problem;
    std::vector<Param> params;
    if (trim(contentType).empty()) return fail("the request has no Content-Type; multipart/form-data is expected");
    if (!parseHeaderValue(contentType, type, params, problem)) return fail("malformed Content-Type: " + problem);
    if (type != "multipart/form-data")
        return fail("the Content-Type is '" + type + "'; multipart/form-data is expected");
    const std::string* boundary = findParam(params, "boundary");
    if (!boundary || boundary->empty()) return fail("the multipart/form-data Content-Type has no boundary parameter");
    if (boundary->size() > kMaxBoundaryLength)
        return fail("the multipart boundary is longer than " + std::to_string(kMaxBoundaryLength) + " characters");
    for (char c : *boundary)
        if (c == '\r' || c == '\n' || c == '\0') return fail("the multipart boundary contains a control character");
    return *boundary;
}

MultipartResult parseMultipart(std::string_view contentType, std::string_view body, const MultipartLimits& limits) {
    MultipartResult result;
    auto fail = [&](std::string message) {
        result.parts.clear();
        result.error = std::move(message);
        return std::move(result);
    };
    std::string error;
    auto boundary = multipartBoundary(contentType, &error);
    if (!boundary) return fail(error);
    const std::string needle = "\n--" + *boundary;
    const std::string_view dashBoundary = std::string_view(needle).substr(1);

    // The first delimiter opens the body, or ends the preamble.
    Delimiter delimiter;
    if (body.substr(0, dashBoundary.size()) == dashBoundary)
        delimiter.kind = classify(body, dashBoundary.size(), delimiter.next);
    if (delimiter.kind == DelimiterKind::None) delimiter = findDelimiter(body, 0, needle);
    if (delimiter.kind == DelimiterKind::None) return fail("the multipart body has no boundary delimiter");

    while (delimiter.kind == DelimiterKind::Part) {
        std::size_t index = result.parts.size() + 1;
        std::string partName = "part " + std::to_string(index);
        if (result.parts.size() >= limits.maxParts)
            return fail("the multipart body has more than " + std::to_string(limits.maxParts) + " parts");

        // Header lines, CRLF or LF, up to an empty line.
        std::size_t headersStart = delimiter.next;
        std::size_t searchEnd = std::min(body.size(), headersStart + limits.maxPartHeaderBytes);
        std::size_t lineStart = headersStart;
        std::vector<std::pair<std::string, std::string>> headers;
        while (true) {
            std::size_t newline = body.substr(0, searchEnd).find('\n', lineStart);
            if (newline == std::string_view::npos) {
                if (searchEnd < body.size())
                    return fail(partName + ": its headers exceed " + std::to_string(limits.maxPartHeaderBytes) + " bytes");
                return fail(partName + ": the body ends inside its headers (no closing boundary)");
            }
            std::string_view line = body.substr(lineStart, newline - lineStart);
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            lineStart = newline + 1;
            if (line.empty()) break;
            if (isSpace(line.front()) && !headers.empty()) {  // obsolete line folding
                headers.back().second += ' ';
                headers.back().second += trim(line);
                continue;
            }
            std::size_t colon = line.find(':');
            if (colon == std::string_view::npos || trim(line.substr(0, colon)).empty())
                return fail(partName + ": malformed header line");
            headers.emplace_back(lower(trim(line.substr(0, colon))), std::string(trim(line.substr(colon + 1))));
        }
        std::size_t contentStart = lineStart;

        // The content runs to the next "CRLF--boundary" (or "LF--boundary").
        // The search starts at the LF that ended the headers, so an empty part
        // written without its own CRLF is still seen.
        Delimiter next = findDelimiter(body, contentStart - 1, needle);
        if (next.kind == DelimiterKind::None)
            return fail("the multipart body ends without its closing boundary (in " + partName + ")");
        std::size_t contentEnd = next.at < contentStart ? contentStart : next.at;
        if (contentEnd > contentStart && body[contentEnd - 1] == '\r') --contentEnd;

        MultipartPart part;
        part.content = body.substr(contentStart, contentEnd - contentStart);
        const std::string* disposition = nullptr;
        for (const auto& [name, value] : headers) {
            if (name == "content-disposition" && !disposition) disposition = &value;
            if (name == "content-type" && part.contentType.empty()) part.contentType = value;
        }
        if (!disposition) return fail(partName + " has no Content-Disposition header");
        std::string type;
        std::vector<Param> params;
        if (!parseHeaderValue(*disposition, type, params, error))
            return fail(partName + ": malformed Content-Disposition: " + error);
        if (const std::string* name = findParam(params, "name")) part.name = decodeDisplayValue(*name);
        if (const std::string* star = findParam(params, "filename*")) part.filename = decodeExtValue(*star);
        if (!part.filename)
            if (const std::string* filename = findParam(params, "filename")) part.filename = decodeDisplayValue(*filename);
        result.parts.push_back(std::move(part));
        delimiter = next;
    }
    return result;
}

const MultipartPart* findUploadFile(const std::vector<MultipartPart>& parts) {
    for (const auto& part : parts)
        if (part.name == "file") return &part;
    for (const auto& part : parts)
        if (part.filename && !part.filename->empty()) return &part;
    return nullptr;
}

}  // namespace sessiond::http
