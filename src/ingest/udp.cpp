// The UDP receiver: a thin adapter around Parser. One thread reads batches with recvmmsg,
// parses them and queues the results; it sleeps in poll() on the socket and an eventfd, so
// stop() wakes it at once. A second thread hands the queued batches to the sink, so that
// receiving and parsing the next batch overlap with the sink's work on this one (the hub's
// merge and the readings for the store): each is about half of a packet's cost.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "ingest/ingest.hpp"

namespace outpost::ingest {

namespace {

using Steady = std::chrono::steady_clock;

constexpr size_t kBatch = 64;                         // datagrams per recvmmsg
constexpr size_t kQueuedBatches = 8;  // parsed batches waiting for the sink; then receiving waits
constexpr auto kLogEvery = std::chrono::seconds(10);  // at most one drop line per reason
constexpr size_t kMaxUdpPayload = 65'507;

std::string errno_text(int err) { return std::system_category().message(err); }

// "IP:PORT", "[IPv6]:PORT" ("[fe80::1%2]:PORT" with a scope); IPv4-mapped IPv6 as IPv4, so a
// device has one address whichever socket heard it (send() maps it back).
std::string format_address(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN];
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    inet_ntop(AF_INET, &a.sin_addr, host, sizeof host);
    return fmt::format("{}:{}", host, ntohs(a.sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    if (IN6_IS_ADDR_V4MAPPED(&a.sin6_addr)) {
      inet_ntop(AF_INET, &a.sin6_addr.s6_addr[12], host, sizeof host);
      return fmt::format("{}:{}", host, ntohs(a.sin6_port));
    }
    inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof host);
    if (a.sin6_scope_id != 0)
      return fmt::format("[{}%{}]:{}", host, a.sin6_scope_id, ntohs(a.sin6_port));
    return fmt::format("[{}]:{}", host, ntohs(a.sin6_port));
  }
  return "unknown";
}

// Resolves a numeric host and a port (no DNS) into `out`.
bool numeric_address(const std::string& host, uint16_t port, bool passive, sockaddr_storage& out,
                     socklen_t& len, std::string& error) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : AI_NUMERICHOST);
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    error = rc == EAI_SYSTEM ? errno_text(errno) : gai_strerror(rc);
    return false;
  }
  std::memcpy(&out, res->ai_addr, res->ai_addrlen);
  len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

// Host-wide UDP receive-buffer errors: Udp RcvbufErrors in /proc/net/snmp plus
// Udp6RcvbufErrors in /proc/net/snmp6. nullopt when neither is readable.
std::optional<uint64_t> host_rcvbuf_errors() {
  std::optional<uint64_t> total;
  std::ifstream snmp("/proc/net/snmp");
  std::string names, values;
  while (std::getline(snmp, names)) {
    if (names.rfind("Udp: ", 0) != 0 || !std::getline(snmp, values)) continue;
    std::istringstream n(names), v(values);
    std::string name, value;
    while (n >> name && v >> value) {
      if (name == "RcvbufErrors") total = std::strtoull(value.c_str(), nullptr, 10);
    }
    break;
  }
  std::ifstream snmp6("/proc/net/snmp6");
  std::string name;
  uint64_t value = 0;
  while (snmp6 >> name >> value) {
    if (name == "Udp6RcvbufErrors") total = total.value_or(0) + value;
  }
  return total;
}

}  // namespace

class UdpReceiver::Impl {
 public:
  Impl(const config::UdpConfig& cfg, UdpSink sink, core::Registry& metrics);
  ~Impl();

  core::Result<std::string> start();
  void stop();
  std::string local_address() const {
    std::lock_guard lk(mu_);
    return local_;
  }
  core::Status send(const std::string& address, std::string_view payload);

 private:
  struct LogLimit {
    Steady::time_point last{};
    uint64_t suppressed = 0;
    bool logged = false;
    // Whether to log now; if not, the occurrence is counted as suppressed.
    bool allow(Steady::time_point now) {
      if (logged && now - last < kLogEvery) {
        ++suppressed;
        return false;
      }
      return true;
    }
    void done(Steady::time_point now) {
      last = now;
      logged = true;
      suppressed = 0;
    }
  };

  // What one receive batch gave, on its way to the sink.
  struct Handover {
    std::vector<core::DeviceReport> reports;
    std::vector<std::pair<core::CommandAck, std::string>> acks;
  };

  void run();
  void run_sink();
  void handle_batch(unsigned n);
  const std::string& sender(const sockaddr_storage& ss, socklen_t len);
  void drop(DropReason reason, const std::string& detail, std::string_view from);
  template <typename F>
  void call_sink(const char* what, F&& f);

  const config::UdpConfig cfg_;
  UdpSink sink_;
  Parser parser_;

  core::Counter& datagrams_;
  core::Counter& bytes_;
  core::Counter& reports_;
  core::Counter& acks_;
  std::array<core::Counter*, kDropReasonCount> dropped_{};
  core::Histogram& batch_size_;
  core::Gauge& receive_buffer_;
  core::Counter& kernel_dropped_;

  mutable std::mutex mu_;  // start/stop and local_
  std::mutex join_mu_;     // one stop() joins at a time
  std::atomic<int> fd_{-1};
  int family_ = AF_UNSPEC;
  int wake_fd_ = -1;
  std::string local_;
  std::thread thread_, sink_thread_;
  std::atomic<bool> stopping_{false};

  // Between the receive thread and the sink thread.
  std::mutex queue_mu_;
  std::condition_variable queued_;  // a batch was queued, or the receive thread is done
  std::condition_variable room_;    // a batch was taken
  std::deque<Handover> queue_;
  std::vector<Handover> spare_;  // handed-over batches, emptied, for their buffers' reuse
  bool received_all_ = false;  // the receive thread has queued its last batch
  bool started_ = false;

  // Receive thread only.
  Handover batch_;  // the batch being received and parsed
  size_t slot_ = 0;  // bytes per receive buffer: max_datagram + 1, to see oversized datagrams
  std::unique_ptr<char[]> buffers_;
  std::array<mmsghdr, kBatch> msgs_{};
  std::array<iovec, kBatch> iovs_{};
  std::array<sockaddr_storage, kBatch> names_{};
  static constexpr size_t kControl = CMSG_SPACE(sizeof(uint32_t));
  alignas(cmsghdr) std::array<std::array<char, kControl>, kBatch> controls_{};
  uint32_t kernel_drops_seen_ = 0;
  sockaddr_storage last_sender_{};
  socklen_t last_sender_len_ = 0;
  std::string last_sender_text_;
  std::array<LogLimit, kDropReasonCount> drop_log_{};
  LogLimit sink_log_, recv_log_;
};

UdpReceiver::Impl::Impl(const config::UdpConfig& cfg, UdpSink sink, core::Registry& metrics)
    : cfg_(cfg),
      sink_(std::move(sink)),
      parser_(cfg, sink_.check_key),
      datagrams_(metrics.counter("outpost_udp_datagrams_total", "UDP datagrams received")),
      bytes_(metrics.counter("outpost_udp_bytes_total", "bytes of UDP datagrams received")),
      reports_(metrics.counter("outpost_udp_reports_total",
                               "device reports parsed from UDP packets and handed to the hub")),
      acks_(
          metrics.counter("outpost_udp_acks_total", "command acknowledgements received over UDP")),
      batch_size_(metrics.histogram("outpost_udp_batch_size", "datagrams read per recvmmsg call",
                                    {1, 2, 4, 8, 16, 32, 64})),
      receive_buffer_(metrics.gauge("outpost_udp_receive_buffer_bytes",
                                    "receive buffer of the UDP socket as granted by the kernel")),
      kernel_dropped_(metrics.counter(
          "outpost_udp_kernel_dropped_total",
          "datagrams the kernel dropped on the UDP socket because its receive buffer was full")) {
  for (size_t i = 0; i < kDropReasonCount; ++i) {
    dropped_[i] = &metrics.counter(
        "outpost_udp_dropped_total", "UDP datagrams dropped, by reason",
        fmt::format("reason=\"{}\"", drop_reason_name(static_cast<DropReason>(i))));
  }
  metrics.collector([](std::string& out) {
    auto errors = host_rcvbuf_errors();
    if (!errors) return;
    out +=
        "# HELP outpost_udp_host_rcvbuf_errors_total UDP datagrams dropped host-wide for a full "
        "receive buffer (/proc/net/snmp RcvbufErrors, Udp and Udp6)\n"
        "# TYPE outpost_udp_host_rcvbuf_errors_total counter\n";
    out += fmt::format("outpost_udp_host_rcvbuf_errors_total {}\n", *errors);
  });
}

UdpReceiver::Impl::~Impl() {
  stop();
  if (int fd = fd_.exchange(-1); fd >= 0) ::close(fd);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

core::Result<std::string> UdpReceiver::Impl::start() {
  std::lock_guard lk(mu_);
  if (started_) return core::Status::conflict("udp: already started");
  if (cfg_.listen == "off") return core::Status::invalid("udp.listen is off");
  auto hp = config::parse_host_port(cfg_.listen);
  if (!hp)
    return core::Status::invalid(fmt::format("udp.listen: '{}' is not HOST:PORT", cfg_.listen));
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string error;
  if (!numeric_address(hp->host, hp->port, true, addr, addr_len, error))
    return core::Status::invalid(fmt::format("udp: cannot resolve '{}': {}", cfg_.listen, error));

  int fd = ::socket(addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return core::Status::unavailable(
        fmt::format("udp: cannot bind {}: socket: {}", cfg_.listen, errno_text(errno)));
  auto fail = [&](const char* step) {
    int err = errno;
    ::close(fd);
    return core::Status::unavailable(
        fmt::format("udp: cannot bind {}: {}{}", cfg_.listen, step, errno_text(err)));
  };
  if (addr.ss_family == AF_INET6) {
    // "[::]:PORT" also hears IPv4 devices, whatever net.ipv6.bindv6only says.
    int off = 0;
    const auto& a6 = reinterpret_cast<const sockaddr_in6&>(addr);
    if (IN6_IS_ADDR_UNSPECIFIED(&a6.sin6_addr))
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) return fail("");

  // The buffer: SO_RCVBUFFORCE passes net.core.rmem_max (root or CAP_NET_ADMIN), else SO_RCVBUF.
  int want = static_cast<int>(std::min<size_t>(cfg_.receive_buffer, INT_MAX / 2));
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) != 0 &&
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want) != 0)
    spdlog::warn("udp: cannot set the receive buffer to {} bytes: {}", want, errno_text(errno));
  int granted = 0;
  socklen_t glen = sizeof granted;
  ::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &glen);
  receive_buffer_.set(granted);
  // Linux reports twice the size asked for (the other half is bookkeeping).
  if (granted < want)
    spdlog::warn(
        "udp: receive buffer is {} bytes, {} asked (raise net.core.rmem_max, or run with "
        "CAP_NET_ADMIN)",
        granted / 2, want);
  // Each datagram then carries the socket's count of datagrams dropped for a full buffer.
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);

  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen) != 0)
    return fail("getsockname: ");
  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) return fail("eventfd: ");

  slot_ = cfg_.max_datagram + 1;
  // Not value-initialised: pages are touched only as far as datagrams fill them.
  buffers_.reset(new char[slot_ * kBatch]);
  for (size_t i = 0; i < kBatch; ++i) {
    iovs_[i] = {buffers_.get() + i * slot_, slot_};
    msgs_[i].msg_hdr.msg_iov = &iovs_[i];
    msgs_[i].msg_hdr.msg_iovlen = 1;
    msgs_[i].msg_hdr.msg_name = &names_[i];
    msgs_[i].msg_hdr.msg_control = controls_[i].data();
  }

  family_ = addr.ss_family;
  wake_fd_ = wake;
  fd_ = fd;
  local_ = format_address(bound);
  started_ = true;
  thread_ = std::thread([this] { run(); });
  pthread_setname_np(thread_.native_handle(), "udp-recv");  // for top -H, perf, the benchmark
  sink_thread_ = std::thread([this] { run_sink(); });
  pthread_setname_np(sink_thread_.native_handle(), "udp-sink");
  spdlog::info("udp receiving on {}", local_);
  return local_;
}

void UdpReceiver::Impl::stop() {
  // join_mu_, not mu_, is held while joining: a sink may call send() or local_address(),
  // which take mu_, while the thread finishes its batch.
  std::lock_guard join(join_mu_);
  {
    std::lock_guard lk(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }
  thread_.join();
  // Every batch received is handed over before stop() returns.
  {
    std::lock_guard lk(queue_mu_);
    received_all_ = true;
  }
  queued_.notify_all();
  sink_thread_.join();
}

void UdpReceiver::Impl::run_sink() {
  std::unique_lock lk(queue_mu_);
  for (;;) {
    queued_.wait(lk, [this] { return !queue_.empty() || received_all_; });
    if (queue_.empty()) return;
    Handover batch = std::move(queue_.front());
    queue_.pop_front();
    lk.unlock();
    room_.notify_one();
    if (!batch.reports.empty()) {
      reports_.inc(batch.reports.size());
      if (sink_.reports) call_sink("reports", [&] { sink_.reports(std::move(batch.reports)); });
    }
    for (auto& [ack, from] : batch.acks) {
      acks_.inc();
      if (sink_.ack) call_sink("ack", [&] { sink_.ack(std::move(ack), std::move(from)); });
    }
    batch.reports.clear();  // what the sink left of them
    batch.acks.clear();
    lk.lock();
    if (spare_.size() < kQueuedBatches) spare_.push_back(std::move(batch));
  }
}

void UdpReceiver::Impl::run() {
  const int fd = fd_;
  pollfd fds[2] = {{fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  while (!stopping_.load(std::memory_order_relaxed)) {
    for (size_t i = 0; i < kBatch; ++i) {
      msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      msgs_[i].msg_hdr.msg_controllen = kControl;
      msgs_[i].msg_hdr.msg_flags = 0;
    }
    // Never blocks: an empty queue (or a datagram dropped for its checksum after poll said
    // readable) sends us back to poll().
    int n = ::recvmmsg(fd, msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n > 0) {
      handle_batch(static_cast<unsigned>(n));
      continue;
    }
    int err = errno;
    if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
      auto now = Steady::now();
      if (recv_log_.allow(now)) {
        spdlog::error("udp: recvmmsg: {}", errno_text(err));
        recv_log_.done(now);
      }
    }
    int timeout = (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) ? 100 : -1;
    if (::poll(fds, 2, timeout) > 0 && (fds[1].revents & POLLIN)) break;
  }
}

const std::string& UdpReceiver::Impl::sender(const sockaddr_storage& ss, socklen_t len) {
  // Datagrams come in runs from the same sender; formatting an address is the dearest step
  // of a small packet.
  if (len != last_sender_len_ || std::memcmp(&ss, &last_sender_, len) != 0) {
    std::memcpy(&last_sender_, &ss, len);
    last_sender_len_ = len;
    last_sender_text_ = format_address(ss);
  }
  return last_sender_text_;
}

void UdpReceiver::Impl::handle_batch(unsigned n) {
  batch_size_.observe(n);
  const core::TimePoint received = core::now();
  std::vector<core::DeviceReport>& reports = batch_.reports;
  std::vector<std::pair<core::CommandAck, std::string>>& acks = batch_.acks;
  for (unsigned i = 0; i < n; ++i) {
    const msghdr& h = msgs_[i].msg_hdr;
    const size_t len = msgs_[i].msg_len;
    datagrams_.inc();
    bytes_.inc(len);
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr;
         c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
        uint32_t total;
        std::memcpy(&total, CMSG_DATA(c), sizeof total);
        kernel_dropped_.inc(total - kernel_drops_seen_);  // modulo 2^32, as the kernel counts
        kernel_drops_seen_ = total;
      }
    }
    const std::string& from = sender(names_[i], h.msg_namelen);
    if ((h.msg_flags & MSG_TRUNC) != 0 || len > cfg_.max_datagram) {
      drop(DropReason::kTooLarge, fmt::format("over {} bytes", cfg_.max_datagram), from);
      continue;
    }
    Parsed p =
        parser_.parse(std::string_view(buffers_.get() + i * slot_, len), from, received, reports);
    switch (p.kind) {
      case Parsed::Kind::kReports:
        break;
      case Parsed::Kind::kAck:
        acks.emplace_back(std::move(p.ack), from);
        break;
      case Parsed::Kind::kDropped:
        drop(p.reason, p.detail, from);
        break;
    }
  }
  if (reports.empty() && acks.empty()) return;  // batch_ stays, empty, for the next one
  // A full queue holds this thread back (the socket buffer then fills, and the kernel counts
  // what it drops): the sink is not keeping up, and memory stays bounded.
  std::unique_lock lk(queue_mu_);
  room_.wait(lk, [this] { return queue_.size() < kQueuedBatches; });
  queue_.push_back(std::move(batch_));
  // The next batch fills one the sink is done with, so its vectors' buffers (some kB) are
  // reused; taken under the same lock.
  batch_ = Handover{};
  if (!spare_.empty()) {
    batch_ = std::move(spare_.back());
    spare_.pop_back();
  }
  lk.unlock();
  queued_.notify_one();
}

template <typename F>
void UdpReceiver::Impl::call_sink(const char* what, F&& f) {
  std::string error;
  try {
    f();
    return;
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown exception";
  }
  auto now = Steady::now();
  if (sink_log_.allow(now)) {
    spdlog::error("udp: the {} sink threw: {}", what, error);
    sink_log_.done(now);
  }
}

void UdpReceiver::Impl::drop(DropReason reason, const std::string& detail, std::string_view from) {
  const auto i = static_cast<size_t>(reason);
  dropped_[i]->inc();
  auto now = Steady::now();
  LogLimit& l = drop_log_[i];
  if (!l.allow(now)) return;
  if (l.suppressed > 0)
    spdlog::warn("udp: dropped a datagram from {}: {}: {} (and {} more {} since the last line)",
                 from, drop_reason_name(reason), detail, l.suppressed, drop_reason_name(reason));
  else
    spdlog::warn("udp: dropped a datagram from {}: {}: {}", from, drop_reason_name(reason), detail);
  l.done(now);
}

core::Status UdpReceiver::Impl::send(const std::string& address, std::string_view payload) {
  const int fd = fd_.load();
  if (fd < 0) return core::Status::unavailable("udp: not started");
  auto hp = config::parse_host_port(address);
  if (!hp) return core::Status::invalid(fmt::format("udp: '{}' is not IP:PORT", address));
  if (payload.size() > kMaxUdpPayload)
    return core::Status::too_large(
        fmt::format("udp: {} bytes do not fit a datagram", payload.size()));
  sockaddr_storage to{};
  socklen_t to_len = 0;
  std::string error;
  if (!numeric_address(hp->host, hp->port, false, to, to_len, error))
    return core::Status::invalid(
        fmt::format("udp: '{}' is not a numeric IP:PORT: {}", address, error));
  if (family_ == AF_INET6 && to.ss_family == AF_INET) {
    // An IPv6 socket reaches IPv4 devices through IPv4-mapped addresses.
    sockaddr_in v4;
    std::memcpy(&v4, &to, sizeof v4);
    sockaddr_in6 v6{};
    v6.sin6_family = AF_INET6;
    v6.sin6_port = v4.sin_port;
    v6.sin6_addr.s6_addr[10] = 0xff;
    v6.sin6_addr.s6_addr[11] = 0xff;
    std::memcpy(&v6.sin6_addr.s6_addr[12], &v4.sin_addr, 4);
    std::memcpy(&to, &v6, sizeof v6);
    to_len = sizeof v6;
  } else if (family_ == AF_INET && to.ss_family == AF_INET6) {
    return core::Status::invalid(
        fmt::format("udp: cannot send to {} from IPv4 {}", address, local_address()));
  }
  ssize_t sent = ::sendto(fd, payload.data(), payload.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                          reinterpret_cast<sockaddr*>(&to), to_len);
  if (sent < 0) {
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS)
      return core::Status::busy(fmt::format("udp: send to {}: {}", address, errno_text(err)));
    return core::Status::io(fmt::format("udp: send to {}: {}", address, errno_text(err)));
  }
  return core::Status::ok();
}

UdpReceiver::UdpReceiver(const config::UdpConfig& cfg, UdpSink sink, core::Registry& metrics)
    : impl_(std::make_unique<Impl>(cfg, std::move(sink), metrics)) {}
UdpReceiver::~UdpReceiver() = default;
core::Result<std::string> UdpReceiver::start() { return impl_->start(); }
void UdpReceiver::stop() { impl_->stop(); }
std::string UdpReceiver::local_address() const { return impl_->local_address(); }
core::Status UdpReceiver::send(const std::string& address, std::string_view payload) {
  return impl_->send(address, payload);
}

}  // namespace outpost::ingest
