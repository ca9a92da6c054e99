// rules_bench: the rule path in process, with Google Benchmark: Hub::ingest of one FIWARE-style
// report (one numeric sensor) through the readings observer into the rules engine, and, when a
// rule fires, hub.submit to this board's (simulated) relay, the "rule" and "command" events
// queued for a real store. Run by bench/rules/run-rules-bench.
//
//   BM_Ingest/rules:0          the hub alone (baseline)
//   BM_Ingest/rules:100        100 rules, none on this sensor (the common case)
//   BM_IngestEvaluated         one rule on this sensor, the value stays inside its band
//   BM_IngestFiring            every report crosses the band: every ingest fires a command
// BM_IngestFiring also reports p50/p99/max of each ingest's wall time (counters *_us): reading
// received by the hub -> command carried out on the relay.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "edge/rules.hpp"
#include "hub/hub.hpp"
#include "hw/hw.hpp"

namespace {

using namespace outpost;
namespace fs = std::filesystem;

struct Rig {
  Rig(int other_rules, const char* rule) {
    std::string tmpl = (fs::temp_directory_path() / "outpost-rules-bench-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) std::abort();
    dir = tmpl;
    config::StoreConfig sc;
    sc.data_dir = dir.string();
    auto opened = store::Store::open(sc, nullptr);
    if (!opened) std::abort();
    store = std::move(opened.value());
    hub = std::make_unique<hub::Hub>(config::HubConfig{}, *store, bus, metrics, [this](core::Event e) {
      store->append_event(std::move(e), nullptr);
    });
    (void)hub->load();
    relay = hw::make_sim_output();
    hub->set_sender(core::Transport::kLocal, [this](const core::Device&, const hub::Command& c, hub::Delivery& out) {
      auto s = relay->set(c.value == "on");
      if (!s) return s;
      out.done = true;
      out.detail = c.value == "on" ? "relay on" : "relay off";
      return core::Status::ok();
    });
    core::DeviceReport board{.id = "pi", .transport = core::Transport::kLocal, .received = core::now()};
    core::Actuator a;
    a.actions = core::Json::array({{{"parameter", "state"}}});
    a.attributes = core::Json{{"name", "relay"}};
    board.actuators = std::vector<core::Actuator>{a};
    hub->observe(std::move(board));
    engine = std::make_unique<edge::RuleEngine>(edge::RuleEngine::Deps{
        .hub = *hub, .store = *store, .metrics = metrics,
        .record_event = [this](core::Event e) { store->append_event(std::move(e), nullptr); }, .board = "pi"});
    std::vector<config::RuleConfig> rules;
    for (int i = 0; i < other_rules; ++i) {
      rules.push_back({fmt::format(R"({{"id":"r{}","device":"d{}","sensor":"temperature","above":30,"on":{{"alert":"x"}}}})",
                                   i, i),
                       "bench"});
    }
    if (rule) rules.push_back({rule, "bench"});
    if (!engine->load(rules)) std::abort();
    hub->add_readings_observer([e = engine.get()](const std::vector<core::Reading>& rs) { e->on_readings(rs); });
  }
  ~Rig() {
    engine.reset();
    hub.reset();
    store->close();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  void ingest(double celsius) {
    core::DeviceReport r{.id = "greenhouse000001", .transport = core::Transport::kUdp, .address = "127.0.0.1:9",
                         .received = core::now()};
    core::Sensor s{.id = "temperature"};
    s.value = core::SensorValue{"Cel", "double", r.received, core::Json(celsius)};
    r.sensors.push_back(std::move(s));
    std::vector<core::DeviceReport> batch;
    batch.push_back(std::move(r));
    hub->ingest(std::move(batch));
  }

  fs::path dir;
  core::Registry metrics;
  core::Bus bus;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<hub::Hub> hub;
  std::unique_ptr<hw::DigitalOutput> relay;
  std::unique_ptr<edge::RuleEngine> engine;
};

constexpr const char* kVent =
    R"({"id":"vent","device":"greenhouse000001","sensor":"temperature","above":30,"clear_below":27,)"
    R"("on":{"command":{"target":"relay","value":"on"}},"off":{"command":{"target":"relay","value":"off"}}})";

void BM_Ingest(benchmark::State& state) {
  Rig rig(static_cast<int>(state.range(0)), nullptr);
  rig.ingest(20);  // the device exists
  for (auto _ : state) rig.ingest(20);
}
BENCHMARK(BM_Ingest)->ArgName("rules")->Arg(0)->Arg(100);

void BM_IngestEvaluated(benchmark::State& state) {
  Rig rig(0, kVent);
  rig.ingest(20);
  for (auto _ : state) rig.ingest(28);  // inside the band: evaluated, nothing fires
}
BENCHMARK(BM_IngestEvaluated);

void BM_IngestFiring(benchmark::State& state) {
  Rig rig(0, kVent);
  rig.ingest(20);
  std::vector<double> us;
  us.reserve(1 << 20);
  bool high = true;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    rig.ingest(high ? 35 : 20);
    auto t1 = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    high = !high;
  }
  if (*rig.relay->get() == high) state.SkipWithError("the relay is out of step with the readings");
  std::sort(us.begin(), us.end());
  auto at = [&](double p) { return us.empty() ? 0.0 : us[static_cast<size_t>(p * static_cast<double>(us.size() - 1))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["max_us"] = us.empty() ? 0.0 : us.back();
}
BENCHMARK(BM_IngestFiring);

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::err);  // the 100 rules' "device not known yet" warnings
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
