// The HTTP(S) sink: POSTs batches to a URL with Boost.Beast, TLS by OpenSSL with the peer
// verified (system CAs or ca_file) and its host name checked.
//
// Compiled twice. Into the server (outpost_upstream) without OpenSSL: make_http_sink() carries
// http:// itself and loads the TLS plugin (outpost-tls.so) for https://, so a server with no
// https:// destination never maps libssl and libcrypto (about 2 MB resident, issue 2's idle
// RSS). Into the plugin with OUTPOST_UPSTREAM_TLS=1: detail::make_tls_http_sink() carries both
// schemes. The unit tests go through make_http_sink() and the real plugin.
//
// Each request runs on a private io_context on the calling (delivery) thread, under one timer
// for the whole exchange (resolve, connect, handshake, write, read): Beast's synchronous calls
// have no time-outs, and a hung upstream must cost at most the destination's timeout. One
// connection per request: at the rates of summaries and alerts a kept-alive connection saves
// nothing worth the stale-connection cases it brings.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "upstream/detail/tls_plugin.hpp"
#include "upstream/upstream.hpp"

#if OUTPOST_UPSTREAM_TLS
#include <openssl/ssl.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#else
#include "core/plugin.hpp"
#endif

namespace outpost::upstream {

namespace {

namespace net = boost::asio;
#if OUTPOST_UPSTREAM_TLS
namespace ssl = boost::asio::ssl;
#endif
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

constexpr size_t kMaxResponse = 64 * 1024;  // we read the status and a little of the body
constexpr size_t kErrorSnippet = 200;

bool is_json(const Message& m) { return m.content_type.rfind("application/json", 0) == 0; }

// What one exchange came to: a status (0 when no answer was read) or what went wrong.
struct Answer {
  unsigned status = 0;
  std::string body;
  std::string error;
};

enum class Verdict { kOk, kRetry, kDead };

Verdict verdict(unsigned status) {
  if (status >= 200 && status < 300) return Verdict::kOk;
  if (status == 408 || status == 429) return Verdict::kRetry;
  if (status >= 400 && status < 500) return Verdict::kDead;
  return Verdict::kRetry;  // 5xx; 1xx/3xx: a redirect is not followed, but nothing is thrown away
}

std::string describe_answer(const Answer& a) {
  if (a.status == 0) return a.error;
  std::string body = a.body.substr(0, kErrorSnippet);
  for (char& c : body)
    if (c == '\n' || c == '\r') c = ' ';
  std::string out = fmt::format("HTTP {}", a.status);
  if (a.status >= 300 && a.status < 400) out += " (redirects are not followed)";
  if (!body.empty()) out += ": " + body;
  return out;
}

// One request/response over a fresh connection. Stream is beast::tcp_stream or
// beast::ssl_stream<beast::tcp_stream>.
template <typename Stream>
class Exchange {
 public:
  Exchange(net::io_context& ioc, Stream& stream, const config::Url& url, http::request<http::string_body>& req,
           SteadyClock::time_point deadline)
      : ioc_(ioc), stream_(stream), url_(url), req_(req), resolver_(ioc), timer_(ioc) {
    timer_.expires_at(deadline);
    parser_.body_limit(kMaxResponse);
  }

  Answer run(std::function<bool(Stream&, std::string&)> before_handshake) {
    before_handshake_ = std::move(before_handshake);
    timer_.async_wait([this](beast::error_code ec) {
      if (ec) return;  // cancelled: the exchange finished
      timed_out_ = true;
      resolver_.cancel();
      beast::error_code ignored;
      beast::get_lowest_layer(stream_).socket().cancel(ignored);
      beast::get_lowest_layer(stream_).socket().close(ignored);
    });
    step_ = "resolving";
    resolver_.async_resolve(url_.host, std::to_string(url_.port),
                            [this](beast::error_code ec, tcp::resolver::results_type results) {
                              if (ec) return fail(ec);
                              step_ = "connecting";
                              beast::get_lowest_layer(stream_).async_connect(
                                  results, [this](beast::error_code cec, const tcp::endpoint&) {
                                    if (cec) return fail(cec);
                                    handshake();
                                  });
                            });
    ioc_.run();
    return std::move(answer_);
  }

 private:
  void handshake() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      write();
    } else {
#if OUTPOST_UPSTREAM_TLS
      std::string why;
      if (!before_handshake_(stream_, why)) {
        answer_.error = why;
        return finish();
      }
      step_ = "TLS handshake";
      stream_.async_handshake(ssl::stream_base::client, [this](beast::error_code ec) {
        if (ec) return fail(ec);
        write();
      });
#endif
    }
  }

  void write() {
    step_ = "sending";
    http::async_write(stream_, req_, [this](beast::error_code ec, size_t) {
      if (ec) return fail(ec);
      step_ = "waiting for the answer";
      http::async_read(stream_, buffer_, parser_, [this](beast::error_code rec, size_t) {
        if (rec) return fail(rec);
        answer_.status = parser_.get().result_int();
        answer_.body = std::move(parser_.get().body());
        finish();
      });
    });
  }

  void fail(beast::error_code ec) {
    if (timed_out_) {
      answer_.error = fmt::format("timed out {} (no answer within the destination's timeout)", step_);
    } else {
      std::string msg = ec.message();
#if OUTPOST_UPSTREAM_TLS
      // OpenSSL's verification failures say more than "certificate verify failed" when asked.
      if (ec.category() == net::error::get_ssl_category()) {
        if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
          long v = SSL_get_verify_result(stream_.native_handle());
          if (v != X509_V_OK) msg += fmt::format(" ({})", X509_verify_cert_error_string(v));
        }
      }
#endif
      answer_.error = fmt::format("{} {}:{}: {}", step_, url_.host, url_.port, msg);
    }
    finish();
  }

  void finish() {
    timer_.cancel();
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).socket().close(ignored);
  }

  net::io_context& ioc_;
  Stream& stream_;
  const config::Url& url_;
  http::request<http::string_body>& req_;
  tcp::resolver resolver_;
  net::steady_timer timer_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  std::function<bool(Stream&, std::string&)> before_handshake_;
  Answer answer_;
  const char* step_ = "";
  bool timed_out_ = false;
};

#if OUTPOST_UPSTREAM_TLS
using TlsContext = std::unique_ptr<ssl::context>;
#else
using TlsContext = std::nullptr_t;  // plain http:// only
#endif

class HttpSink final : public Sink {
 public:
  HttpSink(const config::UpstreamDestination& d, config::Url url, std::string source, TlsContext tls)
      : d_(d), url_(std::move(url)), source_(std::move(source)), tls_(std::move(tls)) {
    bool v6 = url_.host.find(':') != std::string::npos;
    host_header_ = v6 ? "[" + url_.host + "]" : url_.host;
    bool default_port = (url_.scheme == "http" && url_.port == 80) || (url_.scheme == "https" && url_.port == 443);
    if (!default_port) host_header_ += fmt::format(":{}", url_.port);
    // The URL without its query (which may carry a token).
    std::string path = url_.target.substr(0, url_.target.find('?'));
    describe_ = fmt::format("{}://{}{}", url_.scheme, host_header_, path);
  }

  Delivery deliver(std::span<const Message> batch, std::chrono::milliseconds timeout) override {
    Delivery out;
    const auto start = SteadyClock::now();
    size_t i = 0;
    while (i < batch.size()) {
      // A run of JSON messages goes as one envelope; anything else alone.
      size_t j = i + 1;
      if (is_json(batch[i])) {
        while (j < batch.size() && is_json(batch[j])) ++j;
      }
      Answer a = post(batch.subspan(i, j - i), timeout);
      Verdict v = a.status ? verdict(a.status) : Verdict::kRetry;
      if (v == Verdict::kDead && j - i > 1) {
        // Which message does the destination refuse? One at a time, so the others still go.
        for (; i < j; ++i) {
          Answer one = post(batch.subspan(i, 1), timeout);
          Verdict ov = one.status ? verdict(one.status) : Verdict::kRetry;
          if (ov == Verdict::kOk) {
            out.delivered = i + 1;
            continue;
          }
          out.rest = ov == Verdict::kDead ? Outcome::kDead : Outcome::kRetry;
          out.error = describe_answer(one);
          return out;
        }
      } else if (v == Verdict::kOk) {
        i = j;
        out.delivered = i;
      } else {
        out.rest = v == Verdict::kDead ? Outcome::kDead : Outcome::kRetry;
        out.error = describe_answer(a);
        return out;
      }
      if (i < batch.size() && SteadyClock::now() - start >= timeout) {
        // The time budget is spent; the rest goes at once in the next round (the outbox does not
        // count this as a failure: part of the batch was delivered).
        out.rest = Outcome::kRetry;
        out.error = "time budget of one delivery spent; continuing";
        return out;
      }
    }
    return out;
  }

  size_t max_batch() const override { return d_.batch; }
  std::string describe() const override { return describe_; }

 private:
  Answer post(std::span<const Message> group, std::chrono::milliseconds timeout) {
    http::request<http::string_body> req{http::verb::post, url_.target, 11};
    req.set(http::field::host, host_header_);
    req.set(http::field::user_agent, "outpost/" OUTPOST_VERSION);
    req.set(http::field::connection, "close");
    req.set("X-Outpost-Source", source_);
    for (const auto& [name, value] : d_.headers) req.set(name, value);
    if (group.size() == 1 && !is_json(group[0])) {
      const Message& m = group[0];
      req.set(http::field::content_type, m.content_type.empty() ? "application/octet-stream" : m.content_type);
      req.set("Idempotency-Key", m.id);
      req.set("X-Outpost-Kind", m.kind);
      req.set("X-Outpost-Created", core::format_iso8601(m.created));
      req.body() = m.body;
    } else {
      req.set(http::field::content_type, "application/json");
      if (group.size() == 1) req.set("Idempotency-Key", group[0].id);
      req.body() = envelope(source_, group);
    }
    req.prepare_payload();
    auto deadline = SteadyClock::now() + timeout;
    net::io_context ioc;
#if OUTPOST_UPSTREAM_TLS
    if (tls_) {
      beast::ssl_stream<beast::tcp_stream> stream(ioc, *tls_);
      auto before = [this](beast::ssl_stream<beast::tcp_stream>& s, std::string& why) {
        // SNI, and the certificate must name the host (or IP address) of the URL.
        beast::error_code ignored;
        boost::system::error_code addr_ec;
        net::ip::make_address(url_.host, addr_ec);
        if (addr_ec && !SSL_set_tlsext_host_name(s.native_handle(), url_.host.c_str())) {
          why = "TLS: cannot set the server name";
          return false;
        }
        s.set_verify_callback(ssl::host_name_verification(url_.host), ignored);
        return true;
      };
      return Exchange<beast::ssl_stream<beast::tcp_stream>>(ioc, stream, url_, req, deadline).run(before);
    }
#endif
    beast::tcp_stream stream(ioc);
    return Exchange<beast::tcp_stream>(ioc, stream, url_, req, deadline).run({});
  }

  const config::UpstreamDestination d_;
  const config::Url url_;
  const std::string source_;
  [[maybe_unused]] TlsContext tls_;  // empty for http://
  std::string host_header_;
  std::string describe_;
};

// d.url, when it is http:// or https://.
core::Result<config::Url> http_url(const config::UpstreamDestination& d) {
  auto url = config::parse_url(d.url);
  if (!url || (url->scheme != "http" && url->scheme != "https"))
    return core::Status::invalid(fmt::format("upstream '{}': '{}' is not an http:// or https:// URL", d.name, d.url));
  return std::move(*url);
}

}  // namespace

#if OUTPOST_UPSTREAM_TLS

core::Result<std::unique_ptr<Sink>> detail::make_tls_http_sink(const config::UpstreamDestination& d,
                                                               std::string source) {
  auto url = http_url(d);
  if (!url) return url.status();
  TlsContext tls;
  if (url->scheme == "https") {
    tls = std::make_unique<ssl::context>(ssl::context::tls_client);
    tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    tls->set_verify_mode(ssl::verify_peer);
    boost::system::error_code ec;
    if (!d.ca_file.empty()) {
      tls->load_verify_file(d.ca_file, ec);
      if (ec)
        return core::Status::invalid(
            fmt::format("upstream '{}': ca_file '{}' cannot be read: {}", d.name, d.ca_file, ec.message()));
    } else {
      tls->set_default_verify_paths(ec);
      if (ec)
        return core::Status::invalid(
            fmt::format("upstream '{}': the system's CA certificates cannot be loaded: {}", d.name, ec.message()));
    }
  }
  return std::unique_ptr<Sink>(std::make_unique<HttpSink>(d, std::move(*url), std::move(source), std::move(tls)));
}

#else

core::Result<std::unique_ptr<Sink>> make_http_sink(const config::UpstreamDestination& d, std::string source,
                                                   const std::string& tls_plugin) {
  auto url = http_url(d);
  if (!url) return url.status();
  if (url->scheme == "http")
    return std::unique_ptr<Sink>(std::make_unique<HttpSink>(d, std::move(*url), std::move(source), nullptr));

  const core::PluginSpec spec{detail::kTlsPluginFile,
                              tls_plugin,
                              "TLS plugin",
                              "install it there or set upstream.tls_plugin to its path (https:// needs it)",
                              detail::kTlsPluginFactory,
                              detail::kTlsPluginFingerprint};
  core::Result<std::unique_ptr<Sink>> result =
      core::Status::internal(fmt::format("upstream '{}': the TLS plugin made no sink", d.name));
  const detail::TlsPluginArgs args{&d, &source, &result};
  if (auto path = core::call_plugin(spec, &args); !path) {
    // Every error of core::call_plugin() is kUnavailable.
    return core::Status::unavailable(fmt::format("upstream '{}': {}", d.name, path.status().message()));
  }
  return result;
}

#endif

}  // namespace outpost::upstream
