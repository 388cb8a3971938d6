"""The posts' claims, each quoted and set against the committed runs that test it.

`python -m common.report --write` puts two tables between the claims markers of
results/README.md: the claims, each with the post's sentence (Chinese, with an English
translation) under the post's own section heading, the experiment (the exact commands), what
the runs measured, the rule and the verdict; then the places where the code departs from a
post's equation, as measured differences without a verdict. A claim whose runs are not all
committed yet shows "not run yet". Nothing here is typed by hand but the quotes, the commands
and the rules.

The rules are fixed before the runs they judge and each can fail; the verdicts and the
statistics behind them are common/rules.py's. One module per post holds its claims (quote, commands, measure, rule):
`gaussian` (7725), `vmf` (8404), `gumbel` (6705), `flow` (5776); `committed` reads the runs.
"""
from common.claims import flow, gaussian, gumbel, vmf
from common.rules import Missing

START, END = "<!-- claims:start -->", "<!-- claims:end -->"

CLAIMS = gaussian.CLAIMS + vmf.CLAIMS + gumbel.CLAIMS + flow.CLAIMS
DEPARTURES = gaussian.DEPARTURES + vmf.DEPARTURES
COMMAND_OUTPUTS = vmf.COMMAND_OUTPUTS  # what the claims' commands that are not model runs write


def claims_table():
    lines = ["| post, section | the post says | experiment | measured | rule | verdict |",
             "|---|---|---|---|---|---|"]
    for c in CLAIMS:
        experiment = "<br>".join(f"`{x}`" for x in c.commands)
        try:
            measured, rule, verdict, figures = c.measure()
        except Missing as e:
            measured, rule, verdict, figures = f"not run yet ({e} is missing)", "—", "—", []
        shown = measured.rstrip(".") + "." + (" Figures: " + ", ".join(figures) + "."
                                              if figures else "")
        lines.append(f"| {c.post} {c.section} | {c.quote}<br>*{c.english}* | {experiment} | "
                     f"{shown} | {rule.rstrip('.')}. | {verdict} |")
    return "\n".join(lines)


def departures_table():
    lines = ["| post, section | the post says | measured (no verdict) | experiment |",
             "|---|---|---|---|"]
    for where, words, commands, measure in DEPARTURES:
        try:
            measured = measure()
        except Missing as e:
            measured = f"not run yet ({e} is missing)"
        experiment = "<br>".join(f"`{c}`" for c in commands.split("<br>"))
        lines.append(f"| {where} | {words} | {measured.rstrip('.')}. | {experiment} |")
    return "\n".join(lines)


def shorter_runs():
    """Why the rows that run shorter than the blog do, each post's reason from its runs."""
    reasons = []
    for reason in (flow.ten_epochs, gumbel.ten_epochs):
        try:
            reasons.append(reason())
        except Missing as e:
            reasons.append(f"(A reason not measured yet: {e} is missing.)")
    return " ".join(reasons)


def table():
    return (claims_table() + "\n\n" + shorter_runs() + "\n\nNot claims, so measured without a verdict: where the "
            "scripts depart from a post's equation (as the blog's own code does), a statement "
            "the post makes about form only, and the setting the post leaves to the user.\n\n"
            + departures_table())
