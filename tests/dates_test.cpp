// The times the API and the audit log write, against dates computed elsewhere.
#include <gtest/gtest.h>

#include "sessiond/http/dates.hpp"

using sessiond::http::httpDate;
using sessiond::http::isoTime;

TEST(Dates, IsoTimeIsUtcWithMilliseconds) {
    EXPECT_EQ(isoTime(0), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(isoTime(1795521163151), "2026-11-24T11:52:43.151Z");
    EXPECT_EQ(isoTime(951782400007), "2000-02-29T00:00:00.007Z");
    EXPECT_EQ(isoTime(253402300799999), "9999-12-31T23:59:59.999Z");
}

TEST(Dates, HttpDateNamesTheDayAndMonth) {
    EXPECT_EQ(httpDate(1795521163151), "Tue, 24 Nov 2026 11:52:43 GMT");
    EXPECT_EQ(httpDate(951782400007), "Tue, 29 Feb 2000 00:00:00 GMT");
}
