// The HTTP(S) sink against a tiny Beast server on 127.0.0.1 (TLS with certificates made by the
// openssl command for the test).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "upstream/upstream.hpp"

namespace outpost::upstream {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace fs = std::filesystem;
using tcp = net::ip::tcp;
using json = nlohmann::json;
using std::chrono::milliseconds;

struct Seen {
  std::string target;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// What the server answers: a status and a body; status 0 holds the connection without answering
// until the server stops.
struct Reply {
  unsigned status = 200;
  std::string body = "{}";
};

// Serves one connection at a time on its own thread, plain or TLS.
class TestServer {
 public:
  using Handler = std::function<Reply(const Seen&)>;

  explicit TestServer(Handler h, ssl::context* tls = nullptr)
      : handler_(std::move(h)), tls_(tls), acceptor_(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { loop(); });
  }
  ~TestServer() {
    stop_ = true;
    // Wake the blocking accept with a connection of our own.
    beast::error_code ec;
    tcp::socket poke(ioc_);
    poke.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_), ec);
    thread_.join();
  }

  uint16_t port() const { return port_; }
  std::vector<Seen> seen() {
    std::lock_guard lk(mu_);
    return seen_;
  }

 private:
  void loop() {
    while (!stop_) {
      tcp::socket socket(ioc_);
      beast::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stop_) return;
      if (tls_) {
        beast::ssl_stream<tcp::socket> stream(std::move(socket), *tls_);
        stream.handshake(ssl::stream_base::server, ec);
        if (ec) continue;  // the client refused our certificate
        serve(stream);
      } else {
        serve(socket);
      }
    }
  }

  template <typename Stream>
  void serve(Stream& stream) {
    beast::flat_buffer buffer;
    bhttp::request<bhttp::string_body> req;
    beast::error_code ec;
    bhttp::read(stream, buffer, req, ec);
    if (ec) return;
    Seen s;
    s.target = std::string(req.target());
    for (const auto& f : req) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      s.headers[name] = std::string(f.value());
    }
    s.body = req.body();
    {
      std::lock_guard lk(mu_);
      seen_.push_back(s);
    }
    Reply r = handler_(s);
    if (r.status == 0) {
      // Hold the connection, answering nothing, until the client gives up or we stop.
      for (int i = 0; i < 3000 && !stop_; ++i) std::this_thread::sleep_for(milliseconds(10));
      return;
    }
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), 11};
    res.set(bhttp::field::content_type, "application/json");
    if (r.status != 204 && r.status != 304) res.body() = r.body;
    res.prepare_payload();
    bhttp::write(stream, res, ec);
  }

  Handler handler_;
  ssl::context* tls_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<Seen> seen_;
};

config::UpstreamDestination dest(const std::string& url) {
  config::UpstreamDestination d;
  d.name = "test";
  d.url = url;
  d.headers = {{"X-API-Key", "secret-key"}};
  d.timeout = milliseconds(2000);
  return d;
}

Message json_message(std::string id, std::string body = R"({"device":"edge-1","x":1})") {
  return Message{std::move(id), "summary", "application/json", std::move(body), core::now(), 0};
}

Message jpeg_message(std::string id) {
  return Message{std::move(id), "snapshot", "image/jpeg", std::string("\xff\xd8\x00jpeg\xff\xd9", 9), core::now(), 1};
}

std::unique_ptr<Sink> sink_for(const config::UpstreamDestination& d) {
  auto s = make_http_sink(d, "edge-1", OUTPOST_TLS_PLUGIN);  // https:// through the real plugin
  EXPECT_TRUE(s) << s.status().to_string();
  return s ? std::move(*s) : nullptr;
}

TEST(HttpSink, PostsJsonBatchesAndSnapshotsAloneWithTheirHeaders) {
  TestServer server([](const Seen&) { return Reply{200, R"({"accepted":1})"}; });
  auto d = dest(fmt::format("http://127.0.0.1:{}/ingest?token=t", server.port()));
  auto sink = sink_for(d);
  ASSERT_TRUE(sink);
  EXPECT_EQ(sink->describe(), fmt::format("http://127.0.0.1:{}/ingest", server.port()));  // no query, no secrets
  EXPECT_EQ(sink->max_batch(), 100u);

  std::vector<Message> batch = {json_message("a"), json_message("b"), jpeg_message("c"), json_message("d")};
  Delivery r = sink->deliver(batch, milliseconds(5000));
  EXPECT_EQ(r.delivered, 4u);
  EXPECT_EQ(r.rest, Outcome::kDelivered) << r.error;
  auto seen = server.seen();
  ASSERT_EQ(seen.size(), 3u);  // [a, b], [c], [d]
  EXPECT_EQ(seen[0].target, "/ingest?token=t");
  EXPECT_EQ(seen[0].headers["content-type"], "application/json");
  EXPECT_EQ(seen[0].headers["x-api-key"], "secret-key");
  EXPECT_EQ(seen[0].headers["x-outpost-source"], "edge-1");
  EXPECT_EQ(seen[0].headers["host"], fmt::format("127.0.0.1:{}", server.port()));
  auto env = json::parse(seen[0].body);
  EXPECT_EQ(env["source"], "edge-1");
  ASSERT_EQ(env["messages"].size(), 2u);
  EXPECT_EQ(env["messages"][0]["id"], "a");
  EXPECT_EQ(env["messages"][1]["id"], "b");
  EXPECT_EQ(env["messages"][1]["body"]["x"], 1);
  EXPECT_EQ(seen[1].headers["content-type"], "image/jpeg");
  EXPECT_EQ(seen[1].headers["idempotency-key"], "c");
  EXPECT_EQ(seen[1].headers["x-outpost-kind"], "snapshot");
  EXPECT_EQ(seen[1].headers["x-api-key"], "secret-key");
  EXPECT_FALSE(seen[1].headers["x-outpost-created"].empty());
  EXPECT_EQ(seen[1].body, batch[2].body);
  EXPECT_EQ(seen[2].headers["idempotency-key"], "d");  // a JSON request of one message has the key too
}

TEST(HttpSink, ClassifiesAnswersRetryOrDead) {
  struct Case {
    unsigned status;
    Outcome outcome;
  };
  for (auto c : {Case{201, Outcome::kDelivered}, Case{204, Outcome::kDelivered}, Case{408, Outcome::kRetry},
                 Case{429, Outcome::kRetry}, Case{500, Outcome::kRetry}, Case{503, Outcome::kRetry},
                 Case{301, Outcome::kRetry}, Case{400, Outcome::kDead}, Case{401, Outcome::kDead},
                 Case{404, Outcome::kDead}, Case{413, Outcome::kDead}}) {
    TestServer server([&](const Seen&) { return Reply{c.status, R"({"detail":"because"})"}; });
    auto sink = sink_for(dest(fmt::format("http://127.0.0.1:{}/", server.port())));
    std::vector<Message> one = {json_message("a")};
    Delivery r = sink->deliver(one, milliseconds(5000));
    EXPECT_EQ(r.rest, c.outcome) << c.status << ": " << r.error;
    if (c.outcome != Outcome::kDelivered) {
      EXPECT_EQ(r.delivered, 0u);
      EXPECT_NE(r.error.find(fmt::format("HTTP {}", c.status)), std::string::npos) << r.error;
      EXPECT_NE(r.error.find("because"), std::string::npos) << r.error;
    }
  }
}

TEST(HttpSink, ARefusedBatchIsSentOneByOneSoOnlyTheBadMessageIsDead) {
  TestServer server([](const Seen& s) {
    auto env = json::parse(s.body);
    for (const auto& m : env["messages"])
      if (m["id"] == "bad") return Reply{400, R"({"detail":"messages[n].body.device: must be a non-empty string"})"};
    return Reply{200, "{}"};
  });
  auto sink = sink_for(dest(fmt::format("http://127.0.0.1:{}/", server.port())));
  std::vector<Message> batch = {json_message("a"), json_message("bad"), json_message("c")};
  Delivery r = sink->deliver(batch, milliseconds(5000));
  EXPECT_EQ(r.delivered, 1u);
  EXPECT_EQ(r.rest, Outcome::kDead);
  EXPECT_NE(r.error.find("HTTP 400"), std::string::npos) << r.error;
  auto seen = server.seen();
  ASSERT_EQ(seen.size(), 3u);  // [a, bad, c] refused, then [a] ok, [bad] refused
  EXPECT_EQ(json::parse(seen[1].body)["messages"].size(), 1u);
}

TEST(HttpSink, ConnectionRefusedAndSilenceAreRetriedWithAReason) {
  uint16_t closed_port;
  {
    net::io_context ioc;
    tcp::acceptor a(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    closed_port = a.local_endpoint().port();
  }  // closed again: nothing listens there
  auto refused = sink_for(dest(fmt::format("http://127.0.0.1:{}/", closed_port)));
  std::vector<Message> one = {json_message("a")};
  Delivery r = refused->deliver(one, milliseconds(2000));
  EXPECT_EQ(r.rest, Outcome::kRetry);
  EXPECT_EQ(r.delivered, 0u);
  EXPECT_NE(r.error.find("connecting"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("refused"), std::string::npos) << r.error;

  TestServer silent([](const Seen&) { return Reply{0, ""}; });
  auto d = dest(fmt::format("http://127.0.0.1:{}/", silent.port()));
  auto slow = sink_for(d);
  r = slow->deliver(one, milliseconds(300));
  EXPECT_EQ(r.rest, Outcome::kRetry);
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;

}

TEST(HttpSink, RefusesUrlsItCannotCarryAndUnreadableCaFiles) {
  auto d = dest("mqtt://127.0.0.1:1883");
  EXPECT_EQ(make_http_sink(d, "e").status().code(), core::Code::kInvalid);
  d = dest("https://127.0.0.1:1/");
  d.ca_file = "/nonexistent/ca.pem";
  auto s = make_http_sink(d, "e", OUTPOST_TLS_PLUGIN);
  ASSERT_FALSE(s);
  EXPECT_NE(s.status().message().find("/nonexistent/ca.pem"), std::string::npos) << s.status().message();
}

// https:// with a CA of the test's own: the right CA delivers, another CA and a certificate for
// another name do not (retried, with OpenSSL's reason).
TEST(HttpSink, HttpsVerifiesThePeerAndItsName) {
  std::string tmpl = (fs::temp_directory_path() / "outpost-tls-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  fs::path dir = tmpl;
  std::ofstream(dir / "san.cnf") << "subjectAltName=IP:127.0.0.1\n";
  std::ofstream(dir / "other-san.cnf") << "subjectAltName=DNS:elsewhere.example\n";
  const std::string cmd =
      "cd '" + dir.string() +
      "' && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=outpost-test-ca -keyout ca.key -out ca.pem"
      " && openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr"
      " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.cnf"
      " -out server.pem"
      " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile other-san.cnf"
      " -out wrong-name.pem"
      " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.pem";
  ASSERT_EQ(std::system(("(" + cmd + ") >/dev/null 2>&1").c_str()), 0) << "openssl failed: " << cmd;

  auto server_ctx = [&](const std::string& cert) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ctx->use_certificate_chain_file((dir / cert).string());
    ctx->use_private_key_file((dir / "server.key").string(), ssl::context::pem);
    return ctx;
  };
  std::vector<Message> one = {json_message("a")};
  {
    auto ctx = server_ctx("server.pem");
    TestServer server([](const Seen&) { return Reply{200, "{}"}; }, ctx.get());
    auto d = dest(fmt::format("https://127.0.0.1:{}/in", server.port()));
    d.ca_file = (dir / "ca.pem").string();
    Delivery r = sink_for(d)->deliver(one, milliseconds(5000));
    EXPECT_EQ(r.rest, Outcome::kDelivered) << r.error;
    EXPECT_EQ(server.seen().size(), 1u);

    d.ca_file = (dir / "other.pem").string();
    r = sink_for(d)->deliver(one, milliseconds(5000));
    EXPECT_EQ(r.rest, Outcome::kRetry);
    EXPECT_NE(r.error.find("TLS handshake"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("certificate"), std::string::npos) << r.error;
    EXPECT_EQ(server.seen().size(), 1u);  // nothing was sent to an unverified peer
  }
  {
    auto ctx = server_ctx("wrong-name.pem");
    TestServer server([](const Seen&) { return Reply{200, "{}"}; }, ctx.get());
    auto d = dest(fmt::format("https://127.0.0.1:{}/in", server.port()));
    d.ca_file = (dir / "ca.pem").string();
    Delivery r = sink_for(d)->deliver(one, milliseconds(5000));
    EXPECT_EQ(r.rest, Outcome::kRetry) << "a certificate for another name was accepted";
    EXPECT_TRUE(server.seen().empty());
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace outpost::upstream
