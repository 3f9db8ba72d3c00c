#include "zygote.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "sessiond/sandbox/namespace/fd_passing.hpp"

namespace sessiond {

namespace {

// A spawn request is well under this; a reply far smaller.
constexpr std::size_t kMaxMessage = 64 * 1024;

}  // namespace

ZygoteSession::~ZygoteSession() {
    ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    pollfd pfd{pidfd_.get(), POLLIN, 0};
    int rc;
    do rc = ::poll(&pfd, 1, 5000);
    while (rc < 0 && errno == EINTR);
    if (rc == 0) spdlog::warn("a session's pid 1 did not exit 5 s after SIGKILL");
}

pid_t pidOfPidfd(int pidfd) {
    std::ifstream in("/proc/self/fdinfo/" + std::to_string(pidfd));
    std::string key;
    while (in >> key) {
        if (key == "Pid:") {
            long pid = 0;
            in >> pid;
            return pid > 0 ? static_cast<pid_t>(pid) : 0;
        }
        std::getline(in, key);
    }
    return 0;
}

std::shared_ptr<Zygote> Zygote::start(boost::asio::io_context& io, const std::filesystem::path& nsinit, JailSpec spec,
                                      std::unique_ptr<Cgroup> cgroup) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
        throw std::runtime_error(std::string("zygote: socketpair: ") + std::strerror(errno));
    UniqueFd ours(fds[0]), theirs(fds[1]);
    spec.zygote = true;
    spec.cgroupProcsFiles = cgroup->procsFiles();
    spec.keepFds = {kControlFd};
    auto jail = std::make_shared<ZygoteJail>();
    jail->cgroup = std::move(cgroup);
    jail->process = JailedProcess::spawn(nsinit, spec, {{theirs.get(), kControlFd}});
    std::shared_ptr<Zygote> zygote(new Zygote(io, std::move(ours)));
    zygote->jail_ = std::move(jail);
    zygote->receive();
    return zygote;
}

Zygote::Zygote(boost::asio::io_context& io, UniqueFd control) : io_(io), control_(io, control.release()) {
    control_.non_blocking(true);
}

Zygote::~Zygote() {
    // Closing the control socket tells the zygote to exit; the sessions it
    // forked keep running in the jail, which they hold.
    boost::system::error_code ignored;
    control_.close(ignored);
}

void Zygote::spawn(const JailSpec& session, UniqueFd channel, UniqueFd goRead, SpawnHandler onSpawned) {
    if (!alive_) {
        boost::asio::post(io_, [onSpawned = std::move(onSpawned)] { onSpawned("the zygote has exited", UniqueFd()); });
        return;
    }
    const std::uint64_t id = nextId_++;
    pending_[id] = std::move(onSpawned);
    nlohmann::json message = {{"type", "spawn"}, {"id", id}, {"spec", session.toJson()}};
    queue_.push_back({message.dump(), std::move(channel), std::move(goRead), id});
    sendQueued();
}

// A burst of spawns can fill the socket's buffer: what does not fit waits
// until the zygote has read some.
void Zygote::sendQueued() {
    while (!queue_.empty() && !writing_ && alive_) {
        Outgoing& out = queue_.front();
        const int fds[2] = {out.channel.get(), out.goRead.get()};
        const ssize_t sent = sendWithFds(control_.native_handle(), out.message, fds, MSG_DONTWAIT);
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            writing_ = true;
            control_.async_wait(boost::asio::posix::stream_descriptor::wait_write,
                                [self = weak_from_this()](boost::system::error_code ec) {
                                    auto zygote = self.lock();
                                    if (!zygote || ec) return;
                                    zygote->writing_ = false;
                                    zygote->sendQueued();
                                });
            return;
        }
        if (sent < 0) return die(std::string("cannot write to the zygote: ") + std::strerror(errno));
        queue_.pop_front();
    }
}

void Zygote::receive() {
    control_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                        [self = weak_from_this()](boost::system::error_code ec) {
                            auto zygote = self.lock();
                            if (!zygote || ec) return;
                            for (;;) {
                                std::string buffer(kMaxMessage, '\0');
                                int received = -1;
                                const ssize_t n = receiveWithFd(zygote->control_.native_handle(), buffer, received,
                                                                MSG_DONTWAIT);
                                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                                if (n < 0 && errno == EINTR) continue;
                                UniqueFd fd(received);
                                if (n <= 0) return zygote->die(n == 0 ? "the zygote exited"
                                                                      : std::string("cannot read from the zygote: ") +
                                                                            std::strerror(errno));
                                buffer.resize(static_cast<std::size_t>(n));
                                zygote->handle(buffer, std::move(fd));
                                if (!zygote->alive_) return;
                            }
                            zygote->receive();
                        });
}

void Zygote::handle(const std::string& text, UniqueFd fd) {
    nlohmann::json message;
    try {
        message = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
        return die(std::string("the zygote sent a malformed message: ") + e.what());
    }
    const std::string type = message.value("type", "");
    if (type == "ready") {
        // Preload failures are logged by each sandbox's agent, as with fresh interpreters.
        spdlog::debug("zygote ready");
        return;
    }
    const auto id = message.value("id", std::uint64_t{0});
    auto it = pending_.find(id);
    if (it == pending_.end()) return die("the zygote answered a request it was not sent");
    SpawnHandler onSpawned = std::move(it->second);
    pending_.erase(it);
    if (type == "spawned" && fd)
        onSpawned("", std::move(fd));
    else
        onSpawned("the zygote could not fork the session: " + message.value("error", std::string("no pidfd")),
                  UniqueFd());
}

void Zygote::die(const std::string& why) {
    if (!alive_) return;
    alive_ = false;
    spdlog::error("zygote: {}; sessions it forked keep running, new ones get a new zygote", why);
    queue_.clear();
    auto pending = std::move(pending_);
    pending_.clear();
    // Posted: a handler may destroy the sandbox that holds this zygote.
    for (auto& [id, onSpawned] : pending)
        boost::asio::post(io_, [onSpawned = std::move(onSpawned), why] { onSpawned(why, UniqueFd()); });
}

}  // namespace sessiond
