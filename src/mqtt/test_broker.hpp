// For tests: a real mosquitto broker, a child process on a free loopback port.
// (tests/functional/mosquitto_broker.py is the same for pytest.)
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace outpost::mqtt::testing {

// /usr/sbin/mosquitto, or $OUTPOST_MOSQUITTO. The broker tests fail (never skip) without it.
std::string mosquitto_path();

// A generated config (listener PORT 127.0.0.1, allow_anonymous true, persistence false, log to
// a file), in a scratch directory removed by the destructor. The port is chosen at
// construction and kept across stop()/start(), so clients can reconnect to the same address.
class TestBroker {
 public:
  TestBroker();
  ~TestBroker();  // stop()
  TestBroker(const TestBroker&) = delete;
  TestBroker& operator=(const TestBroker&) = delete;

  // Lines appended to the generated config at the next start() (a TLS listener, say).
  void add_config(const std::string& lines) { extra_config_ += lines; }
  // Starts the broker and waits until it accepts connections. Throws std::runtime_error, with
  // the broker's log, when it is missing, exits, or does not listen within `timeout`.
  void start(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // SIGTERM, then SIGKILL after 5 s; waits for the process. No-op when not running.
  void stop();
  bool running() const { return pid_ > 0; }

  uint16_t port() const { return port_; }
  std::string url() const;  // "mqtt://127.0.0.1:PORT"
  std::string log() const;  // the broker's log so far
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::string extra_config_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// A loopback port nothing listens on at the time of the call (outside the ephemeral range).
uint16_t free_port();

}  // namespace outpost::mqtt::testing
