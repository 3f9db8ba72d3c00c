#include "sessiond/sandbox/worker_thread.hpp"

#include <exception>

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
