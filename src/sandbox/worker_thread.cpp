#include "sessiond/sandbox/worker_thread.hpp"

#include <exception>

#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

namespace sessiond {

WorkerThread::WorkerThread() : thread_([this] { run(); }) {}

WorkerThread::~WorkerThread() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

void WorkerThread::post(std::function<void()> task) {
    {
        std::lock_guard lock(mutex_);
        tasks_.push_back(std::move(task));
    }
    wake_.notify_one();
}

void WorkerThread::postThen(boost::asio::io_context& io, std::weak_ptr<void> alive, std::function<void()> work,
                            std::function<void(const std::string& error)> then) {
    post([&io, alive = std::move(alive), work = std::move(work), then = std::move(then)] {
        std::string error;
        try {
            work();
        } catch (const std::exception& e) {
            error = e.what();
        }
        boost::asio::post(io, [alive, error, then] {
            if (!alive.expired()) then(error);
        });
    });
}

void WorkerThread::run() {
    for (;;) {
        std::function<void()> task;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
            if (tasks_.empty()) return;
            task = std::move(tasks_.front());
            tasks_.pop_front();
        }
        // The task, and whatever it captured, is released before the next
        // one starts: what a teardown frees must not wait for later work.
        try {
            task();
        } catch (const std::exception& e) {
            spdlog::error("worker thread: a task failed: {}", e.what());
        }
    }
}

}  // namespace sessiond
