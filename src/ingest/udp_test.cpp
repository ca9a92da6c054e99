// The receiver over real loopback sockets.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "ingest/ingest.hpp"
#include "ingest/ingest_test_util.hpp"

namespace outpost::ingest {
namespace {

using namespace std::chrono_literals;

// A UDP socket of the test's own, bound to an ephemeral loopback port.
class Client {
 public:
  explicit Client(int family = AF_INET) : family_(family) {
    fd_ = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
      auto& a = reinterpret_cast<sockaddr_in&>(ss);
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof a;
    } else {
      auto& a = reinterpret_cast<sockaddr_in6&>(ss);
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_loopback;
      len = sizeof a;
    }
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

  // "127.0.0.1:PORT" / "[::1]:PORT", as the receiver names senders.
  std::string address() const {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    char host[INET6_ADDRSTRLEN];
    if (ss.ss_family == AF_INET) {
      auto& a = reinterpret_cast<sockaddr_in&>(ss);
      inet_ntop(AF_INET, &a.sin_addr, host, sizeof host);
      return std::string(host) + ":" + std::to_string(ntohs(a.sin_port));
    }
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a.sin6_port));
  }

  void send_to(const std::string& address, std::string_view payload) {
    auto hp = config::parse_host_port(address);
    ASSERT_TRUE(hp) << address;
    sockaddr_storage ss{};
    socklen_t len;
    if (family_ == AF_INET) {
      auto& a = reinterpret_cast<sockaddr_in&>(ss);
      a.sin_family = AF_INET;
      a.sin_port = htons(hp->port);
      ASSERT_EQ(inet_pton(AF_INET, hp->host.c_str(), &a.sin_addr), 1) << hp->host;
      len = sizeof a;
    } else {
      auto& a = reinterpret_cast<sockaddr_in6&>(ss);
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(hp->port);
      ASSERT_EQ(inet_pton(AF_INET6, hp->host.c_str(), &a.sin6_addr), 1) << hp->host;
      len = sizeof a;
    }
    ASSERT_EQ(
        ::sendto(fd_, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&ss), len),
        static_cast<ssize_t>(payload.size()))
        << strerror(errno);
  }

  // One datagram and its sender, or nullopt after `timeout`.
  std::optional<std::pair<std::string, std::string>> receive(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    std::string buf(70'000, '\0');
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ssize_t n = ::recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&ss), &len);
    if (n < 0) return std::nullopt;
    buf.resize(n);
    char host[INET6_ADDRSTRLEN];
    uint16_t port;
    if (ss.ss_family == AF_INET) {
      auto& a = reinterpret_cast<sockaddr_in&>(ss);
      inet_ntop(AF_INET, &a.sin_addr, host, sizeof host);
      port = ntohs(a.sin_port);
      return std::make_pair(buf, std::string(host) + ":" + std::to_string(port));
    }
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof host);
    port = ntohs(a.sin6_port);
    return std::make_pair(buf, "[" + std::string(host) + "]:" + std::to_string(port));
  }

 private:
  int family_;
  int fd_ = -1;
};

// What the sink saw.
struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<core::DeviceReport> reports;
  std::vector<std::pair<core::CommandAck, std::string>> acks;
  size_t report_calls = 0;

  UdpSink sink() {
    return UdpSink{.reports =
                       [this](std::vector<core::DeviceReport>&& rs) {
                         std::lock_guard lk(mu);
                         ++report_calls;
                         for (auto& r : rs) reports.push_back(std::move(r));
                         cv.notify_all();
                       },
                   .ack =
                       [this](core::CommandAck a, std::string from) {
                         std::lock_guard lk(mu);
                         acks.emplace_back(std::move(a), std::move(from));
                         cv.notify_all();
                       },
                   .check_key = {}};
  }
  bool wait_reports(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, timeout, [&] { return reports.size() >= n; });
  }
  bool wait_acks(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, timeout, [&] { return acks.size() >= n; });
  }
};

config::UdpConfig loopback() {
  config::UdpConfig cfg;
  cfg.listen = "127.0.0.1:0";
  return cfg;
}

// The value of one sample line of a Prometheus rendering ("name{labels} value").
std::string sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(series + " ", 0) == 0) return line.substr(series.size() + 1);
  return "";
}

std::string small_packet(const std::string& id) {
  return R"({"dataformat_version": "1.0", ")" + id +
         R"(": {"sensors": [{"value": {"values": 1}}]}})";
}

TEST(UdpReceiver, SeedPacketArrivesPlainAndGzip) {
  core::Registry metrics;
  Seen seen;
  UdpReceiver rx(loopback(), seen.sink(), metrics);
  auto bound = rx.start();
  ASSERT_TRUE(bound) << bound.status().to_string();
  EXPECT_EQ(*bound, rx.local_address());

  Client c;
  ASSERT_TRUE(c.ok());
  const std::string seed = test::seed_packet();
  c.send_to(*bound, seed);
  c.send_to(*bound, test::gzip(seed));
  ASSERT_TRUE(seen.wait_reports(2));
  std::lock_guard lk(seen.mu);
  for (const auto& r : seen.reports) {
    EXPECT_EQ(r.id, "d23c058698435eff");
    EXPECT_EQ(r.address, c.address());
    EXPECT_EQ(r.transport, core::Transport::kUdp);
    EXPECT_EQ(r.sensors.size(), 4u);
    EXPECT_LT(core::now() - r.received, std::chrono::seconds(10));
  }
  std::string m = metrics.render();
  EXPECT_EQ(sample(m, "outpost_udp_datagrams_total"), "2");
  EXPECT_EQ(sample(m, "outpost_udp_reports_total"), "2");
  EXPECT_EQ(sample(m, "outpost_udp_bytes_total"),
            std::to_string(seed.size() + test::gzip(seed).size()));
}

TEST(UdpReceiver, BombAndOversizedAndGarbageAreDroppedAndCounted) {
  core::Registry metrics;
  Seen seen;
  auto cfg = loopback();
  cfg.max_datagram = 8000;
  UdpReceiver rx(cfg, seen.sink(), metrics);
  auto bound = rx.start();
  ASSERT_TRUE(bound) << bound.status().to_string();
  Client c;
  c.send_to(*bound, test::gzip(std::string(1'000'000, '\0')));  // 1 KB inflating to 1 MB
  c.send_to(*bound, std::string(8001, ' '));                    // one byte over max_datagram
  c.send_to(*bound, std::string(30'000, ' '));                  // truncated by the kernel
  c.send_to(*bound, "garbage");
  c.send_to(*bound, R"({"dataformat_version": "2.0", "d": {}})");
  c.send_to(*bound, small_packet("after"));  // processed after the others: a barrier
  ASSERT_TRUE(seen.wait_reports(1));
  std::string m = metrics.render();
  EXPECT_EQ(sample(m, R"(outpost_udp_dropped_total{reason="decompression"})"), "1") << m;
  EXPECT_EQ(sample(m, R"(outpost_udp_dropped_total{reason="too_large"})"), "2");
  EXPECT_EQ(sample(m, R"(outpost_udp_dropped_total{reason="invalid_json"})"), "1");
  EXPECT_EQ(sample(m, R"(outpost_udp_dropped_total{reason="wrong_version"})"), "1");
  EXPECT_EQ(sample(m, R"(outpost_udp_dropped_total{reason="unauthorized"})"), "0");
  EXPECT_EQ(sample(m, "outpost_udp_datagrams_total"), "6");
  std::lock_guard lk(seen.mu);
  ASSERT_EQ(seen.reports.size(), 1u);
  EXPECT_EQ(seen.reports[0].id, "after");
}

TEST(UdpReceiver, DropsAreLoggedOncePerReasonPerInterval) {
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  {
    core::Registry metrics;
    Seen seen;
    UdpReceiver rx(loopback(), seen.sink(), metrics);
    auto bound = rx.start();
    ASSERT_TRUE(bound);
    Client c;
    for (int i = 0; i < 20; ++i) c.send_to(*bound, "garbage");
    c.send_to(*bound, R"({"dataformat_version": "1.0", "a/b": {}})");
    c.send_to(*bound, small_packet("after"));
    ASSERT_TRUE(seen.wait_reports(1));
    EXPECT_EQ(sample(metrics.render(), R"(outpost_udp_dropped_total{reason="invalid_json"})"),
              "20");
  }
  spdlog::set_default_logger(previous);
  std::string text = log.str();
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("invalid_json"), 1u) << text;
  EXPECT_EQ(count("invalid_id: device id 'a/b'"), 1u) << text;
}

TEST(UdpReceiver, ABurstArrivesInBatches) {
  core::Registry metrics;
  Seen seen;
  UdpReceiver rx(loopback(), seen.sink(), metrics);
  auto bound = rx.start();
  ASSERT_TRUE(bound);
  Client c;
  constexpr size_t kCount = 500;
  for (size_t i = 0; i < kCount; ++i) c.send_to(*bound, small_packet("dev" + std::to_string(i)));
  ASSERT_TRUE(seen.wait_reports(kCount)) << seen.reports.size();
  std::lock_guard lk(seen.mu);
  for (size_t i = 0; i < kCount; ++i) ASSERT_EQ(seen.reports[i].id, "dev" + std::to_string(i));
  EXPECT_LE(seen.report_calls, kCount);
  std::string m = metrics.render();
  EXPECT_EQ(sample(m, "outpost_udp_batch_size_count"), std::to_string(seen.report_calls));
  EXPECT_EQ(sample(m, "outpost_udp_kernel_dropped_total"), "0");
}

TEST(UdpReceiver, KernelDropsForAFullBufferAreCounted) {
  core::Registry metrics;
  std::mutex mu;
  std::condition_variable cv;
  bool blocked = false, release = false;
  std::atomic<size_t> got{0};
  auto cfg = loopback();
  cfg.receive_buffer = 4096;  // the smallest allowed; the kernel rounds it up a little
  UdpReceiver rx(cfg,
                 UdpSink{.reports =
                             [&](std::vector<core::DeviceReport>&& rs) {
                               std::unique_lock lk(mu);
                               blocked = true;
                               cv.notify_all();
                               cv.wait(lk, [&] { return release; });
                               got += rs.size();
                             },
                         .ack = {},
                         .check_key = {}},
                 metrics);
  auto bound = rx.start();
  ASSERT_TRUE(bound);
  Client c;
  c.send_to(*bound, small_packet("first"));
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, 5s, [&] { return blocked; }));
  }
  // The sink is stuck: once the queue to it is full the receive thread waits, and these
  // overflow the socket buffer.
  for (int i = 0; i < 200; ++i) c.send_to(*bound, small_packet("burst") + std::string(1000, ' '));
  {
    std::lock_guard lk(mu);
    release = true;
  }
  cv.notify_all();
  // Whatever fitted in the buffer arrives; a later datagram carries the kernel's drop count.
  std::this_thread::sleep_for(100ms);
  c.send_to(*bound, small_packet("last"));
  // Every datagram is received or counted as dropped, once the receiver has caught up.
  auto counted = [&](const std::string& m) {
    return std::stoul(sample(m, "outpost_udp_datagrams_total")) +
           std::stoul(sample(m, "outpost_udp_kernel_dropped_total"));
  };
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline && counted(metrics.render()) < 202)
    std::this_thread::sleep_for(10ms);
  std::string m = metrics.render();
  EXPECT_GT(std::stoul(sample(m, "outpost_udp_kernel_dropped_total")), 0u);
  EXPECT_EQ(counted(m), 202u);
}

TEST(UdpReceiver, AcksReachTheAckSink) {
  core::Registry metrics;
  Seen seen;
  UdpReceiver rx(loopback(), seen.sink(), metrics);
  auto bound = rx.start();
  ASSERT_TRUE(bound);
  Client c;
  c.send_to(*bound, R"({"ack": "cmd-1", "status": "failed", "detail": "jammed"})");
  ASSERT_TRUE(seen.wait_acks(1));
  std::lock_guard lk(seen.mu);
  EXPECT_EQ(seen.acks[0].first.command_id, "cmd-1");
  EXPECT_FALSE(seen.acks[0].first.ok);
  EXPECT_EQ(seen.acks[0].first.detail, "jammed");
  EXPECT_EQ(seen.acks[0].second, c.address());
  EXPECT_EQ(sample(metrics.render(), "outpost_udp_acks_total"), "1");
}

TEST(UdpReceiver, RequireKeyAsksTheSink) {
  core::Registry metrics;
  Seen seen;
  auto cfg = loopback();
  cfg.require_key = true;
  UdpSink sink = seen.sink();
  sink.check_key = [](std::string_view id, std::string_view key) {
    return id == "d" && key == "k";
  };
  UdpReceiver rx(cfg, std::move(sink), metrics);
  auto bound = rx.start();
  ASSERT_TRUE(bound);
  Client c;
  c.send_to(*bound, small_packet("d"));
  c.send_to(*bound, R"({"dataformat_version": "1.0", "api_key": "x", "d": {}})");
  c.send_to(*bound, R"({"dataformat_version": "1.0", "api_key": "k", "d": {}})");
  ASSERT_TRUE(seen.wait_reports(1));
  EXPECT_EQ(sample(metrics.render(), R"(outpost_udp_dropped_total{reason="unauthorized"})"), "2");
}

TEST(UdpReceiver, StopIsPrompt) {
  core::Registry metrics;
  Seen seen;
  UdpReceiver rx(loopback(), seen.sink(), metrics);
  ASSERT_TRUE(rx.start());
  std::this_thread::sleep_for(50ms);  // let the thread settle in poll()
  auto t0 = std::chrono::steady_clock::now();
  rx.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 100ms);
  rx.stop();  // idempotent
}

TEST(UdpReceiver, StopWhileASinkUsesTheReceiver) {
  core::Registry metrics;
  std::atomic<bool> entered{false};
  std::string seen_address;
  UdpReceiver* self = nullptr;
  UdpReceiver rx(loopback(),
                 UdpSink{.reports =
                             [&](std::vector<core::DeviceReport>&&) {
                               entered = true;
                               std::this_thread::sleep_for(50ms);  // stop() is waiting by now
                               seen_address = self->local_address();
                               (void)self->send(seen_address, "to myself");
                             },
                         .ack = {},
                         .check_key = {}},
                 metrics);
  self = &rx;
  auto bound = rx.start();
  ASSERT_TRUE(bound);
  Client c;
  c.send_to(*bound, small_packet("d"));
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!entered && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(entered);
  rx.stop();  // must not deadlock with the sink
  EXPECT_EQ(seen_address, *bound);
}

TEST(UdpReceiver, DestructorStopsARunningReceiver) {
  core::Registry metrics;
  Seen seen;
  auto t0 = std::chrono::steady_clock::now();
  {
    UdpReceiver rx(loopback(), seen.sink(), metrics);
    ASSERT_TRUE(rx.start());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST(UdpReceiver, SendComesFromTheBoundPort) {
  core::Registry metrics;
  Seen seen;
  UdpReceiver rx(loopback(), seen.sink(), metrics);
  EXPECT_EQ(rx.send("127.0.0.1:9", "x").code(), core::Code::kUnavailable);  // not started
  auto bound = rx.start();
  ASSERT_TRUE(bound);
  Client device;
  const std::string cmd =
      "action=update&device_id=440cd2d8c18d7d3a&sensor_id=display&parameter=viewstate&value="
      "marker5";
  auto st = rx.send(device.address(), cmd);
  ASSERT_TRUE(st) << st.to_string();
  auto got = device.receive(2s);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->first, cmd);
  EXPECT_EQ(got->second, *bound);  // from the port devices talk to (NAT)
  // Still works once the receive thread has stopped.
  rx.stop();
  ASSERT_TRUE(rx.send(device.address(), "again"));
  EXPECT_EQ(device.receive(2s)->first, "again");

  EXPECT_EQ(rx.send("not an address", "x").code(), core::Code::kInvalid);
  EXPECT_EQ(rx.send("example.org:80", "x").code(), core::Code::kInvalid);  // no DNS
  EXPECT_EQ(rx.send("[::1]:80", "x").code(), core::Code::kInvalid);        // IPv4 socket
  EXPECT_EQ(rx.send(device.address(), std::string(70'000, 'x')).code(), core::Code::kTooLarge);
}

TEST(UdpReceiver, Port0PicksAFreePortAndLogsIt) {
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  {
    core::Registry metrics;
    Seen seen;
    UdpReceiver rx(loopback(), seen.sink(), metrics);
    EXPECT_EQ(rx.local_address(), "");
    auto bound = rx.start();
    ASSERT_TRUE(bound);
    std::smatch m;
    std::string text = log.str();
    ASSERT_TRUE(std::regex_search(text, m, std::regex(R"(udp receiving on (127\.0\.0\.1:(\d+)))")))
        << text;
    EXPECT_EQ(m[1], *bound);
    EXPECT_NE(m[2], "0");
    EXPECT_EQ(rx.start().status().code(), core::Code::kConflict);  // once only
  }
  spdlog::set_default_logger(previous);
}

TEST(UdpReceiver, BindFailureNamesTheAddress) {
  core::Registry metrics;
  Seen seen;
  UdpReceiver first(loopback(), seen.sink(), metrics);
  auto bound = first.start();
  ASSERT_TRUE(bound);
  auto cfg = loopback();
  cfg.listen = *bound;
  UdpReceiver second(cfg, seen.sink(), metrics);
  auto r = second.start();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), core::Code::kUnavailable);
  EXPECT_NE(r.status().message().find(*bound), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("in use"), std::string::npos) << r.status().message();

  cfg.listen = "nonsense";
  EXPECT_EQ(UdpReceiver(cfg, seen.sink(), metrics).start().status().code(), core::Code::kInvalid);
  cfg.listen = "192.0.2.1:0";  // not an address of this host
  auto r2 = UdpReceiver(cfg, seen.sink(), metrics).start();
  EXPECT_FALSE(r2);
  EXPECT_NE(r2.status().message().find("192.0.2.1:0"), std::string::npos);
}

TEST(UdpReceiver, IPv6) {
  Client probe(AF_INET6);
  if (!probe.ok()) GTEST_SKIP() << "no IPv6 loopback";
  core::Registry metrics;
  Seen seen;
  auto cfg = loopback();
  cfg.listen = "[::1]:0";
  UdpReceiver rx(cfg, seen.sink(), metrics);
  auto bound = rx.start();
  ASSERT_TRUE(bound) << bound.status().to_string();
  EXPECT_EQ(bound->rfind("[::1]:", 0), 0u) << *bound;
  probe.send_to(*bound, small_packet("v6"));
  ASSERT_TRUE(seen.wait_reports(1));
  {
    std::lock_guard lk(seen.mu);
    EXPECT_EQ(seen.reports[0].address, probe.address());
    EXPECT_EQ(seen.reports[0].address.rfind("[::1]:", 0), 0u);
  }
  ASSERT_TRUE(rx.send(probe.address(), "hi"));
  EXPECT_EQ(probe.receive(2s)->first, "hi");
}

TEST(UdpReceiver, DualStackNamesIPv4SendersAsIPv4) {
  Client probe6(AF_INET6);
  if (!probe6.ok()) GTEST_SKIP() << "no IPv6";
  core::Registry metrics;
  Seen seen;
  auto cfg = loopback();
  cfg.listen = "[::]:0";
  UdpReceiver rx(cfg, seen.sink(), metrics);
  auto bound = rx.start();
  ASSERT_TRUE(bound) << bound.status().to_string();
  auto port = config::parse_host_port(*bound)->port;
  Client c4;
  c4.send_to("127.0.0.1:" + std::to_string(port), small_packet("v4"));
  ASSERT_TRUE(seen.wait_reports(1));
  {
    std::lock_guard lk(seen.mu);
    EXPECT_EQ(seen.reports[0].address, c4.address());  // "127.0.0.1:PORT", not "[::ffff:...]"
  }
  // ...and send() maps it back.
  ASSERT_TRUE(rx.send(c4.address(), "back"));
  EXPECT_EQ(c4.receive(2s)->first, "back");
}

TEST(UdpReceiver, ASinkThatThrowsDoesNotStopTheReceiver) {
  core::Registry metrics;
  std::atomic<int> calls{0};
  UdpSink sink{.reports =
                   [&](std::vector<core::DeviceReport>&&) {
                     if (calls.fetch_add(1) == 0) throw std::runtime_error("hub full");
                   },
               .ack = {},
               .check_key = {}};
  UdpReceiver rx(loopback(), std::move(sink), metrics);
  auto bound = rx.start();
  ASSERT_TRUE(bound);
  Client c;
  c.send_to(*bound, small_packet("a"));
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (calls == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  c.send_to(*bound, small_packet("b"));
  while (calls < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(calls, 2);
}

TEST(UdpReceiver, ReceiveBufferIsReported) {
  core::Registry metrics;
  Seen seen;
  UdpReceiver rx(loopback(), seen.sink(), metrics);
  ASSERT_TRUE(rx.start());
  std::string m = metrics.render();
  EXPECT_GT(std::stoll(sample(m, "outpost_udp_receive_buffer_bytes")), 0);
  // Host-wide kernel counter, when /proc/net/snmp is readable.
  if (access("/proc/net/snmp", R_OK) == 0) {
    EXPECT_NE(sample(m, "outpost_udp_host_rcvbuf_errors_total"), "");
  }
}

}  // namespace
}  // namespace outpost::ingest
