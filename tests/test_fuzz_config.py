"""Bad configuration, fuzzed: random keys, types and values thrown at the trial config, at `--set` overrides,
at `langdml train` and at sweep files. Every case is either accepted and valid (the config round-trips
through its flat form) or refused with a UserError whose message is one line naming the bad key or value;
any other exception escaping (TypeError, KeyError, ValueError, ...) is a bug.

Derandomized (a fixed example sequence, no example database) so CI sees the same cases every run.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import math
import pickle
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from langdml_core.config import SECTIONS, TrialConfig, parse_overrides, parse_value
from langdml_core.errors import UserError
from langdml_core.runner.sweep_file import load_sweep

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
DEFAULTS = TrialConfig().flat()
KEYS = sorted(DEFAULTS)
TYPES = {f"{s}.{f.name}": f.type for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}

# ---- strategies ----------------------------------------------------------------------------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # nan and +-inf included
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=3)
    ),
    max_leaves=6,
)


def typed(key: str) -> st.SearchStrategy:
    """Values of the key's own type: the default or one near the edges, so that validation is reached."""
    return st.just(DEFAULTS[key]) | edges(key)


def edges(key: str) -> st.SearchStrategy:
    kind = str(TYPES[key])
    if kind == "int":
        return st.integers(min_value=-3, max_value=300) | st.sampled_from([0, 2**32 - 1, 2**32, -(2**31)])
    if kind == "float":
        return st.floats(min_value=-10, max_value=10) | st.sampled_from([0.0, math.nan, math.inf, 1e-300])
    if kind == "bool":
        return st.booleans()
    if kind == "list":
        return st.lists(
            st.integers(min_value=-2, max_value=50) | st.booleans() | st.text(max_size=2), max_size=4
        )
    if kind == "dict":
        return st.dictionaries(st.text(max_size=6) | st.integers(), scalars, max_size=3)
    return st.sampled_from(
        ["", "auto", "cpu", "cuda:1", "cuda:x", "{}", "a photo of a {}", "{} {}", "{0}", "{x}"]
    )


def typo(key: str) -> st.SearchStrategy:
    """A near miss of a valid key: one character dropped, doubled or swapped."""
    return st.integers(min_value=0, max_value=len(key) - 1).flatmap(
        lambda i: st.sampled_from(
            [key[:i] + key[i + 1 :], key[:i] + key[i] + key[i:], key[:i] + "x" + key[i + 1 :]]
        )
    )


typed_pair = st.sampled_from(KEYS).flatmap(lambda k: st.tuples(st.just(k), typed(k)))
key_value = st.sampled_from(KEYS).flatmap(lambda k: st.tuples(st.just(k), typed(k) | values))
typed_configs = st.lists(typed_pair, max_size=3).map(dict)
any_key = (
    st.sampled_from(KEYS)
    | st.sampled_from(KEYS).flatmap(typo)
    | st.sampled_from(list(SECTIONS))
    | st.text(max_size=15)
    | st.sampled_from(["loss.kwargs.alpha", "loss.name.x", "data.", ".name", "loss..name", "run.seed.x"])
    | st.integers()
    | st.none()
    | st.tuples(st.text(max_size=3))
)
raw_configs = st.dictionaries(any_key, values, max_size=4) | st.lists(key_value, max_size=4).map(dict)
yaml_text = st.text(
    alphabet="[]{}:,-!&*#|>'\"~ \t0123456789.eEnaNIfiyestrul_/x", max_size=24
) | st.sampled_from(
    [
        "nan",
        "-inf",
        "Infinity",
        "1e999",
        "2001-13-01",
        "2001-02-03",
        "0x1F",
        "1_000",
        "~",
        "yes",
        "!!python/name:os.system",
        "[1, 2",
        "{a: 1}",
        "&a [*a]",
        "[" * 300,
        "'unclosed",
        "%TAG ! x",
    ]
)
overrides = st.lists(
    typed_pair.map(lambda kv: f"{kv[0]}={kv[1]}")  # str() of a typed value: YAML reads most of them back
    | st.tuples(st.sampled_from(KEYS) | any_key.map(str), yaml_text).map(lambda kv: f"{kv[0]}={kv[1]}")
    | st.text(max_size=20),
    max_size=4,
)


# ---- the property ----------------------------------------------------------------------------------------
def accepted_or_refused(build) -> TrialConfig | UserError:
    """Accepted: valid and round-trips. Refused: a UserError with a one-line message. Anything else raises."""
    try:
        config = build()
    except UserError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message, repr(message)
        assert "Traceback" not in message
        event("refused")
        return exc
    event("accepted")
    assert isinstance(config, TrialConfig)
    again = TrialConfig.from_dict(config.flat())
    assert again == config and again.flat() == config.flat()
    for key, value in config.flat().items():  # what is logged as params and JSON is finite
        if isinstance(value, float):
            assert math.isfinite(value), key
    return config


@FUZZ
@given(raw_configs)
def test_random_config_dicts(raw):
    accepted_or_refused(lambda: TrialConfig.from_dict(raw))


@FUZZ
@given(key_value)
def test_one_bad_value_is_named(kv):
    key, value = kv
    outcome = accepted_or_refused(lambda: TrialConfig.from_dict({key: value}))
    if isinstance(outcome, UserError):
        assert key in str(outcome), (key, str(outcome))


@FUZZ
@given(st.sampled_from(KEYS).flatmap(typo))
def test_misspelt_key_is_refused_by_name(key):
    if (
        key in DEFAULTS
        or key.split(".")[0] not in SECTIONS
        or key.endswith(".")
        or key.startswith("loss.kwargs")
    ):
        return  # the typo made another valid key, a section or a loss hyper-parameter
    outcome = accepted_or_refused(lambda: TrialConfig.from_dict({key: 1}))
    assert isinstance(outcome, UserError)
    assert key in str(outcome) or repr(key.split(".")[0]) in str(outcome), (key, str(outcome))


@FUZZ
@given(st.lists(st.sampled_from(list(SECTIONS)), max_size=3), st.lists(key_value, max_size=3))
def test_nested_and_dotted_forms_mix(sections, pairs):
    raw: dict = {section: {} for section in sections}
    for key, value in pairs:
        section, name = key.split(".", 1)
        if section in raw:
            raw[section][name] = value
        else:
            raw[key] = value
    accepted_or_refused(lambda: TrialConfig.from_dict(raw))


@FUZZ
@given(yaml_text)
def test_parse_value_never_raises(text):
    parse_value(text)  # a value YAML cannot read is kept as the raw string


@FUZZ
@given(overrides)
def test_random_overrides(items):
    accepted_or_refused(lambda: TrialConfig.from_dict(parse_overrides(items)))


@pytest.mark.parametrize("item", ["optim.lr=nan", "language.temperature=inf", "optim.lr=1e999"])
def test_non_finite_numbers_are_refused(item):
    with pytest.raises(UserError, match=item.split("=")[0]):
        TrialConfig.from_dict(parse_overrides([item]))


@FUZZ
@given(st.text(max_size=60) | yaml_text | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_random_config_files(text):
    with tempfile.TemporaryDirectory() as directory:
        for suffix in (".yaml", ".json"):
            path = Path(directory) / f"c{suffix}"
            path.write_text(text)
            accepted_or_refused(lambda path=path: TrialConfig.load(path))


# ---- langdml train --set: through the command line, training stubbed out ----------------------------------
@pytest.fixture
def stub_training(monkeypatch):
    import langdml_core.train

    started = []
    monkeypatch.setattr(
        langdml_core.train, "train_trial", lambda config, **kw: started.append(config) or {"final": {}}
    )
    return started


def test_train_command_refuses_in_one_line(stub_training, capsys):
    from langdml_core.runner.cli import main

    @FUZZ
    @given(overrides)
    def check(items):
        before = len(stub_training)
        code = main(["train", *(f"--set={item}" for item in items)])  # = : an item may start with -
        err = capsys.readouterr().err
        if code == 0:
            assert len(stub_training) == before + 1 and err == ""
            accepted_or_refused(lambda: stub_training[-1])
        else:
            assert code == 2 and len(stub_training) == before
            assert err.startswith("error: ") and err.count("\n") == 1, err

    check()


# ---- sweep files -------------------------------------------------------------------------------------------
_counter = itertools.count()
SWEEP_DIR = Path(tempfile.mkdtemp(prefix="langdml-fuzz-sweeps-"))
atexit.register(shutil.rmtree, SWEEP_DIR, True)

absent = st.just("absent")
returns = st.tuples(st.just("returns"), values)
functions = {
    # what get_config / get_sweep / derive are in the file: missing, not callable, or returning a value
    "get_config": st.one_of(
        typed_configs.map(lambda v: ("returns", v)),
        st.sampled_from(["absent", "not callable"]),
        raw_configs.map(lambda v: ("returns", v)),
        returns,
    ),
    "get_sweep": st.one_of(
        st.dictionaries(
            st.sampled_from(KEYS),
            st.lists(st.sampled_from(KEYS).flatmap(typed), min_size=1, max_size=3),
            max_size=2,
        ).map(lambda v: ("returns", v)),
        st.sampled_from(["absent", "not callable"]),
        st.dictionaries(any_key | st.sampled_from(KEYS), values, max_size=3).map(lambda v: ("returns", v)),
        returns,
    ),
    "derive": st.one_of(
        st.just("absent"),
        typed_configs.map(lambda v: ("returns", v)),
        st.just("not callable"),
        raw_configs.map(lambda v: ("returns", v)),
        returns,
    ),
}
extras = st.fixed_dictionaries(
    {},
    optional={
        "NAME": st.text(max_size=10) | st.integers() | st.none(),
        "__doc__": st.sampled_from(["Trials: ,", "Trials: 1,0", "Trials: x", "Trials:", "no count"]),
    },
)


def write_sweep(parts: dict, extra: dict) -> Path:
    """A sweep file whose functions return the given (pickled, so any value) contents."""
    data = {name: spec[1] for name, spec in parts.items() if isinstance(spec, tuple)}
    data.update(extra)
    lines = ["import pickle", f"_DATA = pickle.loads({pickle.dumps(data)!r})"]
    if "__doc__" in extra:
        lines.insert(0, repr(extra["__doc__"]))
    if "NAME" in extra:
        lines.append("NAME = _DATA['NAME']")
    for name, spec in parts.items():
        if spec == "not callable":
            lines.append(f"{name} = {{'run.seed': [0]}}")
        elif isinstance(spec, tuple):
            arg = "trial" if name == "derive" else ""
            lines.append(f"def {name}({arg}):\n    return _DATA[{name!r}]")
    path = SWEEP_DIR / f"fuzz_{next(_counter)}.py"  # a new file each time: no stale bytecode
    path.write_text("\n".join(lines) + "\n")
    return path


def check_sweep(path: Path, **kwargs) -> None:
    try:
        sweep = load_sweep(path, **kwargs)
    except UserError as exc:
        assert str(exc).strip() and "\n" not in str(exc), repr(str(exc))
        event("sweep refused")
        return
    event("sweep accepted")
    assert sweep.trials, "a sweep was accepted with no trials"
    assert len({t.name for t in sweep.trials}) == len(sweep.trials), "two trials share a name"
    assert isinstance(sweep.name, str) and sweep.name
    for trial in sweep.trials:
        assert (
            accepted_or_refused(lambda trial=trial: TrialConfig.from_dict(trial.config)).flat()
            == trial.config
        )


@FUZZ
@given(st.fixed_dictionaries(functions), extras)
def test_random_sweep_files(parts, extra):
    check_sweep(write_sweep(parts, extra))


@FUZZ
@given(
    st.fixed_dictionaries(functions),
    st.lists(
        yaml_text.map(lambda v: f"run.seed={v}") | overrides.map(lambda o: o[0] if o else "x"), max_size=2
    ),
    st.none() | st.integers(min_value=-2, max_value=3),
    st.booleans(),
)
def test_random_sweep_files_with_flags(parts, items, seeds, smoke):
    check_sweep(write_sweep(parts, {}), overrides=items, seeds=seeds, smoke=smoke)
