// The session's files (its /mnt/data), in both shapes clients use:
//   legacy:             POST python/uploadFile, GET python/files,
//                       GET python/downloadFile?filename= ($values lists)
//   2024-02-02-preview: POST files/upload, GET files, GET files/content/{path},
//                       GET and DELETE files/{name} (value[].properties wrappers)
//   2024-10-02-preview: POST files, GET files, GET files/{name},
//                       GET files/{name}/content, DELETE files/{name} (resources)
// GET files answers both shapes at once (each item carries `properties` and the
// resource fields), so any client reads it. Paths are checked here
// (file_path.hpp) and again by the agent, which alone touches the files.

#include <cctype>
#include <optional>
#include <string>
#include <string_view>

#include "route_groups.hpp"
#include "route_support.hpp"
#include "sessiond/api/file_path.hpp"
#include "sessiond/http/multipart.hpp"

namespace sessiond::api {

namespace {

constexpr const char* kResourceApiVersion = "2024-10-02-preview";

std::string contentTypeFor(const std::string& name) {
    static const std::pair<const char*, const char*> kTypes[] = {
        {".csv", "text/csv"},          {".txt", "text/plain; charset=utf-8"},
        {".md", "text/markdown; charset=utf-8"}, {".json", "application/json"},
        {".html", "text/html; charset=utf-8"},   {".xml", "application/xml"},
        {".py", "text/x-python; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".png", "image/png"},         {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},       {".gif", "image/gif"},
        {".svg", "image/svg+xml"},     {".pdf", "application/pdf"},
        {".zip", "application/zip"},   {".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
        {".docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
        {".parquet", "application/vnd.apache.parquet"},
    };
    auto dot = name.rfind('.');
    if (dot != std::string::npos) {
        std::string extension = name.substr(dot);
        for (char& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        for (const auto& [suffix, type] : kTypes)
            if (extension == suffix) return type;
    }
    return "application/octet-stream";
}

// 2024-02-02-preview: {"filename","size","lastModifiedTime"} (LangChain JS
// types the last as last_modified_time, so both are sent).
nlohmann::json fileProperties(const FileEntry& entry) {
    const std::string modified = isoTime(entry.modifiedMs);
    return {{"filename", entry.path},
            {"size", entry.size},
            {"lastModifiedTime", modified},
            {"last_modified_time", modified},
            {"type", entry.isDirectory ? "directory" : "file"}};
}

// 2024-10-02-preview SessionResourceFile.
nlohmann::json fileResource(const FileEntry& entry) {
    nlohmann::json resource = {{"name", entry.name},
                               {"type", entry.isDirectory ? "directory" : "File"},
                               {"sizeInBytes", entry.size},
                               {"lastModifiedAt", isoTime(entry.modifiedMs)},
                               {"directory", entry.directory}};
    if (!entry.isDirectory) resource["contentType"] = contentTypeFor(entry.name);
    return resource;
}

http::Response fileErrorResponse(const std::string& code, const std::string& message) {
    if (code == "notFound") return errorResponse(status::not_found, "FileNotFound", message);
    if (code == "invalidPath" || code == "isDirectory" || code == "notEmpty" || code == "tooMany")
        return errorResponse(status::bad_request, "SessionRequestValidationFailed", message);
    if (code == "noSpace")
        return errorResponse(status::insufficient_storage, "SessionStorageFull",
                             message + " (the pool's resources.diskMiB limits it)");
    if (code == "tooLarge") return errorResponse(status::payload_too_large, "FileTooLarge", message + ".");
    if (code.empty())
        return errorResponse(status::service_unavailable, "SessionUnavailable",
                             "The session's sandbox failed: " + message);
    return errorResponse(status::internal_server_error, "FileOperationFailed", message);
}

// Finds the pool and identifier, then runs `operation` on the session's sandbox.
// `operation` gets the sandbox and a `finish` to call with the response.
template <typename Operation>
void onSession(PoolManager& pools, Request& request, Responder respond, Operation operation) {
    Pool* pool = findPool(pools, request, respond);
    if (!pool) return;
    auto identifier = sessionIdentifier(request, std::nullopt, respond);
    if (!identifier) return;
    pool->withSession(*identifier,
                      {[respond, operation](Sandbox& sandbox, std::function<void()> finished) {
                           operation(sandbox, [respond, finished](http::Response response) {
                               finished();
                               respond(std::move(response));
                           });
                       },
                       [respond](PoolError error, const std::string& message) {
                           respond(poolErrorResponse(error, message));
                       }});
}

std::string queryOr(const Request& request, const char* key) {
    const std::string* value = request.queryValue(key);
    return value ? *value : "";
}

// The file `name` names (with the `path` query), or nullopt after answering 400.
std::optional<std::string> filePath(const Request& request, const std::string& name, const Responder& respond) {
    std::string error;
    auto path = sessionFilePath(queryOr(request, "path"), name, error);
    if (!path) respond(errorResponse(status::bad_request, "SessionRequestValidationFailed", error));
    return path;
}

// The shapes file listings and uploads answer in.
enum class Shape {
    Legacy,      // python/*: {"$id":"1","$values":[{filename,size,last_modified_time}]}
    Properties,  // 2024-02-02-preview: {"value":[{"properties":{...}}]}
    Resource,    // 2024-10-02-preview: SessionResourceFile
};

nlohmann::json legacyList(const std::vector<FileEntry>& entries) {
    nlohmann::json values = nlohmann::json::array();
    int id = 2;
    for (const auto& entry : entries) {
        nlohmann::json item = fileProperties(entry);
        item["$id"] = std::to_string(id++);
        values.push_back(std::move(item));
    }
    return {{"$id", "1"}, {"$values", std::move(values)}};
}

// The boundary a multipart body opens with ("--BOUNDARY" on its first line),
// if its first line is one: 1 to 70 of RFC 2046's bchars, no trailing space.
std::optional<std::string> openingBoundary(const std::string& body) {
    if (body.rfind("--", 0) != 0) return std::nullopt;
    auto end = body.find('\n');
    if (end == std::string::npos) return std::nullopt;
    std::string boundary = body.substr(2, end - 2);
    if (!boundary.empty() && boundary.back() == '\r') boundary.pop_back();
    if (boundary.empty() || boundary.size() > 70 || boundary.back() == ' ') return std::nullopt;
    constexpr std::string_view kSpecials = "'()+_,-./:=? ";
    for (char c : boundary)
        if (!std::isalnum(static_cast<unsigned char>(c)) && kSpecials.find(c) == std::string_view::npos)
            return std::nullopt;
    return boundary;
}

void upload(PoolManager& pools, Request& request, Responder respond, std::size_t maxUploadBytes, Shape shape) {
    auto notMultipart = [&respond] {
        respond(errorResponse(status::unsupported_media_type, "UnsupportedMediaType",
                              "Upload a file as multipart/form-data with a part named 'file'."));
    };
    std::string contentType(request.message[beast_http::field::content_type]);
    const bool labelled = mediaType(request) == "multipart/form-data";
    if (!labelled) {
        // Semantic Kernel Python's plugin leaves "Content-Type: application/json"
        // on its shared httpx client once it has executed code, and httpx keeps
        // a client header over the multipart one it would write: its uploads
        // then arrive as multipart bodies labelled JSON. The body names its
        // boundary, so such an upload is still read.
        auto boundary = openingBoundary(request.message.body());
        if (!boundary) return notMultipart();
        contentType = "multipart/form-data; boundary=\"" + *boundary + "\"";
    }
    auto form = http::parseMultipart(contentType, request.message.body());
    if (!form.ok() && !labelled) return notMultipart();
    if (!form.ok())
        return respond(errorResponse(status::bad_request, "SessionRequestValidationFailed",
                                     "The multipart body could not be read: " + form.error));
    const http::MultipartPart* file = http::findUploadFile(form.parts);
    if (!file)
        return respond(errorResponse(status::bad_request, "SessionPropertiesMissing",
                                     "The upload needs a multipart part named 'file' with a filename."));
    if (file->content.size() > maxUploadBytes)
        return respond(errorResponse(status::payload_too_large, "RequestBodyTooLarge",
                                     "The file exceeds the upload limit of " + std::to_string(maxUploadBytes) +
                                         " bytes."));
    auto path = filePath(request, file->filename.value_or(""), respond);
    if (!path) return;

    // The work runs once; the copy leaves the request's body behind.
    auto bytes = std::make_shared<std::string>(file->content);
    onSession(pools, request, std::move(respond),
              [path = *path, bytes, shape](Sandbox& sandbox, auto finish) {
                  sandbox.writeFile(path, std::move(*bytes), [finish, shape](Outcome<FileEntry> written) {
                      if (!written.ok()) return finish(fileErrorResponse(written.code, written.error));
                      if (shape == Shape::Resource) return finish(jsonResponse(status::ok, fileResource(written.value)));
                      if (shape == Shape::Legacy) return finish(jsonResponse(status::ok, legacyList({written.value})));
                      nlohmann::json properties = fileProperties(written.value);
                      properties["$id"] = "3";
                      finish(jsonResponse(status::ok,
                                          {{"$id", "1"}, {"value", {{{"$id", "2"}, {"properties", properties}}}}}));
                  });
              });
}

void list(PoolManager& pools, Request& request, Responder respond, Shape shape) {
    std::string error;
    auto directory = dataRelativePath(queryOr(request, "path"), error);
    if (!directory) return respond(errorResponse(status::bad_request, "SessionRequestValidationFailed", error));
    const std::string recursiveText = queryOr(request, "recursive");
    const bool recursive = recursiveText == "true" || recursiveText == "True" || recursiveText == "1";
    onSession(pools, request, std::move(respond), [directory = *directory, recursive, shape](Sandbox& sandbox, auto finish) {
        sandbox.listFiles(directory, recursive, [finish, shape](Outcome<std::vector<FileEntry>> listed) {
            if (!listed.ok()) return finish(fileErrorResponse(listed.code, listed.error));
            if (shape == Shape::Legacy) return finish(jsonResponse(status::ok, legacyList(listed.value)));
            nlohmann::json value = nlohmann::json::array();
            int id = 2;
            for (const auto& entry : listed.value) {
                nlohmann::json item = fileResource(entry);
                nlohmann::json properties = fileProperties(entry);
                properties["$id"] = std::to_string(id + 1);
                item["$id"] = std::to_string(id);
                item["properties"] = std::move(properties);
                value.push_back(std::move(item));
                id += 2;
            }
            finish(jsonResponse(status::ok, {{"$id", "1"}, {"value", std::move(value)}}));
        });
    });
}

void download(PoolManager& pools, Request& request, Responder respond, const std::string& name,
              std::uint64_t maxBytes) {
    auto path = filePath(request, name, respond);
    if (!path) return;
    onSession(pools, request, std::move(respond), [path = *path, maxBytes](Sandbox& sandbox, auto finish) {
        sandbox.readFile(path, maxBytes, [finish](Outcome<FileContent> read) {
            if (!read.ok()) return finish(fileErrorResponse(read.code, read.error));
            http::Response response{status::ok, 11};
            response.set(beast_http::field::content_type, contentTypeFor(read.value.entry.name));
            response.set(beast_http::field::last_modified, httpDate(read.value.entry.modifiedMs));
            response.body() = std::move(read.value.bytes);
            response.prepare_payload();
            finish(std::move(response));
        });
    });
}

void describeFile(PoolManager& pools, Request& request, Responder respond, const std::string& name) {
    auto path = filePath(request, name, respond);
    if (!path) return;
    const bool resourceShape = apiVersionAtLeast(request, kResourceApiVersion);
    onSession(pools, request, std::move(respond), [path = *path, resourceShape](Sandbox& sandbox, auto finish) {
        sandbox.statFile(path, [finish, resourceShape](Outcome<FileEntry> found) {
            if (!found.ok()) return finish(fileErrorResponse(found.code, found.error));
            if (resourceShape) return finish(jsonResponse(status::ok, fileResource(found.value)));
            nlohmann::json properties = fileProperties(found.value);
            properties["$id"] = "3";
            finish(jsonResponse(status::ok, {{"$id", "1"}, {"value", {{{"$id", "2"}, {"properties", properties}}}}}));
        });
    });
}

void remove(PoolManager& pools, Request& request, Responder respond, const std::string& name) {
    auto path = filePath(request, name, respond);
    if (!path) return;
    const bool resourceShape = apiVersionAtLeast(request, kResourceApiVersion);
    onSession(pools, request, std::move(respond), [path = *path, resourceShape](Sandbox& sandbox, auto finish) {
        sandbox.deleteFile(path, [finish, resourceShape](Outcome<Done> deleted) {
            if (!deleted.ok()) return finish(fileErrorResponse(deleted.code, deleted.error));
            if (resourceShape) {
                http::Response response{status::no_content, 11};
                response.prepare_payload();
                return finish(std::move(response));
            }
            finish(jsonResponse(status::ok, {{"message", "file deleted successfully"}}));
        });
    });
}

// GET files/{name*}: "content/<path>" is the 2024-02-02 download,
// "<path>/content" the 2024-10-02 one, anything else the file's metadata.
// A name that fits both reads the way its api-version does.
void getFile(PoolManager& pools, Request& request, Responder respond, std::uint64_t maxDownloadBytes) {
    const std::string& name = request.params.at("name");
    const bool resourceFirst = apiVersionAtLeast(request, kResourceApiVersion);
    const std::string prefix = "content/", suffix = "/content";
    const bool prefixed = name.rfind(prefix, 0) == 0 && name.size() > prefix.size();
    const bool suffixed = name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (suffixed && (resourceFirst || !prefixed))
        return download(pools, request, std::move(respond), name.substr(0, name.size() - suffix.size()),
                        maxDownloadBytes);
    if (prefixed) return download(pools, request, std::move(respond), name.substr(prefix.size()), maxDownloadBytes);
    describeFile(pools, request, std::move(respond), name);
}

}  // namespace

void addFileRoutes(http::Router& router, PoolManager& pools, const HttpConfig& limits) {
    const std::size_t maxUploadBytes = limits.maxUploadBytes;
    const std::uint64_t maxDownloadBytes = limits.maxDownloadBytes;
    auto uploadRoute = [&router, &pools, maxUploadBytes](const char* pattern, Shape shape) {
        router.add(
            beast_http::verb::post, pattern,
            [&pools, maxUploadBytes, shape](Request& request, Responder respond) {
                upload(pools, request, std::move(respond), maxUploadBytes, shape);
            },
            http::RouteOptions{http::BodyLimit::Upload});
    };
    uploadRoute("/pools/{pool}/files/upload", Shape::Properties);
    uploadRoute("/pools/{pool}/files", Shape::Resource);
    router.add(beast_http::verb::get, "/pools/{pool}/files", [&pools](Request& request, Responder respond) {
        list(pools, request, std::move(respond), Shape::Properties);
    });
    // The legacy routes, still used by LlamaIndexTS and early Semantic Kernel.
    uploadRoute("/pools/{pool}/python/uploadFile", Shape::Legacy);
    router.add(beast_http::verb::get, "/pools/{pool}/python/files", [&pools](Request& request, Responder respond) {
        list(pools, request, std::move(respond), Shape::Legacy);
    });
    router.add(beast_http::verb::get, "/pools/{pool}/python/downloadFile", [&pools, maxDownloadBytes](Request& request,
                                                                                                     Responder respond) {
        const std::string filename = queryOr(request, "filename");
        if (filename.empty())
            return respond(errorResponse(status::bad_request, "SessionRequestValidationFailed",
                                         "The query parameter 'filename' (the file to download) is required."));
        download(pools, request, std::move(respond), filename, maxDownloadBytes);
    });
    router.add(beast_http::verb::get, "/pools/{pool}/files/{name*}",
               [&pools, maxDownloadBytes](Request& request, Responder respond) {
                   getFile(pools, request, std::move(respond), maxDownloadBytes);
               });
    router.add(beast_http::verb::delete_, "/pools/{pool}/files/{name*}", [&pools](Request& request, Responder respond) {
        remove(pools, request, std::move(respond), request.params.at("name"));
    });
}

}  // namespace sessiond::api
