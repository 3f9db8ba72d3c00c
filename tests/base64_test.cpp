// Padded base64, as file chunks and image results carry it.

#include <gtest/gtest.h>

#include "sessiond/base64.hpp"

using sessiond::decodeBase64;
using sessiond::encodeBase64;

TEST(Base64, RoundTripsEveryLength) {
    std::string bytes;
    for (int i = 0; i < 40; ++i) {
        EXPECT_EQ(decodeBase64(encodeBase64(bytes)), bytes) << i;
        bytes.push_back(static_cast<char>(i * 37 + 200));
    }
    EXPECT_EQ(encodeBase64("hello"), "aGVsbG8=");
}

TEST(Base64, RefusesAnythingButPaddedBase64) {
    for (const char* bad : {"aGVsbG8", "aGVsbG8==", "aGV=bG8=", "====", "aGVs*G8=", "a==="})
        EXPECT_FALSE(decodeBase64(bad)) << bad;
}
