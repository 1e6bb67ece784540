"""Table 1 of Roth et al. 2022: language guidance on top of three DML objectives, three datasets.

datasets {cub200, cars196, sop} x losses {multisimilarity, margin, s2sd} x guidance {none, elg, plg} x 3 seeds,
ResNet-50 128-d, each cell with the release's recipe (langdml_core/paper.py; the release's benchmark script,
commit b07ac5b, ran the PLG cells of CUB200 and CARS196):

    cell                      epochs  batch  omega (PLG, ELG)             S2SD feature distillation
    cub200  multisimilarity   200     90     7.5 release                  -
    cub200  s2sd              300     108    1.5 release                  weight 125, delay 0, avg+max pool
    cub200  margin            200     90     7.5 stand-in (msim's)        -
    cars196 multisimilarity   250     108    6   release                  -
    cars196 s2sd              250     108    2.5 release                  weight 50, delay 0, avg+max pool
    cars196 margin            250     108    6   stand-in (msim's)        -
    sop     every loss        100     108    0.5 stand-in                 (s2sd) weight 50, delay 0 (stand-ins)

ELG and no-guidance cells take their PLG cell's epochs, batch and S2SD settings (derived); ELG its omega too,
no guidance omega 0. Adam lr 1e-5, wd 4e-4, constant lr, 2 samples per class (the release's sampler), the
release's loss formulations, CARS196 split and PLG transform, fp32; CLIP ViT-B/32 text tower, PLG top-5 from
a ResNet-50 ImageNet classifier. Every epoch is evaluated (the paper's tables take the best test epoch; the
report shows it beside the last epoch). For speed only (langdml, not the release): the decoded-image cache and
loader workers from each trial's CPU share (README, "Throughput and sizing a trial").
`python sweeps/table1.py --list --resolve` prints every value of every trial with its source (release,
derived, stand-in or langdml).

Command: ray submit cluster/gpu.yaml sweeps/table1.py   (or: python sweeps/table1.py --address auto)
Needs: $LANGDML_DATA_ROOT/{cub200,cars196,sop}, torchvision ResNet-50 weights and CLIP ViT-B/32 in the HF cache.
Trials: 81
Cost: about 344 GPU-hours on A10Gs (estimate: cluster/README.md, python cluster/cost.py).
"""

from langdml_core import paper

NAME = "table1"


def get_config():
    return {}


def get_sweep():
    return {
        "data.name": ["cub200", "cars196", "sop"],
        "loss.name": ["multisimilarity", "margin", "s2sd"],
        "language.guidance": ["none", "elg", "plg"],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    return paper.recipe(trial["data.name"], 128, trial["loss.name"], trial["language.guidance"])


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
