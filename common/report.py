"""The generated parts of README.md and results/README.md, from results/ (never typed by hand):
the results tables, the comparison with other runs, the claims table and the benchmark lines.

    python -m common.report           # print the results tables of README.md and results/README.md
    python -m common.report --write   # rewrite every generated block of both files
    python -m common.report --check   # exit 1, naming it, if a committed block is not current
"""
import json
import statistics
import sys

from pathlib import Path

from common import catalog, claims, journal

REPO = Path(__file__).resolve().parent.parent

START, END = "<!-- results:start -->", "<!-- results:end -->"
COMPARE_START, COMPARE_END = "<!-- comparison:start -->", "<!-- comparison:end -->"
BENCH_START, BENCH_END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"

# the tables' rows beyond the catalog's scripts: (results folder, label, the blog's figure)
OTHER_ROWS = [
    ("claims/noiseless/nice", "NICE without noise, `nice.py --noise 0`", "—"),
    ("nice_precision/float32", "NICE in float32, twin of the bfloat16 run", "—"),
    ("nice_precision/bfloat16", "NICE in bfloat16, `nice.py --precision bfloat16`", "—"),
]


def models():
    """(results folder, label, the blog's figure for its loss): each script of the catalog, then
    the other settings the tables show."""
    return [*[(s.name, f"{s.label}, `{s.file}`", s.blog) for s in catalog.SCRIPTS], *OTHER_ROWS]


# the command behind each row that no seed study or claim makes, and what it writes (relative
# to results/), for python -m common.reproduce
PRECISION = "python benchmarks/nice_throughput.py --train-epochs 30 --out-dir results/nice_precision"
COMMAND_OUTPUTS = {PRECISION: ["nice_precision/float32/manifest.json",
                               "nice_precision/bfloat16/manifest.json"]}
# each script's bfloat16 run at its defaults, relative to results/ (benchmarks/precision.py sets
# them beside the float32 seeds): NICE's made by PRECISION, the others' by PRECISION_STUDIES
PRECISION_RUNS = {s.name: "nice_precision/bfloat16" if s.name == "nice" else f"precision/{s.name}"
                  for s in catalog.SCRIPTS}
PRECISION_STUDIES = [f"python -m common.seeds {name} --seeds 0 --results results/precision -- "
                     "--precision bfloat16" for name, folder in PRECISION_RUNS.items()
                     if folder == f"precision/{name}"]
# NICE's NLL and bits/dim are those of dequantised test images; a run from before that bound
# has only the density at the pixel values, which bounds nothing, and shows "—"
NLL_KEYS = ("test_dequantised_nll", "test_dequantised_bits_per_dim")
IW_KEYS = ("test_iw_nll", "test_iw_bits_per_dim")  # the tighter importance-weighted bound


# Every key a metrics.json may hold, the same name for the same quantity in every script.
METRICS = {
    "epochs": "training epochs run",
    "final_loss": "training loss of the last epoch (the blog's loss, constants left out)",
    "final_val_loss": "test-set loss after the last epoch (the blog's validation loss)",
    "best_val_loss": "lowest test-set loss over the epochs",
    "best_epoch": "epoch (from 1) of best_val_loss",
    "seconds_per_epoch": "mean wall time of a training epoch, validation included",
    "train_seconds": "wall time of all training epochs",
    "eval_seconds": "wall time of the figures and metrics after training",
    "test_loss": "the blog's loss on the test set for the weights evaluated (NICE: the best "
                 "epoch's; the VAEs: the last epoch's)",
    "kl_constant": "nats of the KL that the blog's loss leaves out (a constant)",
    "test_neg_elbo": "test -ELBO in nats with every constant (Gumbel-Softmax: of the discrete "
                     "model, by sampling)",
    "test_neg_elbo_stderr": "standard error of test_neg_elbo where it is a sampled estimate",
    "test_relaxed_neg_elbo": "Gumbel-Softmax: final_val_loss + kl_constant (relaxed codes)",
    "test_nll": "VAEs: test negative log-likelihood in nats, importance sampled. NICE runs made "
                "before the dequantised bound hold here the loss + 720.448, the density at the "
                "pixel values, which bounds nothing (the report leaves it out)",
    "test_nll_stderr": "standard error of the importance-sampled test_nll",
    "is_samples": "importance samples K per test image",
    "is_images": "test images in the importance-sampled estimates",
    "test_bits_per_dim": "NICE runs made before the dequantised bound: (test_nll + 784 ln 256) "
                         "/ (784 ln 2), not a bound (the report leaves it out)",
    "test_neg_log_density": "NICE: -log p(x) in nats at the test images' pixel values x / 255 "
                            "(the blog's loss + 720.448): a density, not a probability",
    "test_dequantised_nll": "NICE: E_u[-log p((pixel + u) / 255)] + 784 ln 255 over the test "
                            "images, u ~ U(0, 1): an upper bound on their discrete NLL, nats",
    "test_dequantised_nll_mc_se": "NICE: Monte Carlo standard error of test_dequantised_nll (the "
                                  "u draws; the test images fixed)",
    "test_dequantised_bits_per_dim": "NICE: test_dequantised_nll / (784 ln 2)",
    "test_dequantised_bits_per_dim_mc_se": "NICE: Monte Carlo standard error of the bits/dim",
    "dequantisation_draws": "NICE: draws of u per test image",
    "test_dequantised_nll_image_se": "NICE: standard error of test_dequantised_nll over the test "
                                     "images",
    "iw_draws": "NICE: draws K of u per test image for the importance-weighted bound",
    "test_iw_nll": "NICE: importance-weighted dequantised bound, -log (1/K) sum_k p((pixel + u_k) "
                   "/ 255) + 784 ln 255, mean over the test images: an upper bound on their "
                   "discrete NLL that falls towards it as K grows, nats",
    "test_iw_bits_per_dim": "NICE: test_iw_nll / (784 ln 2)",
    "test_iw_nll_by_bins": "NICE: the importance-weighted bound for bins above ([k, k + 1) / 255), "
                           "around and below each pixel value, each with its Monte Carlo error "
                           "over the draws, its standard error over the images, and its value "
                           "at K = 1, 2, 4, ... from the same draws",
    "test_per_image": "the file (test_per_image.npy, float32) holding each scored test image's "
                      "values, a column each, and the columns' names: the VAEs' nll and "
                      "neg_elbo_sampled, Gumbel-Softmax's nll and neg_elbo (discrete), NICE's "
                      "neg_log_density and iw_nll_<placement>; the claims pair differences over "
                      "the images with them",
    "sample_fd_by_std": "NICE: Frechet distance in pixel space between 10,000 clipped samples at "
                        "each sampling std and the 10,000 test images (lower: closer)",
    "sample_fd_best_std": "NICE: the sampling std of the lowest sample_fd_by_std",
    "sample_below_zero": "NICE: fraction of sample pixels below 0 before clipping (z at "
                         "--sample-std, 10,000 samples)",
    "sample_above_one": "NICE: fraction of sample pixels above 1 before clipping",
    "sample_background": "NICE: mean clipped value of the sample pixels under 1/2 (0: clean black)",
    "sample_std1_below_zero": "NICE: sample_below_zero with z at std 1",
    "sample_std1_above_one": "NICE: sample_above_one with z at std 1",
    "sample_std1_background": "NICE: sample_background with z at std 1",
    "scale_black_pixels": "NICE: pixels black in every training image",
    "scale_black_mean": "NICE: mean exp(-s) over those pixels",
    "scale_other_mean": "NICE: mean exp(-s) over the other pixels",
    "test_neg_elbo_sampled": "VAEs: -ELBO in nats estimated from the importance samples, "
                             "-mean_k log w_k",
    "latent_empty_cells": "Gaussian VAE, 2-D codes: fraction of a 20 x 20 grid over the central "
                          "98% of the test codes z_mean with no code in it",
    "latent_code_sd": "Gaussian VAE: standard deviation of the test codes z_mean per axis",
    "latent_mean_sigma": "Gaussian VAE: mean posterior standard deviation exp(z_log_var / 2)",
    "gradient_images": "Gumbel-Softmax: test images of the gradient-variance estimate",
    "gradient_draws": "Gumbel-Softmax: single-sample gradient estimates per image",
    "grad_var_reinforce": "Gumbel-Softmax: variance of the score-function (REINFORCE) estimate "
                          "of d E_q[-log p(x|c)] / d logits, summed over logits, mean over images",
    "grad_var_reparam_tau_max": "Gumbel-Softmax: the same for the reparameterised estimate at "
                                "tau = --tau-max",
    "grad_var_ratio_tau_max": "grad_var_reinforce / grad_var_reparam_tau_max",
    "grad_var_reparam_final_tau": "the reparameterised estimate's variance at the final tau",
    "grad_var_ratio_final_tau": "grad_var_reinforce / grad_var_reparam_final_tau",
    "grad_norm_by_tau": "Gumbel-Softmax: for each tau, the reparameterised estimates' norms "
                        "(over logits): median and mean over images and draws, and the mean over "
                        "images of the norm of their mean over draws",
    "final_tau": "Gumbel-Softmax: tau of the last training batch",
    "precision": "NICE: float32 or bfloat16 matrix products",
    "trainable_params": "trained weights",
    "machine": "CPU the run's timings come from",
}


def fmt(value, digits=1):
    return "—" if value is None else f"{value:.{digits}f}".replace("-", "−")


def run_minutes(m):
    evaluation = m.get("eval_seconds")
    return f"{fmt(m['train_seconds'] / 60)} + {fmt(None if evaluation is None else evaluation / 60)}"


def seed_summary(folder):
    """results/<folder>/seeds.json (written by `python -m common.seeds`), or None."""
    path = REPO / "results" / folder / "seeds.json"
    return json.loads(path.read_text()) if path.exists() else None


SAMPLED = ("test_nll", "test_neg_elbo")  # estimates whose image count may differ between seeds
MIXED = "†"


def cell(m, seeds, key, digits):
    """The default run's value; below it, if a seed study covers it, mean ± sd over the seeds.

    The spread is left out if the study's seed 0 is not this default run (a stale seeds.json),
    and marked † if its seeds estimated `key` on different numbers of test images.
    """
    text = fmt(m.get(key), digits)
    spread = (seeds or {}).get("metrics", {}).get(key)
    if seeds and len(seeds.get("seeds", [])) > 1 and not spread and m.get(key) is not None:
        return f"{text} (seed 0 only)"  # some seeds lack the metric: no spread over all of them
    if not spread or spread["sd"] is None:
        return text
    if 0 in spread["seeds"] and spread["values"][spread["seeds"].index(0)] != m.get(key):
        return text
    mark = MIXED if key in SAMPLED and len(set((seeds.get("is_images") or {}).values())) > 1 else ""
    return f"{text}<br>{fmt(spread['mean'], digits)} ± {fmt(spread['sd'], digits)}{mark}"


def read_run(folder):
    """(metrics, seed study or None, number of seeds) of the run in results/<folder>, its
    metrics.json checked against its manifest; None if there is no such run."""
    path = REPO / "results" / folder / "metrics.json"
    if not path.exists():
        return None
    seeds = seed_summary(folder)
    return (json.loads(journal.read_published(path.parent, path.name)), seeds,
            len(seeds["seeds"]) if seeds else 1)


def nll_keys(m):
    """The keys of a run's NLL and bits/dim: NICE's are the dequantised bound's, importance-
    weighted where the run has that one."""
    if IW_KEYS[0] in m:
        return IW_KEYS
    flow = "test_neg_log_density" in m or "test_bits_per_dim" in m
    return NLL_KEYS if flow else ("test_nll", "test_bits_per_dim")


NICE_EPOCH = ("NICE's loss and bound are those of the epoch with the best test loss, chosen on "
              "the test set as the original script does, which flatters them")


def notes(lines, where=""):
    """The lines under a results table: what its † marks (`where` says where to look) and, with
    a NICE row, which epoch NICE's figures are from."""
    found = []
    if any(MIXED in line for line in lines[2:]):
        found.append(f"{MIXED} over seeds whose estimates use different numbers of test images"
                     + (f" {where}" if where else ""))
    if any(line.startswith("| NICE") for line in lines):
        found.append(NICE_EPOCH)
    return ["", "<br>".join(found)] if found else []


def bound_label(m):
    """Which of NICE's bounds a row's NLL is (bins above each pixel, as every NICE run has
    them); empty for the VAEs."""
    if IW_KEYS[0] in m:
        return f"<br>(importance-weighted, K = {m['iw_draws']}, bins above)"
    if NLL_KEYS[0] in m:
        draws = f", {m['dequantisation_draws']} draws" if "dequantisation_draws" in m else ""
        return f"<br>(plain{draws}, bins above)"
    return ""


def row(folder, label, blog):
    found = read_run(folder)
    if found is None:
        return None
    m, seeds, count = found
    elbo_text = cell(m, seeds, "test_neg_elbo", 1)
    if "test_relaxed_neg_elbo" in m:
        elbo_text = (f"{cell(m, seeds, 'test_relaxed_neg_elbo', 1)} relaxed; {elbo_text} "
                     "discrete")
    nll_key, bits_key = nll_keys(m)
    return (f"| {label} | {m['epochs']} | {count} | {cell(m, seeds, 'test_loss', 2)} | {blog} | "
            f"{elbo_text} | {cell(m, seeds, nll_key, 2)}{bound_label(m)} | "
            f"{cell(m, seeds, bits_key, 3)} | {cell(m, seeds, 'seconds_per_epoch', 1)} | "
            f"{run_minutes(m)} |")


def table():
    lines = ["| model | epochs | seeds | our loss as the blog computes it (test set) | blog | "
             "test −ELBO, nats, all constants | test NLL, nats: the VAEs' importance-sampled "
             "−log p(x / 255) under the Bernoulli decoder (grey levels, not a discrete "
             "likelihood); NICE's upper bound on the 8-bit pixels' −log P (dequantised, with "
             "each pixel's bin above its value; which bound, under the figure) | "
             "bits/dim (NICE: the same bound) | s/epoch | minutes: "
             "training + evaluation |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [r for r in (row(*m) for m in models()) if r]
    return "\n".join(lines + notes(lines, "(`is_images` in the model's seeds.json)"))


# The blog's figure to hold our seeds against: (results folder, what, epoch or None for the value in
# metrics.json, metric key, source, values). The original scripts' reruns follow (references()).
BLOG = [
    ("nice", "best test loss", None, "best_val_loss", "the blog (\"about\", within 20 epochs)",
     [-2200.0]),
    ("claims/noiseless/nice", "best test loss within 20 epochs, trained without noise", 20,
     "best_val_loss", "the blog (\"about\", within 20 epochs)", [-2200.0]),
]


def references():
    """BLOG, then each script's original reruns after each of its catalog epochs, in the same
    form, with a last field: True for a script's last compared epoch (the README shows it)."""
    refs = [(*r, False) for r in BLOG]
    for script in catalog.SCRIPTS:
        losses, source = catalog.original_losses(script.name)
        refs += [(script.name, f"test loss after epoch {e}", e, "val_loss", source, values,
                  e == max(losses)) for e, values in losses.items()]
    return refs


def seed_values(folder, epoch, key):
    """Each seed's value of `key`: from metrics.json, or after `epoch` from its history.csv
    ("best_val_loss": the lowest validation loss of the first `epoch` epochs)."""
    summary = seed_summary(folder)
    if summary is None:
        return None
    if epoch is None:
        return summary["metrics"][key]["values"]
    histories = [journal.read_history(REPO / path / "history.csv")
                 for path in summary["runs"].values()]
    if any(len(h["val_loss"]) < epoch for h in histories):
        return None  # a run shorter than the reference's epoch
    if key == "best_val_loss":
        return [float(min(h["val_loss"][:epoch])) for h in histories]
    return [float(h[key][epoch - 1]) for h in histories]


def comparison():
    """Reference figures against the spread of our seeds: inside their range or not."""
    lines = ["| quantity | reference | value | our seeds: mean ± sd (min to max) | reference "
             "within our range? |", "|---|---|---|---|---|"]
    for folder, what, epoch, key, source, values, _ in references():
        ours = seed_values(folder, epoch, key)
        if not ours or len(ours) < 2:
            continue
        mean, sd = sum(ours) / len(ours), statistics.stdev(ours)
        verdicts = []
        for v in values:
            inside = min(ours) <= v <= max(ours)
            away = f"{fmt(abs(v - mean) / sd)} sd" if sd > 0 else f"{fmt(abs(v - mean))} nats"
            verdicts.append("yes" if inside else f"no: {away} from our mean")
        lines.append(f"| {folder}: {what} | {source} | {', '.join(fmt(v, 1) for v in values)} | "
                     f"{fmt(mean, 1)} ± {fmt(sd, 1)} ({fmt(min(ours), 1)} to {fmt(max(ours), 1)}), "
                     f"{len(ours)} seeds | {'; '.join(verdicts)} |")
    return "\n".join(lines) if len(lines) > 2 else "(no seed study yet)"


KEY_LINES = ("jax/tensorflow:", "torch/tensorflow:", "bfloat16/tensorflow:")  # speed ratios


def benchmarks(folder=REPO / "results" / "benchmarks"):
    """Each committed benchmark output's command and machine, its backend line, its last line;
    for a file of several sittings (each begun by its `$ ` command), each sitting's, with its
    machine line where it differs from the first's."""
    blocks = []
    root = Path(folder).parent.parent  # the paths are shown as results/benchmarks/<file>
    for path in sorted(Path(folder).glob("*.txt")):
        sittings = [[]]
        for line in path.read_text().strip().splitlines():
            if line.startswith("$ ") and sittings[-1]:
                sittings.append([])
            if line.strip():
                sittings[-1].append(line)
        machines = [next((l for l in lines if l.startswith("machine:")), None)
                    for lines in sittings]
        shown = []
        for lines, machine in zip(sittings, machines):
            shown += [l for l in lines[:1] if l.startswith("$ ")]
            if machine is not None and machine != machines[0]:
                shown.append(machine)
            shown += [l for l in lines[:-1] if l.startswith(KEY_LINES)]
            shown += lines[-1:]
        head = machines[0] or "machine: not recorded"
        blocks.append("\n    ".join([f"{path.relative_to(root)} ({head})", *shown]))
    return "\n".join(blocks)


def summary_row(folder, label, blog, refs):
    """A model's line in README.md: the loss as the blog computes it beside the blog's and the
    original script's figures, the NLL and the run time."""
    found = read_run(folder)
    if found is None:
        return None
    m, seeds, count = found
    nll_key, bits_key = nll_keys(m)
    nll = cell(m, seeds, nll_key, 2)
    if nll_key in (NLL_KEYS[0], IW_KEYS[0]) and nll_key in m:  # NICE: the bound in bits/dim too
        nll += (f"<br>{cell(m, seeds, bits_key, 3).replace('<br>', ' bits/dim; ')} bits/dim"
                + bound_label(m))
    original = []
    for ref_folder, what, epoch, key, source, values, last in refs:
        ours = seed_values(ref_folder, epoch, key) if ref_folder == folder and last else None
        if ours and len(ours) > 1:
            original.append(f"{what}: {', '.join(fmt(v) for v in values)}; ours "
                            f"{fmt(statistics.mean(ours))} ± {fmt(statistics.stdev(ours))}")
    return (f"| {label} | {m['epochs']} | {count} | {cell(m, seeds, 'test_loss', 2)} | {blog} | "
            f"{'<br>'.join(original) or 'not rerun'} | {nll} | {run_minutes(m)} |")


def summary_rows():
    return [*[(s.name, s.label) for s in catalog.SCRIPTS],
            ("claims/noiseless/nice", "NICE without noise (`--noise 0`)")]


def summary_table():
    """README.md's table: the default runs (and the noiseless NICE seeds), fewer columns."""
    blogs = {folder: blog for folder, _, blog in models()}
    blogs["claims/noiseless/nice"] = "about −2200 within 20 epochs (likely this model)"
    lines = ["| model | epochs | seeds | test loss as the blog computes it: seed 0<br>mean ± sd "
             "over the seeds | the blog | the original script rerun, against our seeds | "
             "test NLL, nats (VAEs: Bernoulli likelihood of the grey levels, importance-sampled; "
             "NICE: upper bound on the discrete NLL of the 8-bit pixels, dequantised; which bound, "
             "under the figure) | "
             "minutes: training + "
             "evaluation |",
             "|---|---|---|---|---|---|---|---|"]
    refs = references()  # the original reruns' logs, read once for every row
    lines += [r for r in (summary_row(f, label, blogs[f], refs) for f, label in summary_rows())
              if r]
    return "\n".join(lines + notes(lines))


# The generated blocks of each document: (file, start marker, end marker, generator)
BLOCKS = [
    ("README.md", START, END, summary_table),
    ("results/README.md", START, END, table),
    ("results/README.md", COMPARE_START, COMPARE_END, comparison),
    ("results/README.md", claims.START, claims.END, claims.table),
    ("results/README.md", BENCH_START, BENCH_END, lambda: f"```\n{benchmarks()}\n```"),
]


def replace_between(doc, start, end, text):
    head, rest = doc.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{text}\n{end}{tail}"


def rendered(root=None):
    """{file: (committed text, the text with every generated block made anew)}."""
    root = REPO if root is None else Path(root)
    out = {}
    for name, start, end, make in BLOCKS:
        path = root / name
        if name not in out:
            text = path.read_text() if path.exists() else ""
            out[name] = (text, text)
        committed, doc = out[name]
        if start in doc:
            out[name] = (committed, replace_between(doc, start, end, make()))
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        text = f"README.md:\n{summary_table()}\n\nresults/README.md:\n{table()}"
        docs = rendered() if {"--write", "--check"} & set(argv) else {}
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    stale = [name for name, (old, new) in docs.items() if old != new]
    if "--check" in argv:
        if stale:
            raise SystemExit(f"not current: {', '.join(stale)} (run python -m common.report --write)")
        print("every generated block is current")
        return
    for name in stale if "--write" in argv else []:
        (REPO / name).write_text(docs[name][1])
    print(text)


if __name__ == "__main__":
    main()
