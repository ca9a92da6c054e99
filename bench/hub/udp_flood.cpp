// udp-flood: sends seed 004's device packet to a UDP address at a steady rate, for the UDP
// ingestion benchmark (bench/hub/run-hub-bench). Loopback only.
//
//   udp-flood --to 127.0.0.1:PORT --packet FILE --rate 100000 --seconds 30 [--devices N] [--gzip]
//
// Without --devices every datagram is the file's bytes (the seed's exact packet: one device,
// fixed times). With --devices N, datagram i is the same packet for device i % N (its 16-hex-digit
// id replaced) with its times replaced by a time that advances one second per round over the
// devices, so every reading is a new row (recent times, inside the store's retention).
// --gzip sends the packet gzip-compressed (only without --devices).
// Prints "sent N seconds S rate R" on stdout.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "udp-flood: %s\n", why.c_str());
  std::exit(2);
}

std::string gzip(const std::string& in) {
  z_stream z{};
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) die("deflateInit2");
  std::string out(deflateBound(&z, in.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) die("deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::vector<size_t> find_all(const std::string& hay, const std::string& needle) {
  std::vector<size_t> at;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) at.push_back(p);
  return at;
}

}  // namespace

int main(int argc, char** argv) {
  std::string to, packet_file;
  double rate = 10'000, seconds = 10;
  long devices = 0;
  bool compress = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--to") to = next();
    else if (a == "--packet") packet_file = next();
    else if (a == "--rate") rate = std::atof(next().c_str());
    else if (a == "--seconds") seconds = std::atof(next().c_str());
    else if (a == "--devices") devices = std::atol(next().c_str());
    else if (a == "--gzip") compress = true;
    else die("unknown argument " + a);
  }
  if (rate <= 0 || rate > 5e6 || seconds <= 0 || seconds > 600 || devices < 0 || devices > 10'000'000)
    die("--rate 1..5e6, --seconds 1..600, --devices 0..1e7");
  size_t colon = to.rfind(':');
  if (colon == std::string::npos) die("--to HOST:PORT");
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<uint16_t>(std::atoi(to.c_str() + colon + 1)));
  if (inet_pton(AF_INET, to.substr(0, colon).c_str(), &dst.sin_addr) != 1) die("--to needs an IPv4 address");
  if ((ntohl(dst.sin_addr.s_addr) >> 24) != 127) die("--to must be on 127.0.0.0/8");

  std::ifstream f(packet_file, std::ios::binary);
  if (!f) die("cannot read --packet " + packet_file);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string packet = ss.str();
  const std::string kId = "d23c058698435eff", kTime = "2014-02-19 09:40:06";
  auto id_at = find_all(packet, kId), time_at = find_all(packet, kTime);
  if (devices > 0 && (id_at.empty() || time_at.empty())) die("--devices needs the seed's packet (its id and time)");
  if (compress && devices > 0) die("--gzip goes without --devices");
  if (compress) packet = gzip(packet);

  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  int sndbuf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) die("connect");

  constexpr int kBatch = 32;
  std::vector<std::string> bufs(kBatch, packet);
  std::vector<iovec> iov(kBatch);
  std::vector<mmsghdr> msgs(kBatch);
  // Times: one second per round over the devices, ending about now.
  long long rounds = devices > 0 ? static_cast<long long>(rate * seconds / static_cast<double>(devices)) + 2 : 0;
  time_t base = std::time(nullptr) - rounds - 5;

  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  auto end = start + std::chrono::duration<double>(seconds);
  unsigned long long sent = 0;
  char stamp[32];
  while (true) {
    auto now = Clock::now();
    if (now >= end) break;
    double elapsed = std::chrono::duration<double>(now - start).count();
    auto due = static_cast<unsigned long long>(elapsed * rate);
    if (sent >= due) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    int n = static_cast<int>(std::min<unsigned long long>(kBatch, due - sent));
    for (int k = 0; k < n; ++k) {
      std::string& b = bufs[k];
      if (devices > 0) {
        unsigned long long i = sent + k;
        char id[17];
        std::snprintf(id, sizeof id, "%016llx", 0x100000ULL + i % static_cast<unsigned long long>(devices));
        for (size_t p : id_at) std::memcpy(b.data() + p, id, 16);
        time_t t = base + static_cast<time_t>(i / static_cast<unsigned long long>(devices));
        tm g;
        gmtime_r(&t, &g);
        std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &g);
        for (size_t p : time_at) std::memcpy(b.data() + p, stamp, kTime.size());
      }
      iov[k] = {b.data(), b.size()};
      msgs[k] = {};
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd, msgs.data(), static_cast<unsigned>(n), 0);
    if (r < 0) {
      if (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED) continue;
      die(std::string("sendmmsg: ") + std::strerror(errno));
    }
    sent += static_cast<unsigned long long>(r);
  }
  double took = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("sent %llu seconds %.3f rate %.0f\n", sent, took, static_cast<double>(sent) / took);
  close(fd);
  return 0;
}
