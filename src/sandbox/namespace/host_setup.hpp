#pragma once
// The daemon's end of a jail's setupFd (jail.hpp): waits for the pid nsinit
// reports once the sandbox's namespaces exist, lets the caller do what only
// the host can (move a network interface in), then lets the sandbox go on.

#include <sys/types.h>

#include <array>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio.hpp>

#include "sessiond/unique_fd.hpp"

namespace sessiond {

class HostSetup {
public:
    // Throws std::runtime_error if the socket pair cannot be made.
    explicit HostSetup(boost::asio::io_context& io);
    ~HostSetup();
    HostSetup(const HostSetup&) = delete;
    HostSetup& operator=(const HostSetup&) = delete;

    // The end nsinit gets (to pass at spec.setupFd); the caller closes its
    // copy once nsinit is spawned.
    UniqueFd& nsinitEnd() { return theirs_; }

    // `setUp(pid)` runs on the io thread once nsinit reported the pid;
    // returning "" lets the sandbox go on. `onDone` gets "" then, or what
    // went wrong (setUp's error, or nsinit's end closing first).
    void await(std::function<std::string(pid_t)> setUp, std::function<void(std::string error)> onDone);

private:
    void read();

    boost::asio::local::stream_protocol::socket ours_;
    UniqueFd theirs_;
    std::array<char, 32> buffer_{};
    std::string text_;
    std::function<std::string(pid_t)> setUp_;
    std::function<void(std::string)> onDone_;
    std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);
};

}  // namespace sessiond
