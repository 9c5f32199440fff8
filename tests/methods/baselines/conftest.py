"""Shared set-up of the one-shot baseline tests: JSRT's official train and test splits."""

from __future__ import annotations

import pytest

from roiprompt.data import load_dataset
from tests.conftest import data_root


@pytest.fixture(scope="module")
def jsrt_splits():
    """(train, test) of JSRT: references come from train, targets from test."""
    jsrt = load_dataset("jsrt", root=data_root("jsrt").parent)
    return jsrt.split("train"), jsrt.split("test")
