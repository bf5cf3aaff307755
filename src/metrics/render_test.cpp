// The metrics text from given service answers, and the listen address's
// forms (the endpoint itself: tests/metrics_test.cpp).
#include <gtest/gtest.h>

#include "metrics/metrics.h"

namespace loom {
namespace {

TEST(ListenAddress, Forms) {
  auto v4 = parse_listen_address("127.0.0.1:9464");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 9464);
  auto v6 = parse_listen_address("[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 0);
  EXPECT_TRUE(parse_listen_address("localhost:80").ok());
  for (const char* bad : {"", "9464", ":9464", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:80x",
                          "::1:9464", "[::1]9464", "example.com:80", "1.2.3:80"}) {
    EXPECT_FALSE(parse_listen_address(bad).ok()) << bad;
  }
}

TEST(RenderMetrics, NoAnswersStillEndsWell) {
  std::string text = render_metrics({}, true);
  EXPECT_NE(text.find("loom_metrics_source_up{source=\"job-manager\"} 0\n"), std::string::npos) << text;
  EXPECT_TRUE(text.ends_with("# EOF\n"));
  EXPECT_EQ(text.find("loom_jobs"), std::string::npos);
  EXPECT_EQ(render_metrics({}, false).find("# EOF"), std::string::npos);
}

TEST(RenderMetrics, CountersAndHistograms) {
  MetricsSources s;
  s.job_manager = Json{{"states", {{"RUN", 2}, {"INACTIVE", 5}}},
                       {"submitted_total", 7},
                       {"completed_total", 5},
                       {"wait_seconds", {{"bounds", {0.5, 1}}, {"counts", {1, 2, 3}}, {"sum", 9.5}, {"count", 6}}}};
  std::string om = render_metrics(s, true);
  EXPECT_NE(om.find("# TYPE loom_jobs_submitted counter\nloom_jobs_submitted_total 7\n"), std::string::npos) << om;
  EXPECT_NE(om.find("loom_jobs{state=\"run\"} 2\n"), std::string::npos) << om;
  // Cumulative buckets, bounds written as floats, +Inf equal to _count.
  EXPECT_NE(om.find("loom_job_wait_seconds_bucket{le=\"0.5\"} 1\n"
                    "loom_job_wait_seconds_bucket{le=\"1.0\"} 3\n"
                    "loom_job_wait_seconds_bucket{le=\"+Inf\"} 6\n"
                    "loom_job_wait_seconds_count 6\n"
                    "loom_job_wait_seconds_sum 9.5\n"),
            std::string::npos)
      << om;
  // The older text format names a counter's family with _total.
  std::string text = render_metrics(s, false);
  EXPECT_NE(text.find("# TYPE loom_jobs_submitted_total counter\n"), std::string::npos) << text;
}

TEST(RenderMetrics, LabelValuesAreEscaped) {
  MetricsSources s;
  s.broker_info = Json{{"requests", {{"a\"b\\c\nd", 1}}}};
  EXPECT_NE(render_metrics(s, true).find("service=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos);
}

}  // namespace
}  // namespace loom
