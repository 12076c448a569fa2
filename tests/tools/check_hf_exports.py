#!/usr/bin/env python3
"""Loads samba's Hugging Face exports with transformers and compares logits with ours.

Used by scripts/gpu/check_hf_exports.sh on a machine with torch, transformers and safetensors:
  check_hf_exports.py compare EXPORT_DIR CLASS [--tol 1e-4]
      load EXPORT_DIR with transformers (fp32, CPU, eager attention), check the class name and
      compare its logits on EXPORT_DIR/logits.safetensors' input_ids with ours in that file
  check_hf_exports.py make FAMILY HF_DIR TOKENS
      write a random transformers model (llama | mistral | mamba) with non-trivial weights to
      HF_DIR (save_pretrained, safetensors) and its logits on TOKENS to HF_DIR/hf_logits.safetensors
  check_hf_exports.py same-logits OURS.safetensors THEIRS.safetensors [--tol 1e-4]
      compare two logits files (ours from `samba import --logits-for`, theirs from `make`)
Exit status 0 when everything matches, 1 otherwise (each problem printed).
"""
import argparse
import sys

import torch
from safetensors.torch import load_file, save_file


def load_hf(path):
    import transformers
    kwargs = dict(attn_implementation="eager")
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    except TypeError:  # transformers 4.x spells it torch_dtype
        model = transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, **kwargs)
    return model.float().eval()


def hf_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def report(name, ours, theirs, tol):
    if ours.shape != theirs.shape:
        print(f"FAIL {name}: logits shape {tuple(theirs.shape)} (transformers) vs {tuple(ours.shape)} (samba)")
        return False
    diff = (ours - theirs).abs().max().item()
    scale = theirs.abs().max().item()
    ok = diff < tol
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max |logit diff| = {diff:.3g} (max |logit| {scale:.3g}, tolerance {tol:g})")
    return ok


def compare(args):
    model = load_hf(args.dir)
    got_class = type(model).__name__
    if got_class != args.cls:
        print(f"FAIL {args.dir}: transformers built {got_class}, expected {args.cls}")
        return False
    ref = load_file(f"{args.dir}/logits.safetensors")
    return report(f"{args.dir} ({got_class})", ref["logits"], hf_logits(model, ref["input_ids"]), args.tol)


def randomize(model, seed):
    """Weights far from init, so that RoPE, windows, gates and norms all show in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("A_log"):
                p.add_(0.1 * noise)
            elif name.endswith("dt_proj.bias"):
                p.add_(0.2 * noise)
            elif p.dim() == 1:  # norm scales, D
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(noise / p.shape[-1] ** 0.5)


def make(args):
    import transformers
    common = dict(vocab_size=97, hidden_size=64, num_hidden_layers=3)
    if args.family == "llama":
        # transformers 5 takes rope_parameters, 4.x rope_theta; a non-default base shows a wrong mapping.
        import inspect
        if "rope_parameters" in inspect.signature(transformers.LlamaConfig.__init__).parameters:
            rope = dict(rope_parameters={"rope_type": "default", "rope_theta": 5000.0})
        else:
            rope = dict(rope_theta=5000.0)
        cfg = transformers.LlamaConfig(intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
                                       tie_word_embeddings=False, **rope, **common)
        cls = transformers.LlamaForCausalLM
    elif args.family == "mistral":
        cfg = transformers.MistralConfig(intermediate_size=96, num_attention_heads=4, num_key_value_heads=1,
                                         sliding_window=8, tie_word_embeddings=False, **common)
        cls = transformers.MistralForCausalLM
    elif args.family == "mamba":
        cfg = transformers.MambaConfig(state_size=8, expand=2, conv_kernel=4, tie_word_embeddings=True, **common)
        cls = transformers.MambaForCausalLM
    else:
        print(f"unknown family {args.family}")
        return False
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = cls(cfg).float().eval()
    randomize(model, 1)
    model.save_pretrained(args.dir, safe_serialization=True)
    ids = torch.tensor([[int(t) for t in args.tokens.split(",")]], dtype=torch.int64)
    save_file({"input_ids": ids, "logits": hf_logits(model, ids).contiguous()}, f"{args.dir}/hf_logits.safetensors")
    print(f"made random {cls.__name__} in {args.dir}")
    return True


def same_logits(args):
    ours, theirs = load_file(args.ours), load_file(args.theirs)
    if not torch.equal(ours["input_ids"], theirs["input_ids"]):
        print("FAIL: the two files hold logits for different tokens")
        return False
    return report(f"{args.ours} vs {args.theirs}", ours["logits"], theirs["logits"], args.tol)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("dir")
    c.add_argument("cls")
    c.add_argument("--tol", type=float, default=1e-4)
    m = sub.add_parser("make")
    m.add_argument("family")
    m.add_argument("dir")
    m.add_argument("tokens")
    s = sub.add_parser("same-logits")
    s.add_argument("ours")
    s.add_argument("theirs")
    s.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args()
    ok = {"compare": compare, "make": make, "same-logits": same_logits}[args.cmd](args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
