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
    const auto put = [&text](std::size_t end, int value) {
        for (std::size_t i = end; i-- > 0 && text[i] != '-' && text[i] != 'T' && text[i] != ':' && text[i] != '.';) {
            text[i] = static_cast<char>('0' + value % 10);
            value /= 10;
        }
    };
    put(4, utc.tm_year + 1900);
    put(7, utc.tm_mon + 1);
    put(10, utc.tm_mday);
    put(13, utc.tm_hour);
    put(16, utc.tm_min);
    put(19, utc.tm_sec);
    put(23, static_cast<int>(epochMs % 1000));
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
