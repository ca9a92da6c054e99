#include "mqtt/test_broker.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace outpost::mqtt::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

bool can_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

bool can_bind(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as mosquitto does
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::string mosquitto_path() {
  const char* p = std::getenv("OUTPOST_MOSQUITTO");
  return p != nullptr && *p != '\0' ? p : "/usr/sbin/mosquitto";
}

uint16_t free_port() {
  // Below Linux's ephemeral range (32768..60999), so no outgoing connection holds it.
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> dist(20000, 32000);
  for (int i = 0; i < 200; ++i) {
    auto port = static_cast<uint16_t>(dist(rng));
    if (can_bind(port)) return port;
  }
  throw std::runtime_error("no free loopback port in 20000..32000");
}

TestBroker::TestBroker() {
  std::string tmpl = (fs::temp_directory_path() / "outpost-mosquitto-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  port_ = free_port();
}

TestBroker::~TestBroker() {
  stop();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string TestBroker::url() const { return "mqtt://127.0.0.1:" + std::to_string(port_); }

std::string TestBroker::log() const {
  std::ifstream in(dir_ / "mosquitto.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void TestBroker::start(std::chrono::milliseconds timeout) {
  if (running()) return;
  const std::string bin = mosquitto_path();
  if (::access(bin.c_str(), X_OK) != 0) {
    throw std::runtime_error("the MQTT tests need the mosquitto broker at " + bin +
                             " (Debian package 'mosquitto'; scripts/install-deps installs it)");
  }
  if (can_connect(port_)) {  // else the other listener would pass for this broker
    throw std::runtime_error("port " + std::to_string(port_) + " is already in use");
  }
  const fs::path conf = dir_ / "mosquitto.conf";
  {
    std::ofstream out(conf);
    out << "listener " << port_ << " 127.0.0.1\n"
        << "allow_anonymous true\n"
        << "persistence false\n"
        << "log_dest stderr\n"
        << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        << extra_config_ << "\n";
  }
  const std::string log_path = (dir_ / "mosquitto.log").string();
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  std::string conf_s = conf.string();
  char* argv[] = {const_cast<char*>(bin.c_str()), const_cast<char*>("-c"), conf_s.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + bin + ": " + std::strerror(rc));
  pid_ = pid;

  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("mosquitto exited at start (status " + std::to_string(status) +
                               "):\n" + log());
    }
    if (can_connect(port_)) return;
    std::this_thread::sleep_for(20ms);
  }
  stop();
  throw std::runtime_error("mosquitto did not listen on port " + std::to_string(port_) +
                           " in time:\n" + log());
}

void TestBroker::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  pid_ = -1;
}

// ---------------------------------------------------------------------------------------------
// HoldingBroker

namespace {

uint16_t be16(const std::string& s, size_t at) {
  return static_cast<uint16_t>(uint8_t(s[at]) << 8 | uint8_t(s[at + 1]));
}

std::string packet(uint8_t type, const std::string& body) {
  std::string out(1, static_cast<char>(type));
  size_t n = body.size();
  do {
    uint8_t b = n % 128;
    n /= 128;
    if (n > 0) b |= 0x80;
    out += static_cast<char>(b);
  } while (n > 0);
  return out + body;
}

std::string mid_bytes(uint16_t mid) {
  return std::string{static_cast<char>(mid >> 8), static_cast<char>(mid & 0xff)};
}

}  // namespace

HoldingBroker::HoldingBroker() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("socket failed");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listen_fd_, 4) != 0)
    throw std::runtime_error(std::string("bind/listen failed: ") + std::strerror(errno));
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  thread_ = std::thread([this] { run(); });
}

HoldingBroker::~HoldingBroker() {
  stopping_ = true;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
  thread_.join();
  std::lock_guard lk(mu_);
  if (client_fd_ >= 0) ::close(client_fd_);
  ::close(listen_fd_);
  ::close(wake_fd_);
}

std::string HoldingBroker::url() const { return "mqtt://127.0.0.1:" + std::to_string(port_); }

std::vector<HoldingBroker::Publish> HoldingBroker::published() const {
  std::lock_guard lk(mu_);
  return published_;
}

bool HoldingBroker::wait_published(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return published_.size() >= n; });
}

void HoldingBroker::ack(uint16_t mid) {
  std::lock_guard lk(mu_);
  if (client_fd_ >= 0) send(client_fd_, packet(0x40, mid_bytes(mid)));
}

void HoldingBroker::set_auto_ack(bool on) {
  std::lock_guard lk(mu_);
  auto_ack_ = on;
}

void HoldingBroker::drop_client() {
  std::lock_guard lk(mu_);
  drop_ = true;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

// mu_ held.
void HoldingBroker::send(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

void HoldingBroker::handle(int fd, uint8_t type, const std::string& body) {
  std::lock_guard lk(mu_);
  switch (type & 0xf0) {
    case 0x10:  // CONNECT
      send(fd, packet(0x20, std::string("\0\0", 2)));
      break;
    case 0x30: {  // PUBLISH
      int qos = (type >> 1) & 3;
      if (body.size() < 2) return;
      size_t tlen = be16(body, 0);
      Publish p;
      p.topic = body.substr(2, tlen);
      size_t at = 2 + tlen;
      if (qos > 0) {
        p.mid = be16(body, at);
        at += 2;
      }
      p.dup = (type & 0x08) != 0;
      p.payload = body.substr(at);
      uint16_t mid = p.mid;
      published_.push_back(std::move(p));
      cv_.notify_all();
      if (qos == 1 && auto_ack_) send(fd, packet(0x40, mid_bytes(mid)));
      break;
    }
    case 0x80: {  // SUBSCRIBE
      std::string grants;
      for (size_t at = 2; at + 2 <= body.size();) {
        at += 2 + be16(body, at) + 1;
        grants += '\x01';
      }
      send(fd, packet(0x90, mid_bytes(be16(body, 0)) + grants));
      break;
    }
    case 0xc0:  // PINGREQ
      send(fd, packet(0xd0, ""));
      break;
    default:
      break;
  }
}

void HoldingBroker::run() {
  int fd = -1;
  std::string buf;
  auto close_client = [&] {
    std::lock_guard lk(mu_);
    if (fd >= 0) ::close(fd);
    fd = client_fd_ = -1;
    buf.clear();
  };
  while (!stopping_) {
    pollfd fds[3] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}, {fd, POLLIN, 0}};
    if (::poll(fds, fd >= 0 ? 3 : 2, 200) < 0) continue;
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] ssize_t n = ::read(wake_fd_, &v, sizeof v);
    }
    bool drop = false;
    {
      std::lock_guard lk(mu_);
      drop = drop_;
      drop_ = false;
    }
    if (drop) close_client();
    if (fds[0].revents & POLLIN) {
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) {
        close_client();  // one client at a time: the newest
        std::lock_guard lk(mu_);
        fd = client_fd_ = c;
      }
      continue;
    }
    if (fd < 0 || !(fds[2].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    char chunk[4096];
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) {
      close_client();
      continue;
    }
    buf.append(chunk, static_cast<size_t>(n));
    for (;;) {
      if (buf.size() < 2) break;
      size_t len = 0, mult = 1, at = 1;
      bool complete = false;
      while (at < buf.size() && at < 5) {
        uint8_t b = static_cast<uint8_t>(buf[at++]);
        len += (b & 0x7f) * mult;
        mult *= 128;
        if (!(b & 0x80)) {
          complete = true;
          break;
        }
      }
      if (!complete || buf.size() < at + len) break;
      uint8_t type = static_cast<uint8_t>(buf[0]);
      std::string body = buf.substr(at, len);
      buf.erase(0, at + len);
      if ((type & 0xf0) == 0xe0) {  // DISCONNECT
        close_client();
        break;
      }
      handle(fd, type, body);
    }
  }
  close_client();
}

}  // namespace outpost::mqtt::testing
