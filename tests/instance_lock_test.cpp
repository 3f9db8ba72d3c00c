// One daemon per cgroupName: the lock a daemon holds while it runs.

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include <gtest/gtest.h>

#include "sessiond/instance_lock.hpp"

namespace fs = std::filesystem;
using sessiond::InstanceLock;

namespace {

struct TempDirectory {
    fs::path path = fs::temp_directory_path() / ("sessiond-test-lock-" + std::to_string(getpid()));
    TempDirectory() { fs::remove_all(path); }
    ~TempDirectory() { fs::remove_all(path); }
};

std::string contents(const fs::path& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(InstanceLock, MakesItsDirectoryAndNamesItsHolder) {
    TempDirectory dir;
    InstanceLock lock(dir.path / "sub", "pool-a");
    EXPECT_EQ(lock.path(), dir.path / "sub" / "pool-a.lock");
    EXPECT_EQ(contents(lock.path()), std::to_string(getpid()) + "\n");
}

TEST(InstanceLock, ASecondHolderIsRefusedWithTheFirstOnesPid) {
    TempDirectory dir;
    InstanceLock first(dir.path, "same");
    try {
        InstanceLock second(dir.path, "same");
        FAIL() << "a second lock on one name was taken";
    } catch (const std::runtime_error& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("pid " + std::to_string(getpid())), std::string::npos) << message;
        EXPECT_NE(message.find("cgroupName 'same'"), std::string::npos) << message;
    }
    // The refused attempt left the holder's file as it was.
    EXPECT_EQ(contents(first.path()), std::to_string(getpid()) + "\n");
    InstanceLock other(dir.path, "different");  // another name is free
}

TEST(InstanceLock, IsFreeAgainOnceReleasedAndLeavesNoFile) {
    TempDirectory dir;
    std::optional<InstanceLock> lock;
    lock.emplace(dir.path, "again");
    const fs::path path = lock->path();
    lock.reset();
    EXPECT_FALSE(fs::exists(path));
    lock.emplace(dir.path, "again");
    EXPECT_TRUE(fs::exists(path));
}

// The kernel releases it when its holder dies, even by SIGKILL, so a daemon
// restarted after a crash is not refused.
TEST(InstanceLock, IsFreeOnceItsHolderIsKilled) {
    TempDirectory dir;
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        InstanceLock held(dir.path, "crashed");
        (void)!::write(ready[1], "x", 1);
        ::pause();
        ::_exit(0);
    }
    ::close(ready[1]);
    char byte;
    ASSERT_EQ(::read(ready[0], &byte, 1), 1);
    ::close(ready[0]);
    EXPECT_THROW(InstanceLock(dir.path, "crashed"), std::runtime_error);
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    InstanceLock taken(dir.path, "crashed");
    EXPECT_EQ(contents(taken.path()), std::to_string(getpid()) + "\n");
}
