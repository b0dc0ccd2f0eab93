"""Light dataclasses: `@record` and `@record(frozen=True)` for nodefile's value types.

The standard `dataclasses` module costs ~20 ms on every start of `node`: it imports
`inspect` (and with it `ast`, `dis`, `tokenize`), and it compiles four to six methods
per class with `exec`. The CLI's no-op and small-rebuild paths load about twenty such
classes, so that was a seventh of a rebuild of one node. This module keeps the part
nodefile uses, with the same behaviour:

- fields from the class annotations, in order, with defaults and
  `field(default_factory=...)`;
- a generated `__init__` (one `exec` per class), positional or keyword;
- `__eq__` and `__repr__` over the fields, shared by every class;
- frozen: assigning or deleting an attribute raises `FrozenInstanceError` (an
  AttributeError), and instances hash by their fields; unfrozen ones are unhashable;
- `fields()` (objects with `.name`) and `replace(obj, **changes)`;
- `cached`: a property of a frozen record computed once (not a field).

Instances pickle as plain objects (their `__dict__`). Methods a class defines itself
(`__eq__`, `__repr__`, `__hash__`) are kept. Not supported, and not used:
`__post_init__`, inheritance between records, ordering, slots, keyword-only fields.
"""
from __future__ import annotations

from operator import attrgetter

_MISSING = object()


class FrozenInstanceError(AttributeError):
    """An attempt to assign to or delete a field of a frozen record."""


class Field:
    __slots__ = ("name", "default", "default_factory")

    def __init__(self, default=_MISSING, default_factory=_MISSING):
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot give both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


def field(*, default=_MISSING, default_factory=_MISSING) -> Field:
    return Field(default, default_factory)


def fields(cls_or_instance) -> tuple[Field, ...]:
    cls = cls_or_instance if isinstance(cls_or_instance, type) else type(cls_or_instance)
    try:
        return cls.__record_fields__
    except AttributeError:
        raise TypeError(f"{cls.__name__} is not a record") from None


def replace(obj, **changes):
    """A copy of obj with some fields changed (through __init__, as dataclasses.replace)."""
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    values.update(changes)
    return type(obj)(**values)


def _eq(self, other):
    if other.__class__ is not self.__class__:
        return NotImplemented
    return self.__record_key__(self) == other.__record_key__(other)


def _repr(self) -> str:
    inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.__record_fields__)
    return f"{type(self).__qualname__}({inner})"


def _hash(self) -> int:
    return hash(self.__record_key__(self))


def _frozen_setattr(self, name, value):
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self, name):
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _process(cls, frozen: bool):
    own = cls.__dict__
    flds = []
    params, lines = [], []
    ns: dict = {"_MISSING": _MISSING}
    for name in own.get("__annotations__", {}):
        value = own.get(name, _MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if isinstance(value, Field):  # as dataclasses: the class attribute is the default, if any
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        if f.default_factory is not _MISSING:
            ns[f"_f_{name}"] = f.default_factory
            params.append(f"{name}=_MISSING")
            lines.append(f"    d[{name!r}] = _f_{name}() if {name} is _MISSING else {name}")
        else:
            if f.default is not _MISSING:
                ns[f"_d_{name}"] = f.default
                params.append(f"{name}=_d_{name}")
            elif any("=" in p for p in params):
                raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one with a default")
            else:
                params.append(name)
            lines.append(f"    d[{name!r}] = {name}")
        flds.append(f)
    # the instance dict directly: one store per field, frozen or not (as fast as it gets)
    src = f"def __init__(self, {', '.join(params)}):\n    d = self.__dict__\n" + ("\n".join(lines) or "    pass")
    exec(src, ns)
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init
    cls.__record_fields__ = tuple(flds)
    names = [f.name for f in flds]
    cls.__record_key__ = staticmethod(attrgetter(*names) if names else (lambda obj: ()))
    if "__eq__" not in own:
        cls.__eq__ = _eq
    if "__repr__" not in own:
        cls.__repr__ = _repr
    if "__hash__" not in own or own["__hash__"] is None:
        cls.__hash__ = _hash if frozen else None
    if frozen:
        cls.__setattr__ = _frozen_setattr
        cls.__delattr__ = _frozen_delattr
    return cls


class cached:
    """A property of a frozen record computed once, on first use, and kept in the
    instance's __dict__ (which then answers before this descriptor is asked)."""

    def __init__(self, func):
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)
        return value


def record(cls=None, /, *, frozen: bool = False):
    """@record or @record(frozen=True): see the module docstring."""
    def wrap(c):
        return _process(c, frozen)
    return wrap if cls is None else wrap(cls)
