#include "mqtt/test_broker.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
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

}  // namespace outpost::mqtt::testing
