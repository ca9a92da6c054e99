// ws-fanout: the WebSocket fan-out benchmark (bench/hub/run-hub-bench). Opens N WebSocket
// clients on Outpost's /ws, subscribes each to every reading, then sends one UDP datagram at a
// time (a packet with one sensor: one reading) and measures, per datagram, the time from the
// send to the moment the LAST client has received its event. Loopback only.
//
//   ws-fanout --http 127.0.0.1:PORT --udp 127.0.0.1:PORT --key KEY --packet FILE
//             [--clients 1000] [--packets 200] [--interval-ms 20]
//
// Prints one line: "clients N packets P p50_ms X p90_ms Y p99_ms Z max_ms W lost L
// failed_clients F event_bytes B" (B: the size of the last event's WebSocket payload).
//
//   ws-fanout --floor [--clients 1000] [--packets 200] [--interval-ms 20] [--bytes 300]
//             [--writers 2]
//
// The anchor the fan-out is compared with: what the kernel alone takes for the same traffic.
// No Outpost and no WebSocket: --clients loopback TCP connections, --writers threads (Outpost's
// io threads) that on each round write a --bytes message to each of their share of the server
// sockets, and one thread that reads the client sockets from epoll (ws-fanout's one client
// thread); per round, the time from waking the writers to the last socket's read, measured as
// above. Prints the same line.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "ws-fanout: %s\n", why.c_str());
  std::exit(2);
}

struct Client : std::enable_shared_from_this<Client> {
  explicit Client(net::io_context& ioc) : ws(ioc) {}
  websocket::stream<tcp::socket> ws;
  beast::flat_buffer buf;
  std::atomic<uint64_t> events{0};          // reading events received
  std::atomic<int64_t> last_ns{0};          // arrival of the latest, steady clock ns
  std::atomic<size_t> event_bytes{0};       // the latest event's size
  std::atomic<bool> ready{false}, failed{false};

  void read() {
    ws.async_read(buf, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        self->failed = true;
        return;
      }
      auto now = Clock::now().time_since_epoch().count();
      std::string_view msg(static_cast<const char*>(self->buf.data().data()), self->buf.size());
      if (msg.find("\"op\":\"event\"") != std::string_view::npos) {
        self->last_ns = now;
        self->event_bytes = msg.size();
        self->events.fetch_add(1);
      } else if (msg.find("subscribed") != std::string_view::npos) {
        self->ready = true;
      }
      self->buf.consume(self->buf.size());
      self->read();
    });
  }
};

// Waits, polling every 100 µs, until pred() holds or limit passes.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

// The rounds both modes measure: each calls start(), waits (2 s at most) until
// arrived(round, lost) holds, and keeps the time from just before start() to newest() (the
// latest arrival, steady clock ns); a round that times out is counted as lost.
struct Rounds {
  std::vector<double> lat_ms;
  int lost = 0;
};

template <class Start, class Arrived, class Newest>
Rounds measure(int rounds, int interval_ms, Start start, Arrived arrived, Newest newest) {
  Rounds m;
  for (int p = 0; p < rounds; ++p) {
    auto t0 = Clock::now();
    start();
    if (!wait_until([&] { return arrived(p, m.lost); }, std::chrono::seconds(2))) {
      ++m.lost;
      continue;
    }
    m.lat_ms.push_back(static_cast<double>(newest() - t0.time_since_epoch().count()) / 1e6);
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  return m;
}

void report(int clients, std::vector<double> lat_ms, int lost, int failed, size_t event_bytes) {
  std::sort(lat_ms.begin(), lat_ms.end());
  auto pct = [&](double q) {
    if (lat_ms.empty()) return -1.0;
    return lat_ms[std::min(lat_ms.size() - 1,
                           static_cast<size_t>(q * static_cast<double>(lat_ms.size())))];
  };
  std::printf(
      "clients %d packets %zu p50_ms %.3f p90_ms %.3f p99_ms %.3f max_ms %.3f lost %d "
      "failed_clients %d event_bytes %zu\n",
      clients, lat_ms.size(), pct(0.5), pct(0.9), pct(0.99), lat_ms.empty() ? -1.0 : lat_ms.back(),
      lost, failed, event_bytes);
  std::fflush(stdout);
}

// The kernel floor (see the top of the file).
[[noreturn]] void run_floor(int clients, int packets, int interval_ms, size_t bytes, int writers) {
  int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof addr;
  if (ls < 0 || ::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(ls, 4096) != 0 || ::getsockname(ls, reinterpret_cast<sockaddr*>(&addr), &alen) != 0)
    die("floor: listen");
  std::vector<int> server(static_cast<size_t>(clients)), client(static_cast<size_t>(clients));
  for (size_t i = 0; i < client.size(); ++i) {
    client[i] = ::socket(AF_INET, SOCK_STREAM, 0);
    if (client[i] < 0 || ::connect(client[i], reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      die("floor: connect");
    server[i] = ::accept(ls, nullptr, nullptr);
    if (server[i] < 0) die("floor: accept");
    int one = 1;
    ::setsockopt(server[i], IPPROTO_TCP, TCP_NODELAY, &one,
                 sizeof one);  // as Outpost's WebSocket sockets
    ::fcntl(client[i], F_SETFL, O_NONBLOCK);
  }
  std::vector<std::atomic<uint64_t>> got(client.size());  // bytes read per client socket
  std::vector<std::atomic<int64_t>> last(client.size());  // time of the latest read, steady ns
  std::thread reader([&] {
    int ep = ::epoll_create1(0);
    for (size_t i = 0; i < client.size(); ++i) {
      epoll_event e{};
      e.events = EPOLLIN | EPOLLET;  // as Asio's reactor
      e.data.u64 = i;
      ::epoll_ctl(ep, EPOLL_CTL_ADD, client[i], &e);
    }
    std::vector<epoll_event> ready(128);
    std::vector<char> buf(64 * 1024);
    for (;;) {  // until the process exits
      int n = ::epoll_wait(ep, ready.data(), static_cast<int>(ready.size()), -1);
      for (int j = 0; j < n; ++j) {
        size_t i = ready[static_cast<size_t>(j)].data.u64;
        ssize_t r;
        while ((r = ::read(client[i], buf.data(), buf.size())) > 0) {
          last[i] = Clock::now().time_since_epoch().count();
          got[i].fetch_add(static_cast<uint64_t>(r));
        }
      }
    }
  });
  const std::string message(bytes, 'x');
  std::atomic<int> round{0};
  std::vector<std::thread> writer;
  for (int w = 0; w < writers; ++w) {
    writer.emplace_back([&, w] {
      for (int seen = 0;;) {
        round.wait(seen);
        seen = round.load();
        for (size_t i = static_cast<size_t>(w); i < server.size();
             i += static_cast<size_t>(writers))
          if (::write(server[i], message.data(), message.size()) !=
              static_cast<ssize_t>(message.size()))
            die("floor: write");
      }
    });
  }
  Rounds m = measure(
      packets, interval_ms,
      [&] {
        round.fetch_add(1);
        round.notify_all();
      },
      [&](int p, int) {
        uint64_t want = static_cast<uint64_t>(p + 1) * bytes;  // TCP loses nothing: late is all
        return std::all_of(got.begin(), got.end(), [&](auto& g) { return g.load() >= want; });
      },
      [&] {
        int64_t newest = 0;
        for (auto& l : last) newest = std::max(newest, l.load());
        return newest;
      });
  report(clients, std::move(m.lat_ms), m.lost, 0, bytes);
  std::_Exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string http, udp, key, packet_file;
  int clients = 1000, packets = 200, interval_ms = 20, writers = 2;
  size_t bytes = 300;
  bool floor = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--http") http = next();
    else if (a == "--udp") udp = next();
    else if (a == "--key") key = next();
    else if (a == "--packet") packet_file = next();
    else if (a == "--clients") clients = std::atoi(next().c_str());
    else if (a == "--packets") packets = std::atoi(next().c_str());
    else if (a == "--interval-ms") interval_ms = std::atoi(next().c_str());
    else if (a == "--floor")
      floor = true;
    else if (a == "--bytes")
      bytes = static_cast<size_t>(std::atol(next().c_str()));
    else if (a == "--writers")
      writers = std::atoi(next().c_str());
    else die("unknown argument " + a);
  }
  if (clients < 1 || clients > 10'000 || packets < 1 || packets > 100'000) die("--clients 1..10000, --packets 1..100000");
  if (floor) {
    if (bytes < 1 || bytes > 65'536 || writers < 1 || writers > 64)
      die("--bytes 1..65536, --writers 1..64");
    run_floor(clients, packets, interval_ms, bytes, writers);
  }
  auto split = [](const std::string& hp) {
    size_t c = hp.rfind(':');
    if (c == std::string::npos) die("HOST:PORT expected, got " + hp);
    if (hp.rfind("127.", 0) != 0) die("loopback only: " + hp);
    return std::pair{hp.substr(0, c), hp.substr(c + 1)};
  };
  auto [hhost, hport] = split(http);
  auto [uhost, uport] = split(udp);
  std::ifstream f(packet_file, std::ios::binary);
  if (!f) die("cannot read " + packet_file);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string packet = ss.str();

  net::io_context ioc;
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(hhost, hport);
  std::vector<std::shared_ptr<Client>> all;
  for (int i = 0; i < clients; ++i) {
    auto c = std::make_shared<Client>(ioc);
    beast::error_code ec;
    net::connect(c->ws.next_layer(), endpoints, ec);
    if (ec) die("connect: " + ec.message());
    c->ws.handshake(hhost + ":" + hport, "/ws?access_token=" + key, ec);
    if (ec) die("handshake: " + ec.message());
    c->ws.write(net::buffer(std::string(R"({"op":"subscribe","devices":"*","types":["reading"]})")), ec);
    if (ec) die("subscribe: " + ec.message());
    all.push_back(c);
  }
  for (auto& c : all) c->read();
  std::thread io([&] { ioc.run(); });
  if (!wait_until([&] { return std::all_of(all.begin(), all.end(), [](auto& c) { return c->ready.load(); }); },
                  std::chrono::seconds(30)))
    die("not every client got its subscription confirmed");

  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<uint16_t>(std::atoi(uport.c_str())));
  inet_pton(AF_INET, uhost.c_str(), &dst.sin_addr);

  Rounds m = measure(
      packets, interval_ms,
      [&] {
        if (sendto(fd, packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst) < 0)
          die("sendto");
      },
      [&](int p, int lost) {
        uint64_t want = static_cast<uint64_t>(p + 1 - lost);  // a lost reading never comes
        return std::all_of(all.begin(), all.end(),
                           [&](auto& c) { return c->events.load() >= want || c->failed; });
      },
      [&] {
        int64_t newest = 0;
        for (auto& c : all) newest = std::max(newest, c->last_ns.load());
        return newest;
      });
  int failed = static_cast<int>(std::count_if(all.begin(), all.end(), [](auto& c) { return c->failed.load(); }));
  report(clients, std::move(m.lat_ms), m.lost, failed, all.front()->event_bytes.load());
  std::_Exit(0);  // skip closing 1,000 sockets politely
}
