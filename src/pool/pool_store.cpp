#include "sessiond/pool/pool_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "sessiond/unique_fd.hpp"

namespace sessiond {

namespace {

std::runtime_error systemError(const std::string& what, const std::filesystem::path& file) {
    return std::runtime_error(what + " " + file.string() + ": " + std::strerror(errno));
}

std::filesystem::path temporaryOf(const std::filesystem::path& file) { return file.string() + ".new"; }

// Writes `text` to a temporary file beside `file`, flushes it to disk and
// renames it over `file`, so a crash leaves the old state or the new one,
// never half of either.
void replaceFile(const std::filesystem::path& file, const std::string& text) {
    std::filesystem::create_directories(file.parent_path());
    const std::filesystem::path temporary = temporaryOf(file);
    {
        UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        if (!fd) throw systemError("cannot create", temporary);
        std::size_t written = 0;
        while (written < text.size()) {
            ssize_t n = ::write(fd.get(), text.data() + written, text.size() - written);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                auto error = systemError("cannot write", temporary);
                std::filesystem::remove(temporary);
                throw error;
            }
            written += static_cast<std::size_t>(n);
        }
        if (::fsync(fd.get()) != 0) {
            auto error = systemError("cannot flush", temporary);
            std::filesystem::remove(temporary);
            throw error;
        }
    }
    if (::rename(temporary.c_str(), file.c_str()) != 0) {
        auto error = systemError("cannot replace", file);
        std::filesystem::remove(temporary);
        throw error;
    }
    UniqueFd directory(::open(file.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (directory) ::fsync(directory.get());
}

}  // namespace

PoolStore::PoolStore(std::filesystem::path file) : file_(std::move(file)) {
    // A write that a crash interrupted before its rename: the state it held
    // was never committed, so it goes.
    std::error_code ec;
    std::filesystem::remove(temporaryOf(file_), ec);
    if (!std::filesystem::exists(file_)) return;  // nothing changed through the API yet
    const nlohmann::json document = readJsonFile(file_, "pool state file");
    const std::string where = file_.string() + ": ";
    if (!document.is_object()) throw ConfigError(where + "(top level)", "must be an object");
    const auto pools = document.value("pools", nlohmann::json::array());
    const auto deleted = document.value("deleted", nlohmann::json::array());
    if (!pools.is_array()) throw ConfigError(where + "pools", "must be an array");
    if (!deleted.is_array()) throw ConfigError(where + "deleted", "must be an array");
    for (std::size_t i = 0; i < pools.size(); ++i) {
        PoolConfig pool = parsePool(pools[i], where + "pools[" + std::to_string(i) + "]");
        defined_[pool.name] = std::move(pool);
    }
    for (std::size_t i = 0; i < deleted.size(); ++i) {
        if (!deleted[i].is_string())
            throw ConfigError(where + "deleted[" + std::to_string(i) + "]", "must be a pool name");
        deleted_.insert(deleted[i].get<std::string>());
    }
}

std::vector<PoolConfig> PoolStore::overlay(const std::vector<PoolConfig>& configured) const {
    std::vector<PoolConfig> out;
    for (const auto& pool : configured) {
        if (deleted_.count(pool.name) || defined_.count(pool.name)) continue;
        out.push_back(pool);
    }
    for (const auto& [name, pool] : defined_) out.push_back(pool);
    return out;
}

void PoolStore::saveDefinition(const PoolConfig& pool) {
    auto defined = defined_;
    auto deleted = deleted_;
    defined[pool.name] = pool;
    deleted.erase(pool.name);
    write(defined, deleted);
    defined_ = std::move(defined);
    deleted_ = std::move(deleted);
}

void PoolStore::saveDeletion(const std::string& name) {
    auto defined = defined_;
    auto deleted = deleted_;
    defined.erase(name);
    deleted.insert(name);
    write(defined, deleted);
    defined_ = std::move(defined);
    deleted_ = std::move(deleted);
}

void PoolStore::write(const std::map<std::string, PoolConfig>& defined, const std::set<std::string>& deleted) const {
    nlohmann::json document = {{"pools", nlohmann::json::array()}, {"deleted", deleted}};
    for (const auto& [name, pool] : defined) document["pools"].push_back(poolDefinition(pool));
    replaceFile(file_, document.dump(2) + "\n");
}

}  // namespace sessiond
