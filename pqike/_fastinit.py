"""A cheaper ``__init__`` for frozen dataclasses on the handshake's hot path.

A frozen dataclass sets each field with ``object.__setattr__``, which costs a method
lookup and a wrapper call per field: a 9-field ``IkeHeader`` took 1.4 us, six times a
plain slots class, and a handshake builds a hundred such values. ``fast_init`` swaps in
an ``__init__`` with the same signature and defaults that stores through the slot
descriptors (or straight into the instance dict), so the class stays frozen, hashable
and equal exactly as before; only construction is cheaper.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

C = TypeVar("C", bound=type)


def fast_init(cls: C) -> C:
    """Replace the generated ``__init__`` of the frozen dataclass ``cls`` (apply it
    above ``@dataclass``). Keyword-only fields stay keyword-only. Fields with a default
    factory, ``init=False`` fields and ``__post_init__`` are not supported and raise
    ``TypeError`` at import time, so a new field of that kind cannot slip through
    unnoticed."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if not params.frozen:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __post_init__")
    fields = dataclasses.fields(cls)
    namespace: dict[str, object] = {}
    args: list[str] = []
    keyword: list[str] = []
    lines: list[str] = []
    slotted = "__slots__" in cls.__dict__
    for f in fields:
        if not f.init or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} cannot take a fast __init__")
        into = keyword if f.kw_only else args
        if f.default is dataclasses.MISSING:
            into.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            into.append(f"{f.name}=_default_{f.name}")
        if slotted:
            owner = next(k for k in cls.__mro__ if f.name in k.__dict__)
            namespace[f"_set_{f.name}"] = owner.__dict__[f.name].__set__
            lines.append(f"    _set_{f.name}(self, {f.name})")
    if not slotted:
        pairs = ", ".join(f"{f.name!r}: {f.name}" for f in fields)
        lines.append(f"    self.__dict__.update({{{pairs}}})")
    params_text = ", ".join(["self", *args, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({params_text}):\n" + "\n".join(lines or ["    pass"])
    exec(source, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[misc]
    return cls
