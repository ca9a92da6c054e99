// make_http_sink() for https://: the real TLS plugin through dlopen(), and each way loading it can
// fail. (Delivery over TLS through the plugin: http_sink_test.cpp.)
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <exception>
#include <filesystem>
#include <string>

#include "upstream/upstream.hpp"

namespace outpost::upstream {
namespace {

namespace fs = std::filesystem;

config::UpstreamDestination https_dest() {
  config::UpstreamDestination d;
  d.name = "cloud";
  d.url = "https://127.0.0.1:8443/in";
  return d;
}

core::Status load(const std::string& plugin) {
  return make_http_sink(https_dest(), "edge-1", plugin).status();
}

TEST(TlsPlugin, TheRealPluginMakesAnHttpsSink) {
  auto s = make_http_sink(https_dest(), "edge-1", OUTPOST_TLS_PLUGIN);
  ASSERT_TRUE(s) << s.status().to_string();
  EXPECT_EQ((*s)->describe(), "https://127.0.0.1:8443/in");
}

TEST(TlsPlugin, ErrorsOfTheSinkComeBackThroughThePlugin) {
  auto d = https_dest();
  d.ca_file = "/nonexistent/ca.pem";
  auto s = make_http_sink(d, "edge-1", OUTPOST_TLS_PLUGIN);
  EXPECT_EQ(s.status().code(), core::Code::kInvalid);
  EXPECT_NE(s.status().message().find("/nonexistent/ca.pem"), std::string::npos)
      << s.status().message();
}

TEST(TlsPlugin, PlainHttpNeedsNoPlugin) {
  auto d = https_dest();
  d.url = "http://127.0.0.1:8080/in";
  EXPECT_TRUE(make_http_sink(d, "edge-1", "/nonexistent/outpost-tls.so"));
}

TEST(TlsPlugin, AMissingOverrideIsNamed) {
  const std::string path = "/nonexistent/dir/outpost-tls.so";
  auto s = load(path);
  EXPECT_EQ(s.code(), core::Code::kUnavailable);
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("upstream 'cloud'"), std::string::npos) << s.message();
}

TEST(TlsPlugin, ASharedObjectWithoutTheFactoryIsRefused) {
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&std::terminate), &info), 0);  // libstdc++
  auto s = load(info.dli_fname);
  EXPECT_EQ(s.code(), core::Code::kUnavailable);
  EXPECT_NE(s.message().find(info.dli_fname), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("outpost_tls_sink_create_v1"), std::string::npos) << s.message();
}

TEST(TlsPlugin, APluginFromAnotherBuildIsRefused) {
  auto s = load(OUTPOST_SKEWED_TLS_PLUGIN);
  EXPECT_EQ(s.code(), core::Code::kUnavailable);
  EXPECT_NE(s.message().find(OUTPOST_SKEWED_TLS_PLUGIN), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("another version"), std::string::npos) << s.message();
}

TEST(TlsPlugin, WithoutOverrideItLooksBesideTheExecutableThenInLibOutpost) {
  // This test binary's directory has no plugin (the build writes it beside `outpost`).
  const fs::path dir = fs::read_symlink("/proc/self/exe").parent_path();
  ASSERT_FALSE(fs::exists(dir / "outpost-tls.so"));
  auto s = load("");
  EXPECT_EQ(s.code(), core::Code::kUnavailable);
  EXPECT_NE(s.message().find((dir / "outpost-tls.so").string()), std::string::npos) << s.message();
  EXPECT_NE(s.message().find((dir.parent_path() / "lib/outpost/outpost-tls.so").string()),
            std::string::npos)
      << s.message();
}

}  // namespace
}  // namespace outpost::upstream
