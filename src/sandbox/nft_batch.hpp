#pragma once
// nftables changes made from the io_context without waiting for nft: what
// is submitted while one `nft -f -` runs goes, all together, into the next
// one, so a burst of DNS answers costs a few processes rather than one
// each, and changes are applied in the order they were submitted.

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio.hpp>

namespace sessiond {

class NftBatch {
public:
    // "" once the commands are applied, or nft's complaint. nft applies a
    // batch as one transaction: one bad command fails the whole batch.
    using Done = std::function<void(const std::string& error)>;

    explicit NftBatch(boost::asio::io_context& io) : io_(io) {}
    // Kills and reaps a running nft; the handlers still waiting are dropped.
    ~NftBatch();
    NftBatch(const NftBatch&) = delete;
    NftBatch& operator=(const NftBatch&) = delete;

    // `commands`: lines of nft's language, each ending with a newline.
    void submit(std::string commands, Done done);

private:
    struct Run;
    void startNext();
    void readErrors(std::shared_ptr<Run> run);
    void finish(std::shared_ptr<Run> run);

    boost::asio::io_context& io_;
    std::string queued_;
    std::vector<Done> queuedDone_;
    std::shared_ptr<Run> running_;
};

}  // namespace sessiond
