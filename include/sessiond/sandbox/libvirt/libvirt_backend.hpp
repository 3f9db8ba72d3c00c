#pragma once
// The libvirt backend: each sandbox is a transient QEMU domain running the
// guest image (<imageDirectory>/current) with a copy-on-write disk layer of
// its own, and the agent on a virtio-serial port whose host end is a unix
// socket in the sandbox's runtime directory. With libvirt.start "restore"
// a VM is restored from a VM saved once per pool template (booted, its
// interpreter warm) instead of booting, and then given its own entropy,
// clock and machine id; it boots when that cannot be done.
//
// Libvirt's blocking calls run on one worker thread owned by the backend and
// its domain events arrive on libvirt's event loop thread; both only post to
// the io_context, so sandboxes still see every call and callback there.
// Destroy every sandbox before the backend: the backend's destructor waits
// until their domains and files are gone.

#include <memory>
#include <string>

#include <boost/asio.hpp>

#include "sessiond/config.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond {

namespace metrics {
class Registry;
}

class LibvirtBackend : public SandboxBackend {
public:
    // Chooses the accelerator and connects to config.libvirt.uri; throws
    // std::runtime_error naming the URI when libvirt cannot be reached.
    // `metrics`, if given, counts the egress resolver's queries.
    LibvirtBackend(boost::asio::io_context& io, const Config& config, metrics::Registry* metrics = nullptr);
    ~LibvirtBackend() override;

    LibvirtBackend(const LibvirtBackend&) = delete;
    LibvirtBackend& operator=(const LibvirtBackend&) = delete;

    std::string name() const override { return "libvirt"; }

    // Destroys every domain tagged with this instance's cgroupName and removes
    // the runtime directories no running domain of ours uses. Blocks; call it
    // at start, before any sandbox exists.
    void cleanupLeftovers() override;

    std::unique_ptr<Sandbox> create(const PoolConfig& pool, const std::string& sandboxId) override;

    // Removes the pool's template, unless another pool has the same one.
    void poolRemoved(const std::string& pool) override;
    std::size_t maxConcurrentStarts() const override;

    // "kvm" or "tcg".
    const std::string& accelerator() const;

    // How the VMs started so far came to be.
    struct Counts {
        std::size_t templatesSaved = 0;
        std::size_t restored = 0;
        std::size_t booted = 0;
        std::size_t restoreFailures = 0;  // restores that failed and booted instead
    };
    Counts counts() const;

    struct State;

private:
    std::shared_ptr<State> state_;
};

}  // namespace sessiond
