#include "sessiond/config.hpp"

#include "sessiond/ipv4_subnet.hpp"

#include <algorithm>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace sessiond {
namespace {

using nlohmann::json;

// Walks a JSON object, giving each field's full path to the error messages
// and refusing fields it does not know, so a typo is never silently ignored.
// The unknown fields are refused by done(), called once every field is read:
// never from a destructor, whose exception would escape after the caller's
// return value was built and leak it.
class Fields {
public:
    Fields(const json& object, std::string path) : object_(object), path_(std::move(path)) {
        if (!object_.is_object()) throw ConfigError(displayPath(), "must be an object");
    }

    void done() const {
        for (const auto& [key, value] : object_.items())
            if (!seen_.count(key)) throw ConfigError(child(key), "unknown field");
    }

    const json* get(const std::string& key) {
        seen_.insert(key);
        auto it = object_.find(key);
        return it == object_.end() ? nullptr : &*it;
    }

    std::string child(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
    std::string displayPath() const { return path_.empty() ? "(top level)" : path_; }

    std::string string(const std::string& key, std::string fallback) {
        const json* v = get(key);
        if (!v) return fallback;
        if (!v->is_string()) throw ConfigError(child(key), "must be a string");
        return v->get<std::string>();
    }

    bool boolean(const std::string& key, bool fallback) {
        const json* v = get(key);
        if (!v) return fallback;
        if (!v->is_boolean()) throw ConfigError(child(key), "must be true or false");
        return v->get<bool>();
    }

    std::uint64_t integer(const std::string& key, std::uint64_t fallback, std::uint64_t min, std::uint64_t max) {
        const json* v = get(key);
        if (!v) return fallback;
        if (!v->is_number_integer() || (v->is_number_integer() && !v->is_number_unsigned() && v->get<std::int64_t>() < 0))
            throw ConfigError(child(key), "must be a whole number from " + std::to_string(min) + " to " + std::to_string(max));
        auto n = v->get<std::uint64_t>();
        if (n < min || n > max)
            throw ConfigError(child(key), "must be from " + std::to_string(min) + " to " + std::to_string(max) +
                                              ", got " + std::to_string(n));
        return n;
    }

    double number(const std::string& key, double fallback, double min, double max) {
        const json* v = get(key);
        if (!v) return fallback;
        if (!v->is_number()) throw ConfigError(child(key), "must be a number");
        double d = v->get<double>();
        if (d < min || d > max) {
            std::ostringstream msg;
            msg << "must be from " << min << " to " << max << ", got " << d;
            throw ConfigError(child(key), msg.str());
        }
        return d;
    }

    std::vector<std::string> strings(const std::string& key, std::vector<std::string> fallback) {
        const json* v = get(key);
        if (!v) return fallback;
        if (!v->is_array()) throw ConfigError(child(key), "must be an array of strings");
        std::vector<std::string> out;
        for (std::size_t i = 0; i < v->size(); ++i) {
            if (!(*v)[i].is_string()) throw ConfigError(child(key) + "[" + std::to_string(i) + "]", "must be a string");
            out.push_back((*v)[i].get<std::string>());
        }
        return out;
    }

private:
    const json& object_;
    std::string path_;
    std::set<std::string> seen_;
};

std::chrono::seconds seconds(Fields& f, const std::string& key, std::chrono::seconds fallback, std::uint64_t min,
                             std::uint64_t max) {
    return std::chrono::seconds(f.integer(key, static_cast<std::uint64_t>(fallback.count()), min, max));
}

const std::set<std::string> kContainerTypes = {"PythonLTS", "NodeLTS", "Shell"};
const std::set<std::string> kBackends = {"namespace", "libvirt"};
const std::set<std::string> kAccelerators = {"auto", "kvm", "tcg"};
const std::set<std::string> kLogLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};

bool isValidPoolName(const std::string& name) {
    // Azure resource-name rules for session pools: lower case letters, digits and
    // hyphens, starting with a letter, not ending with a hyphen.
    if (name.size() < 2 || name.size() > 32) return false;
    if (name.front() < 'a' || name.front() > 'z' || name.back() == '-') return false;
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

// Azure's resource quantity for memory ("512Mi", "1.5Gi"), in MiB.
std::uint64_t memoryQuantityMiB(Fields& f, const std::string& key) {
    const std::string text = f.string(key, "");
    std::size_t used = 0;
    double value = 0;
    try {
        value = std::stod(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    const std::string unit = text.substr(used);
    const double mib = unit == "Gi" ? value * 1024 : unit == "Mi" ? value : -1;
    // Written so that NaN ("nanMi", which stod reads) fails it too.
    if (used == 0 || !(mib >= 16 && mib <= (1u << 24)))
        throw ConfigError(f.child(key), "must be a quantity such as \"512Mi\" or \"1.5Gi\", from 16Mi, got \"" + text + "\"");
    return static_cast<std::uint64_t>(mib);
}

}  // namespace

PoolConfig parsePool(const json& j, const std::string& path) {
    Fields f(j, path);
    PoolConfig pool;
    pool.name = f.string("name", "");
    if (!isValidPoolName(pool.name))
        throw ConfigError(f.child("name"),
                          "must be 2-32 lower-case letters, digits or hyphens, start with a letter and not end with a hyphen");
    pool.containerType = f.string("containerType", pool.containerType);
    if (!kContainerTypes.count(pool.containerType))
        throw ConfigError(f.child("containerType"), "unsupported value '" + pool.containerType +
                                                            "' (supported: PythonLTS, NodeLTS, Shell)");
    const std::string management = f.string("poolManagementType", "Dynamic");
    if (management != "Dynamic")
        throw ConfigError(f.child("poolManagementType"), "unsupported value '" + management + "' (supported: Dynamic)");
    pool.backend = f.string("backend", pool.backend);
    if (!kBackends.count(pool.backend))
        throw ConfigError(f.child("backend"), "unsupported value '" + pool.backend + "' (supported: namespace, libvirt)");

    if (const json* scale = f.get("scaleConfiguration")) {
        Fields s(*scale, f.child("scaleConfiguration"));
        pool.maxConcurrentSessions = s.integer("maxConcurrentSessions", pool.maxConcurrentSessions, 1, 100000);
        pool.readySessionInstances = s.integer("readySessionInstances", pool.readySessionInstances, 0, 10000);
        s.done();
    }
    if (const json* dynamic = f.get("dynamicPoolConfiguration")) {
        Fields d(*dynamic, f.child("dynamicPoolConfiguration"));
        // The ARM shape before 2025-01-01: executionType "Timed" and the
        // cooldown directly here.
        const std::string executionType = d.string("executionType", "Timed");
        if (executionType != "Timed")
            throw ConfigError(d.child("executionType"), "unsupported value '" + executionType + "' (supported: Timed)");
        pool.cooldownPeriod = seconds(d, "cooldownPeriodInSeconds", pool.cooldownPeriod, 1, 86400);
        if (const json* lifecycle = d.get("lifecycleConfiguration")) {
            Fields l(*lifecycle, d.child("lifecycleConfiguration"));
            std::string type = l.string("lifecycleType", "Timed");
            if (type != "Timed")
                throw ConfigError(l.child("lifecycleType"),
                                  "unsupported value '" + type +
                                      "' (supported: Timed; OnContainerExit is for custom-container pools, which sessiond "
                                      "does not run yet)");
            if (l.get("maxAlivePeriodInSeconds"))
                throw ConfigError(l.child("maxAlivePeriodInSeconds"),
                                  "applies to lifecycleType OnContainerExit only; a Timed session ends after "
                                  "cooldownPeriodInSeconds idle");
            pool.cooldownPeriod = seconds(l, "cooldownPeriodInSeconds", pool.cooldownPeriod, 1, 86400);
            l.done();
        }
        d.done();
    }
    if (const json* network = f.get("sessionNetworkConfiguration")) {
        Fields n(*network, f.child("sessionNetworkConfiguration"));
        const std::string status = n.string("status", "EgressDisabled");
        if (status != "EgressDisabled" && status != "EgressEnabled")
            throw ConfigError(n.child("status"),
                              "unsupported value '" + status + "' (supported: EgressDisabled, EgressEnabled)");
        pool.egressEnabled = status == "EgressEnabled";
        if (pool.egressEnabled && pool.backend == "libvirt")
            throw ConfigError(n.child("status"),
                              "EgressEnabled is not available on the libvirt backend yet; its VMs have no network "
                              "interface (docs/networking.md)");
        n.done();
    }
    if (const json* execution = f.get("execution")) {
        Fields e(*execution, f.child("execution"));
        pool.maxExecutionTimeout = seconds(e, "maxTimeoutInSeconds", pool.maxExecutionTimeout, 1, 3600);
        // Without its own default, a pool whose maximum is below the built-in
        // default gets its maximum: poolDefinition() writes the default out,
        // and a default over the maximum would be refused when read back.
        pool.defaultExecutionTimeout = seconds(e, "defaultTimeoutInSeconds",
                                               std::min(pool.defaultExecutionTimeout, pool.maxExecutionTimeout), 1,
                                               pool.maxExecutionTimeout.count());
        pool.maxOutputChars = e.integer("outputStreamsMaxLength", pool.maxOutputChars, 0, 16u << 20);
        pool.preloadModules = e.strings("preloadModules", pool.preloadModules);
        e.done();
    }
    pool.sandboxStartTimeout = seconds(f, "sandboxStartTimeoutInSeconds", pool.sandboxStartTimeout, 1, 3600);
    if (const json* resources = f.get("resources")) {
        Fields r(*resources, f.child("resources"));
        pool.resources.cpus = r.number("cpu", pool.resources.cpus, 0.01, 1024);
        if (r.get("memory") && r.get("memoryMiB"))
            throw ConfigError(r.child("memory"), "give memory or memoryMiB, not both");
        if (r.get("memory"))
            pool.resources.memoryBytes = memoryQuantityMiB(r, "memory") << 20;
        else
            pool.resources.memoryBytes = r.integer("memoryMiB", pool.resources.memoryBytes >> 20, 16, 1u << 24) << 20;
        pool.resources.pids = r.integer("pids", pool.resources.pids, 8, 1u << 22);
        pool.resources.openFiles = r.integer("openFiles", pool.resources.openFiles, 16, 1u << 20);
        pool.resources.tmpfsBytes = r.integer("diskMiB", pool.resources.tmpfsBytes >> 20, 1, 1u << 20) << 20;
        r.done();
    }
    f.done();
    return pool;
}

json poolDefinition(const PoolConfig& pool) {
    return {{"name", pool.name},
            {"containerType", pool.containerType},
            {"poolManagementType", "Dynamic"},
            {"backend", pool.backend},
            {"scaleConfiguration",
             {{"maxConcurrentSessions", pool.maxConcurrentSessions}, {"readySessionInstances", pool.readySessionInstances}}},
            {"dynamicPoolConfiguration",
             {{"lifecycleConfiguration",
               {{"lifecycleType", "Timed"}, {"cooldownPeriodInSeconds", pool.cooldownPeriod.count()}}}}},
            {"sessionNetworkConfiguration", {{"status", pool.egressEnabled ? "EgressEnabled" : "EgressDisabled"}}},
            {"execution",
             {{"defaultTimeoutInSeconds", pool.defaultExecutionTimeout.count()},
              {"maxTimeoutInSeconds", pool.maxExecutionTimeout.count()},
              {"outputStreamsMaxLength", pool.maxOutputChars},
              {"preloadModules", pool.preloadModules}}},
            {"sandboxStartTimeoutInSeconds", pool.sandboxStartTimeout.count()},
            {"resources",
             {{"cpu", pool.resources.cpus},
              {"memoryMiB", pool.resources.memoryBytes >> 20},
              {"pids", pool.resources.pids},
              {"openFiles", pool.resources.openFiles},
              {"diskMiB", pool.resources.tmpfsBytes >> 20}}}};
}

std::string agentLanguage(const PoolConfig& pool) {
    if (pool.containerType == "NodeLTS") return "node";
    if (pool.containerType == "Shell") return "shell";
    return "python";
}

std::vector<ApiKeyEntry> parseApiKeys(const json& keys, const std::string& path) {
    if (!keys.is_array()) throw ConfigError(path, "must be an array of keys");
    std::vector<ApiKeyEntry> out;
    std::set<std::string> names;
    for (std::size_t i = 0; i < keys.size(); ++i) {
        Fields k(keys[i], path + "[" + std::to_string(i) + "]");
        ApiKeyEntry entry;
        entry.name = k.string("name", "");
        if (entry.name.empty()) throw ConfigError(k.child("name"), "must name the key (for the logs)");
        if (!names.insert(entry.name).second) throw ConfigError(k.child("name"), "duplicate key name '" + entry.name + "'");
        const std::string role = k.string("role", "SessionExecutor");
        if (role == "SessionExecutor")
            entry.role = Role::SessionExecutor;
        else if (role == "PoolAdministrator")
            entry.role = Role::PoolAdministrator;
        else
            throw ConfigError(k.child("role"), "must be SessionExecutor or PoolAdministrator, got '" + role + "'");
        const std::string hex = k.string("sha256", "");
        auto nibble = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        bool valid = hex.size() == 64;
        for (std::size_t b = 0; valid && b < 32; ++b) {
            int high = nibble(hex[2 * b]), low = nibble(hex[2 * b + 1]);
            valid = high >= 0 && low >= 0;
            entry.sha256[b] = static_cast<unsigned char>(high * 16 + low);
        }
        if (!valid)
            throw ConfigError(k.child("sha256"),
                              "must be the key's SHA-256 as 64 hexadecimal digits (sessiond --new-key makes a key "
                              "and its entry; sessiond --hash-key hashes a key you have)");
        entry.pools = k.strings("pools", {});
        k.done();
        out.push_back(std::move(entry));
    }
    return out;
}

json readJsonFile(const std::filesystem::path& file, const std::string& what) {
    std::ifstream in(file);
    if (!in) throw ConfigError(file.string(), "cannot open the " + what);
    try {
        return json::parse(in);
    } catch (const json::parse_error& e) {
        throw ConfigError(file.string(), std::string("not valid JSON: ") + e.what());
    }
}

std::vector<ApiKeyEntry> loadKeyFile(const std::filesystem::path& file) {
    const json document = readJsonFile(file, "key file");
    Fields top(document, file.string());
    const json* keys = top.get("keys");
    top.done();
    return keys ? parseApiKeys(*keys, file.string() + ": keys") : std::vector<ApiKeyEntry>{};
}

Config parseConfig(const json& document) {
    Config config;
    Fields top(document, "");
    if (const json* listen = top.get("listen")) {
        Fields l(*listen, "listen");
        config.listen.address = l.string("address", config.listen.address);
        config.listen.port = static_cast<std::uint16_t>(l.integer("port", config.listen.port, 0, 65535));
        if (const json* tls = l.get("tls")) {
            Fields t(*tls, "listen.tls");
            auto requiredPath = [&t](const std::string& key) {
                std::filesystem::path path = t.string(key, "");
                if (path.empty()) throw ConfigError(t.child(key), "is required (an absolute path to a PEM file)");
                if (!path.is_absolute()) throw ConfigError(t.child(key), "must be an absolute path");
                return path;
            };
            config.listen.tls = TlsConfig{requiredPath("certificateFile"), requiredPath("privateKeyFile")};
            t.done();
        }
        l.done();
    }
    if (const json* http = top.get("http")) {
        Fields h(*http, "http");
        config.http.maxConnections = h.integer("maxConnections", config.http.maxConnections, 1, 1000000);
        config.http.maxHeaderBytes = h.integer("maxHeaderBytes", config.http.maxHeaderBytes, 1024, 1u << 20);
        config.http.maxBodyBytes = h.integer("maxBodyBytes", config.http.maxBodyBytes, 1024, 1ull << 32);
        config.http.maxUploadBytes = h.integer("maxUploadBytes", config.http.maxUploadBytes, 1024, 1ull << 32);
        config.http.maxDownloadBytes = h.integer("maxDownloadBytes", config.http.maxDownloadBytes, 1024, 1ull << 32);
        config.http.readTimeout = seconds(h, "readTimeoutInSeconds", config.http.readTimeout, 1, 3600);
        config.http.keepAliveTimeout = seconds(h, "keepAliveTimeoutInSeconds", config.http.keepAliveTimeout, 1, 3600);
        h.done();
    }
    if (const json* auth = top.get("auth")) {
        Fields a(*auth, "auth");
        if (const json* keys = a.get("keys")) config.auth.keys = parseApiKeys(*keys, "auth.keys");
        config.auth.keyFile = a.string("keyFile", "");
        if (!config.auth.keyFile.empty() && !config.auth.keyFile.is_absolute())
            throw ConfigError("auth.keyFile", "must be an absolute path");
        a.done();
    }
    if (const json* audit = top.get("audit")) {
        Fields a(*audit, "audit");
        config.audit.enabled = a.boolean("enabled", config.audit.enabled);
        config.audit.file = a.string("file", "");
        if (!config.audit.file.empty() && !config.audit.file.is_absolute())
            throw ConfigError("audit.file", "must be an absolute path");
        config.audit.includeCode = a.boolean("includeCode", config.audit.includeCode);
        a.done();
    }
    config.logLevel = top.string("logLevel", config.logLevel);
    if (!kLogLevels.count(config.logLevel))
        throw ConfigError("logLevel", "must be one of trace, debug, info, warn, error, critical, off");
    config.cgroupName = top.string("cgroupName", config.cgroupName);
    if (config.cgroupName.empty() || config.cgroupName.find('/') != std::string::npos || config.cgroupName[0] == '.')
        throw ConfigError("cgroupName", "must be a single directory name");
    config.agentDirectory = top.string("agentDirectory", "");
    config.stateDirectory = top.string("stateDirectory", "");
    if (!config.stateDirectory.empty() && !config.stateDirectory.is_absolute())
        throw ConfigError("stateDirectory", "must be an absolute path");

    if (const json* ns = top.get("namespaceSandbox")) {
        Fields n(*ns, "namespaceSandbox");
        auto& sandbox = config.namespaceSandbox;
        sandbox.interpreter = n.string("interpreter", sandbox.interpreter.string());
        if (!sandbox.interpreter.is_absolute())
            throw ConfigError("namespaceSandbox.interpreter", "must be an absolute path");
        sandbox.readOnlyPaths = n.strings("readOnlyPaths", sandbox.readOnlyPaths);
        for (std::size_t i = 0; i < sandbox.readOnlyPaths.size(); ++i)
            if (sandbox.readOnlyPaths[i].empty() || sandbox.readOnlyPaths[i][0] != '/')
                throw ConfigError("namespaceSandbox.readOnlyPaths[" + std::to_string(i) + "]", "must be an absolute path");
        sandbox.sandboxUid = static_cast<std::uint32_t>(n.integer("sandboxUid", sandbox.sandboxUid, 1, 65535));
        sandbox.hostUidBase =
            static_cast<std::uint32_t>(n.integer("hostUidBase", sandbox.hostUidBase, 1, 4294967295ull - 65536));
        sandbox.seccomp = n.boolean("seccomp", sandbox.seccomp);
        sandbox.zygote = n.boolean("zygote", sandbox.zygote);
        sandbox.maxConcurrentStarts = n.integer("maxConcurrentStarts", sandbox.maxConcurrentStarts, 0, 4096);
        n.done();
    }

    if (const json* net = top.get("network")) {
        Fields n(*net, "network");
        config.network.bridge = n.string("bridge", config.network.bridge);
        // An interface name (at most 15 bytes) that is also an nftables table name.
        const auto& bridge = config.network.bridge;
        if (bridge.empty() || bridge.size() > 15 ||
            bridge.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos)
            throw ConfigError("network.bridge", "must be 1 to 15 lower-case letters, digits or underscores");
        config.network.subnet = n.string("subnet", config.network.subnet);
        try {
            (void)Ipv4Subnet::parse(config.network.subnet);
        } catch (const std::invalid_argument& e) {
            throw ConfigError("network.subnet", e.what());
        }
        n.done();
    }

    if (const json* lv = top.get("libvirt")) {
        Fields l(*lv, "libvirt");
        auto& libvirt = config.libvirt;
        libvirt.uri = l.string("uri", libvirt.uri);
        libvirt.accelerator = l.string("accelerator", libvirt.accelerator);
        if (!kAccelerators.count(libvirt.accelerator))
            throw ConfigError("libvirt.accelerator", "must be auto, kvm or tcg");
        libvirt.imageDirectory = l.string("imageDirectory", libvirt.imageDirectory.string());
        if (!libvirt.imageDirectory.is_absolute()) throw ConfigError("libvirt.imageDirectory", "must be an absolute path");
        libvirt.runtimeDirectory = l.string("runtimeDirectory", libvirt.runtimeDirectory.string());
        if (!libvirt.runtimeDirectory.is_absolute())
            throw ConfigError("libvirt.runtimeDirectory", "must be an absolute path");
        libvirt.start = l.string("start", libvirt.start);
        if (libvirt.start != "restore" && libvirt.start != "boot")
            throw ConfigError("libvirt.start", "must be restore or boot");
        libvirt.maxConcurrentStarts = l.integer("maxConcurrentStarts", libvirt.maxConcurrentStarts, 0, 4096);
        l.done();
    }

    const json* pools = top.get("pools");
    if (!pools || !pools->is_array() || pools->empty()) throw ConfigError("pools", "must be a non-empty array of pools");
    std::set<std::string> names;
    for (std::size_t i = 0; i < pools->size(); ++i) {
        std::string path = "pools[" + std::to_string(i) + "]";
        PoolConfig pool = parsePool((*pools)[i], path);
        if (!names.insert(pool.name).second) throw ConfigError(path + ".name", "duplicate pool name '" + pool.name + "'");
        if (pool.egressEnabled && !config.namespaceSandbox.zygote)
            throw ConfigError(path + ".sessionNetworkConfiguration.status",
                              "EgressEnabled needs namespaceSandbox.zygote on (docs/networking.md)");
        config.pools.push_back(std::move(pool));
    }
    top.done();
    return config;
}

Config loadConfig(const std::filesystem::path& file) { return parseConfig(readJsonFile(file, "configuration file")); }

}  // namespace sessiond
