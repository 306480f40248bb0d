"""The README's figures come from the committed manifests, not from someone's memory."""

from pathlib import Path

from training.model_card import model_table

ROOT = Path(__file__).resolve().parents[1]


def test_readme_model_table_matches_the_manifests():
    readme = (ROOT / "README.md").read_text("utf-8")
    assert model_table(ROOT / "exported_models") in readme, (
        "README's model table is stale: paste the output of "
        "`python -m training model-card` under the Models heading"
    )
