// ingest_bench: the cost of FIWARE UDP ingestion with seed 004's 4.9 KB example packet.
//
//   Parse/*    ingest::Parser alone, one thread: µs per packet (plain, gzip, minified, drops)
//   Loopback   ingest::UdpReceiver fed over 127.0.0.1 by a sender thread (sendmmsg), with a
//              sink that only counts: datagrams/s for receive + parse, the hub excluded, and
//              the receive thread's CPU per datagram (recv, parse, and freeing the reports,
//              which the hub would do on its own thread)
//
// Build: cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DOUTPOST_TESTS=OFF
//          -DOUTPOST_BENCH=ON && cmake --build build-bench --target ingest_bench
// Run:   build-bench/bench/ingest_bench
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "ingest/ingest.hpp"
#include "ingest/ingest_test_util.hpp"

namespace outpost::ingest {
namespace {

const std::string& seed() {
  static const std::string s = test::seed_packet();
  return s;
}

void parse_loop(benchmark::State& state, const std::string& datagram, Parsed::Kind expect) {
  Parser parser{config::UdpConfig{}};
  std::vector<core::DeviceReport> out;
  const core::TimePoint now = core::now();
  for (auto _ : state) {
    out.clear();
    Parsed p = parser.parse(datagram, "192.0.2.7:5683", now, out);
    if (p.kind != expect) {
      state.SkipWithError(("unexpected outcome: " + p.detail).c_str());
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(datagram.size()));
}

void BM_ParseSeed(benchmark::State& state) { parse_loop(state, seed(), Parsed::Kind::kReports); }
BENCHMARK(BM_ParseSeed);

void BM_ParseSeedGzip(benchmark::State& state) {
  parse_loop(state, test::gzip(seed()), Parsed::Kind::kReports);
}
BENCHMARK(BM_ParseSeedGzip);

void BM_ParseSeedMinified(benchmark::State& state) {
  parse_loop(state, core::Json::parse(seed()).dump(), Parsed::Kind::kReports);
}
BENCHMARK(BM_ParseSeedMinified);

// The seed packet with version "2.0": JSON parsed, then dropped before any report is built.
// The difference to BM_ParseSeed is the cost of building the reports.
void BM_DropWrongVersion(benchmark::State& state) {
  std::string p = seed();
  p.replace(p.find("\"1.0\""), 5, "\"2.0\"");
  parse_loop(state, p, Parsed::Kind::kDropped);
}
BENCHMARK(BM_DropWrongVersion);

void BM_DropGarbage(benchmark::State& state) {
  parse_loop(state, std::string(4900, 'x'), Parsed::Kind::kDropped);
}
BENCHMARK(BM_DropGarbage);

// 10 MB of zeros in ~10 KB: refused after inflating max_decompressed (64 KiB).
void BM_DropGzipBomb(benchmark::State& state) {
  parse_loop(state, test::gzip(std::string(10'000'000, '\0')), Parsed::Kind::kDropped);
}
BENCHMARK(BM_DropGzipBomb);

void BM_ParseAck(benchmark::State& state) {
  parse_loop(state, R"({"ack": "cmd-123", "status": "ok", "detail": "done"})", Parsed::Kind::kAck);
}
BENCHMARK(BM_ParseAck);

// Nanoseconds of CPU the receive thread ("udp-recv") has used: unlike the wall time, this
// does not depend on what else the (shared) machine runs. -1 if not found.
int64_t receive_thread_cpu_ns() {
  namespace fs = std::filesystem;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (!std::getline(comm, name) || name != "udp-recv") continue;
    std::ifstream sched(task.path() / "schedstat");
    int64_t ns = -1;
    sched >> ns;
    return ns;
  }
  return -1;
}

// Receive + parse over loopback. The sender keeps at most `window` datagrams in flight, so
// the kernel never drops for a full buffer and the rate is the receiver's.
void BM_Loopback(benchmark::State& state, bool gzip) {
  spdlog::set_level(spdlog::level::warn);
  const std::string payload = gzip ? test::gzip(seed()) : seed();
  std::atomic<uint64_t> received{0};
  core::Registry metrics;
  config::UdpConfig cfg;
  cfg.listen = "127.0.0.1:0";
  UdpReceiver rx(cfg,
                 UdpSink{.reports =
                             [&](std::vector<core::DeviceReport>&& rs) {
                               received.fetch_add(rs.size(), std::memory_order_relaxed);
                             },
                         .ack = {},
                         .check_key = {}},
                 metrics);
  auto bound = rx.start();
  if (!bound) {
    state.SkipWithError(bound.status().to_string().c_str());
    return;
  }
  auto hp = config::parse_host_port(*bound);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(hp->port);
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  constexpr unsigned kBurst = 32;
  constexpr uint64_t kWindow = 256;
  std::vector<iovec> iov(kBurst, iovec{const_cast<char*>(payload.data()), payload.size()});
  std::vector<mmsghdr> msgs(kBurst);
  for (unsigned i = 0; i < kBurst; ++i) {
    msgs[i].msg_hdr.msg_name = &to;
    msgs[i].msg_hdr.msg_namelen = sizeof to;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  const uint64_t per_iteration = static_cast<uint64_t>(state.range(0));
  uint64_t sent = 0;
  // A datagram lost in the kernel would make the sender wait forever: give up after a while.
  auto stalled = [&, last = uint64_t{0}, since = std::chrono::steady_clock::now()]() mutable {
    uint64_t r = received.load(std::memory_order_relaxed);
    auto now = std::chrono::steady_clock::now();
    if (r != last) last = r, since = now;
    return now - since > std::chrono::seconds(2);
  };
  bool lost = false;
  const int64_t cpu_before = receive_thread_cpu_ns();
  for (auto _ : state) {
    const uint64_t target = sent + per_iteration;
    while (sent < target && !lost) {
      while (sent - received.load(std::memory_order_relaxed) > kWindow && !(lost = stalled()))
        std::this_thread::yield();
      unsigned burst = static_cast<unsigned>(std::min<uint64_t>(kBurst, target - sent));
      int n = ::sendmmsg(fd, msgs.data(), burst, 0);
      if (n > 0) sent += static_cast<uint64_t>(n);
    }
    while (received.load(std::memory_order_relaxed) < sent && !lost) lost = stalled();
    if (lost) {
      state.SkipWithError("datagrams lost");
      break;
    }
  }
  const int64_t cpu_after = receive_thread_cpu_ns();
  ::close(fd);
  rx.stop();
  std::string m = metrics.render();
  auto value = [&](const std::string& series) -> double {
    auto p = m.find("\n" + series + " ");
    return p == std::string::npos ? -1 : std::stod(m.substr(p + series.size() + 2));
  };
  state.SetItemsProcessed(static_cast<int64_t>(sent));
  state.counters["kernel_drops"] = value("outpost_udp_kernel_dropped_total");
  if (cpu_before >= 0 && cpu_after >= 0 && sent > 0)
    state.counters["recv_thread_us_per_datagram"] =
        static_cast<double>(cpu_after - cpu_before) / 1e3 / static_cast<double>(sent);
  state.counters["mean_batch"] =
      value("outpost_udp_batch_size_sum") / std::max(1.0, value("outpost_udp_batch_size_count"));
}
BENCHMARK_CAPTURE(BM_Loopback, plain, false)
    ->Arg(20'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Loopback, gzip, true)
    ->Arg(20'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace outpost::ingest

BENCHMARK_MAIN();
