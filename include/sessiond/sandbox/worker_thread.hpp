#pragma once
// One thread running posted tasks in order: where a backend's blocking
// calls go (libvirt, the filesystem, cgroup moves and removals, waiting for
// a killed process), so they never stall the io_context. The order matters:
// a sandbox's teardown always runs after the work of its creation.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace sessiond {

class WorkerThread {
public:
    WorkerThread();
    // Runs every task already posted, then joins the thread.
    ~WorkerThread();

    WorkerThread(const WorkerThread&) = delete;
    WorkerThread& operator=(const WorkerThread&) = delete;

    void post(std::function<void()> task);

private:
    void run();

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> tasks_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace sessiond
