#pragma once
// A pool's zygote: one Python process, in a jail of its own (a sessiond-nsinit
// jail with JailSpec::zygote set), that has imported the agent, IPython and
// the pool's preload modules once. Each session is forked from it and then
// enters namespaces of its own (mount, pid, net, ipc, uts), fresh tmpfs
// mounts, the sandbox user and the seccomp filter, so a new sandbox costs a
// few forks instead of an interpreter start, and its pages stay shared with
// the zygote copy-on-write. docs/architecture.md ("Zygote") has the design
// and its trade-offs; src/agent/sessiond_zygote.py is the other end.
//
// Protocol over a SOCK_SEQPACKET pair, one JSON object per message:
//   daemon -> zygote  {"type":"spawn","id":N,"spec":JailSpec}
//                     + SCM_RIGHTS [agent channel, go pipe's read end]
//   zygote -> daemon  {"type":"ready"}   once, when warm
//                     {"type":"spawned","id":N} + SCM_RIGHTS [pidfd]
//                     {"type":"failed","id":N,"error":S}
// The session's pid 1 waits for one byte on the go pipe, which the daemon
// writes once it has moved that process into the session's cgroup, so that
// nothing of the session runs outside its limits.

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <boost/asio.hpp>

#include "sessiond/sandbox/namespace/cgroup.hpp"
#include "sessiond/sandbox/namespace/jail.hpp"
#include "sessiond/unique_fd.hpp"

namespace sessiond {

// The zygote's jail and its cgroup. Every session's pid namespace is nested
// in the jail's, so the jail must outlive the zygote process for as long as
// any session forked from it runs: each one holds a reference.
struct ZygoteJail {
    std::unique_ptr<Cgroup> cgroup;
    std::unique_ptr<JailedProcess> process;  // declared last: stopped first, then the cgroup emptied
};

// A session's pid 1, forked by a zygote. It is not the daemon's child: it is
// watched and killed through its pidfd and reaped by the zygote's jail.
class ZygoteSession {
public:
    ZygoteSession(UniqueFd pidfd, std::shared_ptr<ZygoteJail> jail)
        : pidfd_(std::move(pidfd)), jail_(std::move(jail)) {}
    // SIGKILLs it (which ends its whole pid namespace) and waits, bounded, for the exit.
    ~ZygoteSession();
    ZygoteSession(const ZygoteSession&) = delete;
    ZygoteSession& operator=(const ZygoteSession&) = delete;

    int pidfd() const { return pidfd_.get(); }

private:
    UniqueFd pidfd_;
    std::shared_ptr<ZygoteJail> jail_;
};

// The pid, in the daemon's pid namespace, of the process a pidfd refers to;
// 0 once it has exited.
pid_t pidOfPidfd(int pidfd);

class Zygote : public std::enable_shared_from_this<Zygote> {
public:
    // pidfd of the session's pid 1, or an error.
    using SpawnHandler = std::function<void(std::string error, UniqueFd pidfd)>;

    // Spawns the zygote's jail; `spec` is completed here with the control fd.
    static std::shared_ptr<Zygote> start(boost::asio::io_context& io, const std::filesystem::path& nsinit,
                                         JailSpec spec, std::unique_ptr<Cgroup> cgroup);
    ~Zygote();
    Zygote(const Zygote&) = delete;
    Zygote& operator=(const Zygote&) = delete;

    // False once the zygote's process has gone: the owner then starts another.
    bool alive() const { return alive_; }

    // Forks a session. Takes the fds it passes, which are closed once sent.
    // `onSpawned` fires once, from the io_context.
    void spawn(const JailSpec& session, UniqueFd channel, UniqueFd goRead, SpawnHandler onSpawned);

    // The jail every session forked from this zygote lives in.
    const std::shared_ptr<ZygoteJail>& jail() const { return jail_; }

    // The zygote's fd number for its control socket.
    static constexpr int kControlFd = 3;

private:
    struct Outgoing {
        std::string message;
        UniqueFd channel, goRead;
        std::uint64_t id;
    };

    Zygote(boost::asio::io_context& io, UniqueFd control);
    void sendQueued();
    void receive();
    void handle(const std::string& text, UniqueFd fd);
    void die(const std::string& why);

    boost::asio::io_context& io_;
    boost::asio::posix::stream_descriptor control_;
    std::shared_ptr<ZygoteJail> jail_;
    bool alive_ = true;
    bool writing_ = false;
    std::uint64_t nextId_ = 1;
    std::deque<Outgoing> queue_;
    std::map<std::uint64_t, SpawnHandler> pending_;
};

}  // namespace sessiond
