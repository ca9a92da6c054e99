// The WebSocket endpoint behind a real http::Server on 127.0.0.1:0, driven by Beast clients.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <filesystem>
#include <sstream>
#include <thread>

#include "auth/auth.hpp"
#include "http/http.hpp"
#include "store/store.hpp"
#include "ws/ws.hpp"

namespace outpost::ws {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using Json = core::Json;
using namespace std::chrono_literals;

// A WebSocket client whose every wait has a deadline, so a server bug fails a test instead of
// hanging it.
class Client {
 public:
  explicit Client(unsigned short port, int receive_buffer = 0) : port_(port), ws_(ioc_) {
    auto& socket = beast::get_lowest_layer(ws_);
    socket.open(tcp::v4());
    // Set before connecting: a small window that stays small (no autotuning).
    if (receive_buffer > 0) socket.set_option(net::socket_base::receive_buffer_size(receive_buffer));
    socket.connect({net::ip::make_address("127.0.0.1"), port});
  }

  // The opening handshake; the response (101 or the refusal) lands in response().
  beast::error_code handshake(const std::string& target = "/ws",
                              std::vector<std::pair<std::string, std::string>> headers = {}) {
    ws_.set_option(websocket::stream_base::decorator([headers](websocket::request_type& req) {
      for (const auto& [name, value] : headers) req.set(name, value);
    }));
    return run([&](auto handler) { ws_.async_handshake(response_, "127.0.0.1", target, handler); }, 5s);
  }

  const websocket::response_type& response() const { return response_; }

  void send(const std::string& text) {
    beast::error_code ec;
    ws_.write(net::buffer(text), ec);
    ASSERT_FALSE(ec) << ec.message();
  }
  void send(const Json& j) { send(j.dump()); }

  // The next message, or nullopt when the connection ended (see error(), close_reason()).
  std::optional<Json> next(std::chrono::milliseconds timeout = 5s) {
    buffer_.clear();
    error_ = run([&](auto handler) { ws_.async_read(buffer_, handler); }, timeout);
    if (error_) return std::nullopt;
    return Json::parse(beast::buffers_to_string(buffer_.data()));
  }

  // Reads until a message with this "op" (skipping others), or nullopt.
  std::optional<Json> next_op(const std::string& op, std::chrono::milliseconds timeout = 5s) {
    for (;;) {
      auto m = next(timeout);
      if (!m || (*m)["op"] == op) return m;
    }
  }

  // Reads until the connection ends; returns how many messages came before.
  size_t read_until_closed(std::chrono::milliseconds timeout = 5s) {
    size_t n = 0;
    while (next(timeout)) ++n;
    return n;
  }

  // The server answers a ping: everything sent before has been handled.
  void sync() {
    send(Json{{"op", "ping"}, {"ref", "sync"}});
    auto m = next_op("pong");
    ASSERT_TRUE(m) << error_.message();
    ASSERT_EQ((*m)["ref"], "sync");
  }

  beast::error_code error() const { return error_; }
  websocket::close_reason close_reason() const { return ws_.reason(); }

 private:
  template <class Start>
  beast::error_code run(Start start, std::chrono::milliseconds timeout) {
    std::optional<beast::error_code> result;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc_.restart();
    ioc_.run_for(timeout);
    if (!result) {
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).cancel(ignored);
      ioc_.restart();
      ioc_.run();
      return net::error::timed_out;
    }
    return *result;
  }

  unsigned short port_;
  net::io_context ioc_;
  websocket::stream<tcp::socket> ws_;
  websocket::response_type response_;
  beast::flat_buffer buffer_;
  beast::error_code error_;
};

// One plain HTTP exchange.
bhttp::response<bhttp::string_body> http_get(unsigned short port, const std::string& target,
                                             const std::string& key = "") {
  net::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect({net::ip::make_address("127.0.0.1"), port});
  bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
  req.set(bhttp::field::host, "127.0.0.1");
  if (!key.empty()) req.set("X-API-Key", key);
  bhttp::write(socket, req);
  beast::flat_buffer buffer;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(socket, buffer, res);
  return res;
}

struct Options {
  config::WsConfig cfg;
  bool anonymous_read = false;
  std::chrono::milliseconds auth_timeout{10'000};
};

class WsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("outpost-ws-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    store_cfg_.data_dir = dir_.string();
    auto s = store::Store::open(store_cfg_, nullptr);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(s.value());
    auto r = auth::create_key(*store_, auth::Scope::kRead, "reader");
    auto c = auth::create_key(*store_, auth::Scope::kControl, "controller");
    ASSERT_TRUE(r.is_ok() && c.is_ok());
    read_key_ = r->key;
    control_key_ = c->key;
    auth_ = std::make_unique<auth::Authenticator>(*store_, nullptr);
  }

  void start(Options o = {}) {
    options_ = std::move(o);
    server_cfg_.listen = "127.0.0.1:0";
    server_cfg_.threads = 2;
    log_cfg_.access = "off";
    ws_ = std::make_unique<Server>(Deps{
        .cfg = options_.cfg,
        .bus = bus_,
        .auth = *auth_,
        .metrics = metrics_,
        .anonymous_read = options_.anonymous_read,
        .list = [] { return Json::array({{{"id", "d1"}, {"sensors", Json::array({"temp"})}}}); },
        .command = [this](const Json& command, const auth::Principal& who) -> core::Result<std::string> {
          std::lock_guard lk(mu_);
          commands_.push_back({command, who.name});
          if (command["device"] == "nowhere") return core::Status::not_found("no device 'nowhere'");
          return "cmd-" + std::to_string(commands_.size());
        },
        .auth_timeout = options_.auth_timeout});
    ws_->register_routes(router_);
    // Seed 004's clients open ws://REMOTEHOST: the app adds the handler on "/" as well.
    http::Route root{http::Verb::get, "/", http::Access::kPublic,
                     [](http::Request&) { return http::Response::json({{"root", true}}); }, {.summary = "root"}};
    root.upgrade = ws_->handler();
    router_.add(std::move(root));
    http_ = std::make_unique<http::Server>(server_cfg_, log_cfg_, router_, *auth_, metrics_);
    auto bound = http_->start();
    ASSERT_TRUE(bound.is_ok()) << bound.status().to_string();
    port_ = static_cast<unsigned short>(std::stoi(bound->substr(bound->rfind(':') + 1)));
    runner_ = std::thread([this] { http_->run(); });
  }

  void TearDown() override {
    if (http_) {
      ws_->shutdown(1s);
      http_->stop();
      runner_.join();
      http_.reset();
      ws_.reset();
    }
    auth_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void publish(const std::string& kind, const std::string& device, const std::string& payload = "{}",
               int64_t id = 0) {
    core::Event e;
    e.id = id;
    e.ts = core::from_micros(1'700'000'000'000'000);
    e.device = device;
    e.kind = kind;
    e.payload = payload;
    bus_.publish(e);
  }

  uint64_t metric(const std::string& name) const {
    std::istringstream in(metrics_.render());
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(name + " ", 0) == 0) return std::stoull(line.substr(name.size() + 1));
    }
    ADD_FAILURE() << "no metric " << name;
    return 0;
  }

  std::unique_ptr<Client> connect_with_key(const std::string& key) {
    auto c = std::make_unique<Client>(port_);
    auto ec = c->handshake("/ws", {{"Authorization", "Bearer " + key}});
    EXPECT_FALSE(ec) << ec.message();
    return c;
  }

  std::filesystem::path dir_;
  config::StoreConfig store_cfg_;
  std::unique_ptr<store::Store> store_;
  std::string read_key_, control_key_;
  std::unique_ptr<auth::Authenticator> auth_;
  core::Registry metrics_;
  core::Bus bus_;
  Options options_;
  config::ServerConfig server_cfg_;
  config::LogConfig log_cfg_;
  std::mutex mu_;
  std::vector<std::pair<Json, std::string>> commands_;
  std::unique_ptr<Server> ws_;
  http::Router router_;
  std::unique_ptr<http::Server> http_;
  std::thread runner_;
  unsigned short port_ = 0;
};

TEST_F(WsServerTest, AuthByHeaderThenEventsArrive) {
  start();
  auto c = connect_with_key(read_key_);
  c->sync();
  publish("motion", "cam", R"({"score":0.7})", 17);
  auto m = c->next();
  ASSERT_TRUE(m) << c->error().message();
  EXPECT_EQ(*m, Json::parse(R"({"op":"event","id":17,"type":"motion","device":"cam",
                               "time":"2023-11-14T22:13:20.000000Z","data":{"score":0.7}})"));
  EXPECT_EQ(ws_->clients(), 1u);
  EXPECT_EQ(metric("outpost_ws_clients"), 1u);
}

TEST_F(WsServerTest, AuthByQueryParameter) {
  start();
  Client c(port_);
  ASSERT_FALSE(c.handshake("/ws?access_token=" + read_key_));
  c.sync();
  publish("online", "d1");
  auto m = c.next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["type"], "online");
}

TEST_F(WsServerTest, AuthByFirstMessage) {
  start();
  Client c(port_);
  ASSERT_FALSE(c.handshake());
  c.send(Json{{"op", "auth"}, {"key", read_key_}, {"ref", 1}});
  auto m = c.next();
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, Json::parse(R"({"op":"authenticated","scope":"read","ref":1})"));
  publish("button", "d1", R"({"pressed":true})");
  m = c.next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["type"], "button");

  Client t(port_);  // "token" works as well
  ASSERT_FALSE(t.handshake());
  t.send(Json{{"op", "auth"}, {"token", control_key_}});
  m = t.next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["scope"], "control");
}

TEST_F(WsServerTest, UnauthenticatedClientGetsOnlyAClose) {
  start({.auth_timeout = 400ms});
  Client idle(port_);
  ASSERT_FALSE(idle.handshake());
  Client chatty(port_);
  ASSERT_FALSE(chatty.handshake());
  std::this_thread::sleep_for(100ms);
  publish("motion", "cam");  // neither may see it
  chatty.send(Json{{"op", "subscribe"}});
  EXPECT_FALSE(chatty.next());
  EXPECT_EQ(chatty.close_reason().code, websocket::close_code::policy_error);
  EXPECT_EQ(chatty.close_reason().reason, "unauthorized");
  EXPECT_FALSE(idle.next(3s));  // the auth deadline
  EXPECT_EQ(idle.error(), websocket::error::closed);
  EXPECT_EQ(idle.close_reason().code, websocket::close_code::policy_error);
  EXPECT_EQ(idle.close_reason().reason, "unauthorized");
}

TEST_F(WsServerTest, WrongCredentialsAreRefused) {
  start();
  Client header(port_);
  EXPECT_TRUE(header.handshake("/ws", {{"X-API-Key", "opk_nope_nope"}}));
  EXPECT_EQ(header.response().result_int(), 401);

  Client message(port_);
  ASSERT_FALSE(message.handshake());
  message.send(Json{{"op", "auth"}, {"key", "opk_nope_nope"}});
  EXPECT_FALSE(message.next());
  EXPECT_EQ(message.close_reason().code, websocket::close_code::policy_error);
  EXPECT_EQ(message.close_reason().reason, "unauthorized");
}

TEST_F(WsServerTest, AnonymousReadGetsEventsButNoCommands) {
  start({.anonymous_read = true});
  Client c(port_);
  ASSERT_FALSE(c.handshake("/ws"));
  c.sync();
  publish("alert", "d1", R"({"level":"high"})");
  auto m = c.next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["data"]["level"], "high");
  c.send(Json{{"op", "command"}, {"device", "d1"}, {"target", "led"}, {"value", 1}, {"ref", "c"}});
  m = c.next();
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, Json::parse(R"({"op":"error","error":"command needs scope 'control'; this connection has 'read'","ref":"c"})"));
  // Authenticating upgrades the connection.
  c.send(Json{{"op", "auth"}, {"key", control_key_}});
  m = c.next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["scope"], "control");
}

TEST_F(WsServerTest, SubscriptionsFilterEvents) {
  start();
  auto c = connect_with_key(read_key_);
  c->send(Json::parse(R"({"op":"subscribe","devices":["a"],"sensors":["temp"],"ref":"s"})"));
  auto m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, Json::parse(R"({"op":"subscribed","subscriptions":[{"devices":["a"],"sensors":["temp"],"types":"*"}],
                               "ref":"s"})"));
  publish("reading", "a", R"({"sensor":"humidity","value":40})");  // wrong sensor
  publish("reading", "b", R"({"sensor":"temp","value":20})");      // wrong device
  publish("reading", "a", R"({"sensor":"temp","value":21.5})");
  publish("motion", "b");  // wrong device
  publish("online", "a");  // not a reading: the sensors filter does not apply
  m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["data"], Json::parse(R"({"sensor":"temp","value":21.5})"));
  m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["type"], "online");
  EXPECT_EQ((*m)["device"], "a");

  // A second subscription adds to the first.
  c->send(Json::parse(R"({"op":"subscribe","devices":["b"],"types":["motion"]})"));
  ASSERT_TRUE(c->next_op("subscribed"));
  publish("reading", "b", R"({"sensor":"temp","value":20})");  // b: motion only
  publish("motion", "b");
  m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["type"], "motion");

  // Unsubscribing a device; then everything.
  c->send(Json::parse(R"({"op":"unsubscribe","devices":["a"]})"));
  m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, Json::parse(R"({"op":"unsubscribed","subscriptions":[{"devices":["b"],"sensors":"*","types":["motion"]}]})"));
  publish("online", "a");
  publish("motion", "b");
  m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["device"], "b");
  c->send(Json::parse(R"({"op":"unsubscribe"})"));
  ASSERT_TRUE(c->next_op("unsubscribed"));
  publish("motion", "b");
  c->send(Json::parse(R"({"op":"subscribe","devices":["sentinel"]})"));
  ASSERT_TRUE(c->next_op("subscribed"));
  publish("motion", "sentinel");
  m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["device"], "sentinel");
}

TEST_F(WsServerTest, BadMessagesGetErrorsAndTheConnectionStays) {
  start();
  auto c = connect_with_key(read_key_);
  c->send(std::string("{"));
  auto m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, Json::parse(R"({"op":"error","error":"invalid JSON"})"));
  c->send(Json::parse(R"({"op":"subscribe","types":["readings"],"ref":4})"));
  m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["op"], "error");
  EXPECT_EQ((*m)["ref"], 4);
  c->send(Json::parse(R"({"op":"fly"})"));
  m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["op"], "error");
  c->sync();
}

TEST_F(WsServerTest, ListAndCommand) {
  start();
  auto c = connect_with_key(control_key_);
  c->send(Json::parse(R"({"op":"list","ref":"l"})"));
  auto m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, Json::parse(R"({"op":"list","devices":[{"id":"d1","sensors":["temp"]}],"ref":"l"})"));

  c->send(Json::parse(R"({"op":"command","device":"d1","target":"display","parameter":"viewstate","value":"marker5","ref":7})"));
  m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, Json::parse(R"({"op":"command","id":"cmd-1","ref":7})"));
  {
    std::lock_guard lk(mu_);
    ASSERT_EQ(commands_.size(), 1u);
    EXPECT_EQ(commands_[0].first,
              Json::parse(R"({"device":"d1","target":"display","parameter":"viewstate","value":"marker5"})"));
    EXPECT_EQ(commands_[0].second, "controller");
  }
  c->send(Json::parse(R"({"op":"command","device":"nowhere","target":"x","value":1})"));
  m = c->next();
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, Json::parse(R"({"op":"error","error":"no device 'nowhere'"})"));

  auto reader = connect_with_key(read_key_);
  reader->send(Json::parse(R"({"op":"command","device":"d1","value":1})"));
  m = reader->next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["op"], "error");
  std::lock_guard lk(mu_);
  EXPECT_EQ(commands_.size(), 2u) << "the read-scope command never reached the hub";
}

TEST_F(WsServerTest, SubprotocolChosenFromTheOffer) {
  start({.anonymous_read = true});
  Client chat(port_);
  ASSERT_FALSE(chat.handshake("/ws", {{"Sec-WebSocket-Protocol", "chat, superchat"}}));
  EXPECT_EQ(chat.response()[bhttp::field::sec_websocket_protocol], "chat");

  Client ours(port_);
  ASSERT_FALSE(ours.handshake("/ws", {{"Sec-WebSocket-Protocol", "superchat, outpost.v1"}}));
  EXPECT_EQ(ours.response()[bhttp::field::sec_websocket_protocol], "outpost.v1");

  Client unknown(port_);
  ASSERT_FALSE(unknown.handshake("/ws", {{"Sec-WebSocket-Protocol", "superchat"}}));
  EXPECT_EQ(unknown.response().count(bhttp::field::sec_websocket_protocol), 0u);

  Client none(port_);
  ASSERT_FALSE(none.handshake("/ws", {{"Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"}}));
  EXPECT_EQ(none.response().count(bhttp::field::sec_websocket_protocol), 0u);
  EXPECT_EQ(none.response().count(bhttp::field::sec_websocket_extensions), 0u) << "permessage-deflate stays off";
}

// Seed 004's example: a browser's `new WebSocket("ws://REMOTEHOST")` offering "chat, superchat",
// on "/", with anonymous read on; it never subscribes and receives every event.
TEST_F(WsServerTest, Seed004ClientOnRoot) {
  start({.anonymous_read = true});
  Client c(port_);
  ASSERT_FALSE(c.handshake("/", {{"Origin", "http://localhost"}, {"Sec-WebSocket-Protocol", "chat, superchat"}}));
  EXPECT_EQ(c.response().result_int(), 101);
  EXPECT_EQ(c.response()[bhttp::field::sec_websocket_protocol], "chat");
  EXPECT_EQ(c.response()[bhttp::field::upgrade], "websocket");
  c.sync();
  publish("reading", "d23c058698435eff", R"({"sensor":"orientation","values":[17.8,0.07,-0.48]})");
  auto m = c.next();
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["device"], "d23c058698435eff");
  EXPECT_EQ((*m)["data"]["sensor"], "orientation");
  EXPECT_EQ(http_get(port_, "/").result_int(), 200) << "a plain GET on / is the route's own";
}

// Clients come and go (some mid-handshake, some abruptly) while events stream; nothing may
// crash, leak (ASan) or hang, and the count returns to zero.
TEST_F(WsServerTest, ChurnWhilePublishing) {
  Options o;
  o.cfg.send_queue = 8;
  start(o);
  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    for (int i = 1; !stop; ++i) {
      std::string device = "d";
      device += std::to_string(i % 3);
      publish(i % 2 ? "reading" : "motion", device, R"({"sensor":"temp","value":1})", i);
      if (i % 50 == 0) std::this_thread::sleep_for(1ms);
    }
  });
  for (int round = 0; round < 30; ++round) {
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 6; ++i) {
      auto c = std::make_unique<Client>(port_, i % 2 ? 4096 : 0);
      if (i == 5) {  // gone before the handshake
        clients.push_back(std::move(c));
        continue;
      }
      ASSERT_FALSE(c->handshake("/ws", {{"X-API-Key", read_key_}}));
      if (i % 3 == 0) c->send(Json::parse(R"({"op":"subscribe","devices":["d1"],"types":["reading"]})"));
      if (i == 4) c->next();
      clients.push_back(std::move(c));
    }
  }  // each round's clients drop their sockets without a close handshake
  stop = true;
  publisher.join();
  for (int i = 0; i < 500 && ws_->clients() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(ws_->clients(), 0u);
  EXPECT_EQ(metric("outpost_ws_clients"), 0u);
}

// A client that stops reading fills its socket buffers, then its queue, and is closed as too
// slow; a client that reads gets every event meanwhile.
TEST_F(WsServerTest, ClientThatNeverReadsIsClosedOthersKeepReceiving) {
  Options o;
  o.cfg.send_queue = 4;
  start(o);
  Client slow(port_, 8 * 1024);
  ASSERT_FALSE(slow.handshake("/ws", {{"X-API-Key", read_key_}}));
  slow.sync();
  auto fast = connect_with_key(read_key_);
  fast->sync();

  const std::string payload = R"({"blob":")" + std::string(16 * 1024, 'x') + R"("})";
  int published = 0;
  for (; published < 2000 && metric("outpost_ws_slow_closed_total") == 0; ++published) {
    publish("alert", "d1", payload, published + 1);
    auto m = fast->next();  // in step: the fast client is never behind
    ASSERT_TRUE(m) << fast->error().message();
    ASSERT_EQ((*m)["id"], published + 1);
  }
  ASSERT_EQ(metric("outpost_ws_slow_closed_total"), 1u) << "after " << published << " events";
  for (int i = 0; i < 10; ++i) {
    publish("alert", "d1", "{}", published + 1 + i);
    auto m = fast->next();
    ASSERT_TRUE(m);
    EXPECT_EQ((*m)["id"], published + 1 + i);
  }
  // The slow client gets what was in flight, then the close.
  size_t got = slow.read_until_closed();
  EXPECT_LT(got, static_cast<size_t>(published));
  EXPECT_EQ(slow.error(), websocket::error::closed) << slow.error().message();
  EXPECT_EQ(slow.close_reason().code, websocket::close_code::policy_error);
  EXPECT_EQ(slow.close_reason().reason, "too slow");
}

TEST_F(WsServerTest, MaxClientsGets503) {
  Options o;
  o.cfg.max_clients = 2;
  start(o);
  auto a = connect_with_key(read_key_);
  auto b = connect_with_key(read_key_);
  Client c(port_);
  EXPECT_TRUE(c.handshake("/ws", {{"X-API-Key", read_key_}}));
  EXPECT_EQ(c.response().result_int(), 503);
  auto body = Json::parse(c.response().body());
  EXPECT_EQ(body["status"], 503);
  EXPECT_EQ(body["detail"], "too many WebSocket clients (at most 2)");
  EXPECT_EQ(metric("outpost_ws_rejected_total"), 1u);

  a.reset();  // closes the TCP connection; the slot frees when the server notices
  for (int i = 0; i < 200 && ws_->clients() > 1; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(ws_->clients(), 1u);
  Client d(port_);
  EXPECT_FALSE(d.handshake("/ws", {{"X-API-Key", read_key_}}));
}

TEST_F(WsServerTest, OversizedMessageCloses1009) {
  Options o;
  o.cfg.max_message = 1024;
  start(o);
  auto c = connect_with_key(read_key_);
  c->send(R"({"op":"ping","ref":")" + std::string(2000, 'x') + R"("})");
  EXPECT_FALSE(c->next());
  EXPECT_EQ(c->close_reason().code, websocket::close_code::too_big);
}

TEST_F(WsServerTest, ShutdownClosesWith1001AndRefusesNewClients) {
  start();
  auto c = connect_with_key(read_key_);
  c->sync();
  std::thread closer([this] { ws_->shutdown(2s); });
  EXPECT_FALSE(c->next());
  closer.join();
  EXPECT_EQ(c->close_reason().code, websocket::close_code::going_away);
  EXPECT_EQ(ws_->clients(), 0u);
  Client late(port_);
  EXPECT_TRUE(late.handshake("/ws", {{"X-API-Key", read_key_}}));
  EXPECT_EQ(late.response().result_int(), 503);
}

TEST_F(WsServerTest, PlainGetIs426) {
  start();
  EXPECT_EQ(http_get(port_, "/ws").result_int(), 401);  // like every route that is not public
  auto res = http_get(port_, "/ws", read_key_);
  EXPECT_EQ(res.result_int(), 426);
  EXPECT_EQ(res[bhttp::field::upgrade], "websocket");
  EXPECT_EQ(Json::parse(res.body())["status"], 426);
  auto doc = router_.openapi("Outpost", "test");
  EXPECT_TRUE(doc["paths"]["/ws"]["get"]["responses"].contains("101"));
}

// Not a regression test (timing on a shared machine): one event to 1,000 clients, from
// Bus::publish to the last client's receive. Run with --gtest_also_run_disabled_tests.
TEST_F(WsServerTest, DISABLED_FanOutLatency1000Clients) {
  start();
  constexpr int kClients = 1000;
  net::io_context ioc;
  std::vector<std::unique_ptr<websocket::stream<tcp::socket>>> clients;
  std::vector<beast::flat_buffer> buffers(kClients);
  for (int i = 0; i < kClients; ++i) {
    auto c = std::make_unique<websocket::stream<tcp::socket>>(ioc);
    beast::get_lowest_layer(*c).connect({net::ip::make_address("127.0.0.1"), port_});
    c->set_option(websocket::stream_base::decorator(
        [this](websocket::request_type& req) { req.set("X-API-Key", read_key_); }));
    c->handshake("127.0.0.1", "/ws");
    clients.push_back(std::move(c));
  }
  for (int i = 0; i < 200 && ws_->clients() < kClients; ++i) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(200ms);  // every client past its handshake on the server
  std::vector<double> ms;
  for (int round = 0; round < 50; ++round) {
    int received = 0;
    for (int i = 0; i < kClients; ++i) {
      clients[i]->async_read(buffers[i], [&, i](beast::error_code ec, size_t) {
        ASSERT_FALSE(ec) << ec.message();
        buffers[i].clear();
        ++received;
      });
    }
    auto t0 = std::chrono::steady_clock::now();
    publish("reading", "d1", R"({"sensor":"temp","value":21.5})", round + 1);
    ioc.restart();
    while (received < kClients && ioc.run_one_for(5s)) {
    }
    ASSERT_EQ(received, kClients);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    std::this_thread::sleep_for(20ms);
  }
  std::sort(ms.begin(), ms.end());
  std::printf("publish -> last of %d clients: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", kClients,
              ms[ms.size() / 2], ms[ms.size() * 99 / 100], ms.back());
}

}  // namespace
}  // namespace outpost::ws
