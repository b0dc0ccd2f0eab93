"""nodefile.records: the light dataclasses behave as dataclasses do for what nodefile uses."""
import pickle

import pytest

from nodefile.records import FrozenInstanceError, field, fields, record, replace


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: tuple = ()


@record
class Bag:
    name: str
    items: list = field(default_factory=list)
    count: int = field(default=3)


def test_init_positional_keyword_and_defaults():
    assert (Point(1).x, Point(1).y, Point(1, 2).y, Point(x=1, y=5).y) == (1, 0, 2, 5)
    with pytest.raises(TypeError):
        Point()  # x has no default
    with pytest.raises(TypeError):
        Point(1, z=2)


def test_default_factory_gives_each_instance_its_own_value():
    a, b = Bag("a"), Bag("b")
    a.items.append(1)
    assert b.items == [] and a.count == 3 and Bag.count == 3


def test_eq_repr_hash():
    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(2, 1)
    assert Point(1) != (1, 0, ())  # another type is never equal
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=())"
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert len({Point(1, 2), Point(1, 2), Point(3)}) == 2
    with pytest.raises(TypeError):
        hash(Bag("a"))  # unfrozen with eq: unhashable, as dataclasses


def test_frozen_refuses_assignment_and_deletion():
    p = Point(1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2
    with pytest.raises(AttributeError):
        del p.y
    b = Bag("a")
    b.name = "b"  # unfrozen: fine
    assert b.name == "b"


def test_fields_replace_and_pickle():
    assert [f.name for f in fields(Point)] == ["x", "y", "tags"]
    assert [f.name for f in fields(Bag("a"))] == ["name", "items", "count"]
    p = Point(1, 2, ("a",))
    q = replace(p, y=9)
    assert (q.x, q.y, q.tags, p.y) == (1, 9, ("a",), 2)
    assert pickle.loads(pickle.dumps(p)) == p
    with pytest.raises(TypeError):
        fields(object())


def test_a_field_without_default_after_one_with_is_an_error():
    with pytest.raises(TypeError):
        @record
        class Bad:
            a: int = 1
            b: int
