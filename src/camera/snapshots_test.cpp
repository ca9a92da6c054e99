#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "camera/camera.hpp"
#include "camera/camera_test_util.hpp"

namespace outpost::camera {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::TempDir;

const core::TimePoint kT0 = *core::parse_iso8601("2026-11-21T23:59:59.123456Z");

JpegFrame frame(core::TimePoint ts, uint64_t seq, size_t size = 100) {
  JpegFrame f;
  f.ts = ts;
  f.seq = seq;
  f.data = std::string(size, static_cast<char>('a' + seq % 26));
  return f;
}

void write_file(const fs::path& p, const std::string& data) { std::ofstream(p) << data; }

TEST(SnapshotStore, SavesListsReadsAndRemoves) {
  TempDir dir;
  SnapshotStore store((dir.path() / "snaps").string(), 100, 1 << 20);  // created on demand
  auto name = store.save(frame(kT0, 7));
  ASSERT_TRUE(name) << name.status().to_string();
  EXPECT_EQ(*name, "snapshot-20261121T235959.123456Z-7.jpg");
  size_t total = 99;
  auto list = store.list(0, 10, &total);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(total, 1u);
  EXPECT_EQ((*list)[0].name, *name);
  EXPECT_EQ((*list)[0].ts, kT0);
  EXPECT_EQ((*list)[0].size, 100u);
  auto data = store.read(*name);
  ASSERT_TRUE(data);
  EXPECT_EQ(*data, std::string(100, 'h'));
  EXPECT_TRUE(store.remove(*name).is_ok());
  EXPECT_EQ(store.read(*name).status().code(), core::Code::kNotFound);
  EXPECT_EQ(store.remove(*name).code(), core::Code::kNotFound);
  EXPECT_TRUE(store.list(0, 10, &total)->empty());
  EXPECT_EQ(total, 0u);
}

TEST(SnapshotStore, AMissingDirectoryListsNothing) {
  TempDir dir;
  SnapshotStore store((dir.path() / "none").string(), 10, 0);
  size_t total = 5;
  auto list = store.list(0, 10, &total);
  ASSERT_TRUE(list);
  EXPECT_TRUE(list->empty());
  EXPECT_EQ(total, 0u);
}

TEST(SnapshotStore, ListsNewestFirstWithPaging) {
  TempDir dir;
  SnapshotStore store(dir.path().string(), 0, 0);
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(store.save(frame(kT0 + i * 1s, i)));
  ASSERT_TRUE(store.save(frame(kT0 + 5s, 10)));  // same time, higher seq: newer
  size_t total = 0;
  auto page = store.list(1, 2, &total);
  ASSERT_TRUE(page);
  EXPECT_EQ(total, 6u);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].name, "snapshot-20261122T000004.123456Z-5.jpg");
  EXPECT_EQ((*page)[1].name, "snapshot-20261122T000003.123456Z-4.jpg");
  EXPECT_EQ(store.list(0, 1, nullptr)->at(0).name, "snapshot-20261122T000004.123456Z-10.jpg");
  EXPECT_TRUE(store.list(6, 10, nullptr)->empty());
}

TEST(SnapshotStore, RetentionByCountRemovesTheOldest) {
  TempDir dir;
  SnapshotStore store(dir.path().string(), 3, 0);
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(store.save(frame(kT0 + i * 1s, i)));
  size_t total = 0;
  auto list = store.list(0, 10, &total);
  ASSERT_EQ(total, 3u);
  EXPECT_EQ((*list)[2].name, "snapshot-20261122T000002.123456Z-3.jpg");
}

TEST(SnapshotStore, RetentionByBytesRemovesTheOldestButKeepsTheNewest) {
  TempDir dir;
  SnapshotStore store(dir.path().string(), 0, 2500);
  for (uint64_t i = 1; i <= 4; ++i) ASSERT_TRUE(store.save(frame(kT0 + i * 1s, i, 1000)));
  size_t total = 0;
  auto list = store.list(0, 10, &total);
  EXPECT_EQ(total, 2u);
  EXPECT_EQ((*list)[0].name, "snapshot-20261122T000003.123456Z-4.jpg");
  // One bigger than the whole budget is still kept: it is the newest.
  ASSERT_TRUE(store.save(frame(kT0 + 9s, 9, 5000)));
  list = store.list(0, 10, &total);
  EXPECT_EQ(total, 1u);
  EXPECT_EQ((*list)[0].size, 5000u);
}

TEST(SnapshotStore, ValidNameAcceptsOnlyTheExactPattern) {
  for (std::string ok : {"snapshot-20261121T235959.123456Z-7.jpg",
                         "snapshot-20261121T235959.123456Z-18446744073709551615.jpg"})
    EXPECT_TRUE(SnapshotStore::valid_name(ok)) << ok;
  for (std::string bad :
       {"", "snapshot-.jpg", "../snapshot-20261121T235959.123456Z-7.jpg",
        "snapshot-20261121T235959.123456Z-7.jpg/..", "/etc/passwd", "..", ".",
        ".snapshot-20261121T235959.123456Z-7.jpg", "snapshot-20261121T235959.123456Z-7.jpg.tmp",
        "snapshot-20261121T235959.123456Z-.jpg", "snapshot-20261121T235959.123456Z-7a.jpg",
        "snapshot-20261121T235959.123456Z-184467440737095516150.jpg",
        "snapshot-2026112xT235959.123456Z-7.jpg", "snapshot-20261121 235959.123456Z-7.jpg",
        "snapshot-20261121T235959.123456Z-7.JPG", "snapshot-20261121T235959.123456Z-7.jpg\n",
        "snapshot-20261121T235959.123456Z/..-7.jpg", "Snapshot-20261121T235959.123456Z-7.jpg"})
    EXPECT_FALSE(SnapshotStore::valid_name(bad)) << bad;
}

TEST(SnapshotStore, MalformedNamesAreInvalid) {
  TempDir dir;
  SnapshotStore store(dir.path().string(), 0, 0);
  EXPECT_EQ(store.read("../etc/passwd").status().code(), core::Code::kInvalid);
  EXPECT_EQ(store.remove("../etc/passwd").code(), core::Code::kInvalid);
  EXPECT_EQ(store.read("snapshot-x.jpg").status().code(), core::Code::kInvalid);
}

TEST(SnapshotStore, NeverFollowsASymlinkOrReadsADirectory) {
  TempDir dir;
  const fs::path snaps = dir.path() / "snaps";
  fs::create_directories(snaps);
  const fs::path secret = dir.path() / "secret.txt";
  write_file(secret, "secret");
  const std::string link = "snapshot-20261121T235959.123456Z-1.jpg";
  fs::create_symlink(secret, snaps / link);
  const std::string subdir = "snapshot-20261121T235959.123456Z-2.jpg";
  fs::create_directory(snaps / subdir);
  write_file(snaps / ".tmp-1-0-snapshot-20261121T235959.123456Z-3.jpg", "half");
  write_file(snaps / "notes.txt", "other");

  SnapshotStore store(snaps.string(), 1, 0);
  EXPECT_EQ(store.read(link).status().code(), core::Code::kNotFound);
  EXPECT_EQ(store.read(subdir).status().code(), core::Code::kNotFound);
  EXPECT_EQ(store.remove(link).code(), core::Code::kNotFound);
  EXPECT_EQ(store.remove(subdir).code(), core::Code::kNotFound);
  size_t total = 9;
  EXPECT_TRUE(store.list(0, 10, &total)->empty());
  EXPECT_EQ(total, 0u);
  // Retention (max_count 1) leaves what is not a snapshot file alone.
  ASSERT_TRUE(store.save(frame(kT0 + 1s, 4)));
  ASSERT_TRUE(store.save(frame(kT0 + 2s, 5)));
  EXPECT_TRUE(fs::is_symlink(snaps / link));
  EXPECT_TRUE(fs::is_directory(snaps / subdir));
  EXPECT_TRUE(fs::exists(snaps / "notes.txt"));
  std::ifstream in(secret);
  std::string s;
  in >> s;
  EXPECT_EQ(s, "secret");
  EXPECT_EQ(store.list(0, 10, &total)->size(), 1u);
}

}  // namespace
}  // namespace outpost::camera
