// Ablation files are read strictly: defaults flow into runs, paths resolve relative to the
// file, and every mistake is an error with file:line:col naming the key. Also checks that
// every ablation file shipped in configs/ablations loads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "base/io_test_util.h"
#include "samba/ablate/report.h"
#include "samba/ablate/runner.h"
#include "samba/ablate/spec.h"
#include "samba/core/error.h"
#include "samba/core/train_config.h"
#include "samba/eval/plot.h"

namespace fs = std::filesystem;

namespace {

class AblationSpec : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_.file("m.yaml")) << "name: m\n";
    std::ofstream(dir_.file("r.yaml")) << "model: m.yaml\n";
  }
  std::string write(const std::string& text) {
    const std::string p = dir_.file("ablation.yaml");
    std::ofstream(p) << text;
    return p;
  }
  // The error message of loading `text`, "" if it loads.
  std::string error_of(const std::string& text) {
    try {
      samba::ablate::load_ablation(write(text));
    } catch (const samba::Error& e) {
      return e.what();
    }
    return "";
  }
  samba::testing::TempDir dir_;
};

const char* kHead = "name: t\nout_dir: out\ndefaults: {recipe: r.yaml, max_tokens: 100, set: [optimizer.lr=0.01]}\n";

TEST_F(AblationSpec, DefaultsFlowIntoRunsAndPathsResolve) {
  auto a = samba::ablate::load_ablation(write(std::string(kHead) +
                                              "eval: {lengths: [1, 4], max_blocks: 7}\n"
                                              "passkey: {finetune_steps: 3, depths: 3}\n"
                                              "train_launcher: [torchrun, --nproc-per-node, \"2\"]\n"
                                              "runs:\n"
                                              "  - {name: x, model: m.yaml}\n"
                                              "  - name: y\n"
                                              "    label: Model Y\n"
                                              "    max_tokens: 50\n"
                                              "    set: [model.d_model=64]\n"
                                              "    passkey: true\n"));
  EXPECT_EQ(a.name, "t");
  ASSERT_EQ(a.runs.size(), 2u);
  EXPECT_EQ(a.runs[0].label, "x");
  EXPECT_EQ(a.runs[0].max_tokens, 100);
  EXPECT_EQ(a.runs[0].model, (dir_.path() / "m.yaml").string());
  EXPECT_EQ(a.runs[0].recipe, (dir_.path() / "r.yaml").string());
  EXPECT_EQ(a.runs[0].set, std::vector<std::string>{"optimizer.lr=0.01"});
  EXPECT_FALSE(a.runs[0].passkey);
  EXPECT_EQ(a.runs[1].label, "Model Y");
  EXPECT_EQ(a.runs[1].max_tokens, 50);
  EXPECT_EQ(a.runs[1].model, "");  // the recipe's model
  EXPECT_EQ(a.runs[1].set, (std::vector<std::string>{"optimizer.lr=0.01", "model.d_model=64"}));
  EXPECT_TRUE(a.runs[1].passkey);
  EXPECT_EQ(a.eval.multiples, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(a.eval.max_blocks, 7);
  EXPECT_EQ(a.passkey.finetune_steps, 3);
  EXPECT_EQ(a.train_launcher.size(), 3u);
}

TEST_F(AblationSpec, MistakesAreErrorsWithTheirLocation) {
  const std::string runs = "runs:\n  - {name: x, model: m.yaml}\n";
  // An unknown key in a run: named with its run and position.
  std::string e = error_of(std::string(kHead) + "runs:\n  - {name: x, modle: m.yaml}\n");
  EXPECT_NE(e.find("ablation.yaml:5:"), std::string::npos) << e;
  EXPECT_NE(e.find("runs[0]"), std::string::npos) << e;
  EXPECT_NE(e.find("modle"), std::string::npos) << e;
  // An unknown top-level key, a misspelled section key.
  EXPECT_NE(error_of(std::string(kHead) + runs + "evals: {}\n").find("evals"), std::string::npos);
  e = error_of(std::string(kHead) + runs + "eval: {length: [1]}\n");
  EXPECT_NE(e.find("eval.length"), std::string::npos) << e;
  // Bad values.
  e = error_of(std::string(kHead) + runs + "eval: {lengths: [1, 0]}\n");
  EXPECT_NE(e.find("item 2 of 'lengths'"), std::string::npos) << e;
  EXPECT_NE(e.find(":6:"), std::string::npos) << e;
  EXPECT_NE(error_of(std::string(kHead) + runs + "eval: {lengths: 4}\n").find("must be a list"), std::string::npos);
  EXPECT_NE(error_of(std::string(kHead) + "runs:\n  - {name: x, set: [lr]}\n").find("KEY=VALUE"), std::string::npos);
  EXPECT_NE(error_of(std::string(kHead) + "runs:\n  - {name: x, model: nope.yaml}\n").find("does not exist"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(kHead) + "runs:\n  - {name: x}\n  - {name: x}\n").find("second run named 'x'"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(kHead) + "runs:\n  - {name: a/b}\n").find("directory"), std::string::npos);
  EXPECT_NE(error_of(std::string(kHead) + "runs:\n  - {label: y}\n").find("name"), std::string::npos);
  EXPECT_NE(error_of(std::string(kHead)).find("runs"), std::string::npos);
  EXPECT_NE(error_of("name: t\nout_dir: o\nruns:\n  - {name: x}\n").find("no recipe"), std::string::npos);
  EXPECT_NE(error_of(std::string(kHead) + runs + "data: {input: corpus}\n").find("data.dir"), std::string::npos);
}

TEST(AblationFiles, EveryShippedFileLoads) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(fs::path(SAMBA_SOURCE_DIR) / "configs" / "ablations")) {
    if (e.path().extension() != ".yaml") continue;
    SCOPED_TRACE(e.path().string());
    auto a = samba::ablate::load_ablation(e.path().string());
    EXPECT_FALSE(a.runs.empty());
    // Each run's recipe, model and overrides pass the strict loaders, as `samba ablate` checks
    // them before training anything.
    samba::testing::TempDir tmp;
    for (const auto& run : a.runs) {
      SCOPED_TRACE(run.name);
      const std::string recipe = samba::ablate::write_run_recipe(a, run, tmp.path().string());
      try {
        samba::load_train_config(recipe, run.set);
      } catch (const samba::Error& err) {
        ADD_FAILURE() << err.what();
      }
    }
    ++n;
  }
  EXPECT_GE(n, 12);
}

TEST(AblationReport, TableHasThePaperLayoutAndMissingValuesShowAsDashes) {
  samba::ablate::AblationSpec spec;
  spec.name = "t";
  samba::ablate::RunResult a, b;
  a.spec.label = "Samba";
  a.spec.name = "samba";
  a.status = "done";
  a.params = 1'660'000;
  a.tokens_per_s = 2500;
  for (int m : {1, 2, 4}) {
    samba::ablate::PplPoint p;
    p.multiple = m;
    p.context = 256 * m;
    p.ppl = 100.0 + m;
    p.ppl_se = 1.5;
    p.blocks = 10;
    a.ppl.push_back(p);
  }
  b.spec.label = "Mamba";
  b.status = "not started";
  const std::string t = samba::ablate::results_table(spec, {a, b});
  EXPECT_NE(t.find("| Model | Params | Speed (tokens/s) | PPL 1x | PPL 2x | PPL 4x |"), std::string::npos) << t;
  EXPECT_NE(t.find("| Samba | 1.66M | 2500 | 101.00 ± 1.50 | 102.00 ± 1.50 | 104.00 ± 1.50 |"), std::string::npos) << t;
  EXPECT_NE(t.find("| Mamba | - | - | - | - | - | _not started_"), std::string::npos) << t;
}

TEST(Plot, SvgChartsHoldTheirSeriesAndCells) {
  samba::plot::LineChart c;
  c.title = "ppl <vs> context";
  c.log_x = c.log_y = true;
  c.series.push_back({"Llama-2", {256, 512, 1024}, {100, 300, 2000}});
  c.series.push_back({"Samba", {256, 512, 1024}, {90, 88, 87}});
  const std::string svg = samba::plot::line_chart_svg(c);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("ppl &lt;vs&gt; context"), std::string::npos);
  EXPECT_NE(svg.find(">Samba</text>"), std::string::npos);
  EXPECT_EQ(std::count(svg.begin(), svg.end(), '\n') > 10, true);
  size_t polylines = 0;
  for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) ++polylines;
  EXPECT_EQ(polylines, 2u);
  samba::plot::Heatmap h;
  h.columns = {"256", "512"};
  h.rows = {"0.00", "1.00"};
  h.values = {{1.0, 0.25}, {0.0, std::nan("")}};
  const std::string hm = samba::plot::heatmap_svg(h);
  EXPECT_NE(hm.find(">100</text>"), std::string::npos);
  EXPECT_NE(hm.find(">25</text>"), std::string::npos);
  EXPECT_NE(hm.find(">-</text>"), std::string::npos);
  h.values.pop_back();
  EXPECT_THROW(samba::plot::heatmap_svg(h), samba::Error);
  EXPECT_EQ(samba::plot::linear_ticks(0, 10, 5), (std::vector<double>{0, 2, 4, 6, 8, 10}));
}

}  // namespace
