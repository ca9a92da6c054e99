// Login tokens: format, verification, persistence of the secret, and the Authenticator.

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "auth/auth.hpp"

namespace outpost::auth {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

const std::string kSecret = "0123456789abcdef0123456789ABCDEF";        // 32 bytes
const core::TimePoint kT0 = core::from_micros(1'700'000'000'123'456);  // 2023-11-14, mid-second

// Written independently of token.cpp (OpenSSL rather than libsodium for the MAC) so that the
// tests pin the wire format rather than restate the implementation.
std::string b64url(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

std::string unb64url(std::string text) {
  for (char& c : text) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (text.size() % 4) text += '=';
  std::string out(text.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  EXPECT_GE(n, 0);
  out.resize(static_cast<size_t>(std::max(n, 0)));
  while (!text.empty() && text.back() == '=') {  // EVP_DecodeBlock keeps padding's zero bytes
    text.pop_back();
    out.pop_back();
  }
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

// A token with any header and payload text, correctly signed with `key`.
std::string sign(const std::string& header, const std::string& payload,
                 const std::string& key = kSecret) {
  std::string input = b64url(header) + "." + b64url(payload);
  return input + "." + b64url(hmac_sha256(key, input));
}

const std::string kHeader = R"({"alg":"HS256","typ":"JWT"})";

std::vector<std::string> split(const std::string& token) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot; (dot = token.find('.', start)) != std::string::npos; start = dot + 1)
    parts.push_back(token.substr(start, dot - start));
  parts.push_back(token.substr(start));
  return parts;
}

TokenIssuer issuer(const std::string& secret = kSecret) {
  auto r = TokenIssuer::from_secret(secret);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return std::move(r).value();
}

void expect_invalid(const TokenIssuer& t, const std::string& token, core::TimePoint now = kT0) {
  auto r = t.verify(token, now);
  ASSERT_FALSE(r.is_ok()) << token;
  EXPECT_EQ(r.status().code(), core::Code::kUnauthorized) << token;
  EXPECT_EQ(r.status().message(), "token invalid") << token;
  EXPECT_EQ(r.status().message(), kInvalidToken);
}

// ---- Format and verification ----

TEST(Token, RoundTripsSubjectAndScope) {
  auto t = issuer();
  for (Scope scope : {Scope::kRead, Scope::kControl, Scope::kAdmin}) {
    auto p = t.verify(t.issue("house-1", scope, 24h, kT0), kT0);
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    EXPECT_EQ(p->key_id, "token:house-1");
    EXPECT_EQ(p->name, "house-1");
    EXPECT_EQ(p->scope, scope);
  }
}

TEST(Token, IsAStandardHs256JwtWithSecondTimestamps) {
  std::string token = issuer().issue("house-1", Scope::kControl, 24h, kT0);
  auto parts = split(token);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");  // {"alg":"HS256","typ":"JWT"}
  EXPECT_EQ(unb64url(parts[0]), kHeader);
  EXPECT_EQ(token.find_first_of("=+/ "), std::string::npos);

  json payload = json::parse(unb64url(parts[1]));
  EXPECT_EQ(payload, json::parse(R"({"sub":"house-1","scope":"control","iat":1700000000,)"
                                 R"("exp":1700086400})"));
  EXPECT_EQ(parts[2], b64url(hmac_sha256(kSecret, parts[0] + "." + parts[1])));
}

TEST(Token, ExpiresAtExp) {
  auto t = issuer();
  std::string token = t.issue("h", Scope::kRead, 24h, kT0);
  const auto exp = core::from_micros(1'700'086'400'000'000);  // kT0 + 24 h, rounded down
  EXPECT_TRUE(t.verify(token, exp - 1us).is_ok());
  EXPECT_TRUE(t.verify(token, kT0 - 1h).is_ok());  // a clock set back does not matter
  for (auto now : {exp, exp + 1s, kT0 + 48h}) {
    auto r = t.verify(token, now);
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), core::Code::kUnauthorized);
    EXPECT_EQ(r.status().message(), "token expired");
    EXPECT_EQ(r.status().message(), kExpiredToken);
  }
  auto zero = t.verify(t.issue("h", Scope::kRead, 0ms, kT0), kT0);
  EXPECT_EQ(zero.status().message(), kExpiredToken);
}

TEST(Token, TamperedPartsAreInvalid) {
  auto t = issuer();
  std::string token = t.issue("house-1", Scope::kRead, 24h, kT0);
  auto parts = split(token);

  // A payload that asks for more, with the original signature.
  std::string admin =
      b64url(R"({"sub":"house-1","scope":"admin","iat":1700000000,"exp":1700086400})");
  expect_invalid(t, parts[0] + "." + admin + "." + parts[2]);
  // A later expiry, with the original signature.
  std::string later =
      b64url(R"({"sub":"house-1","scope":"read","iat":1700000000,"exp":1900086400})");
  expect_invalid(t, parts[0] + "." + later + "." + parts[2]);

  // Every single-character change anywhere in the token.
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] == '.') continue;
    std::string bad = token;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    expect_invalid(t, bad);
  }
  // The signature cut short, extended, padded, or missing.
  expect_invalid(t, token.substr(0, token.size() - 1));
  expect_invalid(t, token + "A");
  expect_invalid(t, token + "=");
  expect_invalid(t, parts[0] + "." + parts[1] + ".");
  expect_invalid(t, parts[0] + "." + parts[1]);
}

TEST(Token, OtherAlgorithmsAreInvalidEvenWhenTheMacMatches) {
  auto t = issuer();
  const std::string payload = R"({"sub":"x","scope":"admin","iat":1700000000,"exp":1900000000})";
  // The classic: alg "none" with no signature.
  expect_invalid(t, b64url(R"({"alg":"none","typ":"JWT"})") + "." + b64url(payload) + ".");
  // Headers naming another algorithm, yet carrying a valid HMAC-SHA256 under our secret.
  for (const char* header :
       {R"({"alg":"none","typ":"JWT"})", R"({"alg":"HS512","typ":"JWT"})",
        R"({"alg":"hs256","typ":"JWT"})", R"({"typ":"JWT"})", R"({"alg":256,"typ":"JWT"})",
        R"({"alg":"HS256","typ":"JWS"})", R"(["HS256"])", "HS256", ""}) {
    expect_invalid(t, sign(header, payload));
  }
  // The control: the same payload under the right header is accepted.
  EXPECT_TRUE(t.verify(sign(kHeader, payload), kT0).is_ok());
  EXPECT_TRUE(t.verify(sign(R"({"alg":"HS256"})", payload), kT0).is_ok());  // typ is optional
}

TEST(Token, SignedButMalformedPayloadsAreInvalid) {
  auto t = issuer();
  for (const char* payload : {
           "",
           "not json",
           R"({"sub":"x","scope":"read","iat":1700000000,"exp":1900000000)",  // truncated
           "[]",
           "null",
           R"("a string")",
           R"({"scope":"read","iat":1700000000,"exp":1900000000})",            // no sub
           R"({"sub":7,"scope":"read","iat":1700000000,"exp":1900000000})",    // sub not a string
           R"({"sub":"x","iat":1700000000,"exp":1900000000})",                 // no scope
           R"({"sub":"x","scope":"root","iat":1700000000,"exp":1900000000})",  // unknown scope
           R"({"sub":"x","scope":3,"iat":1700000000,"exp":1900000000})",
           R"({"sub":"x","scope":"read","exp":1900000000})",  // no iat
           R"({"sub":"x","scope":"read","iat":1700000000})",  // no exp
           R"({"sub":"x","scope":"read","iat":1700000000,"exp":"1900000000"})",
           R"({"sub":"x","scope":"read","iat":1700000000,"exp":1.9e9})",
           R"({"sub":"x","scope":"read","iat":1700000000,"exp":-1})",
           R"({"sub":"x","scope":"read","iat":1700000000,"exp":99999999999999999999})",
           R"({"sub":"x","scope":"read","iat":1700000000,"exp":9223372036854775807})",
           R"({"sub":"x","scope":"read","iat":null,"exp":1900000000})",
       }) {
    expect_invalid(t, sign(kHeader, payload));
  }
}

TEST(Token, GarbageIsInvalid) {
  auto t = issuer();
  std::string valid = t.issue("h", Scope::kRead, 24h, kT0);
  for (const std::string& bad :
       {std::string(), std::string("a"), std::string("a.b"), std::string("a.b.c"),
        std::string("a.b.c.d"), std::string(".."), std::string("..."),
        std::string("Bearer ") + valid, valid + "." + valid, " " + valid, valid + "\n",
        std::string(5000, 'a'), std::string(valid.size(), '.'), std::string("\0\0\0", 3),
        std::string("opk_nope")}) {
    expect_invalid(t, bad);
  }
}

TEST(Token, OverlongTokensAreInvalidWithoutVerifying) {
  auto t = issuer();
  std::string big_subject(4000, 's');
  std::string token = t.issue(big_subject, Scope::kRead, 24h, kT0);
  ASSERT_GT(token.size(), 4096u);
  expect_invalid(t, token);
}

TEST(Token, AnotherSecretsTokenIsInvalid) {
  auto mine = issuer();
  auto theirs = issuer("ffffffffffffffffffffffffffffffff");
  expect_invalid(mine, theirs.issue("house-1", Scope::kAdmin, 24h, kT0));
  expect_invalid(theirs, mine.issue("house-1", Scope::kAdmin, 24h, kT0));
}

TEST(Token, SubjectsWithQuotesUnicodeAndBadUtf8) {
  auto t = issuer();
  for (const std::string& subject :
       {std::string(R"(a "quoted" \ name)"), std::string("maison-été"), std::string()}) {
    auto p = t.verify(t.issue(subject, Scope::kRead, 1h, kT0), kT0);
    ASSERT_TRUE(p.is_ok()) << subject;
    EXPECT_EQ(p->name, subject);
  }
  auto p = t.verify(t.issue("bad\xff", Scope::kRead, 1h, kT0), kT0);  // replaced, not thrown
  ASSERT_TRUE(p.is_ok());
  EXPECT_EQ(p->name, "bad\xEF\xBF\xBD");
}

TEST(Token, SecretMustBe32Bytes) {
  for (size_t n : {0, 16, 31, 33, 64}) {
    auto r = TokenIssuer::from_secret(std::string(n, 'k'));
    ASSERT_FALSE(r.is_ok()) << n;
    EXPECT_EQ(r.status().code(), core::Code::kInvalid);
  }
}

// ---- With a store ----

class TokenStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("outpost-token-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    cfg_.data_dir = dir_.string();
    open();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void open() {
    store_.reset();
    auto s = store::Store::open(cfg_, nullptr);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(s.value());
  }
  std::filesystem::path dir_;
  config::StoreConfig cfg_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(TokenStoreTest, SecretIsCreatedOnceAndSurvivesRestarts) {
  auto first = TokenIssuer::load_or_create(*store_);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  auto stored = store_->get_setting("token_secret");
  ASSERT_TRUE(stored.is_ok());
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->size(), 64u);
  EXPECT_EQ((*stored)->find_first_not_of("0123456789abcdef"), std::string::npos);

  std::string token = first->issue("house-1", Scope::kControl, 24h, kT0);
  auto second = TokenIssuer::load_or_create(*store_);
  ASSERT_TRUE(second.is_ok());
  EXPECT_TRUE(second->verify(token, kT0).is_ok());
  EXPECT_EQ(*store_->get_setting("token_secret"), *stored);  // not replaced

  open();  // a restart
  auto third = TokenIssuer::load_or_create(*store_);
  ASSERT_TRUE(third.is_ok());
  auto p = third->verify(token, kT0 + 1h);
  ASSERT_TRUE(p.is_ok());
  EXPECT_EQ(p->scope, Scope::kControl);
}

TEST_F(TokenStoreTest, EachStoreGetsItsOwnRandomSecret) {
  auto a = TokenIssuer::load_or_create(*store_);
  ASSERT_TRUE(a.is_ok());
  std::string token = a->issue("h", Scope::kRead, 24h, kT0);
  ASSERT_TRUE(store_->put_setting("token_secret", std::string(64, '0')).is_ok());
  auto b = TokenIssuer::load_or_create(*store_);
  ASSERT_TRUE(b.is_ok());
  expect_invalid(*b, token);
}

TEST_F(TokenStoreTest, RotateRevokesEveryEarlierToken) {
  auto before = TokenIssuer::load_or_create(*store_);
  ASSERT_TRUE(before.is_ok());
  std::string old_token = before->issue("h", Scope::kAdmin, 24h, kT0);
  auto after = TokenIssuer::rotate(*store_);
  ASSERT_TRUE(after.is_ok());
  expect_invalid(*after, old_token);
  auto reloaded = TokenIssuer::load_or_create(*store_);
  ASSERT_TRUE(reloaded.is_ok());
  expect_invalid(*reloaded, old_token);
  EXPECT_TRUE(reloaded->verify(after->issue("h", Scope::kAdmin, 24h, kT0), kT0).is_ok());
}

TEST_F(TokenStoreTest, MalformedStoredSecretIsReplaced) {
  for (const char* bad :
       {"", "xyz", "0123", "zz23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}) {
    ASSERT_TRUE(store_->put_setting("token_secret", bad).is_ok());
    auto t = TokenIssuer::load_or_create(*store_);
    ASSERT_TRUE(t.is_ok()) << bad;
    auto stored = store_->get_setting("token_secret");
    ASSERT_TRUE(stored.is_ok() && stored->has_value());
    EXPECT_EQ((*stored)->size(), 64u) << bad;
    EXPECT_TRUE(t->verify(t->issue("h", Scope::kRead, 1h, kT0), kT0).is_ok());
  }
}

TEST_F(TokenStoreTest, AuthenticatorAcceptsKeysAndTokensWithTheirScopes) {
  auto key = create_key(*store_, Scope::kRead, "reader");
  ASSERT_TRUE(key.is_ok());
  auto tokens = TokenIssuer::load_or_create(*store_);
  ASSERT_TRUE(tokens.is_ok());
  const auto now = core::now();
  std::string admin_token = tokens->issue("house-1", Scope::kAdmin, 24h, now);
  std::string control_token = tokens->issue("house-2", Scope::kControl, 24h, now);

  core::Registry metrics;
  Authenticator a(*store_, &metrics);
  // Before an issuer is attached, tokens are just bad keys (the old behaviour).
  EXPECT_EQ(a.authenticate(admin_token).status().message(), kInvalidKey);

  a.attach_tokens(std::make_shared<const TokenIssuer>(*tokens));
  auto by_key = a.authenticate(key->key);
  ASSERT_TRUE(by_key.is_ok());
  EXPECT_EQ(by_key->scope, Scope::kRead);
  EXPECT_EQ(by_key->name, "reader");
  auto by_admin = a.authenticate(admin_token);
  ASSERT_TRUE(by_admin.is_ok()) << by_admin.status().to_string();
  EXPECT_EQ(by_admin->scope, Scope::kAdmin);
  EXPECT_EQ(by_admin->key_id, "token:house-1");
  EXPECT_EQ(by_admin->name, "house-1");
  auto by_control = a.authenticate(control_token);
  ASSERT_TRUE(by_control.is_ok());
  EXPECT_EQ(by_control->scope, Scope::kControl);

  // The fixed set of messages the HTTP layer maps.
  auto message = [&](std::string_view credential) {
    auto r = a.authenticate(credential);
    EXPECT_FALSE(r.is_ok()) << credential;
    EXPECT_EQ(r.status().code(), core::Code::kUnauthorized);
    return r.status().message();
  };
  EXPECT_EQ(message(""), kMissingCredential);
  EXPECT_EQ(message(""), "missing API key");
  EXPECT_EQ(message(key->key + "x"), kInvalidKey);
  EXPECT_EQ(message("opk_garbage"), kInvalidKey);
  EXPECT_EQ(message(tokens->issue("house-1", Scope::kAdmin, 24h, now - 25h)), kExpiredToken);
  EXPECT_EQ(message("garbage"), kInvalidToken);
  EXPECT_EQ(message(admin_token + "x"), kInvalidToken);
  EXPECT_EQ(message(issuer().issue("house-1", Scope::kAdmin, 24h, now)), kInvalidToken);
  // One before attach_tokens, eight above: every kind of failure is counted.
  EXPECT_NE(metrics.render().find("outpost_auth_failures_total 9"), std::string::npos)
      << metrics.render();

  // A rotated secret: the Authenticator follows once the new issuer is attached.
  auto rotated = TokenIssuer::rotate(*store_);
  ASSERT_TRUE(rotated.is_ok());
  EXPECT_TRUE(a.authenticate(admin_token).is_ok());
  a.attach_tokens(std::make_shared<const TokenIssuer>(*rotated));
  EXPECT_EQ(message(admin_token), kInvalidToken);

  a.attach_tokens(nullptr);
  EXPECT_EQ(message(control_token), kInvalidKey);
  EXPECT_TRUE(a.authenticate(key->key).is_ok());
}

}  // namespace
}  // namespace outpost::auth
