#include "sessiond/auth/api_keys.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace sessiond {

std::array<unsigned char, 32> sha256(std::string_view bytes) {
    std::array<unsigned char, 32> digest{};
    unsigned int length = 0;
    if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 || length != 32)
        throw std::runtime_error("SHA-256 failed");
    return digest;
}

std::string toHex(const std::array<unsigned char, 32>& digest) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : digest) {
        out.push_back(kDigits[b >> 4]);
        out.push_back(kDigits[b & 15]);
    }
    return out;
}

std::string newApiKey() {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::array<unsigned char, 33> random{};  // 264 bits: 44 characters of 6 bits, the last one 0
    if (RAND_bytes(random.data(), 32) != 1) throw std::runtime_error("no random bytes for a new key");
    std::string key = "sk-";
    for (std::size_t i = 0; i + 2 < random.size(); i += 3) {
        const unsigned v = (random[i] << 16) | (random[i + 1] << 8) | random[i + 2];
        for (int shift = 18; shift >= 0; shift -= 6) key.push_back(kAlphabet[(v >> shift) & 63]);
    }
    key.pop_back();  // 32 bytes are 43 characters; the 44th carries only padding
    OPENSSL_cleanse(random.data(), random.size());
    return key;
}

const ApiKeyEntry* ApiKeyRing::find(std::string_view presented) const {
    const auto digest = sha256(presented);
    const ApiKeyEntry* found = nullptr;
    for (const auto& key : keys_)
        if (CRYPTO_memcmp(key.sha256.data(), digest.data(), digest.size()) == 0) found = &key;
    return found;
}

}  // namespace sessiond
