#pragma once
// What `samba eval` and `samba passkey` start from: a trained model and the dataset (hence
// tokenizer) it was trained on, found from the run when not given.
#include <string>

#include "samba/ckpt/export.h"
#include "samba/data/prepare.h"

namespace samba {

struct EvalInputs {
  ckpt::LoadedModel model;
  data::DatasetManifest dataset;
  int64_t params = 0;
};

// `model_dir`: an export, checkpoint or run directory. `data_dir` "" = the dataset recorded in
// the checkpoint's trainer.json; an error says to pass --data when neither is known.
EvalInputs load_eval_inputs(const std::string& model_dir, const std::string& data_dir);

}  // namespace samba
