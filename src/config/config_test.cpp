#include "config/config.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace outpost::config {
namespace {

TEST(Config, DefaultsAreValid) {
  Config c;
  EXPECT_TRUE(validate(c).is_ok());
  EXPECT_EQ(c.server.listen, "127.0.0.1:8080");
  EXPECT_TRUE(c.server.cors_origins.empty());
}

TEST(Config, PrecedenceDefaultTomlEnvFlag) {
  Config c;
  ASSERT_TRUE(apply_toml(c, "[server]\nlisten = \"127.0.0.1:9000\"\nthreads = 3\n[log]\nlevel = \"debug\"\n", "t.toml"));
  EXPECT_EQ(c.server.listen, "127.0.0.1:9000");
  char e1[] = "OUTPOST_SERVER_LISTEN=127.0.0.1:9001";
  char e2[] = "PATH=/bin";
  char* env[] = {e1, e2, nullptr};
  ASSERT_TRUE(apply_env(c, env));
  EXPECT_EQ(c.server.listen, "127.0.0.1:9001");
  EXPECT_EQ(c.server.threads, 3);  // untouched by env
  ASSERT_TRUE(set_key(c, "server", "listen", "127.0.0.1:9002", "--listen"));
  EXPECT_EQ(c.server.listen, "127.0.0.1:9002");
  EXPECT_EQ(c.log.level, "debug");
}

TEST(Config, UnknownKeysAndBadValuesNameTheKey) {
  Config c;
  auto s = apply_toml(c, "[server]\nlisen = \"x\"\n", "f.toml");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("server.lisen"), std::string::npos) << s.message();
  s = apply_toml(c, "[srv]\nlisten = \"x\"\n", "f.toml");
  EXPECT_NE(s.message().find("[srv]"), std::string::npos) << s.message();
  s = apply_toml(c, "[server]\nthreads = \"four\"\n", "f.toml");
  EXPECT_NE(s.message().find("server.threads"), std::string::npos) << s.message();
  s = apply_toml(c, "[server]\nthreads = 100000\n", "f.toml");
  EXPECT_NE(s.message().find("out of range"), std::string::npos) << s.message();
  s = apply_toml(c, "[log]\nlevel = \"loud\"\n", "f.toml");
  EXPECT_NE(s.message().find("log.level"), std::string::npos) << s.message();
  s = apply_toml(c, "[server\n", "f.toml");
  EXPECT_NE(s.message().find("f.toml:1"), std::string::npos) << s.message();

  char e1[] = "OUTPOST_SERVER_LISTN=1";
  char* env[] = {e1, nullptr};
  s = apply_env(c, env);
  EXPECT_NE(s.message().find("OUTPOST_SERVER_LISTN"), std::string::npos) << s.message();

  s = set_key(c, "collector", "interval", "soon", "--set");
  EXPECT_NE(s.message().find("collector.interval"), std::string::npos) << s.message();
  s = set_key(c, "store", "body", "1", "--set");
  EXPECT_NE(s.message().find("store.body"), std::string::npos) << s.message();
}

TEST(Config, RulesAreAnArrayOfTablesKeptAsJsonWithTheirLine) {
  Config c;
  auto s = apply_toml(c,
                      "[hw]\nrelay_line = 5\n\n"
                      "[[rules]]\nid = \"vent\"\nsensor = \"temp\"\nabove = 30\nclear_below = 27.5\nfor = \"1m\"\n"
                      "on = { command = { target = \"relay\", value = \"on\" }, alert = \"hot\" }\n"
                      "[[rules]]\nid = \"two\"\nexpr = \"a/b > 1\"\nenabled = false\n"
                      "[rules.off]\ncommand = { target = \"led\", value = [1, 2] }\n",
                      "r.toml");
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(c.hw.relay_line, 5u);
  ASSERT_EQ(c.rules.size(), 2u);
  EXPECT_EQ(c.rules[0].json,
            R"({"above":30,"clear_below":27.5,"for":"1m","id":"vent","on":{"alert":"hot","command":{"target":"relay","value":"on"}},"sensor":"temp"})");
  EXPECT_EQ(c.rules[0].origin, "r.toml:4");
  EXPECT_EQ(c.rules[1].json,
            R"({"enabled":false,"expr":"a/b > 1","id":"two","off":{"command":{"target":"led","value":[1,2]}}})");
  EXPECT_EQ(c.rules[1].origin, "r.toml:11");
  // The fields are the rules engine's to check; the shape is the file's.
  Config bad;
  s = apply_toml(bad, "[rules]\nid = \"x\"\n", "r.toml");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("[[rules]]"), std::string::npos) << s.message();
  s = apply_toml(bad, "rules = 3\n", "r.toml");
  EXPECT_NE(s.message().find("[[rules]]"), std::string::npos) << s.message();
  s = apply_toml(bad, "[[rules]]\nid = \"x\"\nfor = 1979-05-27\n", "r.toml");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("rules[0].for"), std::string::npos) << s.message();
  EXPECT_TRUE(bad.rules.empty());
}

TEST(Config, DurationsAndLists) {
  Config c;
  ASSERT_TRUE(apply_toml(c, "[collector]\ninterval = \"2s\"\n[server]\nheader_timeout = 3\ncors_origins = [\"https://a.example\"]\n", "t"));
  EXPECT_EQ(c.collector.interval, milliseconds(2000));
  EXPECT_EQ(c.server.header_timeout, milliseconds(3000));
  ASSERT_EQ(c.server.cors_origins.size(), 1u);
  ASSERT_TRUE(set_key(c, "server", "cors_origins", "https://a.example,http://b.example:3000", "env"));
  EXPECT_EQ(c.server.cors_origins.size(), 2u);
  EXPECT_TRUE(validate(c));
  ASSERT_TRUE(set_key(c, "server", "cors_origins", "a.example", "env"));
  EXPECT_FALSE(validate(c));
}

TEST(Config, ListenSyntax) {
  EXPECT_TRUE(parse_host_port("127.0.0.1:0"));
  EXPECT_EQ(parse_host_port("[::1]:8080")->host, "::1");
  EXPECT_FALSE(parse_host_port("127.0.0.1"));
  EXPECT_FALSE(parse_host_port(":80"));
  EXPECT_FALSE(parse_host_port("h:70000"));
  EXPECT_FALSE(parse_host_port("::1:80"));
}

TEST(Config, EdgeSummaryWindowsFromTomlEnvAndFlags) {
  Config c;
  EXPECT_TRUE(c.aggregator.summaries);
  EXPECT_EQ(c.aggregator.summary_window, std::chrono::minutes(5));
  EXPECT_EQ(c.aggregator.summary_grace, std::chrono::seconds(2));
  EXPECT_TRUE(c.aggregator.summary_windows.empty());
  EXPECT_EQ(c.store.summaries_max_age, std::chrono::hours(24 * 365));
  ASSERT_TRUE(apply_toml(c,
                         "[edge]\nsummary_window = \"1m\"\nsummary_grace = 0\n"
                         "[edge.summary_windows]\n\"cpu_temp_c\" = \"30s\"\n\"greenhouse-1/temperature\" = 10\n",
                         "t.toml"));
  EXPECT_EQ(c.aggregator.summary_window, std::chrono::minutes(1));
  EXPECT_EQ(c.aggregator.summary_grace, std::chrono::seconds(0));
  ASSERT_EQ(c.aggregator.summary_windows.size(), 2u);
  EXPECT_EQ(c.aggregator.summary_windows.at("cpu_temp_c"), std::chrono::seconds(30));
  EXPECT_EQ(c.aggregator.summary_windows.at("greenhouse-1/temperature"), std::chrono::seconds(10));
  // The inline-table form, as the example file shows it.
  ASSERT_TRUE(apply_toml(c, "[edge]\nsummary_windows = { light = \"2m\" }\n", "t.toml"));
  EXPECT_EQ(c.aggregator.summary_windows.size(), 1u);
  // Text form (environment, --set): name=duration,...
  char e1[] = "OUTPOST_EDGE_SUMMARY_WINDOWS=a=1m,dev/b=5s";
  char e2[] = "OUTPOST_EDGE_SUMMARY_WINDOW=2s";
  char* env[] = {e1, e2, nullptr};
  ASSERT_TRUE(apply_env(c, env));
  EXPECT_EQ(c.aggregator.summary_window, std::chrono::seconds(2));
  EXPECT_EQ(c.aggregator.summary_windows.at("a"), std::chrono::minutes(1));
  EXPECT_EQ(c.aggregator.summary_windows.at("dev/b"), std::chrono::seconds(5));
  ASSERT_TRUE(set_key(c, "edge", "summaries", "false", "--set"));
  EXPECT_FALSE(c.aggregator.summaries);
  ASSERT_TRUE(set_key(c, "store", "summaries_max_age", "90d", "--set"));
  EXPECT_EQ(c.store.summaries_max_age, std::chrono::hours(24 * 90));
}

TEST(Config, BadSummaryWindowsFailNamingTheKey) {
  Config c;
  auto fails = [&](const std::string& toml, const std::string& want) {
    auto s = apply_toml(c, toml, "f.toml");
    EXPECT_FALSE(s) << toml;
    EXPECT_NE(s.message().find(want), std::string::npos) << s.message();
  };
  fails("[edge]\nsummary_window = \"soon\"\n", "edge.summary_window");
  fails("[edge]\nsummary_window = \"500ms\"\n", "edge.summary_window");  // under 1 s
  fails("[edge]\nsummary_window = \"2d\"\n", "edge.summary_window");     // over a day
  fails("[edge]\nsummary_grace = \"-1s\"\n", "edge.summary_grace");
  fails("[edge.summary_windows]\ncpu_temp_c = \"fast\"\n", "edge.summary_windows: 'cpu_temp_c'");
  fails("[edge.summary_windows]\ncpu_temp_c = \"100ms\"\n", "edge.summary_windows: 'cpu_temp_c'");
  fails("[edge.summary_windows]\ncpu_temp_c = true\n", "edge.summary_windows: 'cpu_temp_c'");
  fails("[edge]\nsummary_windows = \"1m\"\n", "edge.summary_windows");
  fails("[edge]\nsummary_windos = 1\n", "edge.summary_windos");
  auto s = set_key(c, "edge", "summary_windows", "cpu_temp_c", "--set");
  EXPECT_NE(s.message().find("edge.summary_windows"), std::string::npos) << s.message();
  s = set_key(c, "edge", "summary_windows", "=1m", "--set");
  EXPECT_NE(s.message().find("empty name"), std::string::npos) << s.message();
  s = set_key(c, "edge", "summary_windows", "x=1y", "--set");
  EXPECT_NE(s.message().find("'x'"), std::string::npos) << s.message();
}

TEST(Config, HomeAssistant) {
  Config c;
  EXPECT_FALSE(c.homeassistant.enabled);
  EXPECT_EQ(c.homeassistant.discovery_prefix, "homeassistant");
  ASSERT_TRUE(apply_toml(c,
                         "[homeassistant]\nenabled = true\nurl = \"mqtt://ha:1883\"\n"
                         "node_id = \"gh-1\"\nbase_topic = \"farm/gh1\"\n",
                         "t.toml"));
  EXPECT_TRUE(validate(c)) << validate(c).message();
  char e1[] = "OUTPOST_HOMEASSISTANT_DISCOVERY_PREFIX=ha";
  char* env[] = {e1, nullptr};
  ASSERT_TRUE(apply_env(c, env));
  EXPECT_EQ(c.homeassistant.discovery_prefix, "ha");

  auto fails_on = [](const std::string& key, auto change) {
    Config bad;
    bad.homeassistant.enabled = true;
    bad.mqtt.url = "mqtt://kits:1883";
    change(bad);
    auto s = validate(bad);
    EXPECT_FALSE(s) << key;
    EXPECT_NE(s.message().find(key), std::string::npos) << s.message();
  };
  fails_on("homeassistant.url", [](Config& x) { x.mqtt.url.clear(); });
  fails_on("homeassistant.url", [](Config& x) { x.homeassistant.url = "tcp://ha:1883"; });
  fails_on("homeassistant.node_id", [](Config& x) { x.homeassistant.node_id = "a.b"; });
  fails_on("homeassistant.discovery_prefix", [](Config& x) { x.homeassistant.discovery_prefix = "ha/#"; });
  fails_on("homeassistant.discovery_prefix", [](Config& x) { x.homeassistant.discovery_prefix = "/ha"; });
  fails_on("homeassistant.base_topic", [](Config& x) { x.homeassistant.base_topic = "a//b"; });
  fails_on("homeassistant.base_topic", [](Config& x) { x.homeassistant.base_topic = "a/+"; });
  fails_on("homeassistant.client_id", [](Config& x) {
    x.mqtt.client_id = "hub";
    x.homeassistant.client_id = "hub";
  });
  // The same id on another broker is fine.
  Config other;
  other.homeassistant.enabled = true;
  other.mqtt.url = "mqtt://kits:1883";
  other.mqtt.client_id = other.homeassistant.client_id = "hub";
  other.homeassistant.url = "mqtt://ha:1883";
  EXPECT_TRUE(validate(other));
  auto s = set_key(c, "homeassistant", "discovery_prefix", "", "--set");
  EXPECT_NE(s.message().find("homeassistant.discovery_prefix"), std::string::npos) << s.message();
}

// The example file documents every key, and is itself a valid configuration.
TEST(Config, ExampleFileDocumentsEveryKey) {
  const char* src = std::getenv("OUTPOST_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  std::string path = std::string(src) + "/config/outpost.example.toml";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  for (const auto& k : keys()) {
    std::string section = "[" + k.section + "]";
    size_t at = text.find(section);
    ASSERT_NE(at, std::string::npos) << section;
    // "key =" or "# key =" after the section header.
    bool documented = text.find("\n" + k.key + " =", at) != std::string::npos ||
                      text.find("# " + k.key + " =", at) != std::string::npos;
    EXPECT_TRUE(documented)
        << k.section << "." << k.key << " is not documented in " << path;
  }
  Config c;
  EXPECT_TRUE(apply_toml_file(c, path)) << apply_toml_file(c, path).message();
}

}  // namespace
}  // namespace outpost::config
