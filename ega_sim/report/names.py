"""What a report can draw: the figures and the reference sections an experiment file may ask
for (checked when the file is loaded, drawn here)."""

FIGURES = ("comparison", "sweeps", "utility_curve", "regret", "frontier", "truth_vs_model")
REFERENCES = ("none", "closed_form", "paper_table2", "paper_table3", "paper_figure5")
