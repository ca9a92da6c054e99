#include "core/metrics.hpp"

#include <gtest/gtest.h>

namespace outpost::core {
namespace {

TEST(Metrics, RendersPrometheusTextWithOneHelpPerFamily) {
  Registry r;
  r.counter("outpost_x_total", "X things.", R"(kind="a")").inc(3);
  r.counter("outpost_x_total", "X things.", R"(kind="b")").inc();
  r.gauge_fn("outpost_g", "A gauge.", [] { return 2.5; });
  std::string text = r.render();
  EXPECT_NE(text.find("# TYPE outpost_x_total counter\n"), std::string::npos);
  EXPECT_EQ(text.find("# HELP outpost_x_total"), text.rfind("# HELP outpost_x_total"));
  EXPECT_NE(text.find("outpost_x_total{kind=\"a\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("outpost_x_total{kind=\"b\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("outpost_g 2.5\n"), std::string::npos);
}

TEST(Metrics, HistogramIsCumulative) {
  Registry r;
  auto& h = r.histogram("outpost_h_seconds", "H.", {0.1, 1});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  std::string text = r.render();
  EXPECT_NE(text.find("outpost_h_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("outpost_h_seconds_bucket{le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("outpost_h_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("outpost_h_seconds_count 3\n"), std::string::npos);
}

}  // namespace
}  // namespace outpost::core
