// idle-conns: hold N idle keep-alive HTTP/1.1 connections open to a server.
//
//   idle-conns HOST PORT COUNT PATH [HEADER ...]
//
// Opens COUNT connections to HOST:PORT, sends one keep-alive "GET PATH" on each (with the
// extra "Name: value" headers given), reads each whole response (Content-Length bodies), then
// prints "ready OK_COUNT STATUS_SUMMARY" on stdout and keeps every connection open, idle, until
// stdin reaches end of file or a line "close". Exits 1 if any connection failed or was closed
// by the server, or any response was not 2xx. Loopback only: a benchmark helper, not a client.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

struct Conn {
  int fd = -1;
  std::string out;  // request bytes not yet written
  size_t written = 0;
  std::string in;  // response bytes read so far
  bool done = false;
  int status = 0;
};

// Returns true once `c.in` holds a whole response (headers plus Content-Length body).
bool parse_response(Conn& c) {
  size_t end = c.in.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  if (c.in.compare(0, 5, "HTTP/") != 0) {
    c.status = -1;
    return true;
  }
  size_t sp = c.in.find(' ');
  c.status = std::atoi(c.in.c_str() + sp + 1);
  size_t body = 0;
  std::string head = c.in.substr(0, end);
  for (auto& ch : head) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  size_t cl = head.find("\r\ncontent-length:");
  if (cl != std::string::npos) body = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
  return c.in.size() >= end + 4 + body;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s HOST PORT COUNT PATH [HEADER ...]\n", argv[0]);
    return 2;
  }
  const char* host = argv[1];
  int port = std::atoi(argv[2]);
  int count = std::atoi(argv[3]);
  std::string request = std::string("GET ") + argv[4] + " HTTP/1.1\r\nHost: " + host + ":" +
                        argv[2] + "\r\nConnection: keep-alive\r\n";
  for (int i = 5; i < argc; ++i) request += std::string(argv[i]) + "\r\n";
  request += "\r\n";

  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < rlim_t(count) + 16) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, rlim_t(count) + 16);
    setrlimit(RLIMIT_NOFILE, &lim);
  }

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    std::fprintf(stderr, "idle-conns: HOST must be an IPv4 address\n");
    return 2;
  }

  // Connect in batches, blocking, so the listen backlog is never overrun.
  std::vector<Conn> conns(static_cast<size_t>(count));
  for (auto& c : conns) {
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0 || ::connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::fprintf(stderr, "idle-conns: connect %zu: %s\n", size_t(&c - conns.data()),
                   std::strerror(errno));
      return 1;
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    c.out = request;
  }

  // Send every request and read every response, all connections at once.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  size_t remaining = conns.size();
  std::vector<pollfd> pfds;
  std::vector<size_t> index;
  char buf[16384];
  while (remaining > 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "idle-conns: %zu responses missing after 30 s\n", remaining);
      return 1;
    }
    pfds.clear();
    index.clear();
    for (size_t i = 0; i < conns.size(); ++i) {
      if (conns[i].done) continue;
      short ev = conns[i].written < conns[i].out.size() ? POLLOUT : POLLIN;
      pfds.push_back({conns[i].fd, ev, 0});
      index.push_back(i);
    }
    if (::poll(pfds.data(), pfds.size(), 1000) < 0 && errno != EINTR) return 1;
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (pfds[k].revents == 0) continue;
      Conn& c = conns[index[k]];
      if (c.written < c.out.size()) {
        ssize_t n = ::send(c.fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) {
          std::fprintf(stderr, "idle-conns: send: %s\n", std::strerror(errno));
          return 1;
        }
        if (n > 0) c.written += size_t(n);
        continue;
      }
      ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN)) {
        std::fprintf(stderr, "idle-conns: server closed a connection before answering\n");
        return 1;
      }
      if (n > 0) c.in.append(buf, size_t(n));
      if (parse_response(c)) {
        c.done = true;
        --remaining;
      }
    }
  }

  std::map<int, int> statuses;
  int ok = 0;
  for (auto& c : conns) {
    ++statuses[c.status];
    if (c.status >= 200 && c.status < 300) ++ok;
    c.in.clear();
    c.in.shrink_to_fit();
    c.out.clear();
    c.out.shrink_to_fit();
  }
  std::printf("ready %d", ok);
  for (auto& [s, n] : statuses) std::printf(" %d:%d", s, n);
  std::printf("\n");
  std::fflush(stdout);

  // Hold the connections until told to close. Any connection the server closes meanwhile
  // (idle timeout, limits) is reported, so the RSS reading can be trusted only with none.
  std::vector<pollfd> watch;
  watch.push_back({STDIN_FILENO, POLLIN, 0});
  for (auto& c : conns) watch.push_back({c.fd, POLLIN, 0});
  int closed_by_server = 0;
  for (;;) {
    if (::poll(watch.data(), watch.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (watch[0].revents) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n <= 0 || std::strstr(std::string(buf, size_t(n)).c_str(), "close")) break;
    }
    for (size_t i = 1; i < watch.size(); ++i) {
      if (watch[i].revents && watch[i].fd >= 0) {
        ++closed_by_server;
        watch[i].fd = -1;
      }
    }
  }
  for (auto& c : conns) ::close(c.fd);
  if (closed_by_server) {
    std::fprintf(stderr, "idle-conns: the server closed %d idle connections early\n",
                 closed_by_server);
  }
  return ok == count && closed_by_server == 0 ? 0 : 1;
}
