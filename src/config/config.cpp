#include "sessiond/config.hpp"

#include "sessiond/ipv4_subnet.hpp"
#include "sessiond/sandbox/egress_allow_list.hpp"

#include <arpa/inet.h>

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

const std::set<std::string> kContainerTypes = {"PythonLTS", "NodeLTS", "Shell", "CustomContainer"};
const std::set<std::string> kBackends = {"namespace", "libvirt"};
const std::set<std::string> kAccelerators = {"auto", "kvm", "tcg"};
const std::set<std::string> kLogLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};

bool isIpAddress(const std::string& text, int family) {
    unsigned char address[16];
    return ::inet_pton(family, text.c_str(), address) == 1;
}

bool isPort(const std::string& text) {
    return !text.empty() && text.size() <= 5 && text.find_first_not_of("0123456789") == std::string::npos &&
           std::stoul(text) >= 1 && std::stoul(text) <= 65535;
}

// "ip", "ipv4:port" or "[ipv6]:port", as network.resolvers takes them.
bool isResolverAddress(const std::string& text) {
    if (isIpAddress(text, AF_INET) || isIpAddress(text, AF_INET6)) return true;
    if (!text.empty() && text[0] == '[') {
        const auto close = text.find("]:");
        return close != std::string::npos && isIpAddress(text.substr(1, close - 1), AF_INET6) &&
               isPort(text.substr(close + 2));
    }
    const auto colon = text.rfind(':');
    return colon != std::string::npos && isIpAddress(text.substr(0, colon), AF_INET) && isPort(text.substr(colon + 1));
}

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

// Environment variable and secret names: what a shell can set.
bool isValidName(const std::string& name) {
    if (name.empty() || name.size() > 253 || (name[0] >= '0' && name[0] <= '9')) return false;
    return name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") ==
           std::string::npos;
}

// A {"name", "value"} entry whose value may come another way instead
// (`alternative`: a secret's file, a variable's secretRef): one of the two.
struct NamedValue {
    std::string name;
    std::string value;
    std::string alternative;
};

NamedValue namedValue(Fields& f, const std::string& alternative, const std::string& alternativeText) {
    NamedValue out;
    out.name = f.string("name", "");
    if (!isValidName(out.name))
        throw ConfigError(f.child("name"), "must be letters, digits, '_', '.' or '-', not starting with a digit");
    const json* value = f.get("value");
    out.alternative = f.string(alternative, "");
    if ((value != nullptr) == !out.alternative.empty())
        throw ConfigError(f.displayPath(), "needs either a value or " + alternativeText);
    if (value) {
        if (!value->is_string()) throw ConfigError(f.child("value"), "must be a string");
        out.value = value->get<std::string>();
    }
    return out;
}

std::vector<PoolSecret> parseSecrets(const json& list, const std::string& path) {
    if (!list.is_array()) throw ConfigError(path, "must be an array of {name, value} or {name, file}");
    std::vector<PoolSecret> out;
    for (std::size_t i = 0; i < list.size(); ++i) {
        Fields s(list[i], path + "[" + std::to_string(i) + "]");
        PoolSecret secret;
        const NamedValue entry = namedValue(s, "file", "a file (an absolute path on the host)");
        secret.name = entry.name;
        for (const auto& other : out)
            if (other.name == secret.name) throw ConfigError(s.child("name"), "duplicate secret '" + secret.name + "'");
        secret.value = entry.value;
        secret.file = entry.alternative;
        if (!entry.alternative.empty() && !secret.file.is_absolute())
            throw ConfigError(s.child("file"), "must be an absolute path");
        s.done();
        out.push_back(std::move(secret));
    }
    return out;
}

std::uint16_t port(Fields& f, const std::string& key, std::uint16_t fallback) {
    return static_cast<std::uint16_t>(f.integer(key, fallback, 1, 65535));
}

ContainerProbe parseProbe(const json& j, const std::string& path, std::uint16_t targetPort) {
    Fields p(j, path);
    ContainerProbe probe;
    const std::string type = p.string("type", "");
    if (type != "Startup" && type != "Liveness")
        throw ConfigError(p.child("type"), "must be Startup or Liveness, got '" + type + "'");
    probe.type = type == "Startup" ? ContainerProbe::Type::Startup : ContainerProbe::Type::Liveness;
    const json* httpGet = p.get("httpGet");
    const json* tcpSocket = p.get("tcpSocket");
    if ((httpGet != nullptr) == (tcpSocket != nullptr)) throw ConfigError(p.displayPath(), "needs either httpGet or tcpSocket");
    probe.httpGet = httpGet != nullptr;
    Fields h(httpGet ? *httpGet : *tcpSocket, p.child(httpGet ? "httpGet" : "tcpSocket"));
    probe.port = port(h, "port", targetPort);
    const std::string host = h.string("host", "");
    if (!host.empty() && host != "localhost" && host != "127.0.0.1")
        throw ConfigError(h.child("host"), "must be localhost: a probe reaches the session's own container");
    if (httpGet) {
        probe.path = h.string("path", "/");
        if (probe.path.empty() || probe.path[0] != '/' ||
            probe.path.find_first_of(" \r\n") != std::string::npos)
            throw ConfigError(h.child("path"), "must be a path starting with '/'");
        const std::string scheme = h.string("scheme", "HTTP");
        if (scheme != "HTTP")
            throw ConfigError(h.child("scheme"), "must be HTTP: the container is reached on its own loopback");
        if (const json* headers = h.get("httpHeaders")) {
            if (!headers->is_array()) throw ConfigError(h.child("httpHeaders"), "must be an array of {name, value}");
            for (std::size_t i = 0; i < headers->size(); ++i) {
                Fields hh((*headers)[i], h.child("httpHeaders") + "[" + std::to_string(i) + "]");
                std::string name = hh.string("name", ""), value = hh.string("value", "");
                if (name.empty() || name.find_first_of(" :\r\n") != std::string::npos ||
                    value.find_first_of("\r\n") != std::string::npos)
                    throw ConfigError(hh.displayPath(), "needs a header name and a value on one line");
                hh.done();
                probe.httpHeaders.emplace_back(std::move(name), std::move(value));
            }
        }
    }
    h.done();
    // Azure's ranges and defaults.
    probe.failureThreshold = static_cast<std::uint32_t>(p.integer("failureThreshold", 3, 1, 10));
    probe.successThreshold = static_cast<std::uint32_t>(p.integer("successThreshold", 1, 1, 1));
    probe.initialDelay = seconds(p, "initialDelaySeconds", probe.initialDelay, 0, 60);
    probe.period = seconds(p, "periodSeconds", probe.period, 1, 240);
    probe.timeout = seconds(p, "timeoutSeconds", probe.timeout, 1, 240);
    (void)p.integer("terminationGracePeriodSeconds", 0, 0, 3600);  // a session is killed at once
    p.done();
    return probe;
}

ContainerTemplate parseContainerTemplate(const json& j, const std::string& path, const std::vector<PoolSecret>& secrets,
                                         const json*& resources) {
    Fields t(j, path);
    ContainerTemplate out;
    if (t.get("registryCredentials"))
        throw ConfigError(t.child("registryCredentials"),
                          "is not supported: images come from OCI layouts or archives on the host");
    const json* ingress = t.get("ingress");
    if (!ingress) throw ConfigError(t.child("ingress"), "is required: {\"targetPort\": the port the container serves}");
    Fields in(*ingress, t.child("ingress"));
    if (!in.get("targetPort")) throw ConfigError(in.child("targetPort"), "is required");
    out.targetPort = port(in, "targetPort", 0);
    in.done();
    const json* containers = t.get("containers");
    if (!containers || !containers->is_array() || containers->size() != 1)
        throw ConfigError(t.child("containers"), "must hold exactly one container");
    const std::string where = t.child("containers") + "[0]";
    Fields c((*containers)[0], where);
    out.image = c.string("image", "");
    if (out.image.empty()) throw ConfigError(c.child("image"), "is required (an OCI layout or archive on the host)");
    out.name = c.string("name", "main");
    out.command = c.strings("command", {});
    out.args = c.strings("args", {});
    if (const json* env = c.get("env")) {
        if (!env->is_array()) throw ConfigError(c.child("env"), "must be an array of {name, value} or {name, secretRef}");
        for (std::size_t i = 0; i < env->size(); ++i) {
            Fields e((*env)[i], c.child("env") + "[" + std::to_string(i) + "]");
            ContainerEnvVar variable;
            const NamedValue entry = namedValue(e, "secretRef", "a secretRef");
            variable.name = entry.name;
            variable.value = entry.value;
            variable.secretRef = entry.alternative;
            if (!variable.secretRef.empty() && std::none_of(secrets.begin(), secrets.end(),
                                    [&](const PoolSecret& s) { return s.name == variable.secretRef; })) {
                throw ConfigError(e.child("secretRef"), "names no secret of the pool: '" + variable.secretRef + "'");
            }
            e.done();
            out.env.push_back(std::move(variable));
        }
    }
    resources = c.get("resources");
    if (const json* probes = c.get("probes")) {
        if (!probes->is_array()) throw ConfigError(c.child("probes"), "must be an array");
        for (std::size_t i = 0; i < probes->size(); ++i) {
            ContainerProbe probe = parseProbe((*probes)[i], c.child("probes") + "[" + std::to_string(i) + "]", out.targetPort);
            for (const auto& other : out.probes)
                if (other.type == probe.type)
                    throw ConfigError(c.child("probes") + "[" + std::to_string(i) + "].type", "one probe of each type at most");
            out.probes.push_back(std::move(probe));
        }
    }
    c.done();
    t.done();
    return out;
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
                                                            "' (supported: PythonLTS, NodeLTS, Shell, CustomContainer)");
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
            if (type != "Timed" && type != "OnContainerExit")
                throw ConfigError(l.child("lifecycleType"),
                                  "unsupported value '" + type + "' (supported: Timed, OnContainerExit)");
            pool.endOnContainerExit = type == "OnContainerExit";
            if (pool.endOnContainerExit && !pool.customContainer())
                throw ConfigError(l.child("lifecycleType"), "OnContainerExit is for CustomContainer pools only");
            if (pool.endOnContainerExit) {
                if (l.get("cooldownPeriodInSeconds"))
                    throw ConfigError(l.child("cooldownPeriodInSeconds"),
                                      "applies to lifecycleType Timed only; an OnContainerExit session ends when its "
                                      "container exits or after maxAlivePeriodInSeconds");
                pool.maxAlivePeriod = seconds(l, "maxAlivePeriodInSeconds", pool.maxAlivePeriod, 1, 86400);
            } else {
                if (l.get("maxAlivePeriodInSeconds"))
                    throw ConfigError(l.child("maxAlivePeriodInSeconds"),
                                      "applies to lifecycleType OnContainerExit only; a Timed session ends after "
                                      "cooldownPeriodInSeconds idle");
                pool.cooldownPeriod = seconds(l, "cooldownPeriodInSeconds", pool.cooldownPeriod, 1, 86400);
            }
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
        pool.allowedDestinations = n.strings("allowedDestinations", {});
        const std::string allowed = n.child("allowedDestinations");
        if (!pool.allowedDestinations.empty() && !pool.egressEnabled)
            throw ConfigError(allowed, "needs status EgressEnabled; a session without egress reaches nothing");
        try {
            (void)EgressAllowList::parse(pool.allowedDestinations);
        } catch (const EgressAllowList::BadEntry& e) {
            throw ConfigError(allowed + "[" + std::to_string(e.index()) + "]", e.what());
        }
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
    if (const json* secrets = f.get("secrets")) pool.secrets = parseSecrets(*secrets, f.child("secrets"));
    const json* containerResources = nullptr;
    if (const json* containerTemplate = f.get("customContainerTemplate")) {
        if (!pool.customContainer())
            throw ConfigError(f.child("customContainerTemplate"), "is for containerType CustomContainer only");
        pool.container = parseContainerTemplate(*containerTemplate, f.child("customContainerTemplate"), pool.secrets,
                                                containerResources);
    } else if (pool.customContainer()) {
        throw ConfigError(f.child("customContainerTemplate"),
                          "is required for containerType CustomContainer (the image and ingress.targetPort)");
    }
    if (containerResources) {
        // Azure's place for a custom container's cpu and memory.
        Fields r(*containerResources, f.child("customContainerTemplate.containers[0].resources"));
        pool.resources.cpus = r.number("cpu", pool.resources.cpus, 0.01, 1024);
        if (r.get("memory")) pool.resources.memoryBytes = memoryQuantityMiB(r, "memory") << 20;
        r.done();
    }
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

namespace {

json probeDefinition(const ContainerProbe& probe) {
    json action = {{"port", probe.port}};
    if (probe.httpGet) {
        action["path"] = probe.path;
        json headers = json::array();
        for (const auto& [name, value] : probe.httpHeaders) headers.push_back({{"name", name}, {"value", value}});
        action["httpHeaders"] = headers;
    }
    return {{"type", probe.type == ContainerProbe::Type::Startup ? "Startup" : "Liveness"},
            {probe.httpGet ? "httpGet" : "tcpSocket", action},
            {"failureThreshold", probe.failureThreshold},
            {"successThreshold", probe.successThreshold},
            {"initialDelaySeconds", probe.initialDelay.count()},
            {"periodSeconds", probe.period.count()},
            {"timeoutSeconds", probe.timeout.count()}};
}

json containerDefinition(const PoolConfig& pool) {
    const ContainerTemplate& c = pool.container;
    json env = json::array();
    for (const auto& variable : c.env)
        env.push_back(variable.secretRef.empty() ? json{{"name", variable.name}, {"value", variable.value}}
                                                 : json{{"name", variable.name}, {"secretRef", variable.secretRef}});
    json probes = json::array();
    for (const auto& probe : c.probes) probes.push_back(probeDefinition(probe));
    return {{"containers", json::array({{{"image", c.image},
                                         {"name", c.name},
                                         {"command", c.command},
                                         {"args", c.args},
                                         {"env", env},
                                         {"probes", probes}}})},
            {"ingress", {{"targetPort", c.targetPort}}}};
}

}  // namespace

json poolDefinition(const PoolConfig& pool) {
    json definition = {{"name", pool.name},
            {"containerType", pool.containerType},
            {"poolManagementType", "Dynamic"},
            {"backend", pool.backend},
            {"scaleConfiguration",
             {{"maxConcurrentSessions", pool.maxConcurrentSessions}, {"readySessionInstances", pool.readySessionInstances}}},
            {"dynamicPoolConfiguration",
             {{"lifecycleConfiguration",
               pool.endOnContainerExit
                   ? json{{"lifecycleType", "OnContainerExit"}, {"maxAlivePeriodInSeconds", pool.maxAlivePeriod.count()}}
                   : json{{"lifecycleType", "Timed"}, {"cooldownPeriodInSeconds", pool.cooldownPeriod.count()}}}}},
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
    if (!pool.allowedDestinations.empty())
        definition["sessionNetworkConfiguration"]["allowedDestinations"] = pool.allowedDestinations;
    if (pool.customContainer()) definition["customContainerTemplate"] = containerDefinition(pool);
    if (!pool.secrets.empty()) {
        json secrets = json::array();
        for (const auto& secret : pool.secrets)
            secrets.push_back(secret.file.empty() ? json{{"name", secret.name}, {"value", secret.value}}
                                                  : json{{"name", secret.name}, {"file", secret.file.string()}});
        definition["secrets"] = secrets;
    }
    return definition;
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
        config.http.forwardIdleTimeout =
            seconds(h, "forwardIdleTimeoutInSeconds", config.http.forwardIdleTimeout, 1, 86400);
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
        config.network.resolvers = n.strings("resolvers", {});
        for (std::size_t i = 0; i < config.network.resolvers.size(); ++i)
            if (!isResolverAddress(config.network.resolvers[i]))
                throw ConfigError("network.resolvers[" + std::to_string(i) + "]",
                                  "must be an IP address, \"ipv4:port\" or \"[ipv6]:port\", got '" +
                                      config.network.resolvers[i] + "'");
        n.done();
    }

    if (const json* containers = top.get("containers")) {
        Fields c(*containers, "containers");
        config.containers.directory = c.string("directory", config.containers.directory.string());
        if (!config.containers.directory.is_absolute())
            throw ConfigError("containers.directory", "must be an absolute path");
        c.done();
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
        config.pools.push_back(std::move(pool));
    }
    top.done();
    return config;
}

Config loadConfig(const std::filesystem::path& file) { return parseConfig(readJsonFile(file, "configuration file")); }

}  // namespace sessiond
