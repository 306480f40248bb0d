"""The README's figures come from the committed manifests and its examples from the service,
not from someone's memory."""

import json
import math
import re
from pathlib import Path

import annotated_types as at

from service import create_app
from service.settings import Settings
from tests.service.conftest import make_settings
from training.model_card import model_table

ROOT = Path(__file__).resolve().parents[1]


def test_readme_model_table_matches_the_manifests():
    readme = (ROOT / "README.md").read_text("utf-8")
    assert model_table(ROOT / "exported_models") in readme, (
        "README's model table is stale: paste the output of "
        "`python -m training model-card` under the Models heading"
    )


def _readme_examples() -> list[tuple[str, str, dict | None, str]]:
    """The ``$ curl`` examples of the README's "Two commands" section: (method, path, body,
    the answer it shows), the answer with the README's elisions (``, ...``) kept as a
    ``"..."`` entry."""
    section = (ROOT / "README.md").read_text("utf-8").split("## Two commands", 1)[1]
    block = section.split("```console", 2)[2].split("```", 1)[0]
    examples = []
    # a command (its lines continued with a backslash), then the answer up to the next command
    pattern = re.compile(r"^\$ (curl (?:.*\\\n)*.*)\n((?:(?!\$ ).*\n?)*)", re.M)
    for command, answer in pattern.findall(block):
        command = command.replace("\\\n", " ")
        path = re.search(r"localhost:8000(/\S*)", command).group(1)
        data = re.search(r"-d '(.*)'", command)
        method = "POST" if "-X POST" in command else "GET"
        body = json.loads(data.group(1)) if data else None
        examples.append((method, path, body, answer.strip().replace(", ...", ', "..."')))
    return examples


def _assert_shown(shown: object, actual: object, where: str = "answer") -> None:
    """``actual`` is what the README shows: the same keys and values, numbers to the README's
    note on last digits (other ONNX Runtime versions and CPUs), a list cut by ``...`` as its
    first entries."""
    if isinstance(shown, dict):
        assert isinstance(actual, dict) and shown.keys() == actual.keys(), (where, shown, actual)
        for key, value in shown.items():
            _assert_shown(value, actual[key], f"{where}.{key}")
    elif isinstance(shown, list):
        assert isinstance(actual, list), (where, actual)
        cut = bool(shown) and shown[-1] == "..."
        entries = shown[:-1] if cut else shown
        assert len(actual) >= len(entries) if cut else len(actual) == len(entries), where
        for i, (value, got) in enumerate(zip(entries, actual, strict=False)):
            _assert_shown(value, got, f"{where}[{i}]")
    elif isinstance(shown, float):
        assert isinstance(actual, float), (where, actual)
        assert math.isclose(shown, actual, rel_tol=1e-5, abs_tol=1e-6), (where, shown, actual)
    else:
        assert shown == actual, (where, shown, actual)


def test_the_readme_curl_examples_answer_what_it_shows():
    """Every request of the README's first section, sent to the service over the committed
    models (settings that the environment cannot change), answers what the README shows."""
    examples = _readme_examples()
    assert len(examples) >= 5
    client = create_app(make_settings(ROOT / "exported_models")).test_client()
    for method, path, body, answer in examples:
        response = client.open(path, method=method, json=body)
        shown = json.loads(answer)
        assert response.status_code == (422 if "error" in shown else 200), (path, body)
        _assert_shown(shown, response.get_json(), f"{method} {path}")


def _bounds(field) -> str | None:
    """A settings field's bounds as the README writes them; None for a field without any."""
    low = next((m for m in field.metadata if isinstance(m, at.Ge | at.Gt)), None)
    high = next((m.le for m in field.metadata if isinstance(m, at.Le)), None)
    if low is None:
        return None
    if isinstance(low, at.Gt):
        return f"above {low.gt}, at most {high}"
    return f"at least {low.ge}" if high is None else f"{low.ge}–{high}"


def test_the_readme_gives_every_bound_of_the_numeric_settings():
    readme = (ROOT / "README.md").read_text("utf-8")
    paragraph = readme.split("Numeric settings are bounded", 1)[1].split("\n\n")[0]
    clauses = {
        name: clause for clause in paragraph.split(";") for name in re.findall(r"`(\w+)`", clause)
    }
    bounded = {
        name.upper(): bounds
        for name, field in Settings.model_fields.items()
        if (bounds := _bounds(field)) is not None
    }
    assert bounded.keys() == clauses.keys()
    for name, bounds in bounded.items():
        assert bounds in " ".join(clauses[name].split()), (name, bounds, clauses[name])
