#pragma once
// Names of files in a session's data directory as Azure's clients send them:
// relative ("a.csv", "sub/a.csv"), absolute under the data directory
// ("/mnt/data/a.csv", as Semantic Kernel and LlamaIndex upload), or split into
// a `path` query (a directory) and a name. Everything else is refused before
// it reaches the sandbox, whose agent checks again.

#include <optional>
#include <string>

namespace sessiond::api {

inline constexpr const char* kDataDirectory = "/mnt/data";

// The path relative to the data directory ("" is the directory itself), or
// nullopt with `error` set: another absolute path, a "." or ".." segment, a
// NUL or other control character, invalid UTF-8, a segment over 255 bytes, or
// a path over 4096 bytes. Duplicate and trailing slashes are dropped.
std::optional<std::string> dataRelativePath(const std::string& raw, std::string& error);

// `directory` (a `path` query, may be empty) joined with `name`, normalised
// as above; nullopt with `error` set if either is refused or the result is the
// data directory itself (a file name is required).
std::optional<std::string> sessionFilePath(const std::string& directory, const std::string& name, std::string& error);

}  // namespace sessiond::api
