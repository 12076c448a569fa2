#include "samba/eval/inputs.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "samba/core/error.h"

namespace samba {
namespace fs = std::filesystem;

namespace {

// The dataset a checkpoint was trained on, from its trainer.json; "" when unknown.
std::string dataset_of(const std::string& source) {
  const fs::path trainer = fs::path(source) / "trainer.json";
  if (!fs::exists(trainer)) return "";
  try {
    std::ifstream in(trainer);
    auto j = nlohmann::json::parse(in);
    return j.value("dataset_dir", "");
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace

EvalInputs load_eval_inputs(const std::string& model_dir, const std::string& data_dir) {
  EvalInputs in;
  in.model = ckpt::load_model(model_dir);
  const std::string data = data_dir.empty() ? dataset_of(in.model.source) : data_dir;
  check(!data.empty(), model_dir, " does not say which data it was trained on: pass --data <dataset dir>");
  in.dataset = data::load_dataset_manifest(data);
  for (const auto& p : in.model.model->parameters()) in.params += p.numel();
  return in;
}

}  // namespace samba
