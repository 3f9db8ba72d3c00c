// The resolver's DNS parsing and answers (sandbox/dns_message.hpp), and
// the allow-list's matching (sandbox/egress_allow_list.hpp).

#include <gtest/gtest.h>

#include "sessiond/sandbox/dns_message.hpp"
#include "sessiond/sandbox/egress_allow_list.hpp"

using namespace sessiond;

namespace {

std::string name(const std::string& dotted) {
    std::string out;
    std::size_t start = 0;
    while (start < dotted.size()) {
        std::size_t dot = dotted.find('.', start);
        if (dot == std::string::npos) dot = dotted.size();
        out += static_cast<char>(dot - start);
        out += dotted.substr(start, dot - start);
        start = dot + 1;
    }
    return out + '\0';
}

std::string u16(unsigned v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)}; }
std::string u32(unsigned v) { return u16(v >> 16) + u16(v & 0xFFFF); }

std::string query(const std::string& qname, unsigned type, unsigned id = 0x1234) {
    return u16(id) + u16(0x0100) + u16(1) + u16(0) + u16(0) + u16(0) + name(qname) + u16(type) + u16(1);
}

// An answer to query(qname, A): a CNAME from qname (by pointer) to
// target, then target's A records.
std::string cnameAnswer(const std::string& qname, const std::string& target, std::vector<unsigned> addresses,
                        unsigned id = 0x1234) {
    std::string out = u16(id) + u16(0x8180) + u16(1) + u16(1 + addresses.size()) + u16(0) + u16(0) + name(qname) +
                      u16(dns::A) + u16(1);
    const std::string targetName = name(target);
    out += u16(0xC00C) + u16(dns::CNAME) + u16(1) + u32(300) + u16(targetName.size()) + targetName;
    const unsigned targetOffset = 12 + name(qname).size() + 4 + 12;
    for (unsigned address : addresses)
        out += u16(0xC000 | targetOffset) + u16(dns::A) + u16(1) + u32(30) + u16(4) + u32(address);
    return out;
}

}  // namespace

TEST(DnsMessage, QueriesAreParsedAndAnsweredWithTheirQuestion) {
    const std::string wire = query("Allowed.Example.ORG", dns::A);
    const auto parsed = dns::parseQuery(wire);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->id, 0x1234);
    EXPECT_EQ(parsed->question.name, "allowed.example.org");
    EXPECT_TRUE(parsed->question.printable);
    EXPECT_EQ(parsed->question.type, dns::A);
    EXPECT_EQ(parsed->questionEnd, wire.size());

    const std::string refused = dns::reply(wire, *parsed, dns::Refused);
    const auto answer = dns::parseResponse(refused);
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->id, 0x1234);
    EXPECT_EQ(answer->rcode(), dns::Refused);
    EXPECT_EQ(answer->question, parsed->question);
    EXPECT_TRUE(answer->answers.empty());

    std::string renumbered = wire;
    dns::setId(renumbered, 0xBEEF);
    EXPECT_EQ(dns::messageId(renumbered), 0xBEEF);
    EXPECT_FALSE(dns::parseResponse(wire)) << "a query is no response";
    EXPECT_FALSE(dns::parseQuery(refused)) << "a response is no query";
}

TEST(DnsMessage, AddressesFollowCnameChainsOfTheAnswer) {
    const std::string wire = cnameAnswer("www.example.org", "cdn.example.net", {0x01020304, 0x05060708});
    const auto answer = dns::parseResponse(wire);
    ASSERT_TRUE(answer);
    ASSERT_EQ(answer->answers.size(), 3u);
    EXPECT_EQ(answer->answers[0].target, "cdn.example.net");
    const auto addresses = dns::addressesOf(*answer, "www.example.org");
    ASSERT_EQ(addresses.size(), 2u);
    EXPECT_EQ(addresses[0].address, 0x01020304u);
    EXPECT_EQ(addresses[0].ttl, 30u);
    // Another name's records are not this name's.
    EXPECT_TRUE(dns::addressesOf(*answer, "example.org").empty());
}

TEST(DnsMessage, MalformedMessagesAreRefusedNotRead) {
    const std::string good = cnameAnswer("a.org", "b.org", {1});
    for (std::size_t length = 0; length < good.size(); ++length)
        EXPECT_FALSE(dns::parseResponse(good.substr(0, length))) << length;
    // A compression pointer to itself, or forwards, would loop or read ahead.
    std::string loop = u16(1) + u16(0x8180) + u16(1) + u16(0) + u16(0) + u16(0) + u16(0xC00C) + u16(1) + u16(1);
    EXPECT_FALSE(dns::parseResponse(loop));
    std::string ahead = u16(1) + u16(0x8180) + u16(1) + u16(0) + u16(0) + u16(0) + u16(0xC020) + u16(1) + u16(1);
    EXPECT_FALSE(dns::parseResponse(ahead));
    // A pointer into the header, where no name is: the resolver's own reply
    // has another header, so the question it copies would read differently
    // (found by the fuzzer).
    const std::string intoHeader("\x01\x00\x00\x00\x00\x01\x34\x81\x80\x28\x00\x01\x02\x00\x00\x01\x77\xc0\x00\x6c\x6f\x77\x01", 23);
    EXPECT_FALSE(dns::parseQuery(intoHeader));
    // A name that a pointer leads back into and that then runs on past the
    // pointer: a copy of the question ends before what it read (fuzzer too).
    const std::string runsOn("\x12\x34\x00\x01\x00\x01\x10\x02\x00\x00\x00\x77\x07\x65\x78\x01\x00\x65\x70\x6c\x13\x6f\x01\x00\x00\x00\x00\x00\x00\x00\x0c\x00\x01\x05\x00\x00\x00\x01\x2c\x00\x11\x03\x63\x64\x6e\x11\x65\x78\x61\xed\x70\x6c\x65\x03\x6e\x65\x74\x00\xc0\x2d\x00\x00\x11\x03\x63\x64\x6e\x07\x65\x78\x61\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xfe\xff\xfe\xed\x70\x6c\x01\x04", 125);
    if (const auto parsed = dns::parseQuery(runsOn))
        EXPECT_TRUE(dns::parseResponse(dns::reply(runsOn, *parsed, dns::Refused))) << "its reply does not read back";
    const std::string pointingBack = query("a.org", 1).substr(0, 12) + "\x01" "a" "\xc0\x0c" + u16(1) + u16(1);
    EXPECT_FALSE(dns::parseQuery(pointingBack)) << "a name that leads back to itself ends at the length limit";
    // Two questions, or none.
    std::string two = query("a.org", 1);
    two[5] = 2;
    EXPECT_FALSE(dns::parseQuery(two));
    // A label with a dot in it can never match a listed name.
    std::string dotted = u16(1) + u16(0x0100) + u16(1) + u16(0) + u16(0) + u16(0) + "\x07" "a.b.org" + '\0' +
                         u16(1) + u16(1);
    const auto parsed = dns::parseQuery(dotted);
    ASSERT_TRUE(parsed);
    EXPECT_FALSE(parsed->question.printable);
}

TEST(EgressAllowList, NamesMatchExactlyAndWildcardsOnlySubdomains) {
    const auto list = EgressAllowList::parse({"pypi.org", "*.pythonhosted.org", "203.0.113.0/24", "198.51.100.7"});
    EXPECT_TRUE(list.allowsName("pypi.org"));
    EXPECT_FALSE(list.allowsName("www.pypi.org"));
    EXPECT_FALSE(list.allowsName("notpypi.org"));
    EXPECT_TRUE(list.allowsName("files.pythonhosted.org"));
    EXPECT_TRUE(list.allowsName("a.b.pythonhosted.org"));
    EXPECT_FALSE(list.allowsName("pythonhosted.org"));
    EXPECT_FALSE(list.allowsName("evilpythonhosted.org"));
    ASSERT_EQ(list.networks().size(), 2u);
    EXPECT_EQ(list.networks()[0].text(), "203.0.113.0/24");
    EXPECT_EQ(list.networks()[1].text(), "198.51.100.7/32");
    EXPECT_FALSE(list.empty());
    EXPECT_TRUE(EgressAllowList::parse({}).empty());
    try {
        EgressAllowList::parse({"pypi.org", "pypi.org/simple"});
        FAIL();
    } catch (const EgressAllowList::BadEntry& e) {
        EXPECT_EQ(e.index(), 1u);
    }
}
