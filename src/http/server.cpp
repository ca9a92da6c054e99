// The Beast server. Shape follows Beast's advanced server example: a listener that gives each
// connection its own strand, and a session with do_x/on_x steps, a fresh parser per request
// with header and body limits, and a timeout for each stage:
//   idle_timeout   waiting for the first byte of the next request on a kept-alive connection,
//   header_timeout from then until the headers are complete (slowloris),
//   body_timeout   for the body, and a fixed write timeout for the response.
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <mutex>
#include <thread>
#include <unordered_map>

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

class Session;

class Server::Impl {
 public:
  Impl(const config::ServerConfig& cfg, const config::LogConfig& log, const Router& router,
       const auth::Authenticator& auth, core::Registry& metrics)
      : cfg_(cfg),
        router_(router),
        auth_(auth),
        access_log_(make_access_logger(log.access)),
        ioc_(cfg.threads > 0 ? cfg.threads : std::max(1u, std::thread::hardware_concurrency())),
        acceptor_(net::make_strand(ioc_)),
        stop_timer_(ioc_),
        route_stats_(router.routes().size()),
        latency_(metrics.histogram("outpost_http_request_duration_seconds",
                                   "Time from a request's first byte to its response written.",
                                   core::latency_buckets())),
        open_(metrics.gauge("outpost_http_connections_open", "Open HTTP connections.")),
        rejected_(metrics.counter("outpost_http_connections_rejected_total",
                                  "Connections closed at accept because max_connections was reached.")),
        bad_requests_(metrics.counter("outpost_http_bad_requests_total",
                                      "Requests refused before routing (malformed, too large, too slow).")) {
    metrics.collector([this](std::string& out) { route_stats_.render(out, router_); });
  }

  core::Result<std::string> start();
  void run();
  void stop();
  void check_stopped();

  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);

  void add(Session* s, std::weak_ptr<Session> w) {
    std::lock_guard lk(sessions_mu_);
    sessions_.emplace(s, std::move(w));
  }
  void remove(Session* s) {
    std::lock_guard lk(sessions_mu_);
    sessions_.erase(s);
  }

  const config::ServerConfig& cfg_;
  const Router& router_;
  const auth::Authenticator& auth_;
  std::shared_ptr<spdlog::logger> access_log_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  net::steady_timer stop_timer_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  SteadyClock::time_point stop_deadline_;
  std::atomic<size_t> connections_{0};
  bool accept_error_logged_ = false;

  std::mutex sessions_mu_;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions_;

  RouteStats route_stats_;
  core::Histogram& latency_;
  core::Gauge& open_;
  core::Counter& rejected_;
  core::Counter& bad_requests_;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, Server::Impl& server) : stream_(std::move(socket)), server_(server) {
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) client_ = ep.address().to_string();
    stream_.socket().set_option(tcp::no_delay(true), ec);
    server_.connections_.fetch_add(1);
    server_.open_.add(1);
  }
  ~Session() {
    server_.remove(this);
    server_.connections_.fetch_sub(1);
    server_.open_.add(-1);
  }

  void start() {
    server_.add(this, weak_from_this());
    net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::do_wait, shared_from_this()));
  }

  // Called on shutdown: an idle connection closes now, a busy one after its response.
  void shutdown() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      if (self->idle_) self->close();
    });
  }

 private:
  // Waits for the first byte of the next request (the keep-alive idle period).
  void do_wait() {
    if (server_.stopping_) return close();
    if (buffer_.size() > 0) return do_read_header();  // pipelined: the next request is here
    idle_ = true;
    stream_.expires_after(server_.cfg_.idle_timeout);
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            beast::bind_front_handler(&Session::on_wait, shared_from_this()));
  }

  void on_wait(beast::error_code ec, size_t n) {
    idle_ = false;
    if (ec) return close();  // idle timeout, peer closed, or shutdown: nothing to answer
    buffer_.commit(n);
    do_read_header();
  }

  void do_read_header() {
    started_ = SteadyClock::now();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.cfg_.header_limit));
    parser_->body_limit(server_.cfg_.body_limit);
    stream_.expires_after(server_.cfg_.header_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    if (parser_->is_done()) return handle();
    auto& req = parser_->get();
    stream_.expires_after(server_.cfg_.body_timeout);
    if (beast::iequals(req[bhttp::field::expect], "100-continue")) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(stream_, net::buffer(kContinue),
                       [self = shared_from_this()](beast::error_code wec, size_t) {
                         if (wec) return self->close();
                         self->do_read_body();
                       });
      return;
    }
    do_read_body();
  }

  void do_read_body() {
    bhttp::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_body, shared_from_this()));
  }

  void on_body(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    handle();
  }

  void on_read_error(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
        ec == net::error::operation_aborted)
      return close();
    server_.bad_requests_.inc();
    if (ec == beast::error::timeout) {
      // Headers or body too slow (slowloris): say so if the socket still takes it, then close.
      return send_error(problem(408, "request not received in time"));
    }
    if (ec == bhttp::error::header_limit)
      return send_error(problem(431, fmt::format("request headers larger than {} bytes", server_.cfg_.header_limit)));
    if (ec == bhttp::error::body_limit)
      return send_error(problem(413, fmt::format("request body larger than {} bytes", server_.cfg_.body_limit)));
    send_error(problem(400, fmt::format("malformed HTTP request: {}", ec.message())));
  }

  // An answer to a request that could not be parsed: the connection closes after it.
  void send_error(Response r) {
    method_ = "-";
    path_for_log_ = "-";
    route_index_ = server_.router_.routes().size();
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
    method_ = std::string(req.method_string().data(), req.method_string().size());
    path_for_log_ = log_target(path, query);
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
    if (route.access != Access::kPublic) {
      auto who = server_.auth_.authenticate(credential_of(req));
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
    Response r;
    try {
      r = route.handler(request);
    } catch (const std::exception& e) {
      spdlog::error("handler {} {} threw: {}", method_, route.pattern, e.what());
      r = problem(500, "internal error");
    }
    write(with_cors(std::move(r), origin), keep_alive, head);
  }

  static Response auth_failure(const Route& route, const std::string& why, bool scope) {
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

  void write(Response r, bool keep_alive, bool head) {
    res_ = {};
    res_.version(11);
    res_.result(r.status);
    res_.set(bhttp::field::server, kServerName);
    auto date = http_date();
    res_.set(bhttp::field::date, beast::string_view(date.data(), date.size()));
    if (!r.content_type.empty()) res_.set(bhttp::field::content_type, r.content_type);
    for (auto& [name, value] : r.headers) res_.insert(name, value);
    status_ = r.status;
    bytes_ = r.body.size();
    if (r.status == 204 || r.status == 304) {
      res_.body().clear();
    } else if (head) {
      res_.content_length(r.body.size());
    } else {
      res_.body() = std::move(r.body);
      res_.prepare_payload();
    }
    res_.keep_alive(keep_alive);
    stream_.expires_after(kWriteTimeout);
    bhttp::async_write(stream_, res_, beast::bind_front_handler(&Session::on_write, shared_from_this(), keep_alive));
  }

  void on_write(bool keep_alive, beast::error_code ec, size_t) {
    auto elapsed = std::chrono::duration<double>(SteadyClock::now() - started_).count();
    server_.latency_.observe(elapsed);
    server_.route_stats_.record(route_index_, status_);
    if (server_.access_log_) log_access(elapsed);
    if (ec) return close();
    if (!keep_alive) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      return close();
    }
    parser_.reset();
    do_wait();
  }

  void log_access(double seconds) {
    server_.access_log_->info(
        R"({{"ts":"{}","method":"{}","path":"{}","status":{},"duration_ms":{:.3f},"bytes":{},"client":"{}"}})",
        core::format_iso8601(core::now()), json_escape(method_), json_escape(path_for_log_), status_, seconds * 1e3,
        bytes_, client_);
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  Server::Impl& server_;
  beast::flat_buffer buffer_{64 * 1024};  // upper bound; memory grows only as requests need it
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
  std::string client_ = "-";
  bool idle_ = false;
  SteadyClock::time_point started_;
  std::string method_;
  std::string path_for_log_;
  size_t route_index_ = 0;
  unsigned status_ = 0;
  size_t bytes_ = 0;
};

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
  net::dispatch(acceptor_.get_executor(), [this] { do_accept(); });
  return addr;
}

void Server::Impl::do_accept() {
  acceptor_.async_accept(net::make_strand(ioc_), beast::bind_front_handler(&Impl::on_accept, this));
}

void Server::Impl::on_accept(beast::error_code ec, tcp::socket socket) {
  if (stopping_) return;
  if (ec) {
    if (ec == net::error::operation_aborted) return;
    // Usually EMFILE: log once, pause, keep serving the connections we have.
    if (!accept_error_logged_) spdlog::warn("accept failed: {} (pausing accepts briefly)", ec.message());
    accept_error_logged_ = true;
    auto timer = std::make_shared<net::steady_timer>(acceptor_.get_executor(), std::chrono::milliseconds(50));
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
    std::make_shared<Session>(std::move(socket), *this)->start();
  }
  do_accept();
}

void Server::Impl::run() {
  size_t n = cfg_.threads > 0 ? size_t(cfg_.threads) : std::max(1u, std::thread::hardware_concurrency());
  for (size_t i = 1; i < n; ++i) threads_.emplace_back([this] { ioc_.run(); });
  ioc_.run();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void Server::Impl::stop() {
  if (stopping_.exchange(true)) return;
  stop_deadline_ = SteadyClock::now() + cfg_.shutdown_grace;
  net::dispatch(acceptor_.get_executor(), [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
  });
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lk(sessions_mu_);
    for (auto& [ptr, weak] : sessions_)
      if (auto s = weak.lock()) live.push_back(std::move(s));
  }
  for (auto& s : live) s->shutdown();
  live.clear();
  net::post(ioc_, [this] { check_stopped(); });
}

// Polls until the requests in flight are answered or the grace period is over.
void Server::Impl::check_stopped() {
  size_t open = connections_.load();
  if (open == 0 || SteadyClock::now() >= stop_deadline_) {
    if (open > 0) spdlog::warn("shutdown: {} connection(s) still open after the grace period", open);
    ioc_.stop();
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
