"""The ``langdml`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from langdml_core.config import SECTIONS, TrialConfig, field_docs
from langdml_core.errors import UserError

TRAIN_EPILOG = """\
Every config key can be set with --set section.key=value (values are parsed as YAML: 2, 1e-5, true,
[1, 2, 4]). Sections: data, model, loss, language, optim, eval, run. `langdml config` lists every key
with its default and meaning. Examples:
  langdml train --set data.name=demo --set run.epochs=2
  langdml train --set data.name=cub200 --set data.root=/data/cub --set model.backbone=resnet50.tv_in1k \\
      --set model.weights_file=/weights/resnet50_tv.safetensors --set loss.name=margin
Outputs in DIR: config.json, metrics.json (final + per-epoch), checkpoints (a rerun with the same DIR resumes).
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="langdml", description="Language-guided deep metric learning.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="run one trial locally, without Ray",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and evaluate one trial on this machine.",
    )
    train.add_argument("--config", help="JSON or YAML file with (nested or dotted) config keys")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set loss.name=margin (repeatable)",
    )
    train.add_argument("--out", help="output directory (same as --set run.out_dir=DIR)")

    show = sub.add_parser("config", help="print every config key with its default and meaning")
    show.add_argument("--json", action="store_true", help="print the defaults as JSON")

    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "config":
            return _show_config(args.json)
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to resume from the last checkpoint.", file=sys.stderr)
        return 130
    except UserError as exc:  # expected mistakes: one sentence; anything else keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + ([f"run.out_dir={args.out}"] if args.out else [])
    config = TrialConfig.load(args.config, overrides)  # refuse bad keys before the heavy imports
    from langdml_core.train import train_trial

    summary = train_trial(config)
    final = {k: v for k, v in summary["final"].items() if "/" in k and not k.startswith("train/")}
    print("final: " + json.dumps(final, indent=None))
    return 0


def _show_config(as_json: bool) -> int:
    defaults = TrialConfig().to_dict()
    if as_json:
        print(json.dumps(defaults, indent=2))
        return 0
    for section, cls in SECTIONS.items():
        print(f"[{section}]")
        docs = field_docs(cls)
        for key, value in defaults[section].items():
            print(f"  {section}.{key} = {value!r}\n      {docs.get(key, '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
