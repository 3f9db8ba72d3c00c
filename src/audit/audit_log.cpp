#include "sessiond/audit/audit_log.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "sessiond/http/dates.hpp"

namespace sessiond::audit {

namespace {

UniqueFd openForAppend(const std::filesystem::path& file) {
    // 0600: the lines name keys, sessions and, with includeCode, their code.
    UniqueFd fd(::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) throw std::runtime_error("cannot open the audit log " + file.string() + ": " + std::strerror(errno));
    return fd;
}

std::string now() {
    const auto since = std::chrono::system_clock::now().time_since_epoch();
    return http::isoTime(std::chrono::duration_cast<std::chrono::milliseconds>(since).count());
}

// Absent rather than "": a line says only what is known.
void putIfSet(nlohmann::json& line, const char* field, const std::string& value) {
    if (!value.empty()) line[field] = value;
}

}  // namespace

AuditLog::AuditLog(AuditConfig config) : config_(std::move(config)) {
    if (!config_.enabled) return;
    if (!config_.file.empty()) {
        reopen();
        return;
    }
    // The daemon's log, but at a level of its own: logLevel "warn" must not
    // silence the audit.
    const auto& sinks = spdlog::default_logger()->sinks();
    daemonLog_ = std::make_shared<spdlog::logger>("audit", sinks.begin(), sinks.end());
    daemonLog_->set_level(spdlog::level::info);
}

void AuditLog::reopen() {
    if (config_.enabled && !config_.file.empty()) file_ = openForAppend(config_.file);
}

void AuditLog::record(const RequestRecord& request) {
    if (!config_.enabled) return;
    nlohmann::json line = {{"time", now()}, {"type", "request"}};
    putIfSet(line, "key", request.key);
    putIfSet(line, "remote", request.remote);
    line["method"] = request.method;
    line["route"] = request.route.empty() ? "unmatched" : request.route;
    putIfSet(line, "pool", request.pool);
    putIfSet(line, "identifier", request.identifier);
    line["status"] = request.status;
    line["durationMs"] = std::chrono::duration<double, std::milli>(request.duration).count();
    if (config_.includeCode && !request.code.is_null()) line["code"] = request.code;
    write(std::move(line));
}

void AuditLog::record(const SessionEvent& event) {
    if (!config_.enabled) return;
    nlohmann::json line = {{"time", now()}, {"type", "session"}, {"event", event.event}, {"pool", event.pool}};
    putIfSet(line, "identifier", event.identifier);
    putIfSet(line, "sandbox", event.sandbox);
    putIfSet(line, "detail", event.detail);
    write(std::move(line));
}

void AuditLog::write(nlohmann::json line) {
    // Invalid UTF-8 (in code, say) is replaced rather than thrown on: an
    // audit line is never dropped for its content.
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (daemonLog_) {
        daemonLog_->info("audit {}", text);
        return;
    }
    text += '\n';
    // One write per line: with O_APPEND, lines of concurrent writers (a
    // rotation tool, a second daemon) never interleave.
    if (::write(file_.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        spdlog::error("cannot write to the audit log {}: {}", config_.file.string(), std::strerror(errno));
}

}  // namespace sessiond::audit
