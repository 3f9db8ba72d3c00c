// The HTTPS listener: TLS 1.2 and 1.3 served, older versions and plain HTTP
// refused without harm to other clients, silent clients dropped, unusable
// certificate files refused at listen(), graceful stop with close_notify, and
// the sessiond binary serving HTTPS to curl.

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <gtest/gtest.h>

#include "sessiond/config.hpp"
#include "sessiond/http/server.hpp"
#include "support/daemon.hpp"
#include "support/raw_http.hpp"

using namespace sessiond;
using sessiond::testing::RawConnection;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace beast_http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using namespace std::chrono_literals;

namespace {

struct KeyFree {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertificateFree {
    void operator()(X509* certificate) const { X509_free(certificate); }
};
struct BioFree {
    void operator()(BIO* bio) const { BIO_free(bio); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Certificate = std::unique_ptr<X509, CertificateFree>;

Key newKey() {
    Key key(EVP_EC_gen("P-256"));
    if (!key) throw std::runtime_error("EC key generation failed");
    return key;
}

void addExtension(X509* certificate, int nid, const char* value) {
    X509V3_CTX context;
    X509V3_set_ctx_nodb(&context);
    X509V3_set_ctx(&context, certificate, certificate, nullptr, nullptr, 0);
    X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
    if (!extension || X509_add_ext(certificate, extension, -1) != 1) throw std::runtime_error("bad extension");
    X509_EXTENSION_free(extension);
}

// Self-signed for 127.0.0.1 and localhost, valid for a day: its own CA.
Certificate selfSigned(EVP_PKEY* key) {
    Certificate certificate(X509_new());
    X509* x = certificate.get();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("sessiond test"), -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    addExtension(x, NID_basic_constraints, "critical,CA:TRUE");
    addExtension(x, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    if (X509_sign(x, key, EVP_sha256()) == 0) throw std::runtime_error("signing failed");
    return certificate;
}

template <class Write>
void writePem(const std::string& path, Write write) {
    std::unique_ptr<BIO, BioFree> bio(BIO_new_file(path.c_str(), "w"));
    if (!bio || write(bio.get()) != 1) throw std::runtime_error("cannot write " + path);
}

// A temporary directory with a fresh certificate and its key, another key
// that does not match it, and a file that is not PEM; removed with the object.
class TestCertificate {
public:
    TestCertificate() {
        char dir[] = "/tmp/sessiond-tls-test-XXXXXX";
        if (!mkdtemp(dir)) throw std::runtime_error("mkdtemp failed");
        dir_ = dir;
        Key key = newKey(), otherKey = newKey();
        Certificate certificate = selfSigned(key.get());
        writePem(certificateFile(), [&](BIO* bio) { return PEM_write_bio_X509(bio, certificate.get()); });
        writePem(keyFile(), [&](BIO* bio) {
            return PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
        });
        writePem(otherKeyFile(), [&](BIO* bio) {
            return PEM_write_bio_PrivateKey(bio, otherKey.get(), nullptr, nullptr, 0, nullptr, nullptr);
        });
        std::ofstream(notPemFile()) << "this is not a certificate\n";
    }
    ~TestCertificate() { std::filesystem::remove_all(dir_); }
    TestCertificate(const TestCertificate&) = delete;
    TestCertificate& operator=(const TestCertificate&) = delete;

    std::string certificateFile() const { return dir_ + "/cert.pem"; }
    std::string keyFile() const { return dir_ + "/key.pem"; }
    std::string otherKeyFile() const { return dir_ + "/other-key.pem"; }
    std::string notPemFile() const { return dir_ + "/not.pem"; }
    std::string missingFile() const { return dir_ + "/missing.pem"; }
    TlsConfig tls() const { return {certificateFile(), keyFile()}; }

private:
    std::string dir_;
};

// A Beast HTTPS client that trusts only `caFile` and checks the server is
// 127.0.0.1, speaking only the TLS versions from `minVersion` to `maxVersion`.
// Every operation has a deadline.
class TlsClient {
public:
    TlsClient(std::uint16_t port, const std::string& caFile, int minVersion = TLS1_2_VERSION, int maxVersion = 0)
        : context_(ssl::context::tls_client) {
        context_.load_verify_file(caFile);
        context_.set_verify_mode(ssl::verify_peer);
        SSL_CTX* native = context_.native_handle();
        SSL_CTX_set_min_proto_version(native, minVersion);
        SSL_CTX_set_max_proto_version(native, maxVersion);
        // OpenSSL 3 (and the system's configuration) keep a client from
        // offering TLS 1.1 at all; this one must, to see the server refuse it.
        if (minVersion < TLS1_2_VERSION) {
            SSL_CTX_set_security_level(native, 0);
            SSL_CTX_set_cipher_list(native, "DEFAULT:@SECLEVEL=0");
        }
        stream_.emplace(io_, context_);
        stream_->set_verify_callback(ssl::host_name_verification("127.0.0.1"));
        tcp().connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    }

    boost::system::error_code handshake() {
        return run([this](auto done) { stream_->async_handshake(ssl::stream_base::client, done); });
    }

    int version() { return SSL_version(stream_->native_handle()); }

    // One request on the connection; the status, or the error's message.
    struct Result {
        int status = 0;
        std::string body;
        bool keepAlive = false;
        boost::system::error_code error;
    };
    Result get(const std::string& target) {
        beast_http::request<beast_http::empty_body> request{beast_http::verb::get, target, 11};
        request.set(beast_http::field::host, "127.0.0.1");
        Result result;
        result.error = run([&](auto done) { beast_http::async_write(*stream_, request, done); });
        if (result.error) return result;
        return read();
    }

    boost::system::error_code write(const std::string& bytes) {
        return run([&](auto done) { asio::async_write(*stream_, asio::buffer(bytes), done); });
    }

    // The next response, or the error (end_of_stream after a close_notify).
    Result read() {
        Result result;
        beast_http::response<beast_http::string_body> response;
        result.error = run([&](auto done) { beast_http::async_read(*stream_, buffer_, response, done); });
        result.status = response.result_int();
        result.body = response.body();
        result.keepAlive = response.keep_alive();
        return result;
    }

private:
    beast::tcp_stream& tcp() { return beast::get_lowest_layer(*stream_); }

    template <class Start>
    boost::system::error_code run(Start start) {
        boost::system::error_code result = asio::error::timed_out;
        tcp().expires_after(5s);
        start([&result](boost::system::error_code ec, auto&&...) { result = ec; });
        io_.restart();
        io_.run();
        return result;
    }

    asio::io_context io_;
    ssl::context context_;
    std::optional<beast::ssl_stream<beast::tcp_stream>> stream_;
    beast::flat_buffer buffer_;
};

class HttpsTest : public ::testing::Test {
protected:
    void SetUp() override {
        config.readTimeout = 1s;
        config.maxBodyBytes = 64 * 1024;
        router.add(beast_http::verb::get, "/hello", [](http::Request& request, http::Responder respond) {
            respond(http::jsonResponse(beast_http::status::ok, {{"hello", request.remoteAddress}}));
        });
        // Answers after 500 ms: a request in flight at a stop.
        router.add(beast_http::verb::get, "/slow", [this](http::Request&, http::Responder respond) {
            auto timer = std::make_shared<asio::steady_timer>(io, 500ms);
            timer->async_wait([timer, respond](boost::system::error_code) {
                respond(http::jsonResponse(beast_http::status::ok, {{"slow", true}}));
            });
        });
        router.add(beast_http::verb::post, "/echo", [](http::Request& request, http::Responder respond) {
            respond(http::jsonResponse(beast_http::status::ok, {{"size", request.message.body().size()}}));
        });
        server.emplace(io, config, router);
        server->listen("127.0.0.1", 0, certificate.tls());
        port = server->port();
        work.emplace(io.get_executor());
        thread = std::thread([this] { io.run(); });
    }

    void TearDown() override {
        std::promise<void> drained;
        asio::post(io, [this, &drained] { server->stop(3s, [&drained] { drained.set_value(); }); });
        drained.get_future().wait_for(5s);
        work.reset();
        io.stop();
        thread.join();
        server.reset();
    }

    void expectServed(const std::string& why) {
        TlsClient client(port, certificate.certificateFile());
        ASSERT_FALSE(client.handshake()) << why;
        auto result = client.get("/hello");
        ASSERT_FALSE(result.error) << why << ": " << result.error.message();
        EXPECT_EQ(result.status, 200) << why;
        EXPECT_EQ(result.body, R"({"hello":"127.0.0.1"})") << why;
    }

    TestCertificate certificate;
    asio::io_context io;
    HttpConfig config;
    http::Router router;
    std::optional<http::HttpServer> server;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
    std::thread thread;
    std::uint16_t port = 0;
};

}  // namespace

TEST_F(HttpsTest, ServesTls12AndTls13) {
    for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
        TlsClient client(port, certificate.certificateFile(), version, version);
        auto ec = client.handshake();
        ASSERT_FALSE(ec) << version << ": " << ec.message();
        EXPECT_EQ(client.version(), version);
        // Two requests: the connection is kept alive over TLS.
        for (int i = 0; i < 2; ++i) {
            auto result = client.get("/hello");
            ASSERT_FALSE(result.error) << result.error.message();
            EXPECT_EQ(result.status, 200);
            EXPECT_EQ(result.body, R"({"hello":"127.0.0.1"})");
            EXPECT_TRUE(result.keepAlive);
        }
    }
}

TEST_F(HttpsTest, BodyLimitsAndExpectContinueWorkOverTls) {
    TlsClient client(port, certificate.certificateFile());
    ASSERT_FALSE(client.handshake());
    std::string body(1000, 'x');
    ASSERT_FALSE(client.write("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n"));
    auto interim = client.read();
    ASSERT_FALSE(interim.error) << interim.error.message();
    EXPECT_EQ(interim.status, 100);
    ASSERT_FALSE(client.write(body));
    auto answer = client.read();
    EXPECT_EQ(answer.status, 200);
    EXPECT_EQ(answer.body, R"({"size":1000})");

    // Over the limit: 413 at once, then a close_notify, even while the client
    // goes on sending its body.
    ASSERT_FALSE(client.write("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n"));
    client.write(std::string(200 * 1024, 'x'));
    auto tooLarge = client.read();
    ASSERT_FALSE(tooLarge.error) << tooLarge.error.message();
    EXPECT_EQ(tooLarge.status, 413);
    EXPECT_FALSE(tooLarge.keepAlive);
    EXPECT_EQ(client.read().error, beast_http::error::end_of_stream);
    expectServed("after a refused body");
}

TEST_F(HttpsTest, RefusesTls11) {
    TlsClient client(port, certificate.certificateFile(), TLS1_1_VERSION, TLS1_1_VERSION);
    auto ec = client.handshake();
    ASSERT_TRUE(ec) << "a TLS 1.1 handshake succeeded";
    // The server's alert, not the client's own refusal to offer TLS 1.1.
    EXPECT_NE(ec.message().find("alert protocol version"), std::string::npos) << ec.message();
    expectServed("after a TLS 1.1 client");
}

TEST_F(HttpsTest, PlainHttpGetsNoHttpAnswer) {
    RawConnection connection(port);
    ASSERT_TRUE(connection.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"));
    EXPECT_FALSE(connection.readUntil("HTTP/", 2s)) << "the TLS port answered plain HTTP";
    EXPECT_TRUE(connection.waitForClose(2s));
    expectServed("after a plain HTTP client");
}

TEST_F(HttpsTest, SilentClientIsDroppedAfterTheReadTimeout) {
    RawConnection silent(port);
    auto started = std::chrono::steady_clock::now();
    // Others are served meanwhile.
    expectServed("while a client is silent");
    EXPECT_TRUE(silent.waitForClose(4s)) << "a silent client was kept";
    auto elapsed = std::chrono::steady_clock::now() - started;
    EXPECT_GE(elapsed, 900ms);
    EXPECT_LT(elapsed, 3s);
    expectServed("after a silent client");
}

TEST_F(HttpsTest, GracefulStopDrainsIdleAndBusyTlsConnections) {
    TlsClient idle(port, certificate.certificateFile());
    ASSERT_FALSE(idle.handshake());
    auto first = idle.get("/hello");
    ASSERT_EQ(first.status, 200) << first.error.message();
    ASSERT_TRUE(first.keepAlive);

    auto busy = std::async(std::launch::async, [this] {
        TlsClient client(port, certificate.certificateFile());
        if (auto ec = client.handshake()) return TlsClient::Result{0, "", false, ec};
        return client.get("/slow");
    });
    std::this_thread::sleep_for(200ms);

    std::promise<void> drained;
    auto stopped = std::chrono::steady_clock::now();
    asio::post(io, [this, &drained] { server->stop(10s, [&drained] { drained.set_value(); }); });
    ASSERT_EQ(drained.get_future().wait_for(5s), std::future_status::ready) << "not drained";
    EXPECT_LT(std::chrono::steady_clock::now() - stopped, 3s);

    // The request in flight got its answer, and was told the connection ends.
    auto answer = busy.get();
    EXPECT_FALSE(answer.error) << answer.error.message();
    EXPECT_EQ(answer.status, 200);
    EXPECT_FALSE(answer.keepAlive);
    // The idle connection was ended with a close_notify, not cut.
    auto after = idle.read();
    EXPECT_EQ(after.error, beast_http::error::end_of_stream) << after.error.message();
}

TEST(HttpsListen, UnusableFilesThrowNamingTheFile) {
    TestCertificate files;
    asio::io_context io;
    HttpConfig config;
    http::Router router;
    auto listenError = [&](const std::string& certificate, const std::string& key) -> std::string {
        http::HttpServer server(io, config, router);
        try {
            server.listen("127.0.0.1", 0, TlsConfig{certificate, key});
        } catch (const std::runtime_error& e) {
            return e.what();
        }
        return "";
    };
    auto missingCertificate = listenError(files.missingFile(), files.keyFile());
    EXPECT_NE(missingCertificate.find(files.missingFile()), std::string::npos) << missingCertificate;
    auto missingKey = listenError(files.certificateFile(), files.missingFile());
    EXPECT_NE(missingKey.find(files.missingFile()), std::string::npos) << missingKey;
    auto notPem = listenError(files.notPemFile(), files.keyFile());
    EXPECT_NE(notPem.find(files.notPemFile()), std::string::npos) << notPem;
    auto mismatch = listenError(files.certificateFile(), files.otherKeyFile());
    EXPECT_NE(mismatch.find(files.otherKeyFile()), std::string::npos) << mismatch;
    EXPECT_EQ(listenError(files.certificateFile(), files.keyFile()), "");
}

namespace {

// Runs `command` through the shell; its standard output, and its exit status.
std::pair<std::string, int> runCommand(const std::string& command) {
    struct Close {
        int* status;
        void operator()(FILE* pipe) const { *status = pclose(pipe); }
    };
    int status = -1;
    std::string output;
    {
        std::unique_ptr<FILE, Close> pipe(popen(command.c_str(), "r"), Close{&status});
        if (!pipe) return {"", -1};
        char chunk[4096];
        while (std::size_t n = std::fread(chunk, 1, sizeof chunk, pipe.get())) output.append(chunk, n);
    }
    return {output, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

}  // namespace

TEST(HttpsDaemon, ServesCurlOverHttps) {
    TestCertificate files;
    std::uint16_t port = sessiond::testing::freePort();
    nlohmann::json config = {
        {"listen",
         {{"address", "127.0.0.1"},
          {"port", port},
          {"tls", {{"certificateFile", files.certificateFile()}, {"privateKeyFile", files.keyFile()}}}}},
        {"cgroupName", "sessiond-test-https-" + std::to_string(getpid())},
        // No sandbox is needed to answer /healthz.
        {"pools", {{{"name", "default"}, {"scaleConfiguration", {{"readySessionInstances", 0}}}}}}};
    sessiond::testing::Daemon daemon(config);
    daemon.start();

    std::string url = "https://127.0.0.1:" + std::to_string(port) + "/healthz";
    std::string curl = "curl -sS --max-time 5 --cacert " + files.certificateFile() + " " + url;
    std::pair<std::string, int> result;
    auto deadline = std::chrono::steady_clock::now() + 30s;
    do {
        result = runCommand(curl + " 2>/dev/null");
        if (result.second == 0) break;
        std::this_thread::sleep_for(100ms);
    } while (std::chrono::steady_clock::now() < deadline);
    ASSERT_EQ(result.second, 0) << daemon.log();
    EXPECT_EQ(result.first, R"({"status":"ok"})");
    EXPECT_NE(daemon.log().find("listening on https://127.0.0.1:" + std::to_string(port)), std::string::npos)
        << daemon.log();

    // Without the certificate's CA curl refuses the server; over plain HTTP
    // the server gives curl no answer.
    EXPECT_NE(runCommand("curl -sS --max-time 5 " + url + " 2>/dev/null").second, 0);
    EXPECT_NE(runCommand("curl -sS --max-time 5 http://127.0.0.1:" + std::to_string(port) + "/healthz 2>/dev/null").second,
              0);

    daemon.signal(SIGTERM);
    EXPECT_EQ(daemon.wait(30s), 0) << daemon.log();
}
