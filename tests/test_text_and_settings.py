"""Tokenization shared by training and serving, and settings from the environment."""

from __future__ import annotations

import pytest

from seqserve.text import tokenize
from service.settings import Settings


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("A gripping, funny film", ["a", "gripping", ",", "funny", "film"]),
        ("it's the 21st century's  new\tconan", ["it's", "the", "21st", "century's", "new", "conan"]),
        ("don’t", ["don't"]),
        ("jean-claud van damme", ["jean", "-", "claud", "van", "damme"]),
        ("ＦＵＬＬ width", ["full", "width"]),
        ("   ", []),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


def test_tokenize_can_keep_case():
    assert tokenize("The Jury", lowercase=False) == ["The", "Jury"]


def test_settings_come_from_prefixed_environment(monkeypatch):
    monkeypatch.setenv("SEQSERVE_GRPC_PORT", "6000")
    monkeypatch.setenv("SEQSERVE_DEFAULT_ARCH", '{"sentiment": "gru"}')
    monkeypatch.setenv("SEQSERVE_EXECUTION_PROVIDER", "cpu")
    s = Settings()
    assert (s.grpc_port, s.default_arch, s.execution_provider) == (6000, {"sentiment": "gru"}, "cpu")


def test_settings_refuse_nonsense(monkeypatch):
    monkeypatch.setenv("SEQSERVE_EXECUTION_PROVIDER", "tpu")
    with pytest.raises(ValueError):
        Settings()


def test_a_task_budget_replaces_the_global_one_and_must_not_be_negative(monkeypatch):
    monkeypatch.setenv("SEQSERVE_OVERLOAD_BUDGET_MS_BY_TASK", '{"translation": 10}')
    s = Settings()
    assert (s.budget_ms("translation"), s.budget_ms("sentiment")) == (10, s.overload_budget_ms)
    for bad in ('{"translation": -1}', '{"translate": 10}'):
        monkeypatch.setenv("SEQSERVE_OVERLOAD_BUDGET_MS_BY_TASK", bad)
        with pytest.raises(ValueError):
            Settings()


def test_decode_cpus_are_cpu_numbers_for_decode_processes(monkeypatch):
    monkeypatch.setenv("SEQSERVE_DECODE_CPUS", "[1, 0]")
    assert Settings().decode_cpus == {0, 1}
    monkeypatch.setenv("SEQSERVE_DECODE_CPUS", "[-1]")
    with pytest.raises(ValueError):
        Settings()
    monkeypatch.setenv("SEQSERVE_DECODE_CPUS", "[1]")
    monkeypatch.setenv("SEQSERVE_DECODE_PROCESS", "false")
    with pytest.raises(ValueError, match="needs SEQSERVE_DECODE_PROCESS=true"):
        Settings()


def test_every_setting_is_documented():
    assert all(field.description for field in Settings.model_fields.values())
