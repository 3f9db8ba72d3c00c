#pragma once
// Sandbox starts waiting for their turn. A start is mostly CPU (forks and an
// interpreter's first steps, or a VM's boot or restore): 200 started at once
// share the cores, each takes about 200 times as long, all finish together
// near the end (or reach their start timeout together), and the first
// session waits as long as the last. Run a few at a time, they finish one
// after another and each waiting session gets its sandbox as soon as its own
// start is done. One queue per backend, shared by all its pools, so a VM's
// boot never holds up a namespace sandbox; first come, first served.

#include <cstddef>
#include <functional>
#include <memory>

#include <boost/asio/io_context.hpp>

namespace sessiond {

class StartQueue {
    struct State;

public:
    // A start's place in the queue. Its turn begins when `begin` is called
    // and ends when the Turn is destroyed; destroyed before that, the start
    // leaves the queue and `begin` is never called.
    class Turn {
    public:
        ~Turn();
        Turn(const Turn&) = delete;
        Turn& operator=(const Turn&) = delete;

    private:
        friend class StartQueue;
        Turn(std::shared_ptr<State> state, std::uint64_t id) : state_(std::move(state)), id_(id) {}
        std::shared_ptr<State> state_;  // a Turn may outlive its queue
        std::uint64_t id_;
    };

    // `concurrency` starts run at once; 0: no limit.
    StartQueue(boost::asio::io_context& io, std::size_t concurrency);
    ~StartQueue();
    StartQueue(const StartQueue&) = delete;
    StartQueue& operator=(const StartQueue&) = delete;

    // `begin` runs at once, inside this call, when a start may run now, and
    // otherwise later from the io_context when an earlier start's turn ends.
    [[nodiscard]] std::unique_ptr<Turn> enqueue(std::function<void()> begin);

    std::size_t running() const;
    std::size_t queued() const;

private:
    std::shared_ptr<State> state_;
};

}  // namespace sessiond
