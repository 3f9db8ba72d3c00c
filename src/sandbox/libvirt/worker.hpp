#pragma once
// One thread running posted tasks in order: where the backend's blocking
// libvirt and filesystem calls go, so they never stall the io_context. The
// order matters: a sandbox's teardown always runs after its creation.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace sessiond::libvirt {

class Worker {
public:
    Worker();
    // Runs every task already posted, then joins the thread.
    ~Worker();

    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void post(std::function<void()> task);

private:
    void run();

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> tasks_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace sessiond::libvirt
