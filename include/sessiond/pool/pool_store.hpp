#pragma once
// Pools created, changed or deleted through the administration API, kept in
// one JSON file so they survive a restart. The configuration file stays the
// operator's: the store records only what the API changed, and at start
// those changes are laid over the configuration's pools (an API definition
// wins over the configuration's pool of the same name; a pool deleted
// through the API stays deleted).

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "sessiond/config.hpp"

namespace sessiond {

class PoolStore {
public:
    // Reads `file` if it exists; throws ConfigError naming the file and the
    // field if it cannot be read or a stored definition is invalid.
    explicit PoolStore(std::filesystem::path file);

    // The configuration's pools with the stored changes applied.
    std::vector<PoolConfig> overlay(const std::vector<PoolConfig>& configured) const;

    // Record a change; the file is replaced atomically before they return,
    // and they throw std::runtime_error (and record nothing) if it cannot be.
    void saveDefinition(const PoolConfig& pool);
    void saveDeletion(const std::string& name);

    const std::filesystem::path& file() const { return file_; }

private:
    void write(const std::map<std::string, PoolConfig>& defined, const std::set<std::string>& deleted) const;

    std::filesystem::path file_;
    std::map<std::string, PoolConfig> defined_;
    std::set<std::string> deleted_;
};

}  // namespace sessiond
