"""What --precision bfloat16 trades: each script's bfloat16 run at its defaults beside the spread
of its float32 seed study.

Reads committed runs only (no Keras, no training):
  - the bfloat16 run of each script at the blog's settings, in the folder
    `common.report.PRECISION_RUNS` names: made by the commands of `PRECISION_STUDIES` (`python -m
    common.seeds <script> --seeds 0 --results results/precision -- --precision bfloat16`; all of
    them: `python -m common.reproduce --only precision`), and NICE's by
    benchmarks/nice_throughput.py (results/nice_precision/bfloat16/);
  - the float32 seed study of the script (results/<script>/seeds.json).
For each metric: the bfloat16 value, the float32 seeds' mean, sd, range, and how many float32
sds the bfloat16 value lies from their mean; its seconds per epoch beside theirs (runs made at
different times, perhaps on other machines: the speed-up measured in one run, alternating the
two, is `python benchmarks/epoch_time.py --bfloat16`'s). A script without a bfloat16 run says so.

Usage: python benchmarks/precision.py
"""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common import catalog, journal, report  # noqa: E402

RESULTS = REPO / "results"
METRICS = ("test_loss", "test_neg_elbo", "test_nll", "test_dequantised_nll")


def compare(script):
    """Lines comparing the script's bfloat16 run with its float32 seeds."""
    folder = RESULTS / report.PRECISION_RUNS[script]
    if not (folder / "metrics.json").exists():
        return [f"{script}: no bfloat16 run yet ({folder.relative_to(REPO)})"]
    bf16 = json.loads(journal.read_published(folder, "metrics.json"))
    study = json.loads((RESULTS / script / "seeds.json").read_text())["metrics"]
    lines = [f"{script}: bfloat16 run {folder.relative_to(REPO)} ({bf16.get('machine', 'machine not recorded')}) "
             f"against the float32 seed study results/{script}/seeds.json"]
    for key in (*METRICS, "seconds_per_epoch"):
        if key not in bf16 or key not in study:
            continue
        s = study[key]
        away = (bf16[key] - s["mean"]) / s["sd"] if s.get("sd") else float("nan")
        lines.append(f"    {key}: bfloat16 {bf16[key]:.2f}; float32 {s['mean']:.2f} +- "
                     f"{s['sd']:.2f} (min {s['min']:.2f}, max {s['max']:.2f}, "
                     f"{len(s['values'])} seeds): {away:+.1f} sd"
                     + ("" if key != "seconds_per_epoch" else " (different runs: see "
                        "epoch_time.py --bfloat16 for the speed-up)"))
    return lines


def main():
    print("machine: each bfloat16 run's, named on its line (this command only reads them)")
    for row in catalog.SCRIPTS:
        print("\n".join(compare(row.name)))


if __name__ == "__main__":
    main()
