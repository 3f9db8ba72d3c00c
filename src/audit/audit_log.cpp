#include "sessiond/audit/audit_log.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
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

// A line is written field by field rather than built as a json object and
// dumped: it is made for every request, and the object's allocations were
// most of the audit's cost.
class Line {
public:
    explicit Line(const char* type) {
        text_ = "{";
        field("time", now());
        field("type", type);
    }
    // Absent rather than "": a line says only what is known.
    void fieldIfSet(const char* name, std::string_view value) {
        if (!value.empty()) field(name, value);
    }
    void field(const char* name, std::string_view value) {
        key(name);
        const bool plain = std::all_of(value.begin(), value.end(), [](char c) {
            return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
        });
        if (plain) {
            text_ += '"';
            text_ += value;
            text_ += '"';
        } else {
            // Invalid UTF-8 (in code, say) is replaced rather than thrown
            // on: an audit line is never dropped for its content.
            text_ += nlohmann::json(std::string(value)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        }
    }
    void integer(const char* name, unsigned value) {
        key(name);
        text_ += std::to_string(value);
    }
    void decimal(const char* name, double value) {
        key(name);
        char number[32];
        const auto end = std::to_chars(number, number + sizeof number, value).ptr;
        text_.append(number, end);
    }
    void json(const char* name, const nlohmann::json& value) {
        key(name);
        text_ += value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    std::string done() && {
        text_ += '}';
        return std::move(text_);
    }

private:
    void key(const char* name) {
        if (text_.size() > 1) text_ += ',';
        text_ += '"';
        text_ += name;
        text_ += "\":";
    }

    std::string text_;
};

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
    Line line("request");
    line.fieldIfSet("key", request.key);
    line.fieldIfSet("remote", request.remote);
    line.field("method", request.method);
    line.field("route", request.route.empty() ? std::string_view("unmatched") : std::string_view(request.route));
    line.fieldIfSet("pool", request.pool);
    line.fieldIfSet("identifier", request.identifier);
    line.integer("status", request.status);
    line.decimal("durationMs", std::chrono::duration<double, std::milli>(request.duration).count());
    if (config_.includeCode && !request.code.is_null()) line.json("code", request.code);
    write(std::move(line).done());
}

void AuditLog::record(const SessionEvent& event) {
    if (!config_.enabled) return;
    Line line("session");
    line.field("event", event.event);
    line.field("pool", event.pool);
    line.fieldIfSet("identifier", event.identifier);
    line.fieldIfSet("sandbox", event.sandbox);
    line.fieldIfSet("detail", event.detail);
    write(std::move(line).done());
}

void AuditLog::write(std::string text) {
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
