#pragma once
// API keys: made at random, stored only as their SHA-256, and looked up in
// time that does not depend on which key (if any) a request presented.
//
// A plain SHA-256 without salt is enough because sessiond makes the keys:
// 256 random bits cannot be guessed from their hash, so the slow, salted
// hashes made for human passwords would only cost time on every request.

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "sessiond/config.hpp"

namespace sessiond {

std::array<unsigned char, 32> sha256(std::string_view bytes);
std::string toHex(const std::array<unsigned char, 32>& digest);

// A new key: "sk-" and 43 base64url characters (256 random bits).
std::string newApiKey();

class ApiKeyRing {
public:
    ApiKeyRing() = default;
    explicit ApiKeyRing(std::vector<ApiKeyEntry> keys) : keys_(std::move(keys)) {}

    // The entry of the key `presented`, or null. Every entry is compared,
    // with CRYPTO_memcmp, whatever matched.
    const ApiKeyEntry* find(std::string_view presented) const;

    bool empty() const { return keys_.empty(); }
    std::size_t size() const { return keys_.size(); }

private:
    std::vector<ApiKeyEntry> keys_;
};

}  // namespace sessiond
