#include "sessiond/instance_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace sessiond {

namespace {

std::string readHolder(int fd) {
    char buffer[32] = {};
    const ssize_t n = ::pread(fd, buffer, sizeof buffer - 1, 0);
    std::string pid(buffer, n > 0 ? static_cast<std::size_t>(n) : 0);
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return pid;
}

}  // namespace

InstanceLock::InstanceLock(const std::filesystem::path& directory, const std::string& name)
    : path_(directory / (name + ".lock")) {
    std::error_code ec;
    std::filesystem::create_directories(directory, ec);
    if (ec) throw std::runtime_error("cannot make " + directory.string() + ": " + ec.message());
    // The holder removes the file as it exits: a lock taken on a file that is
    // no longer at the path (removed, perhaps made anew) guards nothing, and
    // is taken again.
    for (;;) {
        UniqueFd fd(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
        if (!fd) throw std::runtime_error("cannot open " + path_.string() + ": " + std::strerror(errno));
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
            if (errno != EWOULDBLOCK) throw std::runtime_error("cannot lock " + path_.string() + ": " + std::strerror(errno));
            const std::string holder = readHolder(fd.get());
            throw std::runtime_error("another sessiond" + (holder.empty() ? "" : " (pid " + holder + ")") +
                                     " runs with cgroupName '" + name + "' (it holds " + path_.string() +
                                     "); two daemons on one host need different names");
        }
        struct stat locked {}, current {};
        if (::fstat(fd.get(), &locked) != 0) throw std::runtime_error("cannot stat " + path_.string() + ": " + std::strerror(errno));
        if (::stat(path_.c_str(), &current) != 0 || current.st_ino != locked.st_ino || current.st_dev != locked.st_dev)
            continue;
        const std::string pid = std::to_string(::getpid()) + "\n";
        if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
            throw std::runtime_error("cannot write " + path_.string() + ": " + std::strerror(errno));
        fd_ = std::move(fd);
        return;
    }
}

InstanceLock::~InstanceLock() {
    if (fd_) ::unlink(path_.c_str());  // while still locked: see the constructor
}

}  // namespace sessiond
