// rule-latency: a FIWARE device on a loopback UDP socket, for the rule latency benchmark
// (bench/rules/run-rules-bench). It reports a temperature that crosses a rule's threshold and
// times how long until the rule's command datagram comes back to the same socket: the whole
// path of a local decision (UDP receive, parse, hub, rule, command, UDP send), as a device sees it.
//
//   rule-latency --to 127.0.0.1:PORT --device ID --samples N [--warmup W] [--gap-us G] [--sensor NAME]
//
// Sample i reports `high` (35) when i is even and `low` (20) otherwise, so every report crosses
// the rule's hysteresis band once and every one should bring exactly one command. An answer that
// carries command_id=... is acknowledged ({"ack": id, "status": "ok"}) after the clock stops.
// Between samples it waits G microseconds (default 1000), so the server is not measured saturated.
// Prints "samples N p50_us X p90_us X p99_us X p999_us X max_us X lost L" on stdout.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "rule-latency: %s\n", why.c_str());
  std::exit(2);
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  std::string to, device, sensor = "temperature";
  long samples = 2000, warmup = 200, gap_us = 1000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--to") to = next();
    else if (a == "--device") device = next();
    else if (a == "--samples") samples = std::atol(next().c_str());
    else if (a == "--warmup") warmup = std::atol(next().c_str());
    else if (a == "--gap-us") gap_us = std::atol(next().c_str());
    else if (a == "--sensor") sensor = next();
    else die("unknown argument " + a);
  }
  size_t colon = to.rfind(':');
  if (colon == std::string::npos || device.empty()) die("usage: --to 127.0.0.1:PORT --device ID --samples N");
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<uint16_t>(std::atoi(to.c_str() + colon + 1)));
  if (inet_pton(AF_INET, to.substr(0, colon).c_str(), &dst.sin_addr) != 1) die("bad address " + to);
  if (dst.sin_addr.s_addr != htonl(INADDR_LOOPBACK)) die("loopback only");

  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  sockaddr_in self{};
  self.sin_family = AF_INET;
  self.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&self), sizeof self) < 0) die("bind");

  auto packet = [&](double value) {
    char buf[512];
    int n = std::snprintf(buf, sizeof buf,
                          R"({"dataformat_version":"1.0","%s":{"%s":{"sensors":[{"value":{"unit":"Cel",)"
                          R"("primitive":"double","values":%.1f},"attributes":{"type":"%s"}}]}}})",
                          device.c_str(), device.c_str(), value, sensor.c_str());
    return std::string(buf, static_cast<size_t>(n));
  };
  const std::string high = packet(35), low = packet(20);

  std::vector<double> us;
  us.reserve(static_cast<size_t>(samples));
  long lost = 0;
  char reply[2048];
  for (long i = 0; i < warmup + samples; ++i) {
    const std::string& p = i % 2 == 0 ? high : low;
    auto t0 = std::chrono::steady_clock::now();
    if (::sendto(fd, p.data(), p.size(), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst) < 0) die("sendto");
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 2000) != 1) {
      ++lost;  // no command within 2 s; the next report crosses back, so the rule stays in step
      continue;
    }
    ssize_t n = ::recv(fd, reply, sizeof reply - 1, 0);
    auto t1 = std::chrono::steady_clock::now();
    if (n < 0) die("recv");
    reply[n] = '\0';
    if (i >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    if (const char* id = std::strstr(reply, "command_id=")) {
      std::string ack = std::string(R"({"ack":")") + (id + 11) + R"(","status":"ok"})";
      ::sendto(fd, ack.data(), ack.size(), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst);
    }
    if (gap_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(gap_us));
  }
  ::close(fd);
  size_t got = us.size();
  std::vector<double> v = us;
  double p50 = percentile(v, 0.50), p90 = percentile(v, 0.90), p99 = percentile(v, 0.99),
         p999 = percentile(v, 0.999);
  double max = v.empty() ? 0 : *std::max_element(v.begin(), v.end());
  std::printf("samples %zu p50_us %.1f p90_us %.1f p99_us %.1f p999_us %.1f max_us %.1f lost %ld\n", got, p50, p90, p99,
              p999, max, lost);
  return 0;
}
