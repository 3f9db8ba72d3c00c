#include "host_setup.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace sessiond {

namespace {

std::pair<int, int> socketPair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
    return {fds[0], fds[1]};
}

}  // namespace

HostSetup::HostSetup(boost::asio::io_context& io) : ours_(io) {
    auto [ours, theirs] = socketPair();
    theirs_.reset(theirs);
    ours_.assign(boost::asio::local::stream_protocol(), ours);
}

HostSetup::~HostSetup() {
    boost::system::error_code ignored;
    ours_.close(ignored);
}

void HostSetup::await(std::function<std::string(pid_t)> setUp, std::function<void(std::string error)> onDone) {
    setUp_ = std::move(setUp);
    onDone_ = std::move(onDone);
    read();
}

void HostSetup::read() {
    ours_.async_read_some(boost::asio::buffer(buffer_), [this, alive = std::weak_ptr<int>(lifetime_)](
                                                            boost::system::error_code ec, std::size_t n) {
        if (alive.expired() || !onDone_) return;
        if (ec) return std::exchange(onDone_, nullptr)("the jail ended before its setup: " + ec.message());
        text_.append(buffer_.data(), n);
        const auto newline = text_.find('\n');
        if (newline == std::string::npos) {
            if (text_.size() > 16) return std::exchange(onDone_, nullptr)("the jail reported no pid");
            return read();
        }
        const pid_t pid = static_cast<pid_t>(std::strtol(text_.c_str(), nullptr, 10));
        if (pid <= 0) return std::exchange(onDone_, nullptr)("the jail reported no pid");
        std::string error = setUp_(pid);
        if (error.empty()) {
            boost::system::error_code writeError;
            boost::asio::write(ours_, boost::asio::buffer("x", 1), writeError);
            if (writeError) error = "the jail ended during its setup: " + writeError.message();
        }
        std::exchange(onDone_, nullptr)(error);
    });
}

}  // namespace sessiond
