#include "samba/ablate/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "samba/core/error.h"
#include "samba/eval/plot.h"
#include "samba/io/files.h"

namespace samba::ablate {
namespace fs = std::filesystem;

namespace {

// A JSON file, or null when it does not exist; a damaged one is an error naming it.
nlohmann::json read_json(const fs::path& p) {
  if (!fs::exists(p)) return nullptr;
  try {
    return nlohmann::json::parse(io::read_file(p.string()));
  } catch (const nlohmann::json::exception& e) {
    fail(p.string(), " is not valid JSON (", e.what(), "): delete it and run the ablation again to redo that stage");
  }
}

double median(std::vector<double> v) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string fmt(const char* f, double v) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// CSV leaves unknown values empty (spreadsheets read "-" as text).
std::string csv_num(const char* f, double v) { return std::isfinite(v) ? fmt(f, v) : ""; }

std::string human_params(int64_t n) {
  if (n <= 0) return "-";
  if (n >= 1'000'000'000) return fmt("%.2fB", static_cast<double>(n) / 1e9);
  if (n >= 1'000'000) return fmt("%.2fM", static_cast<double>(n) / 1e6);
  return fmt("%.1fk", static_cast<double>(n) / 1e3);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// The evaluation multiples of the ablation, as the table's columns.
const std::vector<int64_t>& columns(const AblationSpec& spec) { return spec.eval.multiples; }

const PplPoint* point_at(const RunResult& r, int64_t multiple) {
  for (const auto& p : r.ppl)
    if (p.multiple == multiple) return &p;
  return nullptr;
}

bool any_passkey(const std::vector<RunResult>& runs) {
  for (const auto& r : runs)
    if (r.spec.passkey) return true;
  return false;
}

}  // namespace

RunResult collect_run(const RunSpec& spec, const std::string& dir) {
  RunResult r;
  r.spec = spec;
  r.dir = dir;
  const fs::path d(dir);
  // Training log: the last record of each step wins (a resumed run logs the steps after its
  // checkpoint again).
  std::map<int64_t, nlohmann::json> steps;
  if (fs::exists(d / "train" / "metrics.jsonl")) {
    std::ifstream in(d / "train" / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
        continue;  // a line cut by a kill: the rest of the log is still good
      }
      if (j.contains("loss") && j.contains("step")) steps[j["step"].get<int64_t>()] = j;
    }
  }
  std::vector<double> rates;
  for (const auto& [step, j] : steps) {
    const double tokens = j.value("tokens", 0.0);
    r.loss_curve.emplace_back(tokens, j["loss"].get<double>());
    r.tokens_trained = std::max<int64_t>(r.tokens_trained, static_cast<int64_t>(tokens));
    // The first steps include warm-up (allocations, thread pools); the median ignores them.
    if (j.contains("tokens_per_s") && step > 1) rates.push_back(j["tokens_per_s"].get<double>());
  }
  r.tokens_per_s = median(rates);

  const auto trained = read_json(d / "trained.json");
  const auto eval = read_json(d / "eval.json");
  const auto passkey = read_json(d / "passkey.json");
  const auto failed = read_json(d / "failed.json");
  if (!trained.is_null()) r.train_seconds = trained.value("seconds", kNaN);
  if (!eval.is_null()) {
    r.params = eval.value("params", int64_t{0});
    r.seq_len = eval.value("seq_len", int64_t{0});
    r.block_tokens = eval.value("block_tokens", int64_t{0});
    for (const auto& row : eval["results"]) {
      PplPoint p;
      p.context = row.value("context", int64_t{0});
      p.multiple = row.value("multiple", int64_t{0});
      p.blocks = row.value("blocks", int64_t{0});
      p.tokens = row.value("tokens", int64_t{0});
      p.ppl = row.value("ppl", kNaN);
      p.ppl_se = row.value("ppl_se", kNaN);
      p.loss = row.value("loss", kNaN);
      r.ppl.push_back(p);
    }
  }
  if (!passkey.is_null()) {
    r.passkey_mean = passkey.value("mean", kNaN);
    r.passkey_lengths = passkey["lengths"].get<std::vector<int64_t>>();
    r.passkey_depths = passkey["depths"].get<std::vector<double>>();
    r.passkey_accuracy = passkey["accuracy"].get<std::vector<std::vector<double>>>();
  }
  const bool evaluated = !eval.is_null() && (!spec.passkey || !passkey.is_null());
  if (!failed.is_null())
    r.status = "failed: " + failed.value("stage", std::string("?")) + " (" + failed.value("why", std::string("?")) + ")";
  else if (!trained.is_null() && evaluated)
    r.status = "done";
  else if (!trained.is_null())
    r.status = "trained";
  else if (!steps.empty() || fs::exists(d / "train"))
    r.status = "training";
  else
    r.status = "not started";
  return r;
}

std::string results_table(const AblationSpec& spec, const std::vector<RunResult>& runs) {
  std::ostringstream o;
  o << "| Model | Params | Speed (tokens/s) |";
  for (int64_t m : columns(spec)) o << " PPL " << m << "x |";
  if (any_passkey(runs)) o << " Passkey |";
  o << "\n|---|---:|---:|";
  for (size_t i = 0; i < columns(spec).size(); ++i) o << "---:|";
  if (any_passkey(runs)) o << "---:|";
  o << "\n";
  for (const auto& r : runs) {
    o << "| " << r.spec.label << " | " << human_params(r.params) << " | " << fmt("%.0f", r.tokens_per_s) << " |";
    for (int64_t m : columns(spec)) {
      const PplPoint* p = point_at(r, m);
      o << " " << (p ? fmt("%.2f", p->ppl) + (std::isfinite(p->ppl_se) && p->ppl_se > 0 ? " ± " + fmt("%.2f", p->ppl_se) : "") : "-") << " |";
    }
    if (any_passkey(runs)) o << " " << (r.spec.passkey ? fmt("%.0f%%", 100 * r.passkey_mean) : "") << " |";
    if (r.status != "done") o << " _" << r.status << "_";
    o << "\n";
  }
  return o.str();
}

void write_report(const AblationSpec& spec, const std::vector<RunResult>& runs) {
  const fs::path out(spec.out_dir);
  fs::create_directories(out / "plots");

  // results.csv: one row per run, every figure with its sample size.
  std::ostringstream csv;
  csv << "name,label,status,params,seq_len,tokens_trained,tokens_per_s,train_seconds";
  for (int64_t m : columns(spec))
    csv << ",context_" << m << "x,ppl_" << m << "x,ppl_se_" << m << "x,loss_" << m << "x,blocks_" << m << "x,tokens_" << m << "x";
  csv << ",passkey_mean\n";
  for (const auto& r : runs) {
    csv << csv_field(r.spec.name) << "," << csv_field(r.spec.label) << "," << csv_field(r.status) << "," << r.params << ","
        << r.seq_len << "," << r.tokens_trained << "," << csv_num("%.1f", r.tokens_per_s) << ","
        << csv_num("%.1f", r.train_seconds);
    for (int64_t m : columns(spec)) {
      const PplPoint* p = point_at(r, m);
      if (p)
        csv << "," << p->context << "," << csv_num("%.4f", p->ppl) << "," << csv_num("%.4f", p->ppl_se) << ","
            << csv_num("%.5f", p->loss) << "," << p->blocks << "," << p->tokens;
      else
        csv << ",,,,,,";
    }
    csv << "," << csv_num("%.4f", r.passkey_mean) << "\n";
  }
  io::write_file_atomic((out / "results.csv").string(), csv.str());

  // results.md: the table, then how it was measured.
  std::ostringstream md;
  md << "# Ablation " << spec.name << "\n\n";
  md << "From `" << spec.source << "`: " << runs.size() << " runs. Speed is the median training throughput of the\n"
     << "logged steps (tokens/s on this run's machine); PPL is validation perplexity ± standard error across blocks.\n\n";
  md << results_table(spec, runs) << "\n";
  for (const auto& r : runs) {
    if (r.ppl.empty()) continue;
    md << "PPL columns: prefixes of the same " << r.ppl.front().blocks << " held-out blocks of " << r.block_tokens
       << " tokens (";
    for (size_t i = 0; i < r.ppl.size(); ++i)
      md << (i ? ", " : "") << r.ppl[i].multiple << "x = " << r.ppl[i].context << " tokens x " << r.ppl[i].blocks
         << " blocks = " << r.ppl[i].tokens << " scored";
    md << "), training length " << r.seq_len << ".\n\n";
    break;  // the same data and lengths for every run that shares the dataset and seq_len
  }
  md << "| run | tokens trained | train time (s) | status |\n|---|---:|---:|---|\n";
  for (const auto& r : runs)
    md << "| " << r.spec.name << " | " << r.tokens_trained << " | " << fmt("%.0f", r.train_seconds) << " | " << r.status
       << " |\n";
  md << "\nPlots: `plots/loss.svg` (training loss), `plots/ppl_vs_context.svg`";
  if (any_passkey(runs)) md << ", `plots/passkey_<run>.svg`";
  md << ".\n";
  io::write_file_atomic((out / "results.md").string(), md.str());

  // Plots.
  plot::LineChart loss;
  loss.title = spec.name + ": training loss";
  loss.x_label = "training tokens";
  loss.y_label = "loss (nats)";
  plot::LineChart ppl;
  ppl.title = spec.name + ": validation perplexity vs context";
  ppl.x_label = "context length (tokens)";
  ppl.y_label = "perplexity";
  ppl.log_x = true;
  ppl.log_y = true;
  std::vector<double> ticks;
  for (const auto& r : runs) {
    plot::Series s{r.spec.label, {}, {}};
    for (const auto& [t, l] : r.loss_curve) s.x.push_back(t), s.y.push_back(l);
    if (!s.x.empty()) loss.series.push_back(s);
    plot::Series p{r.spec.label, {}, {}};
    for (const auto& pt : r.ppl) {
      p.x.push_back(static_cast<double>(pt.context));
      p.y.push_back(pt.ppl);
      if (std::find(ticks.begin(), ticks.end(), static_cast<double>(pt.context)) == ticks.end())
        ticks.push_back(static_cast<double>(pt.context));
    }
    if (!p.x.empty()) ppl.series.push_back(p);
    if (!r.passkey_accuracy.empty()) {
      plot::Heatmap h;
      h.title = "Passkey retrieval: " + r.spec.label;
      h.x_label = "document length (tokens)";
      h.y_label = "needle depth";
      for (int64_t l : r.passkey_lengths) h.columns.push_back(std::to_string(l));
      for (double dd : r.passkey_depths) h.rows.push_back(fmt("%.2f", dd));
      h.values = r.passkey_accuracy;
      plot::write_svg((out / "plots" / ("passkey_" + r.spec.name + ".svg")).string(), plot::heatmap_svg(h));
    }
  }
  std::sort(ticks.begin(), ticks.end());
  ppl.x_ticks = ticks;
  plot::write_svg((out / "plots" / "loss.svg").string(), plot::line_chart_svg(loss));
  plot::write_svg((out / "plots" / "ppl_vs_context.svg").string(), plot::line_chart_svg(ppl));
}

}  // namespace samba::ablate
