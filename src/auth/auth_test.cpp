#include "auth/auth.hpp"

#include <gtest/gtest.h>

#include <filesystem>

namespace outpost::auth {
namespace {

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("outpost-auth-" + std::to_string(::getpid()) + "-" +
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
  std::filesystem::path dir_;
  config::StoreConfig cfg_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(AuthTest, ScopesNest) {
  EXPECT_TRUE(allows(Scope::kAdmin, Scope::kRead));
  EXPECT_TRUE(allows(Scope::kControl, Scope::kControl));
  EXPECT_FALSE(allows(Scope::kRead, Scope::kControl));
  EXPECT_FALSE(allows(Scope::kControl, Scope::kAdmin));
  EXPECT_EQ(parse_scope("control"), Scope::kControl);
  EXPECT_FALSE(parse_scope("root"));
}

TEST_F(AuthTest, CreatedKeyAuthenticatesAndIsStoredOnlyAsHash) {
  auto k = create_key(*store_, Scope::kControl, "ci");
  ASSERT_TRUE(k.is_ok()) << k.status().to_string();
  EXPECT_GE(k->key.size(), 32u);
  EXPECT_EQ(k->key.rfind(key_prefix(k->record.id) + "_", 0), 0u);
  auto listed = store_->list_keys();
  ASSERT_TRUE(listed.is_ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].hash.size(), 32u);
  EXPECT_EQ((*listed)[0].hash.find(k->key), std::string::npos);

  Authenticator a(*store_, nullptr);
  auto p = a.authenticate(k->key);
  ASSERT_TRUE(p.is_ok());
  EXPECT_EQ(p->scope, Scope::kControl);
  EXPECT_EQ(p->name, "ci");
}

TEST_F(AuthTest, RejectsWrongMissingMalformedAndTamperedKeys) {
  auto k = create_key(*store_, Scope::kRead, "r");
  ASSERT_TRUE(k.is_ok());
  Authenticator a(*store_, nullptr);
  std::string tampered = k->key;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  for (const std::string& bad : {std::string(), std::string("nonsense"), std::string("opk_"), tampered,
                                 k->key + "x", k->key.substr(0, k->key.size() - 1)}) {
    auto r = a.authenticate(bad);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), core::Code::kUnauthorized);
  }
}

TEST_F(AuthTest, RevokedKeyStopsWorkingAfterRefresh) {
  auto k = create_key(*store_, Scope::kAdmin, "gone");
  ASSERT_TRUE(k.is_ok());
  Authenticator a(*store_, nullptr);
  ASSERT_TRUE(a.authenticate(k->key).is_ok());
  ASSERT_TRUE(store_->revoke_key(k->record.id));
  a.refresh();
  EXPECT_FALSE(a.authenticate(k->key).is_ok());
  EXPECT_FALSE(a.has_active_key());
}

TEST_F(AuthTest, KeyCreatedByAnotherProcessIsSeenWithoutRestart) {
  Authenticator a(*store_, nullptr);
  EXPECT_FALSE(a.has_active_key());
  auto other = store::Store::open(cfg_, nullptr);  // stands in for the `outpost keys` CLI
  ASSERT_TRUE(other.is_ok());
  auto k = create_key(**other, Scope::kRead, "cli");
  ASSERT_TRUE(k.is_ok());
  EXPECT_TRUE(a.authenticate(k->key).is_ok());  // the miss triggers a reload
}

}  // namespace
}  // namespace outpost::auth
