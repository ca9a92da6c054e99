// The HTTP server: Asio sockets, Beast's HTTP parser, our own session loop.
//
// Threading: each thread runs its own io_context and every connection lives on one of them
// (round-robin at accept), so a connection's handlers never run concurrently without a strand
// and threads do not wake each other for every completion. (Measured under wrk: one io_context
// shared by two threads with a strand per connection spent most of its time in futex wake-ups
// and context switches, at 60% of the throughput.)
//
// Session loop: read_some into a flat buffer, feed the bytes to a fresh request_parser per
// request (header and body limits), handle, write the response head and body with one writev.
// Pipelined requests are parsed from what is already buffered.
//
// Timeouts: each session has one deadline for its current phase, checked by a sweep on its
// context every 100 ms instead of a timer armed and cancelled around every operation:
//   idle     waiting for the first byte of the next request on a kept-alive connection,
//   header   from then until the headers are complete (slowloris) -> 408,
//   body     for the body after the headers -> 408,
//   write    for the response to drain.
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <chrono>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "http/http.hpp"
#include "http/log.hpp"

namespace outpost::http {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr auto kWriteTimeout = std::chrono::seconds(30);
constexpr size_t kReadChunk = 4096;
constexpr const char* kServerName = "Outpost";

// "Sun, 22 Nov 2026 00:10:00 GMT", recomputed at most once a second per thread.
std::string_view http_date() {
  thread_local time_t cached = 0;
  thread_local char buf[64];
  time_t now = time(nullptr);
  if (now != cached) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached = now;
  }
  return buf;
}

std::string allow_header(const std::vector<Verb>& verbs) {
  std::string out;
  bool has_get = false;
  for (Verb v : verbs) {
    if (!out.empty()) out += ", ";
    out += std::string(bhttp::to_string(v));
    has_get |= v == Verb::get;
  }
  if (has_get) out += ", HEAD";
  out += out.empty() ? "OPTIONS" : ", OPTIONS";
  return out;
}

// Requests by route and status, without locks: each route has a few slots claimed by CAS.
class RouteStats {
 public:
  explicit RouteStats(size_t routes) : rows_(routes + 1) {}
  void record(size_t route, unsigned status) {
    auto& row = rows_[route];
    for (auto& slot : row.slots) {
      unsigned s = slot.status.load(std::memory_order_relaxed);
      if (s == status || (s == 0 && slot.status.compare_exchange_strong(s, status)) || s == status) {
        slot.count.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
    row.other.fetch_add(1, std::memory_order_relaxed);
  }
  void render(std::string& out, const Router& router) const {
    out += "# HELP outpost_http_requests_total HTTP requests by route and status.\n";
    out += "# TYPE outpost_http_requests_total counter\n";
    for (size_t i = 0; i < rows_.size(); ++i) {
      std::string route = i < router.routes().size()
                              ? std::string(bhttp::to_string(router.routes()[i].method)) + " " + router.routes()[i].pattern
                              : "unmatched";
      for (const auto& slot : rows_[i].slots) {
        unsigned s = slot.status.load(std::memory_order_relaxed);
        if (s == 0) continue;
        out += fmt::format("outpost_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", route, s,
                           slot.count.load(std::memory_order_relaxed));
      }
      if (auto o = rows_[i].other.load(std::memory_order_relaxed))
        out += fmt::format("outpost_http_requests_total{{route=\"{}\",status=\"other\"}} {}\n", route, o);
    }
  }

 private:
  struct Slot {
    std::atomic<unsigned> status{0};
    std::atomic<uint64_t> count{0};
  };
  struct Row {
    std::array<Slot, 8> slots;
    std::atomic<uint64_t> other{0};
  };
  std::vector<Row> rows_;
};

}  // namespace

constexpr auto kSweepInterval = std::chrono::milliseconds(100);
using Socket = net::basic_stream_socket<tcp, net::io_context::executor_type>;

class Session;

// What a context's own thread keeps about its sessions. Touched only by that thread.
struct ContextSessions {
  std::unordered_set<Session*> sessions;
};

class Server::Impl {
 public:
  Impl(const config::ServerConfig& cfg, const config::LogConfig& log, const Router& router,
       const auth::Authenticator& auth, core::Registry& metrics)
      : cfg_(cfg),
        router_(router),
        auth_(auth),
        access_log_(make_access_logger(log.access)),
        route_stats_(router.routes().size()),
        latency_(metrics.histogram("outpost_http_request_duration_seconds",
                                   "Time from a request's first byte to its response written.",
                                   core::latency_buckets())),
        open_(metrics.gauge("outpost_http_connections_open", "Open HTTP connections.")),
        rejected_(metrics.counter("outpost_http_connections_rejected_total",
                                  "Connections closed at accept because max_connections was reached.")),
        bad_requests_(metrics.counter("outpost_http_bad_requests_total",
                                      "Requests refused before routing (malformed, too large, too slow).")),
        context_sessions_(thread_count(cfg.threads)),
        contexts_(make_contexts(cfg.threads)),
        ioc_(*contexts_.front()),
        acceptor_(ioc_),
        stop_timer_(ioc_) {
    for (size_t i = 0; i < contexts_.size(); ++i) {
      sweepers_.push_back(std::make_unique<net::steady_timer>(*contexts_[i]));
    }
    metrics.collector([this](std::string& out) { route_stats_.render(out, router_); });
  }

  core::Result<std::string> start();
  void run();
  void stop();
  void check_stopped();
  void do_accept();
  void sweep(size_t context);
  void close_idle(size_t context);

  static size_t thread_count(int threads) {
    return threads > 0 ? size_t(threads) : std::max(1u, std::thread::hardware_concurrency());
  }
  static std::vector<std::unique_ptr<net::io_context>> make_contexts(int threads) {
    std::vector<std::unique_ptr<net::io_context>> v;
    for (size_t i = 0; i < thread_count(threads); ++i) v.push_back(std::make_unique<net::io_context>(1));
    return v;
  }

  const config::ServerConfig& cfg_;
  const Router& router_;
  const auth::Authenticator& auth_;
  std::shared_ptr<spdlog::logger> access_log_;
  RouteStats route_stats_;
  core::Histogram& latency_;
  core::Gauge& open_;
  core::Counter& rejected_;
  core::Counter& bad_requests_;
  std::atomic<size_t> connections_{0};
  // The contexts own pending handlers, which own sessions; a session destroyed with its
  // context touches the members above and its context's session set, so the contexts are
  // declared (and constructed) after them, and destroyed before them.
  std::vector<ContextSessions> context_sessions_;           // one per context
  std::vector<std::unique_ptr<net::io_context>> contexts_;  // one per thread
  net::io_context& ioc_;                                    // the first: acceptor and stop timer
  std::vector<std::unique_ptr<net::steady_timer>> sweepers_;  // one per context
  size_t next_context_ = 0;
  tcp::acceptor acceptor_;
  net::steady_timer stop_timer_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  SteadyClock::time_point stop_deadline_;
  bool accept_error_logged_ = false;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Socket&& socket, Server::Impl& server, size_t context)
      : socket_(std::move(socket)), server_(server), context_(context) {
    beast::error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) client_ = ep.address().to_string();
    socket_.set_option(tcp::no_delay(true), ec);
    server_.connections_.fetch_add(1);
    server_.open_.add(1);
  }
  ~Session() {
    server_.context_sessions_[context_].sessions.erase(this);
    server_.connections_.fetch_sub(1);
    server_.open_.add(-1);
  }

  // Runs on the session's own context from here on.
  void start() {
    net::dispatch(socket_.get_executor(), [self = shared_from_this()] {
      self->server_.context_sessions_[self->context_].sessions.insert(self.get());
      self->next_request();
    });
  }

  // Sweep: acts on an expired deadline. Called on the session's context.
  void check_deadline(SteadyClock::time_point now) {
    if (phase_ == Phase::kClosed || phase_ == Phase::kStream || now < deadline_) return;
    timed_out_ = true;
    if (phase_ == Phase::kWrite || phase_ == Phase::kIdle) return close();
    beast::error_code ignored;
    socket_.cancel(ignored);  // the read completes with operation_aborted and answers 408
  }

  // Shutdown: an idle or streaming connection closes now; a busy one after its response.
  void close_if_idle() {
    if (phase_ == Phase::kIdle || phase_ == Phase::kStream) close();
  }

  // Stream support (see http::Stream); called on the session's thread.
  void stream_write(std::vector<std::string_view> parts, std::shared_ptr<const void> hold,
                    std::function<void(bool)> done) {
    if (phase_ != Phase::kStream) {
      net::post(socket_.get_executor(), [done = std::move(done)] { done(false); });
      return;
    }
    std::vector<net::const_buffer> buffers;
    buffers.reserve(parts.size());
    for (auto p : parts) buffers.emplace_back(p.data(), p.size());
    net::async_write(socket_, buffers,
                     [self = shared_from_this(), hold = std::move(hold), done = std::move(done)](
                         beast::error_code ec, size_t n) {
                       self->bytes_ += n;
                       if (ec) self->close();
                       done(!ec && self->phase_ == Phase::kStream);
                     });
  }
  void stream_on_close(std::function<void()> fn) { on_close_ = std::move(fn); }
  bool stream_closed() const { return !stream_open_.load(); }
  void stream_close() { close(); }
  net::io_context::executor_type executor() { return socket_.get_executor(); }

 private:
  enum class Phase { kIdle, kHeader, kBody, kWrite, kStream, kClosed };

  void set_phase(Phase p, std::chrono::milliseconds timeout) {
    phase_ = p;
    deadline_ = SteadyClock::now() + timeout;
  }

  // Between requests: parse what is buffered (pipelining) or wait for bytes.
  void next_request() {
    if (server_.stopping_) return close();
    parser_.reset();
    if (buffer_.size() > 0) return begin_request();
    set_phase(Phase::kIdle, server_.cfg_.idle_timeout);
    do_read();
  }

  void begin_request() {
    started_ = SteadyClock::now();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.cfg_.header_limit));
    parser_->body_limit(server_.cfg_.body_limit);
    parser_->eager(true);
    set_phase(Phase::kHeader, server_.cfg_.header_timeout);
    parse();
  }

  void do_read() {
    socket_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = shared_from_this()](beast::error_code ec, size_t n) { self->on_read(ec, n); });
  }

  void on_read(beast::error_code ec, size_t n) {
    if (phase_ == Phase::kClosed) return;
    if (timed_out_ && (phase_ == Phase::kHeader || phase_ == Phase::kBody)) {
      server_.bad_requests_.inc();
      return send_error(problem(408, "request not received in time"));
    }
    if (ec) return close();  // peer closed, reset, or shutdown: nothing to answer
    buffer_.commit(n);
    if (phase_ == Phase::kIdle) return begin_request();
    parse();
  }

  // Feeds buffered bytes to the parser until the request is complete or more bytes are needed.
  void parse() {
    while (buffer_.size() > 0) {
      beast::error_code ec;
      size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == bhttp::error::need_more) break;
      if (ec) return on_parse_error(ec);
      if (phase_ == Phase::kHeader && parser_->is_header_done()) {
        set_phase(Phase::kBody, server_.cfg_.body_timeout);
        if (!parser_->is_done() && beast::iequals(parser_->get()[bhttp::field::expect], "100-continue"))
          return send_continue();
      }
      if (parser_->is_done()) return handle();
      if (used == 0) break;
    }
    do_read();
  }

  void send_continue() {
    static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    net::async_write(socket_, net::buffer(kContinue), [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec || self->phase_ == Phase::kClosed) return self->close();
      self->parse();
    });
  }

  void on_parse_error(beast::error_code ec) {
    server_.bad_requests_.inc();
    if (ec == bhttp::error::header_limit)
      return send_error(problem(431, fmt::format("request headers larger than {} bytes", server_.cfg_.header_limit)));
    if (ec == bhttp::error::body_limit)
      return send_error(problem(413, fmt::format("request body larger than {} bytes", server_.cfg_.body_limit)));
    send_error(problem(400, fmt::format("malformed HTTP request: {}", ec.message())));
  }

  // An answer to a request that could not be read: the connection closes after it.
  void send_error(Response r) {
    method_ = "-";
    path_for_log_ = "-";
    route_index_ = server_.router_.routes().size();
    version_ = 11;
    write(std::move(r), false, false);
  }

  void handle() {
    auto& req = parser_->get();
    std::string_view target(req.target().data(), req.target().size());
    // Absolute-form targets ("http://host/path") are legal in HTTP/1.1.
    if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0) {
      size_t slash = target.find('/', target.find("//") + 2);
      target = slash == std::string_view::npos ? "/" : target.substr(slash);
    }
    size_t q = target.find('?');
    std::string_view path = target.substr(0, q);
    std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
    method_.assign(req.method_string().data(), req.method_string().size());
    if (server_.access_log_) path_for_log_ = log_target(path, query);
    version_ = req.version();
    bool keep_alive = req.keep_alive() && !server_.stopping_;
    bool head = req.method() == Verb::head;

    auto m = server_.router_.match(req.method(), path);
    route_index_ = m.route ? m.index : server_.router_.routes().size();
    std::string_view origin(req[bhttp::field::origin].data(), req[bhttp::field::origin].size());

    if (req.method() == Verb::options) return write(options_reply(path, origin, req), keep_alive, false);
    if (!m.route) {
      if (!m.allowed.empty()) {
        Response r = problem(405, fmt::format("method {} not allowed on {}", method_, path));
        r.headers.emplace_back("Allow", allow_header(m.allowed));
        return write(with_cors(std::move(r), origin), keep_alive, head);
      }
      return write(with_cors(problem(404, fmt::format("no route for {}", path)), origin), keep_alive, head);
    }

    const Route& route = *m.route;
    Request request{req, path, query, std::move(m.params), client_, std::nullopt};
    if (route.upgrade && beast::websocket::is_upgrade(req)) return hand_over(route, request, path, query, origin);
    if (route.access != Access::kPublic && !(route.public_when && route.public_when(request))) {
      std::string_view credential = credential_of(req);
      auto who = credential.empty() && route.query_auth ? route.query_auth(request)
                                                        : server_.auth_.authenticate(credential);
      if (!who) return write(with_cors(auth_failure(route, who.status().message(), false), origin), keep_alive, head);
      auth::Scope need = route.access == Access::kRead      ? auth::Scope::kRead
                         : route.access == Access::kControl ? auth::Scope::kControl
                                                            : auth::Scope::kAdmin;
      if (!auth::allows(who->scope, need)) {
        return write(with_cors(auth_failure(route,
                                            fmt::format("this key has scope '{}'; '{}' is needed",
                                                        auth::scope_name(who->scope), auth::scope_name(need)),
                                            true),
                               origin),
                     keep_alive, head);
      }
      request.principal = std::move(*who);
    }
    if (route.async_handler) {
      pending_request_.emplace(std::move(request));
      set_phase(Phase::kWrite, kWriteTimeout);  // bounds the wait for the reply too
      std::string cors_origin(origin);
      auto reply = [self = shared_from_this(), cors_origin, keep_alive, head](Response r) {
        // post, not dispatch: a handler that replies at once must not see its Request freed.
        net::post(self->executor(), [self, r = std::move(r), cors_origin, keep_alive, head]() mutable {
          if (self->phase_ == Phase::kClosed) return;
          self->pending_request_.reset();
          self->write(self->with_cors(std::move(r), cors_origin), keep_alive, head);
        });
      };
      try {
        route.async_handler(*pending_request_, std::move(reply));
      } catch (const std::exception& e) {
        spdlog::error("handler {} {} threw: {}", method_, route.pattern, e.what());
        pending_request_.reset();
        write(problem(500, "internal error"), keep_alive, head);
      }
      return;
    }
    Response r;
    try {
      r = route.handler(request);
    } catch (const std::exception& e) {
      spdlog::error("handler {} {} threw: {}", method_, route.pattern, e.what());
      r = problem(500, "internal error");
    }
    write(with_cors(std::move(r), origin), keep_alive, head);
  }

  // A WebSocket handshake: authenticate what credential it carries, then give the socket away.
  void hand_over(const Route& route, Request& request, std::string_view path, std::string_view query,
                 std::string_view origin) {
    std::optional<auth::Principal> principal;
    std::string_view credential = credential_of(request.raw);
    std::optional<std::string> from_query;
    if (credential.empty()) {
      from_query = request.query_param("access_token");
      if (from_query) credential = *from_query;
    }
    if (!credential.empty()) {
      auto who = server_.auth_.authenticate(credential);
      if (!who) return write(with_cors(auth_failure(route, who.status().message(), false), origin), false, false);
      principal = std::move(*who);
    }
    status_ = 101;
    if (server_.access_log_) log_access(std::chrono::duration<double>(SteadyClock::now() - started_).count());
    Upgrade up{parser_->release(), tcp::socket(std::move(socket_)), client_, std::string(path), std::string(query),
               std::move(principal)};
    phase_ = Phase::kClosed;  // the socket is gone; nothing of this session may touch it again
    try {
      route.upgrade(std::move(up));
    } catch (const std::exception& e) {
      spdlog::error("upgrade {} threw: {}", route.pattern, e.what());
    }
  }

  static Response auth_failure(const Route& route, const std::string& why, bool scope) {
    if (route.style == ErrorStyle::kSeed000) {
      std::string message = scope                          ? why
                            : why == "missing API key"     ? "token missing"
                            : why == "token expired"       ? "token expired"
                                                           : "token invalid";
      return Response::json({{"status", "error"}, {"message", message}}, scope ? 403 : 401);
    }
    if (route.style == ErrorStyle::kFastApi) {
      // RaspAP's FastAPI answers a missing or bad key with 403.
      return Response::json({{"detail", scope ? why : "Could not validate credentials"}}, 403);
    }
    Response r = problem(scope ? 403 : 401, why);
    if (!scope) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"outpost\"");
    return r;
  }

  // The configured origins only; an unknown Origin is never reflected.
  std::optional<std::string> allowed_origin(std::string_view origin) const {
    if (origin.empty()) return std::nullopt;
    for (const auto& o : server_.cfg_.cors_origins) {
      if (o == "*") return std::string("*");
      if (o == origin) return std::string(origin);
    }
    return std::nullopt;
  }

  Response with_cors(Response r, std::string_view origin) const {
    if (server_.cfg_.cors_origins.empty()) return r;
    r.headers.emplace_back("Vary", "Origin");
    if (auto allowed = allowed_origin(origin)) {
      r.headers.emplace_back("Access-Control-Allow-Origin", *allowed);
      r.headers.emplace_back("Access-Control-Expose-Headers", "Retry-After, Allow");
    }
    return r;
  }

  // OPTIONS: CORS preflight, or a plain question about the methods of a path.
  Response options_reply(std::string_view path, std::string_view origin, const RawRequest& req) const {
    std::vector<Verb> verbs;
    for (Verb v : {Verb::get, Verb::post, Verb::put, Verb::delete_, Verb::patch}) {
      auto m = server_.router_.match(v, path);
      if (m.route) verbs.push_back(v);
    }
    if (verbs.empty()) return problem(404, fmt::format("no route for {}", path));
    Response r;
    r.status = 204;
    r.content_type.clear();
    r.headers.emplace_back("Allow", allow_header(verbs));
    bool preflight = req.find(bhttp::field::access_control_request_method) != req.end();
    if (preflight && !server_.cfg_.cors_origins.empty()) {
      r.headers.emplace_back("Vary", "Origin");
      if (auto allowed = allowed_origin(origin)) {
        r.headers.emplace_back("Access-Control-Allow-Origin", *allowed);
        r.headers.emplace_back("Access-Control-Allow-Methods", allow_header(verbs));
        r.headers.emplace_back("Access-Control-Allow-Headers", "Authorization, Content-Type, X-API-Key, access_token");
        r.headers.emplace_back("Access-Control-Max-Age", "600");
      }
    }
    return r;
  }

  static bool header_safe(std::string_view v) { return v.find_first_of("\r\n") == std::string_view::npos; }

  void write(Response r, bool keep_alive, bool head) {
    status_ = r.status;
    bytes_ = r.body.size();
    auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(r.status));
    head_.clear();
    auto out = std::back_inserter(head_);
    fmt::format_to(out, "HTTP/1.1 {} {}\r\nServer: Outpost\r\nDate: {}\r\n", r.status,
                   std::string_view(reason.data(), reason.size()), http_date());
    if (!r.content_type.empty()) fmt::format_to(out, "Content-Type: {}\r\n", r.content_type);
    for (const auto& [name, value] : r.headers) {
      if (header_safe(name) && header_safe(value)) fmt::format_to(out, "{}: {}\r\n", name, value);
    }
    bool streaming = static_cast<bool>(r.stream) && r.status == 200;
    if (streaming) {
      keep_alive = false;  // the body runs until the connection closes
      head = false;
    }
    bool has_body = r.status != 204 && r.status != 304 && r.status >= 200 && !streaming;
    if (has_body) fmt::format_to(out, "Content-Length: {}\r\n", r.body.size());
    if (!keep_alive) head_ += "Connection: close\r\n";
    else if (version_ == 10) head_ += "Connection: keep-alive\r\n";
    head_ += "\r\n";
    body_ = has_body && !head ? std::move(r.body) : std::string();
    keep_alive_ = keep_alive;
    starter_ = streaming ? std::move(r.stream) : StreamStarter();
    set_phase(Phase::kWrite, kWriteTimeout);
    std::array<net::const_buffer, 2> buffers{net::buffer(head_), net::buffer(body_)};
    net::async_write(socket_, buffers,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    auto elapsed = std::chrono::duration<double>(SteadyClock::now() - started_).count();
    server_.latency_.observe(elapsed);
    server_.route_stats_.record(route_index_, status_);
    if (server_.access_log_) log_access(elapsed);
    if (ec || phase_ == Phase::kClosed) return close();
    if (starter_) return start_stream();
    if (!keep_alive_) {
      beast::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      return close();
    }
    body_.clear();
    next_request();
  }

  void log_access(double seconds) {
    server_.access_log_->info(
        R"({{"ts":"{}","method":"{}","path":"{}","status":{},"duration_ms":{:.3f},"bytes":{},"client":"{}"}})",
        core::format_iso8601(core::now()), json_escape(method_), json_escape(path_for_log_), status_, seconds * 1e3,
        bytes_, client_);
  }

  // The head is out: hand the connection to the stream's owner. A read stays pending so that a
  // client going away is noticed even while no frame is being written.
  void start_stream();

  void close() {
    if (phase_ == Phase::kClosed) return;
    phase_ = Phase::kClosed;
    stream_open_.store(false);
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    if (on_close_) {
      auto fn = std::move(on_close_);
      on_close_ = nullptr;
      fn();
    }
  }

  Socket socket_;
  Server::Impl& server_;
  size_t context_;
  beast::flat_buffer buffer_;  // bounded by header_limit + one read: the parser refuses more
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<Request> pending_request_;  // while an async handler works
  std::string head_;  // response head, reused
  std::string body_;
  StreamStarter starter_;
  std::function<void()> on_close_;
  char stream_probe_[64];
  std::atomic<bool> stream_open_{false};
  bool keep_alive_ = false;
  Phase phase_ = Phase::kIdle;
  SteadyClock::time_point deadline_ = SteadyClock::time_point::max();
  bool timed_out_ = false;
  std::string client_ = "-";
  SteadyClock::time_point started_;
  std::string method_;
  std::string path_for_log_;
  unsigned version_ = 11;
  size_t route_index_ = 0;
  unsigned status_ = 0;
  size_t bytes_ = 0;
};

// http::Stream over a session. Holds the session alive while the stream's owner holds it.
class StreamImpl final : public Stream {
 public:
  explicit StreamImpl(std::shared_ptr<Session> s) : s_(std::move(s)) {}
  void write(std::vector<std::string_view> parts, std::shared_ptr<const void> hold,
             std::function<void(bool)> done) override {
    net::dispatch(s_->executor(), [s = s_, parts = std::move(parts), hold = std::move(hold),
                                   done = std::move(done)]() mutable {
      s->stream_write(std::move(parts), std::move(hold), std::move(done));
    });
  }
  void post(std::function<void()> fn) override { net::post(s_->executor(), std::move(fn)); }
  void after(std::chrono::milliseconds delay, std::function<void()> fn) override {
    auto timer = std::make_shared<net::steady_timer>(s_->executor(), delay);
    timer->async_wait([timer, fn = std::move(fn)](beast::error_code) { fn(); });
  }
  void on_close(std::function<void()> fn) override {
    net::dispatch(s_->executor(), [s = s_, fn = std::move(fn)]() mutable {
      if (s->stream_closed()) return fn();
      s->stream_on_close(std::move(fn));
    });
  }
  void close() override {
    net::dispatch(s_->executor(), [s = s_] { s->stream_close(); });
  }
  bool closed() const override { return s_->stream_closed(); }

 private:
  std::shared_ptr<Session> s_;
};

void Session::start_stream() {
  phase_ = Phase::kStream;
  deadline_ = SteadyClock::time_point::max();
  stream_open_.store(true);
  // A small send buffer: a slow viewer is then skipped forward to the newest frame after a few
  // frames, instead of being fed seconds of old ones from a multi-megabyte kernel buffer.
  beast::error_code ignored;
  socket_.set_option(net::socket_base::send_buffer_size(256 * 1024), ignored);
  auto starter = std::move(starter_);
  starter_ = nullptr;
  socket_.async_read_some(net::buffer(stream_probe_), [self = shared_from_this()](beast::error_code, size_t) {
    self->close();  // the client sent something or went away: a stream client only listens
  });
  starter(std::make_shared<StreamImpl>(shared_from_this()));
}

core::Result<std::string> Server::Impl::start() {
  auto hp = config::parse_host_port(cfg_.listen);
  if (!hp) return core::Status::invalid(fmt::format("server.listen: '{}' is not HOST:PORT", cfg_.listen));
  beast::error_code ec;
  tcp::resolver resolver(ioc_);
  auto results = resolver.resolve(hp->host, std::to_string(hp->port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty())
    return core::Status::invalid(fmt::format("server.listen: cannot resolve '{}': {}", hp->host, ec.message()));
  tcp::endpoint ep = results.begin()->endpoint();
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return core::Status::unavailable(fmt::format("cannot listen on {}: {}", cfg_.listen, ec.message()));
  auto bound = acceptor_.local_endpoint();
  std::string addr = bound.address().is_v6() ? fmt::format("[{}]:{}", bound.address().to_string(), bound.port())
                                             : fmt::format("{}:{}", bound.address().to_string(), bound.port());
  net::dispatch(ioc_, [this] { do_accept(); });
  for (size_t i = 0; i < contexts_.size(); ++i) net::post(*contexts_[i], [this, i] { sweep(i); });
  return addr;
}

void Server::Impl::do_accept() {
  size_t index = next_context_++ % contexts_.size();
  acceptor_.async_accept(*contexts_[index], [this, index](beast::error_code ec, Socket socket) {
    if (stopping_) return;
    if (ec) {
      if (ec == net::error::operation_aborted) return;
      // Usually EMFILE: log once, pause, keep serving the connections we have.
      if (!accept_error_logged_) spdlog::warn("accept failed: {} (pausing accepts briefly)", ec.message());
      accept_error_logged_ = true;
      auto timer = std::make_shared<net::steady_timer>(ioc_, std::chrono::milliseconds(50));
      timer->async_wait([this, timer](beast::error_code) { do_accept(); });
      return;
    }
    if (accept_error_logged_) spdlog::info("accepting connections again");
    accept_error_logged_ = false;
    if (connections_.load() >= cfg_.max_connections) {
      rejected_.inc();
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      std::make_shared<Session>(std::move(socket), *this, index)->start();
    }
    do_accept();
  });
}

// On context `i`: closes the sessions whose deadline passed, then re-arms.
void Server::Impl::sweep(size_t i) {
  auto now = SteadyClock::now();
  std::vector<std::shared_ptr<Session>> live;
  for (Session* s : context_sessions_[i].sessions) live.push_back(s->shared_from_this());
  for (auto& s : live) s->check_deadline(now);
  live.clear();
  sweepers_[i]->expires_after(kSweepInterval);
  sweepers_[i]->async_wait([this, i](beast::error_code ec) {
    if (!ec) sweep(i);
  });
}

void Server::Impl::close_idle(size_t i) {
  std::vector<std::shared_ptr<Session>> live;
  for (Session* s : context_sessions_[i].sessions) live.push_back(s->shared_from_this());
  for (auto& s : live) s->close_if_idle();
}

void Server::Impl::run() {
  // Contexts without connections yet must not return from run() at once.
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards;
  for (auto& c : contexts_) guards.push_back(net::make_work_guard(*c));
  for (size_t i = 1; i < contexts_.size(); ++i) threads_.emplace_back([this, i] { contexts_[i]->run(); });
  contexts_[0]->run();
  for (auto& c : contexts_) c->stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void Server::Impl::stop() {
  if (stopping_.exchange(true)) return;
  stop_deadline_ = SteadyClock::now() + cfg_.shutdown_grace;
  net::post(ioc_, [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
  });
  for (size_t i = 0; i < contexts_.size(); ++i) net::post(*contexts_[i], [this, i] { close_idle(i); });
  net::post(ioc_, [this] { check_stopped(); });
}

// Polls until the requests in flight are answered or the grace period is over.
void Server::Impl::check_stopped() {
  size_t open = connections_.load();
  if (open == 0 || SteadyClock::now() >= stop_deadline_) {
    if (open > 0) spdlog::warn("shutdown: {} connection(s) still open after the grace period", open);
    for (auto& c : contexts_) c->stop();
    return;
  }
  stop_timer_.expires_after(std::chrono::milliseconds(20));
  stop_timer_.async_wait([this](beast::error_code) { check_stopped(); });
}

Server::Server(const config::ServerConfig& cfg, const config::LogConfig& log, const Router& router,
               const auth::Authenticator& auth, core::Registry& metrics)
    : impl_(std::make_unique<Impl>(cfg, log, router, auth, metrics)) {}
Server::~Server() = default;
core::Result<std::string> Server::start() { return impl_->start(); }
void Server::run() { impl_->run(); }
void Server::stop() { impl_->stop(); }
size_t Server::connections() const { return impl_->connections_.load(); }

}  // namespace outpost::http
