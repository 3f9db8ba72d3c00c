#pragma once
// One message with file descriptors attached (SCM_RIGHTS) over a Unix
// socket: how the daemon, a pool's zygote and the zygote's forks hand each
// other agent channels, go pipes and pidfds.

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <span>

namespace sessiond {

inline constexpr std::size_t kMaxPassedFds = 2;

// sendmsg's result; -1 with EINVAL for more than kMaxPassedFds fds.
inline ssize_t sendWithFds(int socket, std::span<const char> bytes, std::span<const int> fds, int flags) {
    if (fds.size() > kMaxPassedFds) {
        errno = EINVAL;
        return -1;
    }
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
    iovec data{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    if (!fds.empty()) {
        message.msg_control = control;
        message.msg_controllen = CMSG_SPACE(fds.size_bytes());
        cmsghdr* header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(fds.size_bytes());
        std::memcpy(CMSG_DATA(header), fds.data(), fds.size_bytes());
    }
    return ::sendmsg(socket, &message, flags | MSG_NOSIGNAL);
}

// recvmsg's result (flags gain MSG_CMSG_CLOEXEC); `fd` is the one fd
// attached, or -1.
inline ssize_t receiveWithFd(int socket, std::span<char> buffer, int& fd, int flags) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec data{buffer.data(), buffer.size()};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(socket, &message, flags | MSG_CMSG_CLOEXEC);
    fd = -1;
    if (n < 0) return n;
    for (cmsghdr* header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header))
        if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS)
            std::memcpy(&fd, CMSG_DATA(header), sizeof fd);
    return n;
}

}  // namespace sessiond
