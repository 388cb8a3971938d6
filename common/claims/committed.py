"""What every post's claims use: the committed runs read back (each file checked against its
run's manifest), links to their figures, the `Claim` row, and `departure`, a measured
difference without a verdict."""
import json
from pathlib import Path

from common import journal
from common.rules import MIN_SEEDS, Arm, Missing, lower, mean_sd, num, pairing

REPO = Path(__file__).resolve().parent.parent.parent

GAUSS = "[7725](https://kexue.fm/archives/7725)"
VMF = "[8404](https://kexue.fm/archives/8404)"
GUMBEL = "[6705](https://kexue.fm/archives/6705)"
FLOW = "[5776](https://kexue.fm/archives/5776)"


def metrics(folder):
    """results/<folder>/metrics.json, checked against its manifest."""
    path = REPO / "results" / folder
    if not (path / "metrics.json").exists():
        raise Missing(f"results/{folder}")
    return Metrics(folder, json.loads(journal.read_published(path, "metrics.json")))


class Metrics(dict):
    """A run's metrics; one it lacks (a run from before the metric existed) raises Missing."""

    def __init__(self, folder, values):
        super().__init__(values)
        self.folder = folder

    def __missing__(self, key):
        raise Missing(f"{key} of results/{self.folder}")


def per_image(folder, where):
    """{column: each test image's value} of a run's per-image file, `where` being its
    metrics.json entry ({"file", "columns"}), checked against the run's manifest."""
    import io

    import numpy as np

    data = journal.read_published(REPO / "results" / folder, where["file"], binary=True)
    table = np.load(io.BytesIO(data), allow_pickle=False)
    return {c: table[:, i] for i, c in enumerate(where["columns"])}


def history(folder):
    path = REPO / "results" / folder / "history.csv"
    if not path.exists():
        raise Missing(f"results/{folder}")
    return journal.read_history(path)


def seed_runs(folder, need=1):
    """The run folders (relative to results/) of the seed study in results/<folder>, or the
    folder alone where it has no study; Missing if fewer than `need`."""
    path = REPO / "results" / folder / "seeds.json"
    if path.exists():
        runs = json.loads(path.read_text())["runs"].values()
        found = [str(Path(r).relative_to("results")) for r in runs]
    else:
        metrics(folder)
        found = [folder]
    if len(found) < need:
        raise Missing(f"{need} seeds of results/{folder} (it has {len(found)})")
    return found


def seed_values(folder, key, need=MIN_SEEDS):
    return [metrics(f)[key] for f in seed_runs(folder, need)]


def best_within(folder, epochs, need=MIN_SEEDS):
    """Each seed's lowest validation loss in its first `epochs` epochs."""
    out = []
    for f in seed_runs(folder, need):
        h = history(f)
        if len(h["val_loss"]) < epochs:
            raise Missing(f"results/{f} with {epochs} epochs")
        out.append(float(min(h["val_loss"][:epochs])))
    return out


PER_IMAGE = "test_per_image"  # metrics.json's key naming a run's per-image file and columns


def images(folders):
    """Each run's per-image table ({column: values}, each file read once), or None if a run
    predates the file."""
    runs = [metrics(f) for f in folders]
    if not all(PER_IMAGE in m for m in runs):
        return None
    return [per_image(f, m[PER_IMAGE]) for f, m in zip(folders, runs)]


def column(tables, name, folders):
    """Each run's values of the column `name` of `images`' tables (None stays None)."""
    if tables is None:
        return None
    for f, table in zip(folders, tables):
        if name not in table:
            raise Missing(f"the column {name} of results/{f}'s per-image file")
    return [table[name] for table in tables]


def arm(label, folder, key, se_key=None, need=MIN_SEEDS, per_image_column=None):
    """An `Arm` of a seed study's values of `key` (and their standard errors over images, and
    each image's value, the per-image file's `per_image_column`, where every seed stores it)."""
    folders = seed_runs(folder, need)
    runs = [metrics(f) for f in folders]
    return Arm(label, [m[key] for m in runs], [m[se_key] for m in runs] if se_key else None,
               column(images(folders), per_image_column, folders) if per_image_column else None)


def figure(folder, name, label):
    """A link to a run's figure from results/README.md, where the table lives."""
    return f"[{label}]({folder}/{name})"



class Claim:
    """A claim of a post: where it is (post, section heading), its words (Chinese and an
    English translation), the commands of its experiment and the function that judges it,
    returning (measured, rule, verdict, figures)."""

    def __init__(self, post, section, quote, english, commands, measure):
        self.post, self.section, self.quote, self.english = post, section, quote, english
        self.commands, self.measure = commands, measure


def not_measured(what):
    def measure():
        raise Missing(what)
    return measure



def departure(what, folder, baseline):
    """A measured difference, no verdict: `folder`'s seeds against `baseline`'s."""
    def measure():
        pair = [arm(label, f, "test_nll", "test_nll_stderr", per_image_column="nll")
                for label, f in (("script's loss", baseline), (what, folder))]
        nll = f"{lower(*pair, digits=2)[0]} (test images' error {pairing([pair])})"
        elbos = [arm(label, f, "test_neg_elbo")
                 for label, f in (("script's loss", baseline), (what, folder))]
        elbo = lower(*elbos, digits=2)[0]
        # importance sampling's gain over the −ELBO, baseline then `what`, from the same arms
        gain = [num(e.mean - n.mean, 2) for e, n in zip(elbos, pair)]
        samples = sorted({metrics(f)["is_samples"] for f in (folder, baseline)})
        extra = (f"; the NLL's gain over the −ELBO (importance sampling's, "
                 f"{' and '.join(map(str, samples))} samples): "
                 f"{gain[1]} for {what}, {gain[0]} for the script's loss")
        if "latent_mean_sigma" in metrics(folder):
            extra += ("; mean posterior σ " + mean_sd(seed_values(folder, "latent_mean_sigma"), 4)
                     + " against " + mean_sd(seed_values(baseline, "latent_mean_sigma"), 4))
        return f"test NLL (Bernoulli decoder, nats): {nll}; −ELBO: {elbo}{extra}"
    return measure

