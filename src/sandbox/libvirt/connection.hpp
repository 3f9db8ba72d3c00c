#pragma once
// Owners for libvirt's C objects: the process's event loop thread, a
// connection, a lifecycle event subscription and domain references. Each
// releases what it holds in its destructor, so no error path leaks them.

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <libvirt/libvirt.h>

#include "domain_xml.hpp"

namespace sessiond::libvirt {

// libvirt's message for the last failed call on this thread.
std::string lastError();
// libvirt's error code (virErrorNumber) for the last failed call on this thread.
int lastErrorCode();

// Runs libvirt's default event implementation on a thread of its own.
// libvirt has one such loop per process, so backends share it: the thread
// starts with the first acquire() and stops when the last owner lets go.
class EventLoop {
public:
    static std::shared_ptr<EventLoop> acquire();
    ~EventLoop();

    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

private:
    EventLoop();

    std::atomic<bool> stopping_{false};
    int wakeTimer_ = -1;
    std::thread thread_;
};

struct DomainFree {
    void operator()(virDomainPtr domain) const { virDomainFree(domain); }
};
using DomainRef = std::unique_ptr<virDomain, DomainFree>;

// Stops a domain now; a transient one then disappears. A domain that is
// already gone is not an error. Returns libvirt's message on failure.
std::string destroyDomain(virDomainPtr domain);

// Where libvirt's QEMU driver logs each domain's start and QEMU's own
// messages, one `<domain name>.log` per domain, which libvirt keeps forever:
// /var/log/libvirt/qemu for qemu:///system, the user's cache for
// qemu:///session, empty (unknown) for other URIs.
std::filesystem::path domainLogDirectory(const std::string& uri);
// Removes the log of the domain `name` (and virtlogd's rotated copies) from
// `directory`; nothing when `directory` is empty.
void removeDomainLog(const std::filesystem::path& directory, const std::string& name);
// The same for a domain of `connection`, whatever its URI; for a domain that
// failed to start too (libvirt wrote its log all the same).
void removeDomainLog(virConnectPtr connection, const std::string& name);
// Removes every such log whose domain name starts with `prefix`, but for the
// names in `keep`; returns how many domains' logs went.
std::size_t removeDomainLogs(const std::filesystem::path& directory, const std::string& prefix,
                             const std::set<std::string>& keep);

// A transient domain we started: destroyed when let go (a failure is
// logged), so that no path out of the code that started it leaves it running;
// its libvirt log goes with it.
class OwnedDomain {
public:
    OwnedDomain() = default;
    explicit OwnedDomain(virDomainPtr domain) : domain_(domain) {}
    ~OwnedDomain() { reset(); }
    OwnedDomain(const OwnedDomain&) = delete;
    OwnedDomain& operator=(const OwnedDomain&) = delete;

    virDomainPtr get() const { return domain_.get(); }
    explicit operator bool() const { return domain_ != nullptr; }
    void reset(virDomainPtr domain = nullptr);

private:
    DomainRef domain_;
};

// Our metadata element of a domain; nullopt when it has none (not ours).
std::optional<SandboxMetadata> readSandboxMetadata(virDomainPtr domain);

class Connection {
public:
    explicit Connection(const std::string& uri);  // throws std::runtime_error
    ~Connection();

    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    virConnectPtr get() const { return connection_.get(); }
    const std::string& uri() const { return uri_; }

private:
    // Declared first so it outlives the connection, whose callbacks it runs.
    std::shared_ptr<EventLoop> loop_;
    std::string uri_;
    struct Close {
        void operator()(virConnectPtr connection) const { virConnectClose(connection); }
    };
    std::unique_ptr<virConnect, Close> connection_;
    bool closeCallback_ = false;
};

// Domain lifecycle events (virDomainEventType and its detail) for every
// domain of a connection. The handler runs on the event loop thread; once the
// subscription is destroyed it is neither running nor called again.
class LifecycleSubscription {
public:
    using Handler = std::function<void(const std::string& uuid, const std::string& name, int event, int detail)>;

    LifecycleSubscription(const Connection& connection, Handler handler);
    ~LifecycleSubscription();

    LifecycleSubscription(const LifecycleSubscription&) = delete;
    LifecycleSubscription& operator=(const LifecycleSubscription&) = delete;

    struct Target {
        std::mutex mutex;
        Handler handler;
    };

private:
    virConnectPtr connection_;
    std::shared_ptr<Target> target_;
    int callbackId_ = -1;
};

}  // namespace sessiond::libvirt
