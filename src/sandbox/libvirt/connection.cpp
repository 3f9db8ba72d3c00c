#include "connection.hpp"

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <system_error>

#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>

namespace sessiond::libvirt {

namespace {

// Ask the client side to probe the daemon, so a hung or vanished libvirtd
// closes the connection (and gets logged) instead of stalling calls forever.
constexpr int kKeepAliveIntervalSeconds = 5;
constexpr unsigned kKeepAliveMissed = 3;

void ignoreError(void*, virErrorPtr) {}

void logConnectionClosed(virConnectPtr, int reason, void* opaque) {
    const char* why = reason == VIR_CONNECT_CLOSE_REASON_EOF         ? "the daemon closed it"
                      : reason == VIR_CONNECT_CLOSE_REASON_KEEPALIVE ? "the daemon stopped answering"
                      : reason == VIR_CONNECT_CLOSE_REASON_CLIENT    ? "closed by sessiond"
                                                                     : "an error";
    if (reason != VIR_CONNECT_CLOSE_REASON_CLIENT)
        spdlog::error("the libvirt connection to {} was closed ({}); VMs can no longer be started or watched",
                      static_cast<Connection*>(opaque)->uri(), why);
}

void onWake(int, void*) {}

int onLifecycle(virConnectPtr, virDomainPtr domain, int event, int detail, void* opaque) {
    auto& target = *static_cast<std::shared_ptr<LifecycleSubscription::Target>*>(opaque);
    char uuid[VIR_UUID_STRING_BUFLEN] = "";
    virDomainGetUUIDString(domain, uuid);
    const char* name = virDomainGetName(domain);
    std::lock_guard lock(target->mutex);
    if (target->handler) target->handler(uuid, name ? name : "", event, detail);
    return 0;
}

void freeTarget(void* opaque) { delete static_cast<std::shared_ptr<LifecycleSubscription::Target>*>(opaque); }

}  // namespace

std::string lastError() {
    const char* message = virGetLastErrorMessage();
    return message ? message : "unknown libvirt error";
}

int lastErrorCode() {
    virErrorPtr error = virGetLastError();
    return error ? error->code : VIR_ERR_OK;
}

std::shared_ptr<EventLoop> EventLoop::acquire() {
    // Backends are made and destroyed one at a time (one in the daemon, in
    // sequence in tests), so a loop never stops while another starts.
    static std::mutex mutex;
    static std::weak_ptr<EventLoop> current;
    static std::once_flag registered;
    std::lock_guard lock(mutex);
    std::call_once(registered, [] {
        // We report libvirt's errors ourselves; its default handler would
        // also print each one to stderr.
        virSetErrorFunc(nullptr, ignoreError);
        if (virEventRegisterDefaultImpl() < 0)
            throw std::runtime_error("cannot register libvirt's event loop: " + lastError());
    });
    if (auto loop = current.lock()) return loop;
    std::shared_ptr<EventLoop> loop(new EventLoop());
    current = loop;
    return loop;
}

EventLoop::EventLoop() {
    // A disabled timer, enabled only to wake the loop out of its poll() when
    // it must stop.
    wakeTimer_ = virEventAddTimeout(-1, onWake, nullptr, nullptr);
    if (wakeTimer_ < 0) throw std::runtime_error("cannot add a libvirt event timer: " + lastError());
    try {
        thread_ = std::thread([this] {
            while (!stopping_) {
                if (virEventRunDefaultImpl() < 0) {
                    spdlog::error("libvirt's event loop failed: {}", lastError());
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                }
            }
        });
    } catch (...) {
        virEventRemoveTimeout(wakeTimer_);
        throw;
    }
}

EventLoop::~EventLoop() {
    stopping_ = true;
    virEventUpdateTimeout(wakeTimer_, 0);
    thread_.join();
    virEventRemoveTimeout(wakeTimer_);
}

std::string destroyDomain(virDomainPtr domain) {
    if (virDomainDestroy(domain) == 0) return "";
    int code = lastErrorCode();
    if (code == VIR_ERR_NO_DOMAIN || code == VIR_ERR_OPERATION_INVALID) return "";
    return lastError();
}

std::filesystem::path domainLogDirectory(const std::string& uri) {
    if (uri == "qemu:///system") return "/var/log/libvirt/qemu";
    if (uri == "qemu:///session") {
        const char* cache = std::getenv("XDG_CACHE_HOME");
        const char* home = std::getenv("HOME");
        if (cache && *cache) return std::filesystem::path(cache) / "libvirt/qemu/log";
        if (home && *home) return std::filesystem::path(home) / ".cache/libvirt/qemu/log";
    }
    return {};
}

namespace {

// "<name>.log", or virtlogd's rotated "<name>.log.<n>".
bool isLogOf(const std::string& file, const std::string& name) {
    const std::string log = name + ".log";
    if (file.compare(0, log.size(), log) != 0) return false;
    if (file.size() == log.size()) return true;
    return file[log.size()] == '.' && file.size() > log.size() + 1 &&
           file.find_first_not_of("0123456789", log.size() + 1) == std::string::npos;
}

}  // namespace

void removeDomainLog(const std::filesystem::path& directory, const std::string& name) {
    if (directory.empty()) return;
    std::error_code ec;
    std::filesystem::remove(directory / (name + ".log"), ec);
    for (int rotated = 0; rotated < 10; ++rotated)
        if (!std::filesystem::remove(directory / (name + ".log." + std::to_string(rotated)), ec)) break;
}

void removeDomainLog(virConnectPtr connection, const std::string& name) {
    std::unique_ptr<char, decltype(&std::free)> uri(virConnectGetURI(connection), &std::free);
    if (uri) removeDomainLog(domainLogDirectory(uri.get()), name);
}

std::size_t removeDomainLogs(const std::filesystem::path& directory, const std::string& prefix,
                             const std::set<std::string>& keep) {
    if (directory.empty()) return 0;
    std::set<std::string> removed;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
        const std::string file = entry.path().filename().string();
        const auto end = file.find(".log");
        if (file.compare(0, prefix.size(), prefix) != 0 || end == std::string::npos) continue;
        const std::string name = file.substr(0, end);
        if (keep.count(name) || !isLogOf(file, name)) continue;
        std::error_code removeError;
        if (std::filesystem::remove(entry.path(), removeError)) removed.insert(name);
    }
    return removed.size();
}

void OwnedDomain::reset(virDomainPtr domain) {
    if (domain_) {
        const auto started = std::chrono::steady_clock::now();
        const std::string name = virDomainGetName(domain_.get());
        const std::string error = destroyDomain(domain_.get());
        if (!error.empty()) {
            spdlog::error("cannot destroy VM {}: {}", name, error);
        } else {
            spdlog::debug("VM {} destroyed in {} ms", name,
                          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
                              .count());
            removeDomainLog(virDomainGetConnect(domain_.get()), name);
        }
    }
    domain_.reset(domain);
}

std::optional<SandboxMetadata> readSandboxMetadata(virDomainPtr domain) {
    std::unique_ptr<char, decltype(&std::free)> xml(
        virDomainGetMetadata(domain, VIR_DOMAIN_METADATA_ELEMENT, kMetadataNamespace, 0), &std::free);
    if (!xml) return std::nullopt;
    return parseSandboxMetadata(xml.get());
}

Connection::Connection(const std::string& uri) : loop_(EventLoop::acquire()), uri_(uri) {
    connection_.reset(virConnectOpen(uri.c_str()));
    if (!connection_) throw std::runtime_error("cannot connect to libvirt at '" + uri + "': " + lastError());
    // No free function: drivers without close callbacks accept one and never free it.
    closeCallback_ = virConnectRegisterCloseCallback(get(), logConnectionClosed, this, nullptr) == 0;
    // Only remote drivers support keepalive; the others answer with an error
    // that means nothing here.
    virConnectSetKeepAlive(get(), kKeepAliveIntervalSeconds, kKeepAliveMissed);
}

Connection::~Connection() {
    if (closeCallback_) virConnectUnregisterCloseCallback(get(), logConnectionClosed);
}

LifecycleSubscription::LifecycleSubscription(const Connection& connection, Handler handler)
    : connection_(connection.get()), target_(std::make_shared<Target>()) {
    target_->handler = std::move(handler);
    auto opaque = std::make_unique<std::shared_ptr<Target>>(target_);
    callbackId_ = virConnectDomainEventRegisterAny(connection_, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                   VIR_DOMAIN_EVENT_CALLBACK(onLifecycle), opaque.get(), freeTarget);
    if (callbackId_ < 0)
        throw std::runtime_error("cannot subscribe to libvirt domain events at '" + connection.uri() +
                                 "': " + lastError());
    opaque.release();  // libvirt frees it with freeTarget once the callback is gone
}

LifecycleSubscription::~LifecycleSubscription() {
    {
        // Waits for a handler already running on the event loop thread.
        std::lock_guard lock(target_->mutex);
        target_->handler = nullptr;
    }
    virConnectDomainEventDeregisterAny(connection_, callbackId_);
}

}  // namespace sessiond::libvirt
