// Saved snapshots on disk.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "camera/camera.hpp"

namespace outpost::camera {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPrefix = "snapshot-";
constexpr std::string_view kSuffix = ".jpg";
// "YYYYMMDDTHHMMSS.uuuuuuZ"
constexpr size_t kStampLen = 23;

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The time and seq encoded in a valid name.
struct Parsed {
  core::TimePoint ts;
  uint64_t seq = 0;
};

std::optional<Parsed> parse_name(std::string_view name) {
  if (!SnapshotStore::valid_name(std::string(name))) return std::nullopt;
  std::string_view stamp = name.substr(kPrefix.size(), kStampLen);
  // Back to ISO 8601 for core::parse_iso8601, which also rejects impossible dates.
  std::string iso;
  iso.append(stamp.substr(0, 4)).append("-").append(stamp.substr(4, 2)).append("-");
  iso.append(stamp.substr(6, 2)).append("T").append(stamp.substr(9, 2)).append(":");
  iso.append(stamp.substr(11, 2)).append(":").append(stamp.substr(13, 10));
  auto ts = core::parse_iso8601(iso);
  if (!ts) return std::nullopt;
  std::string_view seq = name.substr(kPrefix.size() + kStampLen + 1);
  seq.remove_suffix(kSuffix.size());
  Parsed p{*ts, 0};
  auto r = std::from_chars(seq.data(), seq.data() + seq.size(), p.seq);
  if (r.ec != std::errc()) return std::nullopt;
  return p;
}

std::string make_name(const JpegFrame& frame) {
  std::string iso = core::format_iso8601(frame.ts);  // 2026-11-21T23:59:59.123456Z
  std::string stamp;
  for (char c : iso)
    if (c != '-' && c != ':') stamp += c;
  return std::string(kPrefix) + stamp + "-" + std::to_string(frame.seq) + std::string(kSuffix);
}

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

struct Entry {
  std::string name;
  Parsed parsed;
  uint64_t size;
};

// Valid names that are regular files (lstat: a symlink is never one), oldest first.
core::Result<std::vector<Entry>> scan(const std::string& dir) {
  std::vector<Entry> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return out;
    return core::Status::io("snapshots: cannot list " + dir + ": " + ec.message());
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return core::Status::io("snapshots: cannot list " + dir + ": " + ec.message());
    std::string name = it->path().filename().string();
    auto parsed = parse_name(name);
    if (!parsed) continue;
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    out.push_back({std::move(name), *parsed, static_cast<uint64_t>(st.st_size)});
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) {
    if (a.parsed.ts != b.parsed.ts) return a.parsed.ts < b.parsed.ts;
    return a.parsed.seq < b.parsed.seq;
  });
  return out;
}

}  // namespace

SnapshotStore::SnapshotStore(std::string dir, size_t max_count, size_t max_bytes)
    : dir_(std::move(dir)), max_count_(max_count), max_bytes_(max_bytes) {}

bool SnapshotStore::valid_name(const std::string& name) {
  // snapshot-YYYYMMDDTHHMMSS.uuuuuuZ-<1..20 digits>.jpg, checked position by position: no
  // other character can get in, so no '/', no "..", no leading '.'.
  const size_t min_len = kPrefix.size() + kStampLen + 1 + 1 + kSuffix.size();
  if (name.size() < min_len || name.size() > min_len + 19) return false;
  std::string_view n(name);
  if (n.substr(0, kPrefix.size()) != kPrefix) return false;
  if (n.substr(n.size() - kSuffix.size()) != kSuffix) return false;
  std::string_view stamp = n.substr(kPrefix.size(), kStampLen);
  if (!all_digits(stamp.substr(0, 8)) || stamp[8] != 'T' || !all_digits(stamp.substr(9, 6)) ||
      stamp[15] != '.' || !all_digits(stamp.substr(16, 6)) || stamp[22] != 'Z')
    return false;
  if (n[kPrefix.size() + kStampLen] != '-') return false;
  std::string_view seq = n.substr(kPrefix.size() + kStampLen + 1);
  seq.remove_suffix(kSuffix.size());
  return all_digits(seq);
}

core::Result<std::string> SnapshotStore::save(const JpegFrame& frame) {
  std::lock_guard lk(mu_);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return core::Status::io("snapshots: cannot create " + dir_ + ": " + ec.message());

  const std::string name = make_name(frame);
  const std::string final_path = dir_ + "/" + name;
  // A leading dot keeps a half-written file out of list(); the counter keeps two stores in
  // one process (tests) apart.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp_path = dir_ + "/.tmp-" + std::to_string(::getpid()) + "-" +
                               std::to_string(counter.fetch_add(1)) + "-" + name;
  int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    return core::Status::io("snapshots: cannot create " + tmp_path + ": " + errno_text(errno));
  const char* p = frame.data.data();
  size_t left = frame.data.size();
  int err = 0;
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  // fdatasync before rename: after a power cut the name must not point at an empty file.
  if (err == 0 && ::fdatasync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp_path.c_str(), final_path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp_path.c_str());
    return core::Status::io("snapshots: cannot write " + final_path + ": " + errno_text(err));
  }

  auto entries = scan(dir_);
  if (!entries) return name;  // saved; retention runs again with the next save
  uint64_t total_bytes = 0;
  for (const auto& e : *entries) total_bytes += e.size;
  size_t count = entries->size();
  for (const auto& e : *entries) {
    const bool over_count = max_count_ > 0 && count > max_count_;
    const bool over_bytes = max_bytes_ > 0 && total_bytes > max_bytes_;
    if (!over_count && !over_bytes) break;
    if (e.name == name) continue;  // the snapshot just saved stays
    if (::unlink((dir_ + "/" + e.name).c_str()) == 0 || errno == ENOENT) {
      --count;
      total_bytes -= e.size;
    }
  }
  return name;
}

core::Result<std::vector<SnapshotInfo>> SnapshotStore::list(size_t offset, size_t limit,
                                                            size_t* total) const {
  std::lock_guard lk(mu_);
  auto entries = scan(dir_);
  if (!entries) return entries.status();
  if (total) *total = entries->size();
  std::vector<SnapshotInfo> out;
  const size_t n = entries->size();
  for (size_t i = offset; i < n && out.size() < limit; ++i) {
    const Entry& e = (*entries)[n - 1 - i];
    out.push_back({e.name, e.parsed.ts, e.size});
  }
  return out;
}

core::Result<std::string> SnapshotStore::read(const std::string& name) const {
  if (!valid_name(name)) return core::Status::invalid("not a snapshot name: " + name);
  std::lock_guard lk(mu_);
  const std::string path = dir_ + "/" + name;
  // O_NOFOLLOW refuses a symlink at the last component; fstat then insists on a regular file
  // (not a FIFO that would block, nor a directory).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT || errno == ELOOP) return core::Status::not_found("no snapshot " + name);
    return core::Status::io("snapshots: cannot open " + name + ": " + errno_text(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return core::Status::not_found("no snapshot " + name);
  }
  std::string data;
  data.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (got != data.size()) return core::Status::io("snapshots: " + name + " changed while read");
  return data;
}

core::Status SnapshotStore::remove(const std::string& name) {
  if (!valid_name(name)) return core::Status::invalid("not a snapshot name: " + name);
  std::lock_guard lk(mu_);
  const std::string path = dir_ + "/" + name;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return core::Status::not_found("no snapshot " + name);
    return core::Status::io("snapshots: cannot stat " + name + ": " + errno_text(errno));
  }
  if (!S_ISREG(st.st_mode)) return core::Status::not_found("no snapshot " + name);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return core::Status::not_found("no snapshot " + name);
    return core::Status::io("snapshots: cannot remove " + name + ": " + errno_text(errno));
  }
  return core::Status::ok();
}

}  // namespace outpost::camera
