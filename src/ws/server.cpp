// WebSocket sessions and the fan-out.
//
// Threads: a client lives on the io_context its socket came from, which the http server runs
// on one thread, so the socket's executor serializes everything a client does (as a strand
// would, without one). The fan-out has its own thread, woken by the bus: it serializes each
// event once, then posts one task per io_context with the whole batch; that task offers the
// batch to each client of its context, which filters and queues on its own thread. So one
// reading for 1,000 clients costs 2 posts on a 2-core machine, not 1,000, and no client's
// state is ever touched by two threads.
//
// Lifetime: clients hold the Impl; the Impl holds clients only weakly (its registry and the
// fan-out snapshot), so a client dies with its last pending operation, also when the http
// server destroys its io_contexts with operations still queued.
#include <spdlog/spdlog.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "ws/detail/protocol.hpp"
#include "ws/ws.hpp"

namespace outpost::ws {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using detail::OJson;

namespace {

constexpr size_t kBusQueue = 8192;   // events waiting for the fan-out thread; then the oldest drop
constexpr size_t kTakeBatch = 256;   // events per fan-out round
// A small kernel send buffer (as for MJPEG viewers): a client that stops reading fills its
// queue and is closed after ~128 KiB instead of after megabytes of kernel memory.
constexpr int kSendBuffer = 128 * 1024;
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);  // the 101 written; a close handshake
constexpr auto kIdleTimeout = std::chrono::seconds(60);       // ping after 30 s of silence, close after 60
// A closing client whose close frame cannot go out (its in-flight write never completes) loses
// its socket after this.
constexpr auto kCloseTimeout = std::chrono::seconds(10);
using SteadyClock = std::chrono::steady_clock;
constexpr std::string_view kSlowReason = "too slow";
// See Client::push: a full queue whose front has waited this long means the client stalled...
constexpr std::chrono::milliseconds kStall{1000};
// ...and a queue this many times over send_queue is too much, stalled or not.
constexpr size_t kBurstFactor = 16;
constexpr std::string_view kUnauthorizedReason = "unauthorized";

// One event, serialized once, with what filters look at.
struct Outgoing {
  std::string type, device, sensor;
  std::shared_ptr<const std::string> text;
};
using Batch = std::vector<Outgoing>;

// Wakes the fan-out thread. Shared with the bus subscriber's `wake`, which may run (on a
// publisher's thread) after the Impl is gone.
class Signal {
 public:
  void notify() {
    {
      std::lock_guard lk(mu_);
      pending_ = true;
    }
    cv_.notify_one();
  }
  // Waits for a notify(); false once stopped.
  bool wait() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [this] { return pending_ || stopped_; });
    pending_ = false;
    return !stopped_;
  }
  void stop() {
    {
      std::lock_guard lk(mu_);
      stopped_ = true;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false;
  bool stopped_ = false;
};

bool expected_error(const beast::error_code& ec) {
  return ec == websocket::error::closed || ec == net::error::eof || ec == net::error::operation_aborted ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe || ec == beast::error::timeout ||
         ec == websocket::error::message_too_big;
}

// Writes an HTTP answer instead of the 101, then closes.
void refuse(tcp::socket socket, const http::Response& r) {
  struct Refusal {
    tcp::socket socket;
    bhttp::response<bhttp::string_body> res;
  };
  auto op = std::make_shared<Refusal>(Refusal{std::move(socket), {}});
  op->res.result(r.status);
  op->res.version(11);
  op->res.set(bhttp::field::server, "Outpost");
  op->res.set(bhttp::field::content_type, r.content_type);
  for (const auto& [name, value] : r.headers) op->res.set(name, value);
  op->res.body() = r.body;
  op->res.keep_alive(false);
  op->res.prepare_payload();
  bhttp::async_write(op->socket, op->res, [op](beast::error_code, size_t) {
    beast::error_code ignored;
    op->socket.shutdown(tcp::socket::shutdown_send, ignored);
    op->socket.close(ignored);
  });
}

}  // namespace

class Client;

class Server::Impl : public std::enable_shared_from_this<Impl> {
 public:
  explicit Impl(Deps deps)
      : deps_(std::move(deps)),
        clients_gauge_(deps_.metrics.gauge("outpost_ws_clients", "Open WebSocket connections.")),
        sent_(deps_.metrics.counter("outpost_ws_messages_sent_total", "WebSocket messages written to clients.")),
        slow_(deps_.metrics.counter("outpost_ws_slow_closed_total",
                                    "WebSocket clients closed because their send queue was full.")),
        rejected_(deps_.metrics.counter("outpost_ws_rejected_total",
                                        "WebSocket handshakes refused with 503 (max_clients reached or shutting down).")),
        signal_(std::make_shared<Signal>()) {}

  void start() {
    sub_ = deps_.bus.subscribe("ws", kBusQueue, [signal = signal_] { signal->notify(); });
    // Active only while a client is connected: with none, the hub does not render readings.
    sub_->set_active(false);
    thread_ = std::thread([this] { run_fanout(); });
  }

  void accept(http::Upgrade up);
  void shutdown(std::chrono::milliseconds grace);
  void remove(const Client* c);

  size_t clients() const { return count_.load(); }
  bool stopping() const { return stopping_.load(); }

  const Deps deps_;
  core::Gauge& clients_gauge_;
  core::Counter& sent_;
  core::Counter& slow_;
  core::Counter& rejected_;

 private:
  struct Entry {
    std::weak_ptr<Client> client;
    net::any_io_executor executor;
    const net::execution_context* context;
  };
  // The clients of one io_context.
  struct Group {
    net::any_io_executor executor;
    std::vector<std::weak_ptr<Client>> clients;
  };
  struct Snapshot {
    std::vector<Group> groups;
  };

  void run_fanout();
  void fan_out(std::vector<core::Event> events);
  std::shared_ptr<const Snapshot> snapshot();

  std::atomic<bool> stopping_{false};
  std::atomic<size_t> count_{0};

  // Every client from hand-over to destruction.
  mutable std::mutex mu_;
  std::condition_variable gone_;  // a client left
  std::unordered_map<const Client*, Entry> clients_;
  std::atomic<bool> dirty_{true};  // clients_ changed since the snapshot

  // The fan-out thread's. sub_ is set before the thread starts and reset (under mu_) after it
  // is joined; accept() and remove() switch it on and off under mu_.
  std::shared_ptr<Signal> signal_;
  std::shared_ptr<core::Bus::Subscriber> sub_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::thread thread_;
};

// One WebSocket connection. Every member runs on the connection's io thread.
class Client : public std::enable_shared_from_this<Client> {
 public:
  Client(std::shared_ptr<Server::Impl> server, http::Upgrade up)
      : server_(std::move(server)),
        ws_(std::move(up.socket)),
        timer_(ws_.get_executor()),
        request_(std::move(up.request)),
        peer_(std::move(up.client)),
        who_(std::move(up.principal)) {}

  ~Client() { server_->remove(this); }

  net::any_io_executor executor() { return ws_.get_executor(); }

  // Answers the handshake.
  void start() {
    beast::error_code ignored;
    auto& socket = beast::get_lowest_layer(ws_);
    socket.set_option(net::socket_base::send_buffer_size(kSendBuffer), ignored);
    socket.set_option(tcp::no_delay(true), ignored);
    ws_.auto_fragment(false);
    ws_.read_message_max(server_->deps_.cfg.max_message);
    websocket::stream_base::timeout timeouts;
    timeouts.handshake_timeout = kHandshakeTimeout;
    timeouts.idle_timeout = kIdleTimeout;
    timeouts.keep_alive_pings = true;
    ws_.set_option(timeouts);
    std::string offered;
    for (auto [it, end] = request_.equal_range(bhttp::field::sec_websocket_protocol); it != end; ++it) {
      if (!offered.empty()) offered += ',';
      offered.append(it->value().data(), it->value().size());
    }
    ws_.set_option(websocket::stream_base::decorator(
        [protocol = detail::select_subprotocol(offered)](websocket::response_type& res) {
          res.set(bhttp::field::server, "Outpost");
          if (!protocol.empty()) res.set(bhttp::field::sec_websocket_protocol, protocol);
        }));
    ws_.text(true);
    ws_.async_accept(request_, [self = shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
  }

  // A batch from the fan-out: queues what the filter lets through.
  void deliver(const Batch& batch) {
    for (const auto& e : batch) {
      if (state_ != State::kOpen) return;  // not yet authenticated, or closing (maybe as too slow)
      if (filter_.matches({e.type, e.device, e.sensor})) push(e.text);
    }
  }

  // Drops what is queued and closes once the write in flight (if any) is done. Before the
  // handshake completed this does nothing: on_accept checks for shutdown itself.
  void begin_close(websocket::close_code code, std::string_view reason) {
    if (state_ != State::kAuth && state_ != State::kOpen) return;
    state_ = State::kClosing;
    if (writing_)
      queue_.erase(queue_.begin() + 1, queue_.end());
    else
      queue_.clear();
    close_reason_ = websocket::close_reason(code, beast::string_view(reason.data(), reason.size()));
    arm_timer(kCloseTimeout);
    if (!writing_) do_close();
  }

 private:
  enum class State { kHandshake, kAuth, kOpen, kClosing, kClosed };

  void on_accept(beast::error_code ec) {
    request_ = {};
    if (ec) return finish(ec, "handshake");  // Beast has answered it (400, 426)
    spdlog::debug("ws: {} connected{}", peer_, who_ ? " as " + who_->name : "");
    if (who_) {
      state_ = State::kOpen;
    } else if (server_->deps_.anonymous_read) {
      who_ = auth::Principal{.key_id = "", .name = "anonymous", .scope = auth::Scope::kRead};
      state_ = State::kOpen;
    } else {
      state_ = State::kAuth;
      arm_timer(server_->deps_.auth_timeout);
    }
    if (server_->stopping()) begin_close(websocket::close_code::going_away, "server shutting down");
    do_read();
  }

  void arm_timer(std::chrono::steady_clock::duration d) {
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) { self->on_timer(ec); });
  }

  void on_timer(beast::error_code ec) {
    if (ec) return;  // cancelled or re-armed
    if (state_ == State::kAuth) return begin_close(websocket::close_code::policy_error, kUnauthorizedReason);
    if (state_ == State::kClosing) {
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).close(ignored);  // the read and write complete with errors
    }
  }

  void do_read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, size_t n) { self->on_read(ec, n); });
  }

  void on_read(beast::error_code ec, size_t) {
    if (ec) return finish(ec, "read");
    if (state_ != State::kClosing) {
      std::string_view text(static_cast<const char*>(buffer_.data().data()), buffer_.size());
      handle(text, ws_.got_text());
    }
    buffer_.consume(buffer_.size());
    if (buffer_.capacity() > 16 * 1024) buffer_.shrink_to_fit();  // one large message, not for good
    if (state_ != State::kClosed) do_read();  // while closing too: the peer's close frame comes this way
  }

  void handle(std::string_view text, bool is_text) {
    if (!is_text) {
      if (state_ == State::kAuth) return begin_close(websocket::close_code::policy_error, kUnauthorizedReason);
      return send(detail::error_reply("binary messages are not supported; send JSON text", nullptr));
    }
    detail::Message m = detail::parse_message(text);
    if (state_ == State::kAuth && m.op != detail::Op::kAuth)
      return begin_close(websocket::close_code::policy_error, kUnauthorizedReason);
    const Deps& deps = server_->deps_;
    switch (m.op) {
      case detail::Op::kInvalid:
        return send(detail::error_reply(m.error, m.ref));
      case detail::Op::kAuth: {
        auto who = deps.auth.authenticate(m.credential);
        if (!who) return begin_close(websocket::close_code::policy_error, kUnauthorizedReason);
        who_ = std::move(*who);
        if (state_ == State::kAuth) timer_.cancel();
        state_ = State::kOpen;
        return send(detail::reply({{"op", "authenticated"}, {"scope", auth::scope_name(who_->scope)}}, m.ref));
      }
      case detail::Op::kSubscribe:
      case detail::Op::kUnsubscribe: {
        bool sub = m.op == detail::Op::kSubscribe;
        auto s = sub ? filter_.add(std::move(m.subscription)) : filter_.remove(m.removal);
        if (!s) return send(detail::error_reply(s.message(), m.ref));
        return send(detail::reply({{"op", sub ? "subscribed" : "unsubscribed"}, {"subscriptions", filter_.to_json()}},
                                  m.ref));
      }
      case detail::Op::kList:
        if (!deps.list) return send(detail::error_reply("listing devices is not available", m.ref));
        try {
          return send(detail::reply({{"op", "list"}, {"devices", OJson(deps.list())}}, m.ref));
        } catch (const std::exception& e) {
          spdlog::error("ws: list failed: {}", e.what());
          return send(detail::error_reply("internal error", m.ref));
        }
      case detail::Op::kCommand: {
        if (!auth::allows(who_->scope, auth::Scope::kControl))
          return send(detail::error_reply(fmt::format("command needs scope 'control'; this connection has '{}'",
                                                      auth::scope_name(who_->scope)),
                                          m.ref));
        if (!deps.command) return send(detail::error_reply("commands are not available", m.ref));
        try {
          auto id = deps.command(m.command, *who_);
          if (!id) return send(detail::error_reply(id.status().message(), m.ref));
          return send(detail::reply({{"op", "command"}, {"id", *id}}, m.ref));
        } catch (const std::exception& e) {
          spdlog::error("ws: command failed: {}", e.what());
          return send(detail::error_reply("internal error", m.ref));
        }
      }
      case detail::Op::kPing:
        return send(detail::reply({{"op", "pong"}}, m.ref));
    }
  }

  void send(std::string text) { push(std::make_shared<const std::string>(std::move(text))); }

  // Queues a message; a client that cannot keep up is closed as too slow. A full queue alone
  // does not make a client slow: a burst (a UDP batch of 64 packets is hundreds of readings)
  // arrives in one delivery, before any write of it could complete. The client is slow when
  // its queue is full and its writes have stalled (the message at the front has waited over
  // kStall), or when a burst overruns kBurstFactor times the queue.
  void push(std::shared_ptr<const std::string> msg) {
    if (state_ != State::kOpen) return;
    size_t limit = std::max<size_t>(1, server_->deps_.cfg.send_queue);
    auto now = SteadyClock::now();
    if (queue_.size() >= limit && (queue_.size() >= limit * kBurstFactor || now - front_since_ > kStall)) {
      server_->slow_.inc();
      spdlog::info("ws: {} closed: its send queue is full ({} messages)", peer_, queue_.size());
      return begin_close(websocket::close_code::policy_error, kSlowReason);
    }
    if (queue_.empty()) front_since_ = now;
    queue_.push_back(std::move(msg));
    if (!writing_) do_write();
  }

  void do_write() {
    writing_ = true;
    ws_.async_write(net::buffer(*queue_.front()),
                    [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    writing_ = false;
    if (ec) {
      if (!expected_error(ec)) spdlog::debug("ws: {} write: {}", peer_, ec.message());
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).close(ignored);  // the read completes and finishes
      return;
    }
    server_->sent_.inc();
    queue_.pop_front();
    front_since_ = SteadyClock::now();
    if (state_ == State::kClosing) return do_close();
    if (!queue_.empty() && state_ == State::kOpen) do_write();
  }

  void do_close() {
    if (close_started_) return;
    close_started_ = true;
    ws_.async_close(close_reason_, [self = shared_from_this()](beast::error_code ec) {
      if (!ec) return;  // the close handshake is done; the read loop ends with `closed`
      beast::error_code ignored;
      beast::get_lowest_layer(self->ws_).close(ignored);
    });
  }

  void finish(beast::error_code ec, const char* what) {
    if (state_ == State::kClosed) return;
    if (!expected_error(ec)) spdlog::debug("ws: {} {}: {}", peer_, what, ec.message());
    state_ = State::kClosed;
    queue_.clear();
    timer_.cancel();
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);
  }

  std::shared_ptr<Server::Impl> server_;
  // permessage-deflate compiled out: compression costs a Pi more CPU than the bytes are worth.
  websocket::stream<tcp::socket, false> ws_;
  net::steady_timer timer_;  // the auth deadline, then the close deadline
  http::RawRequest request_;  // until the handshake is answered
  std::string peer_;
  std::optional<auth::Principal> who_;
  State state_ = State::kHandshake;
  beast::flat_buffer buffer_;
  detail::Filter filter_;
  std::deque<std::shared_ptr<const std::string>> queue_;  // front() is being written while writing_
  SteadyClock::time_point front_since_;                    // when front() got to the front
  bool writing_ = false;
  bool close_started_ = false;
  websocket::close_reason close_reason_;
};

void Server::Impl::accept(http::Upgrade up) {
  if (stopping()) {
    rejected_.inc();
    return refuse(std::move(up.socket), http::problem(core::Status::unavailable("the server is shutting down")));
  }
  size_t max = std::max<size_t>(1, deps_.cfg.max_clients);
  if (count_.fetch_add(1) >= max) {
    count_.fetch_sub(1);
    rejected_.inc();
    return refuse(std::move(up.socket),
                  http::problem(core::Status::busy(fmt::format("too many WebSocket clients (at most {})", max))));
  }
  clients_gauge_.add(1);
  auto executor = up.socket.get_executor();
  auto client = std::make_shared<Client>(shared_from_this(), std::move(up));
  {
    std::lock_guard lk(mu_);
    clients_.emplace(client.get(), Entry{client, executor, &net::query(executor, net::execution::context)});
    dirty_ = true;
    if (sub_ && clients_.size() == 1) sub_->set_active(true);
  }
  client->start();
}

void Server::Impl::remove(const Client* c) {
  {
    std::lock_guard lk(mu_);
    clients_.erase(c);
    dirty_ = true;
    if (sub_ && clients_.empty()) sub_->set_active(false);
    count_.fetch_sub(1);
    clients_gauge_.add(-1);
  }
  gone_.notify_all();
}

void Server::Impl::shutdown(std::chrono::milliseconds grace) {
  if (!stopping_.exchange(true)) {
    signal_->stop();
    if (thread_.joinable()) thread_.join();
    std::vector<Entry> all;
    {
      std::lock_guard lk(mu_);
      sub_.reset();
      for (const auto& [c, e] : clients_) all.push_back(e);
    }
    for (auto& e : all) {
      net::post(e.executor, [w = std::move(e.client)] {
        if (auto c = w.lock()) c->begin_close(websocket::close_code::going_away, "server shutting down");
      });
    }
  }
  if (grace.count() > 0) {
    std::unique_lock lk(mu_);
    gone_.wait_for(lk, grace, [this] { return clients_.empty(); });
  }
}

void Server::Impl::run_fanout() {
  while (signal_->wait()) {
    for (;;) {
      auto events = sub_->take(kTakeBatch);
      if (events.empty()) break;
      fan_out(std::move(events));
    }
  }
}

void Server::Impl::fan_out(std::vector<core::Event> events) {
  auto snap = snapshot();
  if (snap->groups.empty()) return;  // nobody listens: not even serialized
  auto batch = std::make_shared<Batch>();
  batch->reserve(events.size());
  for (auto& e : events) {
    auto r = detail::render_event(e);
    batch->push_back({std::move(e.kind), std::move(e.device), std::move(r.sensor),
                      std::make_shared<const std::string>(std::move(r.json))});
  }
  std::shared_ptr<const Batch> shared = std::move(batch);
  for (size_t i = 0; i < snap->groups.size(); ++i) {
    net::post(snap->groups[i].executor, [snap, i, shared] {
      for (const auto& w : snap->groups[i].clients) {
        if (auto c = w.lock()) c->deliver(*shared);
      }
    });
  }
}

std::shared_ptr<const Server::Impl::Snapshot> Server::Impl::snapshot() {
  if (!snapshot_ || dirty_.load()) {
    auto s = std::make_shared<Snapshot>();
    std::unordered_map<const net::execution_context*, size_t> index;
    std::lock_guard lk(mu_);
    dirty_ = false;
    for (const auto& [c, e] : clients_) {
      auto [it, added] = index.emplace(e.context, s->groups.size());
      if (added) s->groups.push_back({e.executor, {}});
      s->groups[it->second].clients.push_back(e.client);
    }
    snapshot_ = std::move(s);
  }
  return snapshot_;
}

Server::Server(Deps deps) : impl_(std::make_shared<Impl>(std::move(deps))) { impl_->start(); }

Server::~Server() { impl_->shutdown(std::chrono::milliseconds(0)); }

http::UpgradeHandler Server::handler() {
  return [impl = impl_](http::Upgrade up) { impl->accept(std::move(up)); };
}

void Server::shutdown(std::chrono::milliseconds grace) { impl_->shutdown(grace); }

size_t Server::clients() const { return impl_->clients(); }

void Server::register_routes(http::Router& router) {
  http::Route route{
      http::Verb::get,
      "/ws",
      // Read scope for a plain GET; a handshake is authenticated its own way (see http::Upgrade):
      // a credential in it is checked, and without one the first message may authenticate.
      http::Access::kRead,
      [](http::Request&) {
        http::Response r =
            http::problem(426, "this is a WebSocket endpoint: open it with a WebSocket client (Upgrade: websocket)");
        r.headers.emplace_back("Upgrade", "websocket");
        return r;
      },
      {.summary = "Live events over WebSocket",
       .description =
           "A WebSocket (RFC 6455) of live events. Subprotocols `outpost.v1` and `chat` are accepted "
           "(the first one offered that is supported). Authenticate with an API key or token in the "
           "handshake (`Authorization`, `X-API-Key` or the `access_token` query parameter; a wrong one "
           "gets 401) or with the first message `{\"op\":\"auth\",\"key\":\"...\"}` within 10 s; "
           "otherwise the connection is closed with 1008 `unauthorized` (unless anonymous read is on).\n\n"
           "Client messages (JSON text; an optional `ref` is echoed in the answer): "
           "`{\"op\":\"subscribe\",\"devices\":[...]|\"*\",\"sensors\":[...],\"types\":[...]}` → "
           "`{\"op\":\"subscribed\",\"subscriptions\":[...]}`; `{\"op\":\"unsubscribe\",...}` → "
           "`{\"op\":\"unsubscribed\",...}`; `{\"op\":\"list\"}` → `{\"op\":\"list\",\"devices\":[...]}`; "
           "`{\"op\":\"command\",\"device\":..,\"target\":..,\"parameter\":..,\"value\":..}` (needs the "
           "control scope) → `{\"op\":\"command\",\"id\":\"...\"}`; `{\"op\":\"ping\"}` → `{\"op\":\"pong\"}`; "
           "errors → `{\"op\":\"error\",\"error\":\"...\"}`.\n\n"
           "Events: `{\"op\":\"event\",\"id\":..,\"type\":..,\"device\":..,\"time\":..,\"data\":{...}}`. "
           "Until its first subscribe a client receives every event. A client that does not keep up is "
           "closed with 1008 `too slow`; a message over the size limit closes with 1009; shutdown closes "
           "with 1001.",
       .tag = "events",
       .params = {{.name = "access_token", .in = "query", .description = "API key or token (instead of a header)"},
                  {.name = "Sec-WebSocket-Protocol",
                   .in = "header",
                   .description = "Subprotocols offered, e.g. `chat, superchat`; `outpost.v1` and `chat` are supported"}},
       .replies = {{101, "Switching Protocols: the WebSocket is open"},
                   {400, "Not a valid WebSocket handshake", nullptr, "text/plain"},
                   {401, "A wrong credential in the handshake", {{"$ref", "#/components/schemas/Problem"}},
                    "application/problem+json"},
                   {426, "A plain GET: this endpoint needs a WebSocket handshake",
                    {{"$ref", "#/components/schemas/Problem"}}, "application/problem+json"},
                   {503, "Too many WebSocket clients, or shutting down", {{"$ref", "#/components/schemas/Problem"}},
                    "application/problem+json"}}}};
  route.upgrade = handler();
  router.add(std::move(route));
}

}  // namespace outpost::ws
