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

TEST(Config, UrlSyntax) {
  auto u = parse_url("https://Example.com:8443/api/ingest?x=1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "Example.com");
  EXPECT_EQ(u->port, 8443);
  EXPECT_EQ(u->target, "/api/ingest?x=1");
  u = parse_url("HTTP://127.0.0.1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->target, "/");
  u = parse_url("http://[::1]:9000?q");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->target, "/?q");
  EXPECT_EQ(parse_url("mqtts://broker")->port, 8883);
  for (const char* bad : {"", "http://", "http:///x", "127.0.0.1:80", "://h", "http://user:pw@h/", "http://h:0/",
                          "http://h:99999/", "http://h:/", "http://h/a b", "http://h/#frag", "ftp://h/", "http://[::1/",
                          "http://h\r\n/", "http://h%41/"}) {
    EXPECT_FALSE(parse_url(bad)) << bad;
  }
  EXPECT_TRUE(parse_url("ftp://h:21/"));  // any scheme with a port parses; validate() checks the list
}

TEST(Config, UpstreamDestinationsFromTomlArrayOfTables) {
  Config c;
  auto s = apply_toml(c, R"(
[upstream]
backoff_initial = "200ms"
backoff_max = "30s"

[[upstream.destinations]]
name = "cloud"
url = "https://cloud.example/ingest"
kinds = ["summary", "alert", "snapshot"]
headers = { "X-API-Key" = "secret", Authorization = "Bearer x" }
timeout = "5s"
batch = 50
max_messages = 1000
max_bytes = 1048576
overflow = "refuse_new"
ca_file = "/etc/ca.pem"

[[upstream.destinations]]
name = "hub"
url = "http://127.0.0.1:8080/api/ingest"
)", "t.toml");
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(c.upstream.backoff_initial, milliseconds(200));
  EXPECT_EQ(c.upstream.backoff_max, milliseconds(30'000));
  ASSERT_EQ(c.upstream.destinations.size(), 2u);
  const auto& d = c.upstream.destinations[0];
  EXPECT_EQ(d.name, "cloud");
  EXPECT_EQ(d.kinds, (std::vector<std::string>{"summary", "alert", "snapshot"}));
  EXPECT_EQ(d.headers.at("X-API-Key"), "secret");
  EXPECT_EQ(d.headers.at("Authorization"), "Bearer x");
  EXPECT_EQ(d.timeout, milliseconds(5000));
  EXPECT_EQ(d.batch, 50u);
  EXPECT_EQ(d.max_messages, 1000u);
  EXPECT_EQ(d.max_bytes, 1048576u);
  EXPECT_EQ(d.overflow, "refuse_new");
  const auto& h = c.upstream.destinations[1];
  EXPECT_EQ(h.kinds, (std::vector<std::string>{"summary", "alert"}));  // the default
  EXPECT_EQ(h.overflow, "drop_oldest");
  EXPECT_TRUE(validate(c)) << validate(c).message();
}

TEST(Config, BadUpstreamDestinationsNameTheKey) {
  struct Case {
    const char* toml;
    const char* key;
  };
  const Case cases[] = {
      {"[upstream]\ndestinations = 5\n", "upstream.destinations"},
      {"[[upstream.destinations]]\nname = \"a\"\nurl = \"http://h/\"\nfoo = 1\n", "upstream.destinations[0].foo"},
      {"[[upstream.destinations]]\nname = 5\n", "upstream.destinations[0].name"},
      {"[[upstream.destinations]]\ntimeout = \"5 parsecs\"\n", "upstream.destinations[0].timeout"},
      {"[[upstream.destinations]]\ntimeout = \"1ms\"\n", "upstream.destinations[0].timeout"},
      {"[[upstream.destinations]]\nbatch = 0\n", "upstream.destinations[0].batch"},
      {"[[upstream.destinations]]\nmax_bytes = 10\n", "upstream.destinations[0].max_bytes"},
      {"[[upstream.destinations]]\noverflow = \"drop_newest\"\n", "upstream.destinations[0].overflow"},
      {"[[upstream.destinations]]\nkinds = \"summary\"\n", "upstream.destinations[0].kinds"},
      {"[[upstream.destinations]]\nheaders = { a = 1 }\n", "upstream.destinations[0].headers"},
      {"[upstream]\nbackoff_max = \"soon\"\n", "upstream.backoff_max"},
  };
  for (const auto& k : cases) {
    Config c;
    auto s = apply_toml(c, k.toml, "f.toml");
    ASSERT_FALSE(s) << k.toml;
    EXPECT_NE(s.message().find(k.key), std::string::npos) << s.message();
  }
  const Case invalid[] = {
      {"name = \"\"\nurl = \"http://h/\"", "upstream.destinations[0].name"},
      {"name = \"a b\"\nurl = \"http://h/\"", "upstream.destinations[0].name"},
      {"name = \"a\"", "upstream.destinations[0].url"},
      {"name = \"a\"\nurl = \"not a url\"", "upstream.destinations[0].url"},
      {"name = \"a\"\nurl = \"http://\"", "upstream.destinations[0].url"},
      {"name = \"a\"\nurl = \"ftp://h:21/\"", "unknown scheme 'ftp'"},
      {"name = \"a\"\nurl = \"mqtt://h\"", "upstream.destinations[0].topic"},
      {"name = \"a\"\nurl = \"http://h/\"\ntopic = \"t\"", "upstream.destinations[0].topic"},
      {"name = \"a\"\nurl = \"http://h/\"\nkinds = []", "upstream.destinations[0].kinds"},
      {"name = \"a\"\nurl = \"http://h/\"\nkinds = [\"a b\"]", "upstream.destinations[0].kinds"},
      {"name = \"a\"\nurl = \"http://h/\"\nheaders = { Host = \"x\" }", "upstream.destinations[0].headers"},
      {"name = \"a\"\nurl = \"http://h/\"\nheaders = { \"X-Key\" = \"a\\nb\" }", "line break"},
      {"name = \"a\"\nurl = \"http://h/\"\n[[upstream.destinations]]\nname = \"a\"\nurl = \"http://g/\"",
       "upstream.destinations[1].name"},
  };
  for (const auto& k : invalid) {
    Config c;
    auto s = apply_toml(c, std::string("[[upstream.destinations]]\n") + k.toml + "\n", "f.toml");
    ASSERT_TRUE(s) << k.toml << ": " << s.message();
    s = validate(c);
    ASSERT_FALSE(s) << k.toml;
    EXPECT_NE(s.message().find(k.key), std::string::npos) << s.message();
  }
  Config c;
  ASSERT_TRUE(apply_toml(c, "[upstream]\nbackoff_initial = \"10m\"\nbackoff_max = \"1m\"\n", "f"));
  EXPECT_NE(validate(c).message().find("upstream.backoff_initial"), std::string::npos);
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
  // The keys of [[upstream.destinations]] (not in keys(): TOML only), indented under it.
  size_t dest = text.find("# [[upstream.destinations]]");
  ASSERT_NE(dest, std::string::npos);
  for (const char* k : {"name", "url", "kinds", "headers", "timeout", "batch", "max_messages", "max_bytes", "overflow",
                        "ca_file", "topic", "username", "password", "client_id"}) {
    EXPECT_NE(text.find(std::string("#   ") + k + " =", dest), std::string::npos)
        << "upstream.destinations " << k << " is not documented in " << path;
  }
  // ...and that example (its block ends at the first blank line), uncommented, is a valid destination.
  std::string example = "[[upstream.destinations]]\n";
  std::istringstream lines(text.substr(dest));
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) break;
    if (line.rfind("#   ", 0) == 0 && line.size() > 4 && std::islower(static_cast<unsigned char>(line[4])) &&
        line.find(" = ") != std::string::npos && line.find(' ', 4) == line.find(" = "))
      example += line.substr(4) + "\n";
  }
  Config example_cfg;
  ASSERT_TRUE(apply_toml(example_cfg, example, "example")) << example;
  ASSERT_EQ(example_cfg.upstream.destinations.size(), 1u);
  EXPECT_TRUE(validate(example_cfg)) << validate(example_cfg).message() << "\n" << example;
  Config c;
  EXPECT_TRUE(apply_toml_file(c, path)) << apply_toml_file(c, path).message();
}

}  // namespace
}  // namespace outpost::config
