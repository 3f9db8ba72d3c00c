#pragma once
// One thread running posted tasks in order: where a backend's blocking
// calls go (libvirt, the filesystem, cgroup moves and removals, waiting for
// a killed process), so they never stall the io_context. The order matters:
// a sandbox's teardown always runs after the work of its creation.

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>

namespace sessiond {

class WorkerThread {
public:
    WorkerThread();
    // Runs every task already posted, then joins the thread.
    ~WorkerThread();

    WorkerThread(const WorkerThread&) = delete;
    WorkerThread& operator=(const WorkerThread&) = delete;

    void post(std::function<void()> task);

    // Runs `work` here, then `then` on `io` with what `work` threw ("" if
    // nothing), unless `alive` has expired by then. `work` must not use
    // what `alive` guards: that may go while it runs.
    void postThen(boost::asio::io_context& io, std::weak_ptr<void> alive, std::function<void()> work,
                  std::function<void(const std::string& error)> then);

private:
    void run();

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> tasks_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace sessiond
