#include "sessiond/http/dates.hpp"

#include <cstdio>
#include <ctime>

namespace sessiond::http {

std::string isoTime(std::int64_t epochMs) {
    std::time_t seconds = static_cast<std::time_t>(epochMs / 1000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    // Digit by digit: strftime and snprintf were a visible share of a GET
    // /session, which gives three of these, and of every audit line.
    std::string text = "0000-00-00T00:00:00.000Z";
    const auto put = [&text](std::size_t at, std::size_t digits, int value) {
        for (std::size_t i = at + digits; i-- > at; value /= 10) text[i] = static_cast<char>('0' + value % 10);
    };
    put(0, 4, utc.tm_year + 1900);
    put(5, 2, utc.tm_mon + 1);
    put(8, 2, utc.tm_mday);
    put(11, 2, utc.tm_hour);
    put(14, 2, utc.tm_min);
    put(17, 2, utc.tm_sec);
    put(20, 3, static_cast<int>(epochMs % 1000));
    return text;
}

std::string httpDate(std::int64_t epochMs) {
    std::time_t seconds = static_cast<std::time_t>(epochMs / 1000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char text[40];
    std::snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[utc.tm_wday], utc.tm_mday,
                  months[utc.tm_mon], utc.tm_year + 1900, utc.tm_hour, utc.tm_min, utc.tm_sec);
    return text;
}

}  // namespace sessiond::http
