#include "sessiond/sandbox/namespace/jail.hpp"

#include <limits>
#include <set>
#include <stdexcept>

namespace sessiond {

namespace {

using nlohmann::json;

// The spec crosses a process boundary as the only input of a root-privileged
// helper, so anything unexpected is rejected instead of silently ignored.
[[noreturn]] void bad(const std::string& field, const std::string& why) {
    throw std::invalid_argument("JailSpec: field '" + field + "' " + why);
}

std::string getString(const json& v, const std::string& field) {
    if (!v.is_string()) bad(field, "must be a string");
    return v.get<std::string>();
}

bool getBool(const json& v, const std::string& field) {
    if (!v.is_boolean()) bad(field, "must be a boolean");
    return v.get<bool>();
}

std::uint64_t getUnsigned(const json& v, const std::string& field,
                          std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) {
    // Signed integers arrive from json built in memory (e.g. keepFds), so
    // accept them when not negative.
    if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<std::int64_t>() < 0))
        bad(field, "must be a non-negative integer");
    auto n = v.get<std::uint64_t>();
    if (n > max) bad(field, "is out of range");
    return n;
}

void checkKeys(const json& obj, const std::string& where, const std::set<std::string>& allowed) {
    if (!obj.is_object()) bad(where, "must be an object");
    for (const auto& [key, value] : obj.items())
        if (!allowed.count(key)) bad(where + "." + key, "is unknown");
}

const json& array(const json& v, const std::string& field) {
    if (!v.is_array()) bad(field, "must be an array");
    return v;
}

}  // namespace

nlohmann::json JailSpec::toJson() const {
    json mountsJson = json::array();
    for (const auto& m : mounts)
        mountsJson.push_back({{"source", m.source}, {"target", m.target}, {"writable", m.writable}});
    json procs = json::array();
    for (const auto& p : cgroupProcsFiles) procs.push_back(p.string());
    json out = {
        {"hostname", hostname},
        {"mounts", mountsJson},
        {"tmpfsBytes", tmpfsBytes},
        {"uid", uid},
        {"gid", gid},
        {"hostUidBase", hostUidBase},
        {"openFiles", openFiles},
        {"seccomp", seccomp},
        {"cgroupProcsFiles", procs},
        {"argv", argv},
        {"env", env},
        {"workingDirectory", workingDirectory},
        {"keepFds", keepFds},
        {"zygote", zygote},
    };
    if (!network.address.empty())
        out["network"] = {{"interface", network.interface},
                          {"address", network.address},
                          {"prefixLength", network.prefixLength},
                          {"gateway", network.gateway},
                          {"nameserver", network.nameserver}};
    if (!imageRoot.empty()) out["imageRoot"] = imageRoot;
    if (setupFd >= 0) out["setupFd"] = setupFd;
    return out;
}

JailSpec JailSpec::fromJson(const nlohmann::json& j) {
    checkKeys(j, "spec",
              {"hostname", "mounts", "tmpfsBytes", "uid", "hostUidBase", "openFiles", "seccomp",
               "cgroupProcsFiles", "argv", "env", "workingDirectory", "keepFds", "zygote", "network", "gid",
               "imageRoot", "setupFd"});
    JailSpec s;
    const auto u32 = std::numeric_limits<std::uint32_t>::max();
    for (const auto& [key, v] : j.items()) {
        if (key == "hostname") {
            s.hostname = getString(v, key);
        } else if (key == "mounts") {
            for (const auto& m : array(v, key)) {
                checkKeys(m, "mounts[]", {"source", "target", "writable"});
                if (!m.contains("source") || !m.contains("target"))
                    bad("mounts[]", "needs source and target");
                JailMount jm;
                jm.source = getString(m["source"], "mounts[].source");
                jm.target = getString(m["target"], "mounts[].target");
                if (m.contains("writable")) jm.writable = getBool(m["writable"], "mounts[].writable");
                s.mounts.push_back(std::move(jm));
            }
        } else if (key == "tmpfsBytes") {
            s.tmpfsBytes = getUnsigned(v, key);
        } else if (key == "uid") {
            s.uid = static_cast<std::uint32_t>(getUnsigned(v, key, u32));
        } else if (key == "gid") {
            s.gid = static_cast<std::uint32_t>(getUnsigned(v, key, u32));
        } else if (key == "setupFd") {
            s.setupFd = static_cast<int>(getUnsigned(v, key, std::numeric_limits<int>::max()));
        } else if (key == "imageRoot") {
            s.imageRoot = getString(v, key);
            // It becomes part of overlayfs's option string.
            if (s.imageRoot.empty() || s.imageRoot[0] != '/' || s.imageRoot.find_first_of(",:\\") != std::string::npos)
                bad(key, "must be an absolute path without ',', ':' or '\\'");
        } else if (key == "hostUidBase") {
            s.hostUidBase = static_cast<std::uint32_t>(getUnsigned(v, key, u32));
        } else if (key == "openFiles") {
            s.openFiles = getUnsigned(v, key);
        } else if (key == "seccomp") {
            s.seccomp = getBool(v, key);
        } else if (key == "cgroupProcsFiles") {
            for (const auto& p : array(v, key)) s.cgroupProcsFiles.emplace_back(getString(p, key + "[]"));
        } else if (key == "argv") {
            for (const auto& a : array(v, key)) s.argv.push_back(getString(a, key + "[]"));
        } else if (key == "env") {
            if (!v.is_object()) bad(key, "must be an object");
            for (const auto& [name, value] : v.items()) s.env[name] = getString(value, "env." + name);
        } else if (key == "workingDirectory") {
            s.workingDirectory = getString(v, key);
        } else if (key == "zygote") {
            s.zygote = getBool(v, key);
        } else if (key == "network") {
            checkKeys(v, key, {"interface", "address", "prefixLength", "gateway", "nameserver"});
            for (const char* field : {"interface", "address", "prefixLength", "gateway"})
                if (!v.contains(field)) bad(key, std::string("needs ") + field);
            s.network.interface = getString(v["interface"], "network.interface");
            s.network.address = getString(v["address"], "network.address");
            s.network.prefixLength = static_cast<int>(getUnsigned(v["prefixLength"], "network.prefixLength", 32));
            s.network.gateway = getString(v["gateway"], "network.gateway");
            if (v.contains("nameserver")) s.network.nameserver = getString(v["nameserver"], "network.nameserver");
            if (s.network.interface.empty() || s.network.interface.size() > 15 || s.network.address.empty())
                bad(key, "needs an interface name of 1 to 15 bytes and an address");
        } else if (key == "keepFds") {
            for (const auto& fd : array(v, key))
                s.keepFds.push_back(static_cast<int>(getUnsigned(fd, key + "[]", std::numeric_limits<int>::max())));
        }
    }
    return s;
}

}  // namespace sessiond
