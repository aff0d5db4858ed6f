"""Reports from a results folder, t-intervals, closed forms and the paper's figures.

The results folder is synthetic: written here the way the runner writes one, with per-seed
values chosen so the means and intervals can be computed by hand. Closed forms are checked
against values derived on paper and against an independent numpy Monte Carlo.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ega_sim.config import load_scenario
from ega_sim.experiments.theory import closed_form
from ega_sim.report import report_lines, write_report
from ega_sim.report.formats import format_value
from ega_sim.report.paper import PAPER_NOTE, paper_figures, paper_table
from ega_sim.report.stats import summarize, t_interval
from tests.conftest import position_auction, within_standard_errors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SWEEP_KEY = "mechanism.bidding.alpha"
LABELS = ("cascade/gsp", "cascade/vcg", "first")
MECHANISMS = {"cascade/gsp": "cascade/gsp", "cascade/vcg": "cascade/vcg", "first": "cascade/first"}
SEEDS = (0, 1, 2)
ALPHAS = (0.8, 1.2)
FEED = "feed_tiny"
POSITION = "single_slot"  # a shipped scenario, so the closed forms can be loaded
ALL_FIGURES = ["comparison", "sweeps", "utility_curve", "regret", "frontier", "truth_vs_model"]

# Per-label base figures; a seed s adds (s - 1) x step, so the mean over seeds 0, 1, 2 is the
# base and the sample standard deviation is the step.
FEED_BASE = {
    "rpm": (250.0, 230.0, 300.0),
    "ctr_poi": (0.0950, 0.0950, 0.0950),
    "ctr_img": (0.1390, 0.1390, 0.1390),
    "welfare_per_request": (0.44, 0.44, 0.44),
    "psi": (0.085, 0.002, 0.5),
    "psi_model": (0.080, 0.0, 0.45),
    "ctr_poi_model": (0.1000, 0.1000, 0.1000),
    "rpm_model": (260.0, 235.0, 310.0),
    "revenue_per_request": (0.25, 0.23, 0.30),
    "regret_mean": (0.002, 0.0001, 0.02),
}
FEED_STEP = {"rpm": 1.0, "ctr_poi": 0.001, "ctr_img": 0.001, "welfare_per_request": 0.01}
# single_slot (2 bidders, U[0, 1]): second price 1/3, first price 2/3 (closed forms).
POSITION_BASE = {
    "revenue_per_request": (1 / 3, 1 / 3, 2 / 3),
    "welfare_per_request": (2 / 3, 2 / 3, 2 / 3),
    "utility_per_request": (1 / 3, 1 / 3, 0.0),
    "regret_mean": (0.0, 0.0, 1 / 6),
    "psi": (0.0, 0.0, math.inf),
}


def _metric_rows(scenario, base, step, alpha):
    rows = []
    for i, label in enumerate(LABELS):
        for seed in SEEDS:
            cell = f"{scenario}-{label.replace('/', '_')}-a{alpha}-s{seed}"
            for metric, values in base.items():
                value = values[i]
                if math.isfinite(value):
                    value += (seed - 1) * step.get(metric, 0.0)
                    if alpha == ALPHAS[1] and scenario == FEED:
                        value *= 1.1
                rows.append(
                    {
                        "experiment": "tiny",
                        "cell": cell,
                        "scenario": scenario,
                        "label": label,
                        "mechanism": MECHANISMS[label],
                        "seed": seed,
                        SWEEP_KEY: alpha,
                        "requests": 1000,
                        "regret_requests": 100,
                        "misreport": "exact",
                        "metric": metric,
                        "value": value,
                        "se": 0.001 if math.isfinite(value) else math.nan,
                        "seconds": 1.5,
                        "train_seconds": 10.0 if label == "first" else 0.0,
                        "device": "cpu",
                        "version": "0.1.0",
                        "git_commit": "abc123",
                    }
                )
    return rows


def _write_folder(out: Path, *, reference: str = "closed_form", figures=None, paper_rows=None):
    out.mkdir(parents=True, exist_ok=True)
    experiment = {
        "name": "tiny",
        "title": "A tiny experiment",
        "description": "Synthetic results for the report tests.",
        "kind": "evaluate",
        "figures": ALL_FIGURES if figures is None else figures,
        "reference": reference,
        "sweep_keys": [SWEEP_KEY],
        "labels": list(LABELS),
        "mechanisms": MECHANISMS,
        "paper_rows": paper_rows or {},
        "scenarios": [FEED, POSITION],
        "scenario_names": [FEED, POSITION],
        "seeds": list(SEEDS),
        "requests": 1000,
        "regret_requests": 100,
        "misreport": "exact",
        "quick": False,
        "version": "0.1.0",
        "git_commit": "abc123",
    }
    (out / "experiment.json").write_text(json.dumps(experiment))
    rows = []
    for alpha in ALPHAS:
        rows += _metric_rows(FEED, FEED_BASE, FEED_STEP, alpha)
    rows += _metric_rows(POSITION, POSITION_BASE, {}, math.nan)  # outside the sweep
    results = pd.DataFrame(rows)
    results.to_csv(out / "results.csv", index=False)
    generator = np.random.default_rng(0)
    curves, regret = [], []
    for (scenario, label, alpha, seed), _ in results.groupby(
        ["scenario", "label", SWEEP_KEY, "seed"], dropna=False
    ):
        identity = {"scenario": scenario, "label": label, "mechanism": MECHANISMS[label]}
        identity |= {"seed": seed, SWEEP_KEY: alpha, "cell": f"{scenario}-{label}-{alpha}-{seed}"}
        for multiplier in np.linspace(0.2, 2.0, 10):
            utility = 0.1 - 0.05 * (multiplier - 0.9) ** 2 + 0.002 * seed
            curves.append(
                {**identity, "multiplier": multiplier, "utility": utility, "utility_se": 0.001}
            )
        utility = generator.uniform(0.0, 1.0, 50)
        pair_regret = 0.0 * utility if label == "cascade/vcg" else generator.exponential(0.05, 50)
        pair_regret[:10] = 0.0
        if label == "first":
            utility = 0.0 * utility  # truthful first price earns nothing
        regret += [
            {**identity, "regret": r, "utility": u}
            for r, u in zip(pair_regret, utility, strict=True)
        ]
    pd.DataFrame(curves).to_csv(out / "curves.csv", index=False)
    pd.DataFrame(regret).to_csv(out / "regret.csv", index=False)
    # What the runner records beside the position auction's cells: theory's closed forms.
    scenario = load_scenario(POSITION)
    closed_forms = [
        {"scenario": POSITION, "label": label, "seed": seed, SWEEP_KEY: math.nan}
        | closed_form(scenario, MECHANISMS[label])
        for label in LABELS
        for seed in SEEDS
    ]
    pd.DataFrame(closed_forms).to_csv(out / "closed_forms.csv", index=False)
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = _write_folder(tmp_path_factory.mktemp("tiny"))
    written = write_report(out)
    return out, written


def test_every_listed_figure_is_a_small_png(report):
    out, written = report
    expected = {
        f"comparison_{FEED}",
        f"comparison_{POSITION}",
        f"sweeps_{FEED}",  # single_slot is outside the sweep: no sweep figure
        "utility_curve",
        "regret",
        "frontier",
        "truth_vs_model",
    }
    found = {path.stem for path in (out / "figures").glob("*.png")}
    assert found == expected
    for name in expected:
        data = (out / "figures" / f"{name}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert 1_000 < len(data) < 400_000, (name, len(data))  # 200 dpi, a few inches wide
    assert {p.name for p in written} >= {"report.md", "report.html"}
    assert all(p.exists() for p in written)


def test_html_is_self_contained(report):
    out, _ = report
    text = (out / "report.html").read_text()
    assert "http" not in text
    assert 'src="figures' not in text
    assert "<script" not in text
    assert text.count("data:image/png;base64,") == len(list((out / "figures").glob("*.png")))


def test_markdown_links_figures_and_shows_means(report):
    out, _ = report
    text = (out / "report.md").read_text()
    for path in (out / "figures").glob("*.png"):
        assert f"](figures/{path.name})" in text
    # rpm of cascade/gsp at alpha 0.8: seeds 249, 250, 251: mean 250, sd 1, se 1 / sqrt(3);
    # RPM cannot be negative: the t interval on the log scale, 250 exp(+-4.302653 se / 250)
    # = 250 exp(+-0.0099366) = [247.53, 252.50], the interval as the cell's second line.
    assert "| `cascade/gsp` | 250.0<br><sub>[247.5, 252.5]</sub> |" in text
    # at alpha 1.2 every figure is 1.1 times larger: 275 exp(+-0.0099366) = [272.28, 277.75]
    assert "275.0<br><sub>[272.3, 277.7]</sub>" in text
    # psi as a percent (the seeds agree: a zero-width interval); first price's psi is infinite
    assert "8.5%<br><sub>[8.5%, 8.5%]</sub>" in text
    assert "| inf |" in text
    # the per-seed values, ordered by seed, are in the folded block under the table
    block = text[text.index("<details><summary>Per-seed values") :]
    assert "(249.0, 250.0, 251.0)" in block and "(inf, inf, inf)" in block
    assert "(249.0, 250.0, 251.0)" not in text[: text.index("<details>")]
    # provenance
    assert "abc123" in text and "0, 1, 2" in text and "total cell seconds" in text
    assert "first 10.0" in text  # training seconds per mechanism


def test_closed_form_table_beside_the_measurements(report):
    out, _ = report
    text = (out / "report.md").read_text()
    section = text[text.index("## Closed forms") : text.index("## Figures")]
    rows = {line.split(" | ")[1]: line for line in section.splitlines() if "`single_slot`" in line}
    assert set(rows) == {"`cascade/gsp`", "`cascade/vcg`", "`first`<br><sub>cascade/first</sub>"}
    # measured 1/3 exactly against the closed form 1/3: 0 standard errors apart
    assert "| 0.3333 | 0.0 |" in rows["`cascade/gsp`"]
    assert "| 0.6667 | 0.0 |" in rows["`first`<br><sub>cascade/first</sub>"]
    assert "| 0.16667 | 0.0 |" in rows["`first`<br><sub>cascade/first</sub>"]
    assert "feed_tiny" not in section  # feed markets have no closed form


def test_closed_forms_follow_a_scenario_sweep(tmp_path):
    # three_bidders_two_slots swept over slot_ctr = (1, a), stored as JSON text like the runner
    # writes lists: VCG earns 1/2 for every a, GSP 1/2 + a/4 (tests/test_theory.py derives both).
    key = "scenario.slot_ctr"
    out = tmp_path / "swept"
    out.mkdir()
    experiment = {
        "name": "swept",
        "kind": "evaluate",
        "figures": [],
        "reference": "closed_form",
        "sweep_keys": [key],
        "labels": ["cascade/gsp", "cascade/vcg"],
        "scenarios": ["three_bidders_two_slots"],
        "seeds": [0],
    }
    (out / "experiment.json").write_text(json.dumps(experiment))
    closed_forms = [  # what the runner records beside each cell: theory's closed forms
        {"scenario": "three_bidders_two_slots", "label": label, "seed": 0}
        | {key: json.dumps([1.0, a])}
        | closed_form(load_scenario("three_bidders_two_slots", {"slot_ctr": [1.0, a]}), label)
        for a in (0.3, 0.9)
        for label in ("cascade/gsp", "cascade/vcg")
    ]
    pd.DataFrame(closed_forms).to_csv(out / "closed_forms.csv", index=False)
    rows = []
    for a in (0.3, 0.9):
        for label, revenue in (("cascade/gsp", 0.5 + a / 4), ("cascade/vcg", 0.5)):
            rows.append(
                {
                    "cell": f"{label}-{a}",
                    "scenario": "three_bidders_two_slots",
                    "label": label,
                    "mechanism": label,
                    "seed": 0,
                    key: json.dumps([1.0, a]),
                    "metric": "revenue_per_request",
                    "value": revenue + 0.001,
                    "se": 0.001,
                }
            )
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    write_report(out)
    text = (out / "report.md").read_text()
    section = text[text.index("## Closed forms") :]
    assert "| [1.0, 0.3] | `cascade/gsp` | 0.5760 | 0.5750 | +1.0 |" in section
    assert "| [1.0, 0.9] | `cascade/gsp` | 0.7260 | 0.7250 | +1.0 |" in section
    assert "| [1.0, 0.9] | `cascade/vcg` | 0.5010 | 0.5000 | +1.0 |" in section


def test_report_lines(report):
    out, _ = report
    lines = report_lines(out)
    assert lines[0].startswith("tiny: mean over seeds 0, 1, 2")
    assert len(lines) == 1 + len(ALPHAS) * len(LABELS) + len(LABELS)
    gsp = next(line for line in lines if "alpha=0.8" in line and "cascade/gsp" in line)
    assert "RPM 250.0 [247.5, 252.5]" in gsp and "CTR-poi 0.0950" in gsp
    first = next(line for line in lines if line.startswith(POSITION) and "  first  " in line)
    assert "revenue / request 0.6667" in first and "psi (truth) inf" in first


def test_paper_table2_reference(tmp_path):
    rows = {"cascade/gsp": "Cascade (GSP)", "first": "EGA-V2"}
    out = _write_folder(tmp_path / "t2", reference="paper_table2", figures=[], paper_rows=rows)
    written = write_report(out)
    assert [p.name for p in written] == ["report.md", "report.html"]
    text = (out / "report.md").read_text()
    assert "230.41" in text and "192.45" in text and "0.0612" in text and "2.7%" in text
    assert PAPER_NOTE in text
    # the paper's change against its baseline: 230.41 / 192.45 - 1 = +19.7%; ours 300/250 - 1
    assert "+19.7%" in text and "+20.0%" in text


def test_paper_rows_must_name_rows_of_the_table(tmp_path):
    out = _write_folder(
        tmp_path / "bad", reference="paper_table3", figures=[], paper_rows={"first": "EGA-V3"}
    )
    with pytest.raises(ValueError, match=r"experiment\.json.*paper_rows.*EGA-V3"):
        write_report(out)


def test_paper_figure5_reference_states_the_claims(tmp_path):
    out = _write_folder(tmp_path / "f5", reference="paper_figure5", figures=["sweeps"])
    write_report(out)
    text = (out / "report.md").read_text()
    assert "raising alpha lifts RPM" in text and "raising beta lowers RPM" in text
    assert "rises (+10.0% from alpha = 0.8 to 1.2)" in text


def test_missing_or_empty_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such results folder"):
        write_report(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"experiment\.json"):
        write_report(empty)
    (empty / "experiment.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(FileNotFoundError, match=r"results\.csv"):
        write_report(empty)
    (empty / "results.csv").write_text("")
    with pytest.raises(ValueError, match=r"results\.csv: empty"):
        report_lines(empty)


def test_t_interval_by_hand():
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    # t_{0.975, 2} = 4.302653, standard error 1 / sqrt(3)
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), abs=1e-6)
    assert mean - low == pytest.approx(2.4841, abs=1e-4)
    one = t_interval([5.0])
    assert one[0] == 5.0 and math.isnan(one[1]) and math.isnan(one[2])
    assert t_interval([1.0, math.nan, 3.0])[0] == 2.0


def test_summarize_orders_values_by_seed():
    table = pd.DataFrame(
        {
            "label": ["a"] * 3,
            "seed": [2, 0, 1],
            "metric": ["rpm"] * 3,
            "value": [3.0, 1.0, 2.0],
            "se": [0.3, 0.3, 0.3],
        }
    )
    row = summarize(table, ["label"]).iloc[0]
    assert row["values"] == (1.0, 2.0, 3.0) and row["seeds"] == (0, 1, 2)
    assert row["n"] == 3 and row["mean"] == 2.0
    assert row["se_of_mean"] == pytest.approx(0.3 / math.sqrt(3))


def test_number_formats():
    assert format_value("rpm", 293.94) == "293.9"
    assert format_value("ctr_poi", 0.09512) == "0.0951"
    assert format_value("psi", 0.0019) == "0.19%"
    assert format_value("best_gain", 0.208) == "+20.8%"
    assert format_value("psi", math.inf) == "inf" and format_value("rpm", math.nan) == "n/a"


def test_paper_data():
    assert paper_figures("paper_table2", "EGA-V2") == {
        "rpm": 230.41,
        "ctr_poi": 0.0612,
        "ctr_img": 0.0583,
        "psi": 0.027,
    }
    table3 = paper_table("paper_table3").set_index("row")
    assert table3.loc["GSP payment", "rpm"] == 226.17 and table3.loc["GSP payment", "psi"] == 0.082
    assert math.isnan(table3.loc["w/o MTP", "psi"])


# --- closed forms --------------------------------------------------------------------------------


def test_closed_forms_single_slot_by_hand():
    # Two bidders, U[0, 1], one slot: E[v_(1)] = 2/3, E[v_(2)] = 1/3.
    second = closed_form("single_slot", "cascade/vcg")
    assert second["revenue_per_request"] == pytest.approx(1 / 3, abs=1e-12)
    assert second["regret_mean"] == 0.0
    assert closed_form("single_slot", "cascade/gsp")["revenue_per_request"] == pytest.approx(1 / 3)
    first = closed_form("single_slot", "cascade/first")
    assert first["revenue_per_request"] == pytest.approx(2 / 3, abs=1e-12)
    # the winner regrets v_(1) - v_(2) (mean 1/3); per bidder 1/6
    assert first["regret_mean"] == pytest.approx(1 / 6, abs=1e-12)
    # Myerson: reserve 1/2, (n - 1)/(n + 1) + 2^-n/(n + 1) = 1/3 + 1/12 = 5/12
    myerson = closed_form("single_slot", "myerson/threshold")
    assert myerson["revenue_per_request"] == pytest.approx(5 / 12, abs=1e-9)
    assert myerson["regret_mean"] == 0.0


def test_closed_forms_say_nan_where_there_is_none():
    feed = closed_form("feed_small", "cascade/gsp")
    assert math.isnan(feed["revenue_per_request"]) and math.isnan(feed["regret_mean"])
    from ega_sim.world.distributions import Fixed, LogNormal

    unequal = position_auction(3, (1.0, 0.5), quality=Fixed((1.0, 0.8, 0.6)))
    assert math.isnan(closed_form(unequal, "cascade/gsp")["revenue_per_request"])
    assert closed_form(unequal, "cascade/vcg")["regret_mean"] == 0.0  # IC whatever the qualities
    lognormal = position_auction(3, (1.0,), values=LogNormal(0.0, 0.5))
    assert math.isnan(closed_form(lognormal, "cascade/vcg")["revenue_per_request"])
    reserve = position_auction(2, (1.0,), reserve=0.25)
    assert math.isnan(closed_form(reserve, "cascade/vcg")["revenue_per_request"])
    assert math.isnan(closed_form(position_auction(3, (1.0, 0.5)), "cascade/first")["regret_mean"])
    assert math.isnan(closed_form("single_slot", "myerson/vcg")["revenue_per_request"])


def _monte_carlo(n, alpha, low=0.0, high=1.0, q=1.0, requests=200_000, seed=0):
    """Revenue per request of each mechanism and GSP's and first price's regret per bidder,
    from sorted uniform draws, with their standard errors. Prices are computed from their
    definitions (Clarke pivot, threshold bids, best deviation), not from the closed forms."""
    generator = np.random.default_rng(seed)
    k = len(alpha)
    values = np.sort(generator.uniform(low, high, (requests, n)), axis=1)[:, ::-1]
    v = np.concatenate([values, np.zeros((requests, k + 2))], axis=1)  # v[:, j]: j-th highest
    a = np.array([*alpha, 0.0, 0.0])
    winners = min(n, k)
    revenue = {name: np.zeros(requests) for name in ("gsp", "vcg", "first", "myerson")}
    for slot in range(winners):
        revenue["gsp"] += q * a[slot] * v[:, slot + 1]
        revenue["first"] += q * a[slot] * v[:, slot]
        # Clarke pivot: without this winner everyone below moves up one slot.
        externality = sum((a[j - 1] - a[j]) * v[:, j] for j in range(slot + 1, k + 1))
        revenue["vcg"] += q * externality
    # Myerson: phi(v) = 2v - high >= 0 needed; a winner in slot s pays per click
    # sum_{j >= s} (a_j - a_{j+1}) x (lowest bid for slot j or better) = max(v_(j+1), high / 2).
    reserve = high / 2
    eligible = v >= reserve
    for slot in range(winners):
        threshold_price = sum(
            (a[j] - a[j + 1]) * np.maximum(v[:, j + 1], reserve) for j in range(slot, k)
        )
        revenue["myerson"] += np.where(eligible[:, slot], q * threshold_price, 0.0)
    # GSP regret by brute force: the bidder ranked r may take any slot j (paying the bid of the
    # one it must beat) or drop out.
    regret_gsp = np.zeros(requests)
    for r in range(n):
        truthful = q * a[r] * (v[:, r] - v[:, r + 1]) if r < k else np.zeros(requests)
        best = np.maximum(truthful, 0.0)
        for j in range(k):
            price = v[:, j] if j < r else v[:, j + 1]
            best = np.maximum(best, q * a[j] * (v[:, r] - price))
        regret_gsp += best - truthful
    regret = {"gsp": regret_gsp / n}
    if k == 1:
        regret["first"] = q * (v[:, 0] - v[:, 1]) / n
    estimate = {
        name: (float(x.mean()), float(x.std(ddof=1) / math.sqrt(requests)))
        for name, x in revenue.items()
    }
    regret_estimate = {
        name: (float(x.mean()), float(x.std(ddof=1) / math.sqrt(requests)))
        for name, x in regret.items()
    }
    return estimate, regret_estimate


@pytest.mark.parametrize(
    "n, alpha, low, high, q",
    [
        (3, (1.0, 0.6), 0.0, 1.0, 1.0),
        (5, (1.0, 0.7, 0.4), 0.0, 1.0, 1.0),
        (5, (0.9, 0.5, 0.2), 0.5, 2.0, 0.8),
        (2, (1.0,), 0.0, 1.0, 1.0),
        (3, (1.0, 0.6, 0.3, 0.1), 0.0, 1.0, 1.0),  # more slots than bidders
    ],
)
def test_closed_forms_against_monte_carlo(n, alpha, low, high, q):
    from ega_sim.world.distributions import Fixed, Uniform

    scenario = position_auction(n, alpha, values=Uniform(low, high), quality=Fixed((q,)))
    revenue, regret = _monte_carlo(n, alpha, low, high, q)
    for mechanism, name in (
        ("cascade/gsp", "gsp"),
        ("cascade/vcg", "vcg"),
        ("cascade/threshold", "vcg"),
        ("cascade/first", "first"),
        ("myerson/threshold", "myerson"),
    ):
        expected = closed_form(scenario, mechanism)["revenue_per_request"]
        measured, se = revenue[name]
        assert within_standard_errors(measured, expected, se), (mechanism, measured, expected)
    gsp_regret = closed_form(scenario, "cascade/gsp")["regret_mean"]
    if (n == 3 and len(alpha) == 2) or len(alpha) == 1:
        measured, se = regret["gsp"]
        assert within_standard_errors(measured, gsp_regret, max(se, 1e-12)), (measured, gsp_regret)
    else:
        assert math.isnan(gsp_regret)
    if len(alpha) == 1:
        measured, se = regret["first"]
        expected = closed_form(scenario, "cascade/first")["regret_mean"]
        assert within_standard_errors(measured, expected, se), (measured, expected)


def test_regret_figures_pool_the_requests_of_every_seed():
    # Two seeds of one cell: psi 0.1 on 100 requests and 0.3 on 300. The report's psi is the
    # ratio of all requests' sums, (10 + 90) / (100 + 300) = 0.25, not the seeds' mean 0.2.
    results = pd.DataFrame(
        [
            {"scenario": "s", "label": "m", "seed": seed, "metric": "psi", "value": v, "se": 0.0}
            for seed, v in ((0, 0.1), (1, 0.3))
        ]
        + [{"scenario": "s", "label": "m", "seed": 0, "metric": "rpm", "value": 5.0, "se": 0.1}]
    )
    ratios = pd.DataFrame(
        [
            {"scenario": "s", "label": "m", "seed": 0, "metric": "psi", "n": 100, "sx": 10.0,
             "sy": 100.0, "sxx": 4.0, "syy": 120.0, "sxy": 11.0},
            {"scenario": "s", "label": "m", "seed": 1, "metric": "psi", "n": 300, "sx": 90.0,
             "sy": 300.0, "sxx": 60.0, "syy": 330.0, "sxy": 95.0},
        ]
    )  # fmt: skip
    summary = summarize(results, ["scenario", "label"], ratios=ratios).set_index("metric")
    psi = summary.loc["psi"]
    assert psi["mean"] == pytest.approx(0.25) and psi["interval"] == "requests"
    assert 0 < psi["low"] < 0.25 < psi["high"]
    assert psi["values"] == (0.1, 0.3)  # the per-seed figures are still shown
    assert summary.loc["rpm", "interval"] == "seeds"


# --- intervals inside the support -----------------------------------------------------------


def test_support_t_interval_by_hand():
    from ega_sim.report.stats import support_t_interval

    # [1, 2, 3]: mean 2, se 1 / sqrt(3), t_{0.975, 2} = 4.302653. Log scale for a figure that
    # cannot be negative: 2 exp(+-4.302653 / (2 sqrt 3)) = 2 exp(+-1.242069).
    mean, low, high = support_t_interval([1.0, 2.0, 3.0], "nonnegative")
    assert mean == 2.0
    assert low == pytest.approx(2.0 * math.exp(-1.242069), rel=1e-6)
    assert high == pytest.approx(2.0 * math.exp(1.242069), rel=1e-6)
    # a signed figure keeps the plain t interval, 2 -+ 2.4841
    assert support_t_interval([1.0, 2.0, 3.0], "real") == t_interval([1.0, 2.0, 3.0])
    # a rate on the logit scale: mean 0.2, se 0.1 / sqrt(3); logit 0.2 = -ln 4,
    # spread 4.302653 x 0.057735 / 0.16 = 1.552596
    mean, low, high = support_t_interval([0.1, 0.2, 0.3], "unit")
    assert low == pytest.approx(1 / (1 + math.exp(math.log(4) + 1.552596)), rel=1e-5)
    assert high == pytest.approx(1 / (1 + math.exp(math.log(4) - 1.552596)), rel=1e-5)
    # all seeds 0: [0, 0]; one seed: no interval; an unknown support: a clear error
    assert support_t_interval([0.0, 0.0, 0.0], "nonnegative") == (0.0, 0.0, 0.0)
    assert all(math.isnan(b) for b in support_t_interval([5.0], "nonnegative")[1:])
    with pytest.raises(ValueError, match="support: expected one of real, nonnegative, unit"):
        support_t_interval([1.0, 2.0], "positive")


def test_the_max_regret_of_the_textbook_quick_report_keeps_a_nonnegative_interval():
    # myerson/vcg's max regret on `textbook` in the quick report, seeds 0, 1, 2: the plain t
    # interval was 0.0314 [-0.0044, 0.0673]; a maximum of regrets is never below 0.
    seeds = [0.0200, 0.0476, 0.0267]
    assert t_interval(seeds)[1] < 0
    results = pd.DataFrame(
        {"label": "m", "seed": [0, 1, 2], "metric": "regret_max", "value": seeds, "se": 0.0}
    )
    row = summarize(results, ["label"]).iloc[0]
    assert row["interval"] == "seeds"
    assert 0 < row["low"] < row["mean"] < row["high"]


def test_intervals_never_leave_the_support():
    from ega_sim.report.stats import support_t_interval

    rng = np.random.default_rng(5)
    for _ in range(2000):
        n = int(rng.integers(2, 6))
        values = rng.lognormal(0.0, 2.0, n) * (rng.uniform(size=n) < 0.7)  # zeros, heavy tail
        mean, low, high = support_t_interval(values, "nonnegative")
        assert 0.0 <= low <= mean <= high
        rates = rng.beta(0.5, 3.0, n) * (rng.uniform(size=n) < 0.8)
        mean, low, high = support_t_interval(rates, "unit")
        assert 0.0 <= low <= mean <= high <= 1.0


@pytest.mark.parametrize(
    ("support", "draw", "truth"),
    [
        # a skewed nonnegative figure: Gamma(shape 4, scale 0.25), mean 1
        ("nonnegative", lambda rng, size: rng.gamma(4.0, 0.25, size), 1.0),
        # a rate: Beta(9, 81), mean 0.1
        ("unit", lambda rng, size: rng.beta(9.0, 81.0, size), 0.1),
    ],
)
def test_intervals_over_three_seeds_cover_the_mean_at_about_95_percent(support, draw, truth):
    from ega_sim.report.stats import support_t_interval

    rng = np.random.default_rng(6)
    runs = 4000
    samples = draw(rng, (runs, 3))  # three seeds per experiment, as the experiments run
    covered = 0
    for values in samples:
        _, low, high = support_t_interval(values, support)
        covered += low <= truth <= high
    se = math.sqrt(0.95 * 0.05 / runs)  # binomial standard error of the coverage
    assert abs(covered / runs - 0.95) < 4 * se, covered / runs


def test_the_log_scale_covers_skewed_seeds_better_than_the_plain_t():
    # Exponential per-seed figures (mean 1), three seeds: the plain t interval covers about
    # 88%, the log-scale one about 94% (independent simulation in the commit that made it).
    from ega_sim.report.stats import support_t_interval

    rng = np.random.default_rng(7)
    runs = 4000
    plain = logged = 0
    for values in rng.exponential(1.0, (runs, 3)):
        _, low, high = t_interval(values)
        plain += low <= 1.0 <= high
        _, low, high = support_t_interval(values, "nonnegative")
        logged += low <= 1.0 <= high
    se = math.sqrt(0.95 * 0.05 / runs)
    assert logged / runs - plain / runs > 4 * se
    assert abs(logged / runs - 0.95) < 0.02


# --- tables and provenance ------------------------------------------------------------------


def test_provenance_gives_each_mechanism_the_sizes_its_cells_ran_on(tmp_path):
    out = _write_folder(tmp_path / "sizes", figures=[])
    results = pd.read_csv(out / "results.csv")
    first = results["label"] == "first"
    results.loc[first, "requests"] = 250  # e.g. a generative mechanism on fewer requests
    results.loc[first, "regret_requests"] = 25
    results["regret_bidders"] = np.where(first, "shown", "all")
    results.to_csv(out / "results.csv", index=False)
    write_report(out)
    text = (out / "report.md").read_text()
    provenance = text[text.index("## Provenance") : text.index("## Results")]
    assert (
        "| cells of `cascade/gsp`, `cascade/vcg` | 1000 requests; regret of all bidders on 100 "
        "of them |" in provenance
    )
    assert "| cells of `first` | 250 requests; regret of shown bidders on 25 of them |" in (
        provenance
    )


def test_a_column_constant_over_every_row_is_said_once_under_the_table(report):
    out, _ = report
    text = (out / "report.md").read_text()
    section = text[text.index(f"### {POSITION}") : text.index("## Closed forms")]
    table = section[: section.index("The same in every row")]
    header = table.splitlines()[2]
    # single_slot's welfare is 2/3 for every mechanism (the fixture's, the closed form of
    # E[max of two U(0, 1) values]): no column, one line under the table
    assert "revenue / request" in header and "welfare / request" not in header
    assert "The same in every row, so not a column: welfare / request 0.6667." in section
    # the per-seed block still has the column
    folded = section[section.index("<details>") :]
    assert "| welfare / request |" in folded.splitlines()[2]
    # the feed table's columns vary (alpha 1.2 is 1.1 times alpha 0.8): all kept
    feed = text[text.index(f"### {FEED}") : text.index(f"### {POSITION}")]
    assert "CTR-poi" in feed.splitlines()[2] and "so not a column" not in feed


def test_drop_constant_columns():
    from ega_sim.report.render import Cell
    from ega_sim.report.tables import drop_constant_columns

    header = ["mechanism", "a", "b", "c"]
    rows = [
        [Cell("x"), Cell("1", "[0, 2]"), Cell("0.300"), Cell("n/a")],
        [Cell("y"), Cell("2"), Cell("0.300", "[0.299, 0.300]"), Cell("n/a")],
    ]
    kept, kept_rows, line = drop_constant_columns(header, rows, first=1)
    assert kept == ["mechanism", "a"]
    assert [[c.text for c in row] for row in kept_rows] == [["x", "1"], ["y", "2"]]
    assert line == "The same in every row, so not a column: b 0.300; c n/a."
    # one row, or the columns before `first`: nothing dropped
    assert drop_constant_columns(header, rows[:1], first=1) == (header, rows[:1], "")
    same_label = [[Cell("x"), Cell("1")], [Cell("x"), Cell("2")]]
    assert drop_constant_columns(["mechanism", "a"], same_label, first=1)[2] == ""


def test_html_tables_are_compact_with_per_seed_values_folded(report):
    out, _ = report
    html = (out / "report.html").read_text()
    assert "white-space: nowrap" in html
    assert "<td>250.0<br><small>[247.5, 252.5]</small></td>" in html
    assert html.count("<details><summary>Per-seed values") == 2  # one per scenario table
    folded = html[html.index("<details>") : html.index("</details>")]
    assert "(249.0, 250.0, 251.0)" in folded


# --- figures --------------------------------------------------------------------------------


def _png_chunk(data: bytes, name: bytes) -> bytes:
    index = len(PNG_SIGNATURE)
    while index < len(data):
        length = int.from_bytes(data[index : index + 4], "big")
        if data[index + 4 : index + 8] == name:
            return data[index + 8 : index + 8 + length]
        index += 12 + length
    raise AssertionError(f"no {name!r} chunk")


def test_figures_are_200_dpi_and_shown_at_their_110_dpi_size(report):
    from ega_sim.report.figures.common import display_width

    out, _ = report
    html = (out / "report.html").read_text()
    for path in (out / "figures").glob("*.png"):
        data = path.read_bytes()
        physical = _png_chunk(data, b"pHYs")  # pixels per metre, both axes, unit 1 = metre
        assert int.from_bytes(physical[:4], "big") == round(200 / 0.0254), path.name
        pixels = int.from_bytes(_png_chunk(data, b"IHDR")[:4], "big")
        assert display_width(data) == round(pixels * 110 / 200)
        assert f'width="{display_width(data)}"' in html
    assert display_width(b"not a png") is None


def _pixels_of(png: bytes, color, tolerance: int = 3) -> int:
    """How many pixels of a PNG have this RGB colour (within `tolerance` / 255 per channel: the
    PNG is quantized to 256 colours)."""
    from io import BytesIO

    import matplotlib.image

    image = np.round(matplotlib.image.imread(BytesIO(png), format="png")[..., :3] * 255)
    target = np.round(np.asarray(color[:3]) * 255)
    return int(np.all(np.abs(image - target) <= tolerance, axis=-1).sum())


def test_misreport_png_and_report_figures_share_one_palette():
    import seaborn as sns

    from ega_sim.envs.misreport import misreport_figure
    from ega_sim.report.figures.common import mechanism_colors
    from ega_sim.report.figures.utility_curve import utility_curve_png

    names = ["cascade/gsp", "cascade/vcg"]
    multipliers = np.linspace(0.2, 2.0, 10)
    table = pd.DataFrame(
        [
            {"scenario": "s", "mechanism": name, "kind": "curve", "multiplier": m,
             "utility_per_request": 0.1 - 0.05 * (m - 0.9 - i / 4) ** 2, "utility_se": 0.001,
             "gain_over_truthful": 0.0, "seed": 0}
            for i, name in enumerate(names)
            for m in multipliers
        ]
    )  # fmt: skip
    curves = table.rename(columns={"mechanism": "label", "utility_per_request": "utility"})
    misreport = misreport_figure(table)
    report = utility_curve_png(curves, scenarios=["s"], labels=names)
    colors = mechanism_colors(names)
    assert list(colors.values()) == list(sns.color_palette("tab10", 2))  # by place in the list
    more = mechanism_colors([*names, "ega/gsp"])
    assert all(more[name] == colors[name] for name in names)  # a label added after: no change
    for name in names:  # each mechanism's line is drawn in its one colour in both figures
        assert _pixels_of(misreport, colors[name]) > 200, name
        assert _pixels_of(report, colors[name]) > 200, name
    old = sns.color_palette("deep")[1]  # misreport.png's former second colour
    assert _pixels_of(misreport, old) == 0
    assert _png_chunk(misreport, b"pHYs")[:4] == round(200 / 0.0254).to_bytes(4, "big")


def test_overlapping_points_are_set_side_by_side():
    from ega_sim.report.figures.common import side_by_side

    # two equal points and a third far away, on axes spanning [0, 1] both ways
    offsets, groups = side_by_side([(0.5, 0.5), (0.9, 0.1), (0.5, 0.5)], (0, 1), (0, 1))
    assert groups == [[0, 2]]
    assert offsets == [-3.5, 0.0, 3.5]  # 7 points apart, around their place
    # closeness is transitive, and the group is spread in the order of x
    offsets, groups = side_by_side([(0.52, 0.5), (0.5, 0.5), (0.54, 0.5)], (0, 1), (0, 1))
    assert groups == [[0, 1, 2]] and offsets == [0.0, -7.0, 7.0]
    assert side_by_side([(0.1, 0.1), (0.9, 0.9)], (0, 1), (0, 1)) == ([0.0, 0.0], [])


def test_truth_vs_model_names_the_mechanisms_without_a_model_figure():
    from ega_sim.report.figures.truth_vs_model import _panel_points, truth_vs_model_png

    rows = [
        {"scenario": "f", "label": label, "seed": seed, "metric": metric, "value": value}
        for label in ("a", "b", "c")
        for seed in (0, 1, 2)
        for metric, value in (("psi", 0.1), ("psi_model", 0.05), ("rpm", 1.0), ("rpm_model", 2.0))
        if not (label == "c" and metric == "psi_model")  # c has no own-model psi
    ]
    summary = summarize(pd.DataFrame(rows), ["scenario", "label"])
    points, missing = _panel_points(summary, ["f"], ["a", "b", "c"], [], "psi", "psi_model")
    assert [p.label for p in points] == ["a", "b"] and missing == ["c"]
    png = truth_vs_model_png(summary, scenarios=["f"], labels=["a", "b", "c"])
    assert png is not None and png.startswith(PNG_SIGNATURE)
