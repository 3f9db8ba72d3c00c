// Session file names as clients send them, normalised to paths relative to
// /mnt/data, and everything that would leave it refused.

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sessiond/api/file_path.hpp"

using sessiond::api::dataRelativePath;
using sessiond::api::sessionFilePath;

namespace {

std::string relative(const std::string& raw) {
    std::string error;
    auto path = dataRelativePath(raw, error);
    return path ? *path : "REFUSED: " + error;
}

std::string file(const std::string& directory, const std::string& name) {
    std::string error;
    auto path = sessionFilePath(directory, name, error);
    return path ? *path : "REFUSED";
}

}  // namespace

TEST(FilePath, AcceptsWhatClientsSend) {
    EXPECT_EQ(relative("a.csv"), "a.csv");
    EXPECT_EQ(relative("sub/dir/a.csv"), "sub/dir/a.csv");
    EXPECT_EQ(relative("/mnt/data/a.csv"), "a.csv");
    EXPECT_EQ(relative("/mnt/data"), "");
    EXPECT_EQ(relative("/mnt/data/"), "");
    EXPECT_EQ(relative("/"), "");
    EXPECT_EQ(relative(""), "");
    EXPECT_EQ(relative("a//b/"), "a/b");
    EXPECT_EQ(relative("name with spaces & (parens) #1.txt"), "name with spaces & (parens) #1.txt");
    EXPECT_EQ(relative("\xe2\x82\xac.txt"), "\xe2\x82\xac.txt");
    EXPECT_EQ(relative("\xf0\x9f\x93\x88 chart.png"), "\xf0\x9f\x93\x88 chart.png");
    EXPECT_EQ(relative("..hidden"), "..hidden");
}

TEST(FilePath, RefusesEverythingOutsideTheDataDirectory) {
    for (const std::string& raw : std::vector<std::string>{"..", "../a", "a/../../b", "a/..", "./a", "a/./b", "/etc/passwd", "/mnt/database/a",
                                  "/mnt", "/tmp/a", std::string("a\0b", 3), "a\nb", std::string(300, 'x'),
                                  "\xff.txt", "a\xc3", "\xc0\xaf", "\xed\xa0\x80.txt"})
        EXPECT_EQ(relative(raw).rfind("REFUSED", 0), 0u) << raw;
    EXPECT_EQ(relative(std::string(5000, 'a')).rfind("REFUSED", 0), 0u);
}

TEST(FilePath, JoinsThePathQueryAndTheName) {
    EXPECT_EQ(file("", "a.csv"), "a.csv");
    EXPECT_EQ(file("/mnt/data", "a.csv"), "a.csv");
    EXPECT_EQ(file("test-directory", "a.csv"), "test-directory/a.csv");
    EXPECT_EQ(file("/", "sub/a.csv"), "sub/a.csv");
    EXPECT_EQ(file("ignored", "/mnt/data/a.csv"), "a.csv");
    EXPECT_EQ(file("dir", ""), "REFUSED");
    EXPECT_EQ(file("", "/mnt/data/"), "REFUSED");
    EXPECT_EQ(file("..", "a.csv"), "REFUSED");
    EXPECT_EQ(file("dir", "../a.csv"), "REFUSED");
}
