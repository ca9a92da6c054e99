// The device password, the house id and the login rate limiter.

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include "auth/auth.hpp"

namespace outpost::auth {
namespace {

using namespace std::chrono_literals;

class PasswordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("outpost-login-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    cfg_.data_dir = dir_.string();
    auto s = store::Store::open(cfg_, nullptr);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(s.value());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  bool check(std::string_view password) {
    auto r = check_password(*store_, password);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() && *r;
  }
  std::filesystem::path dir_;
  config::StoreConfig cfg_;
  std::unique_ptr<store::Store> store_;
};

// ---- Password ----

TEST_F(PasswordTest, NoPasswordSetChecksFalseAndSaysSo) {
  EXPECT_FALSE(*has_password(*store_));
  EXPECT_FALSE(check("anything"));
  EXPECT_FALSE(check(""));
}

TEST_F(PasswordTest, SetThenCheckRightAndWrong) {
  ASSERT_TRUE(set_password(*store_, "correct horse battery staple").is_ok());
  EXPECT_TRUE(*has_password(*store_));
  EXPECT_TRUE(check("correct horse battery staple"));
  EXPECT_FALSE(check("correct horse battery stapl"));
  EXPECT_FALSE(check("correct horse battery staple "));
  EXPECT_FALSE(check("Correct horse battery staple"));
  EXPECT_FALSE(check(""));
}

TEST_F(PasswordTest, StoredAsAnArgon2idHashOnly) {
  ASSERT_TRUE(set_password(*store_, "hunter2hunter2").is_ok());
  auto stored = store_->get_setting("device_password");
  ASSERT_TRUE(stored.is_ok() && stored->has_value());
  EXPECT_EQ((*stored)->rfind("$argon2id$v=19$m=65536,t=2,p=1$", 0), 0u) << **stored;
  EXPECT_EQ((*stored)->find("hunter2"), std::string::npos);
  // Salted: the same password hashes differently each time.
  ASSERT_TRUE(set_password(*store_, "hunter2hunter2").is_ok());
  EXPECT_NE(**store_->get_setting("device_password"), **stored);
  EXPECT_TRUE(check("hunter2hunter2"));
}

TEST_F(PasswordTest, EmptyAndTooLongPasswordsAreRefused) {
  auto empty = set_password(*store_, "");
  EXPECT_EQ(empty.code(), core::Code::kInvalid);
  auto too_long = set_password(*store_, std::string(kMaxPasswordBytes + 1, 'p'));
  EXPECT_EQ(too_long.code(), core::Code::kInvalid);
  EXPECT_FALSE(*has_password(*store_));  // nothing stored

  const std::string longest(kMaxPasswordBytes, 'p');
  ASSERT_TRUE(set_password(*store_, longest).is_ok());
  EXPECT_TRUE(check(longest));
  EXPECT_FALSE(check(longest + "p"));  // refused without hashing
}

TEST_F(PasswordTest, ANewPasswordReplacesTheOld) {
  ASSERT_TRUE(set_password(*store_, "first one").is_ok());
  ASSERT_TRUE(set_password(*store_, "second one").is_ok());
  EXPECT_FALSE(check("first one"));
  EXPECT_TRUE(check("second one"));
}

TEST_F(PasswordTest, PasswordsMayHoldAnyBytes) {
  const std::string odd("p\0ss\xff w\xc3\xb6rd", 11);
  ASSERT_TRUE(set_password(*store_, odd).is_ok());
  EXPECT_TRUE(check(odd));
  EXPECT_FALSE(check(std::string_view(odd.data(), 1)));  // not cut at the NUL
}

TEST_F(PasswordTest, CorruptStoredHashIsAnInternalErrorNotAWrongPassword) {
  ASSERT_TRUE(store_->put_setting("device_password", "plaintext?").is_ok());
  auto r = check_password(*store_, "plaintext?");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), core::Code::kInternal);
}

TEST_F(PasswordTest, ConcurrentChecksAllSucceed) {
  ASSERT_TRUE(set_password(*store_, "shared secret").is_ok());
  std::atomic<int> right{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      auto r = check_password(*store_, i % 2 ? "shared secret" : "guess");
      ASSERT_TRUE(r.is_ok());
      (*r ? right : wrong).fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(right, 3);
  EXPECT_EQ(wrong, 3);
}

// ---- House id ----

TEST_F(PasswordTest, HouseIdIsStoredAndChecked) {
  auto none = get_house_id(*store_);
  ASSERT_TRUE(none.is_ok());
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(set_house_id(*store_, "house-42").is_ok());
  EXPECT_EQ(**get_house_id(*store_), "house-42");
  ASSERT_TRUE(set_house_id(*store_, "maison été").is_ok());
  EXPECT_EQ(**get_house_id(*store_), "maison été");
  for (const std::string& bad : {std::string(), std::string("a\nb"), std::string("tab\there"),
                                 std::string(257, 'h'), std::string("nul\0", 4)}) {
    EXPECT_EQ(set_house_id(*store_, bad).code(), core::Code::kInvalid) << bad;
  }
  EXPECT_EQ(**get_house_id(*store_), "maison été");
  EXPECT_TRUE(set_house_id(*store_, std::string(256, 'h')).is_ok());
}

// ---- Login limiter ----

const core::TimePoint kT0 = core::from_micros(1'700'000'000'000'000);

config::AuthConfig limits(int max_failures = 5, std::chrono::milliseconds window = 15min,
                          std::chrono::milliseconds lockout = 15min) {
  config::AuthConfig cfg;
  cfg.login_max_failures = max_failures;
  cfg.login_window = window;
  cfg.login_lockout = lockout;
  return cfg;
}

TEST(LoginLimiter, LocksOutAfterMaxFailuresWithinTheWindow) {
  LoginLimiter limiter(limits());
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(limiter.check("192.0.2.1", kT0 + i * 1s).is_ok()) << i;
    limiter.failure("192.0.2.1", kT0 + i * 1s);
  }
  EXPECT_TRUE(limiter.check("192.0.2.1", kT0 + 4s).is_ok());
  EXPECT_EQ(limiter.retry_after("192.0.2.1", kT0 + 4s), 0s);
  limiter.failure("192.0.2.1", kT0 + 4s);  // the fifth

  auto s = limiter.check("192.0.2.1", kT0 + 4s);
  EXPECT_EQ(s.code(), core::Code::kBusy);
  EXPECT_EQ(s.message(), "too many failed logins; try again in 900 s");
  EXPECT_EQ(limiter.retry_after("192.0.2.1", kT0 + 4s), 900s);
}

TEST(LoginLimiter, RetryAfterCountsDownInWholeSecondsRoundedUp) {
  LoginLimiter limiter(limits(5, 15min, 10min));
  for (int i = 0; i < 5; ++i) limiter.failure("a", kT0);
  EXPECT_EQ(limiter.retry_after("a", kT0), 600s);
  EXPECT_EQ(limiter.retry_after("a", kT0 + 1ms), 600s);
  EXPECT_EQ(limiter.retry_after("a", kT0 + 300s), 300s);
  EXPECT_EQ(limiter.retry_after("a", kT0 + 599s + 999ms), 1s);
  EXPECT_EQ(limiter.check("a", kT0 + 599s).message(), "too many failed logins; try again in 1 s");
  EXPECT_EQ(limiter.retry_after("a", kT0 + 600s), 0s);
  EXPECT_TRUE(limiter.check("a", kT0 + 600s).is_ok());
  EXPECT_EQ(limiter.retry_after("never-seen", kT0), 0s);
}

TEST(LoginLimiter, AfterTheLockoutTheClientStartsAfresh) {
  LoginLimiter limiter(limits());
  for (int i = 0; i < 5; ++i) limiter.failure("a", kT0);
  ASSERT_FALSE(limiter.check("a", kT0 + 899s).is_ok());
  ASSERT_TRUE(limiter.check("a", kT0 + 900s).is_ok());
  for (int i = 0; i < 4; ++i) limiter.failure("a", kT0 + 901s);
  EXPECT_TRUE(limiter.check("a", kT0 + 901s).is_ok());  // four fresh failures, not nine
  limiter.failure("a", kT0 + 901s);
  EXPECT_FALSE(limiter.check("a", kT0 + 901s).is_ok());
}

TEST(LoginLimiter, FailuresDuringTheLockoutDoNotExtendIt) {
  LoginLimiter limiter(limits());
  for (int i = 0; i < 5; ++i) limiter.failure("a", kT0);
  for (int i = 0; i < 20; ++i) limiter.failure("a", kT0 + 800s);
  EXPECT_EQ(limiter.retry_after("a", kT0 + 800s), 100s);
  EXPECT_TRUE(limiter.check("a", kT0 + 900s).is_ok());
}

TEST(LoginLimiter, SuccessClearsFailures) {
  LoginLimiter limiter(limits());
  for (int i = 0; i < 4; ++i) limiter.failure("a", kT0);
  limiter.success("a", kT0 + 1s);
  EXPECT_EQ(limiter.tracked(), 0u);
  for (int i = 0; i < 4; ++i) limiter.failure("a", kT0 + 2s);
  EXPECT_TRUE(limiter.check("a", kT0 + 2s).is_ok());
}

TEST(LoginLimiter, FailuresOutsideTheSlidingWindowAreForgotten) {
  LoginLimiter limiter(limits());
  // Four failures spread over 14 minutes, then more after the first has left the window.
  for (auto t : {0min, 5min, 10min, 14min}) limiter.failure("a", kT0 + t);
  limiter.failure("a", kT0 + 15min);  // the one at 0 is exactly window old: gone
  EXPECT_TRUE(limiter.check("a", kT0 + 15min).is_ok());
  limiter.failure("a", kT0 + 16min);  // 5, 10, 14, 15, 16: five within 15 minutes
  EXPECT_EQ(limiter.check("a", kT0 + 16min).code(), core::Code::kBusy);

  LoginLimiter slow(limits());
  for (int i = 0; i < 20; ++i) {  // one failure every 4 minutes never reaches five per 15
    slow.failure("b", kT0 + i * 4min);
    EXPECT_TRUE(slow.check("b", kT0 + i * 4min).is_ok()) << i;
  }
}

TEST(LoginLimiter, ClientsAreIsolated) {
  LoginLimiter limiter(limits());
  for (int i = 0; i < 5; ++i) limiter.failure("192.0.2.1", kT0);
  for (int i = 0; i < 4; ++i) limiter.failure("192.0.2.2", kT0);
  EXPECT_FALSE(limiter.check("192.0.2.1", kT0).is_ok());
  EXPECT_TRUE(limiter.check("192.0.2.2", kT0).is_ok());
  EXPECT_TRUE(limiter.check("192.0.2.3", kT0).is_ok());
  limiter.success("192.0.2.2", kT0);
  EXPECT_FALSE(limiter.check("192.0.2.1", kT0).is_ok());
}

TEST(LoginLimiter, SuggestsAGrowingDelayBeforeTheLockout) {
  LoginLimiter limiter(limits());
  EXPECT_EQ(limiter.failure("a", kT0), 0ms);
  EXPECT_EQ(limiter.failure("a", kT0), 250ms);
  EXPECT_EQ(limiter.failure("a", kT0), 500ms);
  EXPECT_EQ(limiter.failure("a", kT0), 1000ms);
  EXPECT_EQ(limiter.failure("a", kT0), 0ms);  // locked out now

  LoginLimiter patient(limits(10));
  std::vector<std::chrono::milliseconds> delays;
  for (int i = 0; i < 9; ++i) delays.push_back(patient.failure("b", kT0));
  EXPECT_EQ(delays,
            (std::vector<std::chrono::milliseconds>{0ms, 250ms, 500ms, 1s, 2s, 2s, 2s, 2s, 2s}));
}

TEST(LoginLimiter, MemoryIsBoundedAndOldestClientsGoFirst) {
  LoginLimiter limiter(limits(), 100);
  for (int i = 0; i < 1000; ++i) limiter.failure("client-" + std::to_string(i), kT0 + i * 1ms);
  EXPECT_EQ(limiter.tracked(), 100u);
  // The most recent clients are still counted: four more failures lock the newest out.
  for (int i = 0; i < 4; ++i) limiter.failure("client-999", kT0 + 1s);
  EXPECT_FALSE(limiter.check("client-999", kT0 + 1s).is_ok());
  // A failure by a client seen again moves it to the front, so it survives new clients.
  for (int i = 0; i < 4; ++i) limiter.failure("client-900", kT0 + 2s);
  for (int i = 0; i < 99; ++i) limiter.failure("new-" + std::to_string(i), kT0 + 3s);
  EXPECT_EQ(limiter.tracked(), 100u);
  limiter.failure("client-900", kT0 + 4s);
  EXPECT_FALSE(limiter.check("client-900", kT0 + 4s).is_ok());
}

TEST(LoginLimiter, ExpiredEntriesAreDropped) {
  LoginLimiter limiter(limits(5, 10min, 15min));
  for (int i = 0; i < 50; ++i) limiter.failure("c" + std::to_string(i), kT0);
  for (int i = 0; i < 5; ++i) limiter.failure("locked", kT0);
  EXPECT_EQ(limiter.tracked(), 51u);
  EXPECT_TRUE(limiter.check("someone", kT0 + 14min).is_ok());
  EXPECT_EQ(limiter.tracked(), 51u);  // the lockout outlasts the window: nothing expired yet
  EXPECT_TRUE(limiter.check("someone", kT0 + 15min).is_ok());
  EXPECT_EQ(limiter.tracked(), 0u);
}

TEST(LoginLimiter, ZeroMaxFailuresNeverLocksOut) {
  LoginLimiter limiter(limits(0));
  for (int i = 0; i < 1000; ++i) limiter.failure("a", kT0);
  EXPECT_TRUE(limiter.check("a", kT0).is_ok());
  EXPECT_EQ(limiter.failure("a", kT0), 2s);
}

TEST(LoginLimiter, ConcurrentFailuresAreAllCounted) {
  LoginLimiter limiter(limits(40));
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        limiter.failure("shared", kT0);                    // 8 x 5 = 40: exactly the limit
        limiter.failure("own-" + std::to_string(t), kT0);  // 5 each: far from it
        (void)limiter.check("shared", kT0);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(limiter.check("shared", kT0).is_ok());
  for (int t = 0; t < 8; ++t) EXPECT_TRUE(limiter.check("own-" + std::to_string(t), kT0).is_ok());
  EXPECT_EQ(limiter.tracked(), 9u);
}

TEST(LoginClientKey, GroupsIpv6By64AndUnmapsIpv4) {
  EXPECT_EQ(login_client_key("192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(login_client_key("::ffff:192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(login_client_key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  EXPECT_EQ(login_client_key("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(login_client_key("[2001:db8::1]"), "2001:db8::/64");
  EXPECT_EQ(login_client_key("fe80::1%eth0"), "fe80::/64");
  EXPECT_EQ(login_client_key("not an address"), "not an address");
  EXPECT_EQ(login_client_key(""), "");
}

}  // namespace
}  // namespace outpost::auth
