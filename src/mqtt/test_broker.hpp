// For tests: a real mosquitto broker, a child process on a free loopback port.
// (tests/functional/mosquitto_broker.py is the same for pytest.)
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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

// A minimal MQTT 3.1.1 server for what a real broker cannot be made to do: hold a confirmation
// back. One client at a time; CONNECT gets CONNACK (accepted), SUBSCRIBE a SUBACK granting QoS
// 1, PINGREQ a PINGRESP, DISCONNECT or EOF ends the connection. A QoS 1 PUBLISH is recorded and
// gets its PUBACK only when the test says so (ack()), or at once with auto_ack.
class HoldingBroker {
 public:
  struct Publish {
    std::string topic;
    std::string payload;
    uint16_t mid = 0;
    bool dup = false;
  };

  HoldingBroker();  // listening on 127.0.0.1:port()
  ~HoldingBroker();
  HoldingBroker(const HoldingBroker&) = delete;
  HoldingBroker& operator=(const HoldingBroker&) = delete;

  uint16_t port() const { return port_; }
  std::string url() const;

  // Every PUBLISH received, in order (a resent one again, with dup set).
  std::vector<Publish> published() const;
  // Waits until at least `n` were received; false after `timeout`.
  bool wait_published(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  void ack(uint16_t mid);
  void set_auto_ack(bool on);
  // Closes the client's connection (no DISCONNECT: as a broker going away would).
  void drop_client();

 private:
  void run();
  void handle(int fd, uint8_t type, const std::string& body);
  void send(int fd, const std::string& bytes);

  uint16_t port_ = 0;
  int listen_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  int client_fd_ = -1;  // under mu_
  bool auto_ack_ = false;
  bool drop_ = false;
  std::vector<Publish> published_;
};

}  // namespace outpost::mqtt::testing
