"""Split assignment (dataset/splits.py): the SQL the export runs is the published Python function."""

from __future__ import annotations

from collections import Counter

import duckdb
import pytest

from medlake.dataset.splits import Split, SplitSpec, split_of, split_sql
from medlake.errors import DatasetError


def test_sql_and_python_assign_the_same_split_to_every_group():
    groups = [f"pt_{i:032x}" for i in range(3000)] + [f"exam:{i}" for i in range(1000)]
    spec = SplitSpec(0.7, 0.2, 0.1, seed=13)
    with duckdb.connect() as connection:
        rows = connection.execute(f"select g, {split_sql('g', spec)} from unnest(?) as t(g)", [groups]).fetchall()
    assert {group: split for group, split in rows} == {group: split_of(group, spec).value for group in groups}
    shares = Counter(split for _, split in rows)
    assert abs(shares["train"] / len(groups) - 0.7) < 0.03 and abs(shares["test"] / len(groups) - 0.1) < 0.02


def test_a_split_depends_only_on_the_group_and_the_seed():
    spec = SplitSpec(seed=1)
    assert split_of("pt_a", spec) == split_of("pt_a", SplitSpec(seed=1))
    assert {split_of(f"pt_{i}", spec) for i in range(200)} == set(Split)
    assert [split_of(f"pt_{i}", spec) for i in range(200)] != [
        split_of(f"pt_{i}", SplitSpec(seed=2)) for i in range(200)
    ]
    assert {split_of(f"pt_{i}", SplitSpec(1.0, 0.0, 0.0)) for i in range(200)} == {Split.TRAIN}


@pytest.mark.parametrize("text", ["0.8,0.1", "0.8,0.3,0.1", "a,b,c", "-0.1,0.6,0.5", "nan,0.5,0.5"])
def test_bad_split_texts_are_clear_errors(text):
    with pytest.raises(DatasetError, match="--split"):
        SplitSpec.parse(text)
