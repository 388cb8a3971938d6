"""The README's results table, generated from results/*/metrics.json (never typed by hand).

    python -m common.report           # print the table
    python -m common.report --write   # replace the table between the markers in README.md
"""
import json
import sys

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

START, END = "<!-- results:start -->", "<!-- results:end -->"

# (results folder, label, blog's figure for its own loss)
MODELS = [
    ("vae_keras", "Gaussian VAE, `vae_keras.py`", "none given"),
    ("vae_vmf_keras", "vMF-VAE, `vae_vmf_keras.py`", "none given"),
    ("vae_keras_cnn_gs", "Gumbel-Softmax VAE, `vae_keras_cnn_gs.py`", "none given"),
    ("nice", "NICE, `nice.py`", "about −2200 within 20 epochs; 11 s/epoch on a GTX 1070"),
    ("nice_noiseless", "NICE without noise, `nice.py --noise 0`", "—"),
    ("nice_precision/float32", "NICE in float32, twin of the bfloat16 run", "—"),
    ("nice_precision/bfloat16", "NICE in bfloat16, `nice.py --precision bfloat16`", "—"),
]


def fmt(value, digits=1):
    return "—" if value is None else f"{value:.{digits}f}".replace("-", "−")


def row(folder, label, blog):
    path = REPO / "results" / folder / "metrics.json"
    if not path.exists():
        return None
    m = json.loads(path.read_text())
    loss = m.get("best_val_loss", m.get("final_val_loss"))
    elbo = m.get("test_neg_elbo", m.get("test_discrete_neg_elbo"))
    if "final_val_relaxed_neg_elbo" in m:
        elbo_text = (f"{fmt(m['final_val_relaxed_neg_elbo'])} relaxed; "
                     f"{fmt(m['test_discrete_neg_elbo'])} discrete")
    else:
        elbo_text = fmt(elbo)
    nll = m.get("test_nll_is", m.get("test_nll_nats"))
    bpd = m.get("test_bits_per_dim")
    return (f"| {label} | {m['epochs']} | {fmt(loss, 2)} | {blog} | {elbo_text} | {fmt(nll, 2)} | "
            f"{fmt(bpd, 3)} | {fmt(m.get('seconds_per_epoch'))} |")


def table():
    lines = ["| model | epochs | our loss as the blog computes it (test set) | blog | test −ELBO, "
             "nats, all constants | test NLL, nats | bits/dim | s/epoch (2 CPU cores) |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [r for r in (row(*m) for m in MODELS) if r]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = table()
    if "--write" in argv:
        readme = REPO / "README.md"
        doc = readme.read_text()
        head, rest = doc.split(START)
        _, tail = rest.split(END)
        readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print(text)


if __name__ == "__main__":
    main()
