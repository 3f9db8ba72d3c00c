// multipart/form-data parsing, on bodies byte for byte as real clients write
// them, and on the malformed and oversized ones the parser must refuse.

#include <gtest/gtest.h>

#include "sessiond/http/multipart.hpp"

using sessiond::http::findUploadFile;
using sessiond::http::MultipartLimits;
using sessiond::http::MultipartPart;
using sessiond::http::multipartBoundary;
using sessiond::http::parseMultipart;

namespace {

const std::string kCsv = "a,b\n1,2\n";

// Binary content that looks like everything the parser looks for.
std::string trickyBinary(const std::string& boundary) {
    std::string s;
    s += std::string("\0\x01\xff", 3);
    s += "\r\n";
    s += "--" + boundary.substr(0, boundary.size() / 2);  // a half boundary
    s += "\r\n--" + boundary + "x";                        // boundary followed by a non-delimiter byte
    s += "\n\n\r\r\n";
    s += std::string(1, '\0');
    s += "\r\n--";
    s += "\r";
    return s;
}

}  // namespace

// requests.post(url, files={"file": ("data.csv", data, "application/octet-stream")},
//               data={"purpose": "assistants"})  (urllib3 2.x encode_multipart_formdata)
TEST(Multipart, PythonRequestsBody) {
    const std::string boundary = "1b4cf6c5ab2b59d0b7d9a4f0e2cb6a11";
    std::string body = "--" + boundary + "\r\n" +
                       "Content-Disposition: form-data; name=\"purpose\"\r\n"
                       "\r\n"
                       "assistants\r\n"
                       "--" + boundary + "\r\n" +
                       "Content-Disposition: form-data; name=\"file\"; filename=\"data.csv\"\r\n"
                       "Content-Type: application/octet-stream\r\n"
                       "\r\n" +
                       kCsv + "\r\n" + "--" + boundary + "--\r\n";
    auto result = parseMultipart("multipart/form-data; boundary=" + boundary, body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 2u);
    EXPECT_EQ(result.parts[0].name, "purpose");
    EXPECT_FALSE(result.parts[0].filename);
    EXPECT_EQ(result.parts[0].content, "assistants");
    EXPECT_EQ(result.parts[0].contentType, "");
    EXPECT_EQ(result.parts[1].name, "file");
    EXPECT_EQ(result.parts[1].filename, "data.csv");
    EXPECT_EQ(result.parts[1].contentType, "application/octet-stream");
    EXPECT_EQ(result.parts[1].content, kCsv);
    // The content is a view into the body, not a copy.
    EXPECT_GE(result.parts[1].content.data(), body.data());
    EXPECT_LE(result.parts[1].content.data() + result.parts[1].content.size(), body.data() + body.size());
    EXPECT_EQ(findUploadFile(result.parts), &result.parts[1]);
}

// aiohttp 3.9+ FormData.add_field("file", data, filename=..., content_type=...):
// Content-Type before Content-Disposition, the filename percent-encoded (kept as sent).
TEST(Multipart, AiohttpBody) {
    const std::string boundary = "5c0a0f4c2e8d4a3e9f3b6d7e1a2b3c4d";
    std::string body = "--" + boundary + "\r\n" +
                       "Content-Type: application/octet-stream\r\n"
                       "Content-Disposition: form-data; name=\"file\"; filename=\"my%20data.csv\"\r\n"
                       "\r\n" +
                       kCsv + "\r\n" + "--" + boundary + "--\r\n";
    auto result = parseMultipart("multipart/form-data; boundary=" + boundary, body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 1u);
    EXPECT_EQ(result.parts[0].name, "file");
    EXPECT_EQ(result.parts[0].filename, "my%20data.csv");
    EXPECT_EQ(result.parts[0].contentType, "application/octet-stream");
    EXPECT_EQ(result.parts[0].content, kCsv);
}

// aiohttp before 3.9 also sent filename*, with the same percent-encoded value.
TEST(Multipart, OlderAiohttpBodyWithFilenameStar) {
    const std::string boundary = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    std::string body = "--" + boundary + "\r\n" +
                       "Content-Type: application/octet-stream\r\n"
                       "Content-Disposition: form-data; name=\"file\"; filename=\"my%20data.csv\"; "
                       "filename*=utf-8''my%20data.csv\r\n"
                       "\r\n" +
                       kCsv + "\r\n" + "--" + boundary + "--\r\n";
    auto result = parseMultipart("multipart/form-data; boundary=" + boundary, body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 1u);
    EXPECT_EQ(result.parts[0].filename, "my data.csv");
}

// new MultipartFormDataContent { { new ByteArrayContent(bytes), "file", name } }:
// quoted boundary, unquoted token values, filename* beside filename, non-ASCII
// filenames as RFC 2047 words, names that are not tokens quoted.
TEST(Multipart, DotNetMultipartFormDataContentBody) {
    const std::string boundary = "6f1c7a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
    const std::string contentType = "multipart/form-data; boundary=\"" + boundary + "\"";
    std::string body = "--" + boundary + "\r\n" +
                       "Content-Disposition: form-data; name=file; filename=data.csv; filename*=utf-8''data.csv\r\n"
                       "\r\n" +
                       kCsv + "\r\n--" + boundary + "--\r\n";
    auto result = parseMultipart(contentType, body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 1u);
    EXPECT_EQ(result.parts[0].name, "file");
    EXPECT_EQ(result.parts[0].filename, "data.csv");
    EXPECT_EQ(result.parts[0].content, kCsv);

    // "€.txt": filename* is preferred; filename alone still decodes.
    std::string euro = "--" + boundary + "\r\n" +
                       "Content-Type: text/plain\r\n"
                       "Content-Disposition: form-data; name=file; filename=\"=?utf-8?B?4oKsLnR4dA==?=\"; "
                       "filename*=utf-8''%E2%82%AC.txt\r\n"
                       "\r\n"
                       "euro\r\n--" + boundary + "\r\n" +
                       "Content-Disposition: form-data; name=other; filename=\"=?utf-8?B?4oKsLnR4dA==?=\"\r\n"
                       "\r\n"
                       "x\r\n--" + boundary + "\r\n" +
                       "Content-Disposition: form-data; name=file2; filename=\"/mnt/data/a b.csv\"; "
                       "filename*=utf-8''%2Fmnt%2Fdata%2Fa%20b.csv\r\n"
                       "\r\n"
                       "y\r\n--" + boundary + "--\r\n";
    result = parseMultipart(contentType, euro);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 3u);
    EXPECT_EQ(result.parts[0].filename, "\xE2\x82\xAC.txt");
    EXPECT_EQ(result.parts[0].contentType, "text/plain");
    EXPECT_EQ(result.parts[0].content, "euro");
    EXPECT_EQ(result.parts[1].filename, "\xE2\x82\xAC.txt");
    EXPECT_EQ(result.parts[2].filename, "/mnt/data/a b.csv");
}

// fetch(url, {method: "POST", body: formData}) in Node (undici): a boundary that
// itself starts with dashes, string fields without Content-Type.
TEST(Multipart, UndiciFormDataBody) {
    const std::string boundary = "----formdata-undici-042137766181";
    std::string body = "--" + boundary + "\r\n" +
                       "Content-Disposition: form-data; name=\"note\"\r\n"
                       "\r\n"
                       "line1\r\nline2\r\n" +
                       "--" + boundary + "\r\n" +
                       "Content-Disposition: form-data; name=\"file\"; filename=\"sub/data.csv\"\r\n"
                       "Content-Type: application/octet-stream\r\n"
                       "\r\n" +
                       kCsv + "\r\n" + "--" + boundary + "--\r\n";
    auto result = parseMultipart("multipart/form-data; boundary=" + boundary, body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 2u);
    EXPECT_EQ(result.parts[0].name, "note");
    EXPECT_EQ(result.parts[0].content, "line1\r\nline2");
    EXPECT_FALSE(result.parts[0].filename);
    EXPECT_EQ(result.parts[1].filename, "sub/data.csv");
    EXPECT_EQ(result.parts[1].content, kCsv);
    EXPECT_EQ(findUploadFile(result.parts), &result.parts[1]);
}

// Browsers escape '"' as %22 (kept as sent); backslashes come raw or doubled.
TEST(Multipart, QuotedValuesAndEscapes) {
    std::string body =
        "--b\r\n"
        "Content-Disposition: form-data; name=\"f1\"; filename=\"semi;colon \\\"q\\\".txt\"\r\n\r\nA\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=\"f2\"; filename=\"a%22b.txt\"\r\n\r\nB\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=\"f3\"; filename=\"C:\\dir\\x.txt\"\r\n\r\nC\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=\"f4\"; filename=\"dir\\\\x.txt\"\r\n\r\nD\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=\"f5\"; filename=\"ends-in\\\"\r\n\r\nE\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name = f6 ;filename= my file.csv ; extra\r\n\r\nF\r\n"
        "--b--";
    auto result = parseMultipart("multipart/form-data; boundary=b", body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 6u);
    EXPECT_EQ(result.parts[0].filename, "semi;colon \"q\".txt");
    EXPECT_EQ(result.parts[1].filename, "a%22b.txt");
    EXPECT_EQ(result.parts[2].filename, "C:\\dir\\x.txt");
    EXPECT_EQ(result.parts[3].filename, "dir\\x.txt");
    EXPECT_EQ(result.parts[4].filename, "ends-in\\");
    EXPECT_EQ(result.parts[5].name, "f6");
    EXPECT_EQ(result.parts[5].filename, "my file.csv");
    EXPECT_EQ(result.parts[5].content, "F");
}

TEST(Multipart, FilenameStarCharsetsAndFallback) {
    std::string body =
        "--b\r\n"
        "Content-Disposition: form-data; name=a; filename*=UTF-8'en'%E2%82%AC.txt; filename=fallback.txt\r\n\r\n1\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=b; filename*=iso-8859-1''caf%E9.txt\r\n\r\n2\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=c; filename=\"plain.txt\"; filename*=koi8-r''%C1.txt\r\n\r\n3\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=d; filename*=\"utf-8''quoted.txt\"\r\n\r\n4\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=e; filename*=broken.txt; filename=ok.txt\r\n\r\n5\r\n"
        "--b--\r\n";
    auto result = parseMultipart("multipart/form-data; boundary=b", body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 5u);
    EXPECT_EQ(result.parts[0].filename, "\xE2\x82\xAC.txt");
    EXPECT_EQ(result.parts[1].filename, "caf\xC3\xA9.txt");
    EXPECT_EQ(result.parts[2].filename, "plain.txt");  // unknown charset: filename instead
    EXPECT_EQ(result.parts[3].filename, "quoted.txt");
    EXPECT_EQ(result.parts[4].filename, "ok.txt");
}

TEST(Multipart, HeaderAndParameterNamesAreCaseInsensitive) {
    std::string body =
        "--XyZ\r\n"
        "content-type: text/csv\r\n"
        "CONTENT-DISPOSITION: Form-Data; NAME=\"file\"; FileName=\"x.csv\"\r\n"
        "\r\n"
        "data\r\n"
        "--XyZ--\r\n";
    auto result = parseMultipart("Multipart/Form-Data; BOUNDARY=XyZ", body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 1u);
    EXPECT_EQ(result.parts[0].name, "file");
    EXPECT_EQ(result.parts[0].filename, "x.csv");
    EXPECT_EQ(result.parts[0].contentType, "text/csv");
    EXPECT_EQ(result.parts[0].content, "data");
}

TEST(Multipart, BoundaryParameterForms) {
    EXPECT_EQ(multipartBoundary("multipart/form-data; boundary=abc"), "abc");
    EXPECT_EQ(multipartBoundary("multipart/form-data;boundary=\"abc\""), "abc");
    EXPECT_EQ(multipartBoundary("multipart/form-data; charset=utf-8; boundary = abc ; x=y"), "abc");
    EXPECT_EQ(multipartBoundary("multipart/form-data; boundary=\"a:b=c d?\""), "a:b=c d?");
    std::string error;
    EXPECT_FALSE(multipartBoundary("multipart/form-data", &error));
    EXPECT_NE(error.find("boundary"), std::string::npos);
    EXPECT_FALSE(multipartBoundary("multipart/form-data; boundary=", &error));
    EXPECT_FALSE(multipartBoundary("multipart/form-data; boundary=\"\"", &error));
    EXPECT_FALSE(multipartBoundary("multipart/form-data; boundary=\"abc", &error));
    EXPECT_FALSE(multipartBoundary("application/json; boundary=abc", &error));
    EXPECT_NE(error.find("application/json"), std::string::npos);
    EXPECT_FALSE(multipartBoundary("", &error));
    EXPECT_FALSE(multipartBoundary("multipart/form-data; boundary=" + std::string(201, 'a'), &error));
}

TEST(Multipart, BareLineFeedsAreTolerated) {
    std::string body =
        "--b\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\n"
        "Content-Type: text/plain\n"
        "\n"
        "hello\nworld\n"
        "--b\n"
        "Content-Disposition: form-data; name=\"x\"\n"
        "\n"
        "1\n"
        "--b--\n";
    auto result = parseMultipart("multipart/form-data; boundary=b", body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 2u);
    EXPECT_EQ(result.parts[0].content, "hello\nworld");
    EXPECT_EQ(result.parts[0].contentType, "text/plain");
    EXPECT_EQ(result.parts[1].content, "1");
}

TEST(Multipart, PreambleEpilogueAndTransportPadding) {
    std::string body =
        "This is the preamble.\r\n--b is not a delimiter here\r\n"
        "--b  \t\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
        "\r\n"
        "content\r\n"
        "--b--  \r\n"
        "This is the epilogue.\r\n--b\r\nContent-Disposition: form-data; name=\"ignored\"\r\n\r\nx\r\n";
    auto result = parseMultipart("multipart/form-data; boundary=b", body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 1u);
    EXPECT_EQ(result.parts[0].content, "content");
}

TEST(Multipart, BinaryContentIsExact) {
    const std::string boundary = "Bnd0123";
    std::string binary = trickyBinary(boundary);
    std::string allBytes;
    for (int i = 0; i < 256; ++i) allBytes.push_back(static_cast<char>(i));
    std::string body = "--" + boundary + "\r\n" +
                       "Content-Disposition: form-data; name=\"file\"; filename=\"blob.bin\"\r\n"
                       "Content-Type: application/octet-stream\r\n\r\n" +
                       binary + "\r\n--" + boundary + "\r\n" +
                       "Content-Disposition: form-data; name=\"all\"; filename=\"all.bin\"\r\n\r\n" + allBytes +
                       "\r\n--" + boundary + "\r\n" +
                       "Content-Disposition: form-data; name=\"crlf\"; filename=\"crlf.bin\"\r\n\r\n" + "\r\n\r\n" +
                       "\r\n--" + boundary + "--\r\n";
    auto result = parseMultipart("multipart/form-data; boundary=" + boundary, body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 3u);
    EXPECT_EQ(result.parts[0].content, binary);
    EXPECT_EQ(result.parts[1].content, allBytes);
    EXPECT_EQ(result.parts[2].content, "\r\n\r\n");
}

TEST(Multipart, EmptyPartsAndEmptyBodies) {
    std::string body =
        "--b\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"\"\r\n"
        "Content-Type: application/octet-stream\r\n"
        "\r\n"
        "\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=\"nocrlf\"\r\n"
        "\r\n"
        "--b--\r\n";
    auto result = parseMultipart("multipart/form-data; boundary=b", body);
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 2u);
    EXPECT_EQ(result.parts[0].filename, "");
    EXPECT_TRUE(result.parts[0].content.empty());
    EXPECT_EQ(result.parts[1].name, "nocrlf");
    EXPECT_TRUE(result.parts[1].content.empty());

    // A form with no fields at all (requests/aiohttp with empty data) is valid.
    result = parseMultipart("multipart/form-data; boundary=b", "--b--\r\n");
    ASSERT_TRUE(result.ok()) << result.error;
    EXPECT_TRUE(result.parts.empty());
    EXPECT_EQ(findUploadFile(result.parts), nullptr);
}

TEST(Multipart, MissingFinalBoundaryIsAnError) {
    const std::string type = "multipart/form-data; boundary=b";
    const std::string head = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n";
    for (const std::string& body : {head + "content", head + "content\r\n", head + "content\r\n--b",
                                    head + "content\r\n--b-", head + "content\r\n--b\r\n",
                                    std::string("--b\r\nContent-Disposition: form-data; name=\"file\"\r\n"),
                                    std::string("--b\r\nContent-Disposition: form-data"), std::string(""),
                                    std::string("no delimiter at all"), std::string("--bb\r\n--b-\r\n")}) {
        auto result = parseMultipart(type, body);
        EXPECT_FALSE(result.ok()) << body;
        EXPECT_FALSE(result.error.empty());
        EXPECT_TRUE(result.parts.empty());
    }
    auto result = parseMultipart(type, head + "content\r\n--b\r\n");
    EXPECT_NE(result.error.find("boundary"), std::string::npos) << result.error;
}

TEST(Multipart, MalformedPartsAreErrors) {
    const std::string type = "multipart/form-data; boundary=b";
    auto noDisposition = parseMultipart(type, "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n");
    EXPECT_FALSE(noDisposition.ok());
    EXPECT_NE(noDisposition.error.find("Content-Disposition"), std::string::npos) << noDisposition.error;
    EXPECT_FALSE(parseMultipart(type, "--b\r\nnot a header\r\n\r\nx\r\n--b--\r\n").ok());
    EXPECT_FALSE(parseMultipart(type, "--b\r\nContent-Disposition: form-data; name=\"x\r\n\r\nx\r\n--b--\r\n").ok());
    auto noBoundary = parseMultipart("multipart/form-data", "--b\r\n\r\nx\r\n--b--\r\n");
    EXPECT_FALSE(noBoundary.ok());
    EXPECT_NE(noBoundary.error.find("boundary"), std::string::npos);
    EXPECT_FALSE(parseMultipart("text/plain", "--b--").ok());
}

TEST(Multipart, FoldedHeadersAreJoined) {
    auto result = parseMultipart("multipart/form-data; boundary=b",
                                 "--b\r\nContent-Disposition: form-data;\r\n name=\"file\";\r\n\tfilename=\"f.txt\"\r\n\r\n"
                                 "x\r\n--b--\r\n");
    ASSERT_TRUE(result.ok()) << result.error;
    ASSERT_EQ(result.parts.size(), 1u);
    EXPECT_EQ(result.parts[0].name, "file");
    EXPECT_EQ(result.parts[0].filename, "f.txt");
}

TEST(Multipart, PartCountIsBounded) {
    auto bodyWith = [](int parts) {
        std::string body;
        for (int i = 0; i < parts; ++i)
            body += "--b\r\nContent-Disposition: form-data; name=\"f" + std::to_string(i) + "\"\r\n\r\nv\r\n";
        return body + "--b--\r\n";
    };
    auto result = parseMultipart("multipart/form-data; boundary=b", bodyWith(100));
    ASSERT_TRUE(result.ok()) << result.error;
    EXPECT_EQ(result.parts.size(), 100u);
    result = parseMultipart("multipart/form-data; boundary=b", bodyWith(101));
    EXPECT_FALSE(result.ok());
    EXPECT_NE(result.error.find("100"), std::string::npos) << result.error;
    MultipartLimits limits;
    limits.maxParts = 3;
    EXPECT_TRUE(parseMultipart("multipart/form-data; boundary=b", bodyWith(3), limits).ok());
    EXPECT_FALSE(parseMultipart("multipart/form-data; boundary=b", bodyWith(4), limits).ok());
}

TEST(Multipart, PartHeaderSizeIsBounded) {
    MultipartLimits limits;
    limits.maxPartHeaderBytes = 256;
    auto bodyWith = [](std::size_t padding) {
        return "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\nX-Pad: " +
               std::string(padding, 'p') + "\r\n\r\ncontent\r\n--b--\r\n";
    };
    EXPECT_TRUE(parseMultipart("multipart/form-data; boundary=b", bodyWith(100), limits).ok());
    auto result = parseMultipart("multipart/form-data; boundary=b", bodyWith(1000), limits);
    EXPECT_FALSE(result.ok());
    EXPECT_NE(result.error.find("256"), std::string::npos) << result.error;
    // A header block that never ends is refused at the limit, not scanned to the end.
    std::string endless = "--b\r\nContent-Disposition: form-data; name=\"f\"" + std::string(1 << 20, 'x');
    result = parseMultipart("multipart/form-data; boundary=b", endless, limits);
    EXPECT_FALSE(result.ok());
    EXPECT_NE(result.error.find("exceed"), std::string::npos) << result.error;
}

TEST(Multipart, FindUploadFileTheAzureWay) {
    std::vector<MultipartPart> parts(3);
    parts[0].name = "purpose";
    parts[1].name = "upload";
    parts[1].filename = "x.csv";
    parts[2].name = "file";
    parts[2].filename = "y.csv";
    EXPECT_EQ(findUploadFile(parts), &parts[2]);  // named "file" wins
    parts[2].name = "other";
    EXPECT_EQ(findUploadFile(parts), &parts[1]);  // else the first with a filename
    parts[1].filename = "";
    EXPECT_EQ(findUploadFile(parts), &parts[2]);
    parts[1].filename.reset();
    parts[2].filename.reset();
    EXPECT_EQ(findUploadFile(parts), nullptr);
}
