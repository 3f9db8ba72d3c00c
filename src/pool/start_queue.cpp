#include "sessiond/pool/start_queue.hpp"

#include <list>
#include <set>

#include <boost/asio/post.hpp>

namespace sessiond {

struct StartQueue::State {
    struct Waiting {
        std::uint64_t id;
        std::function<void()> begin;
    };

    boost::asio::io_context* io;  // null once the queue is gone
    std::size_t concurrency;
    std::uint64_t nextId = 1;
    std::list<Waiting> waiting;
    std::set<std::uint64_t> running;

    bool hasRoom() const { return concurrency == 0 || running.size() < concurrency; }

    // Called from a Turn's destructor, which may run inside a caller's
    // callback: the next start begins from the io_context, not in here.
    void beginNextLater() {
        if (!io || waiting.empty() || !hasRoom()) return;
        Waiting next = std::move(waiting.front());
        waiting.pop_front();
        running.insert(next.id);
        boost::asio::post(*io, std::move(next.begin));
    }
};

StartQueue::Turn::~Turn() {
    auto& state = *state_;
    if (state.running.erase(id_))
        state.beginNextLater();
    else
        state.waiting.remove_if([this](const State::Waiting& w) { return w.id == id_; });
}

StartQueue::StartQueue(boost::asio::io_context& io, std::size_t concurrency)
    : state_(std::make_shared<State>()) {
    state_->io = &io;
    state_->concurrency = concurrency;
}

StartQueue::~StartQueue() {
    state_->io = nullptr;
    state_->waiting.clear();
}

std::unique_ptr<StartQueue::Turn> StartQueue::enqueue(std::function<void()> begin) {
    const std::uint64_t id = state_->nextId++;
    std::unique_ptr<Turn> turn(new Turn(state_, id));
    if (state_->hasRoom() && state_->waiting.empty()) {
        state_->running.insert(id);
        begin();
    } else {
        state_->waiting.push_back({id, std::move(begin)});
    }
    return turn;
}

std::size_t StartQueue::running() const { return state_->running.size(); }
std::size_t StartQueue::queued() const { return state_->waiting.size(); }

}  // namespace sessiond
