"""TorchScript definitions living in a nested Python package (qualifier __torch__.pkgx.mods).

Used by the `interfaces_classes` scenario: a script class, a module interface, free
functions, an enum and a NamedTuple, all reached from one module tree (Top -> Mid -> Leaf).
"""
from enum import Enum
from typing import List, NamedTuple, Optional

import torch
from torch import Tensor


class Point(NamedTuple):
    x: int
    y: float


class Mode(Enum):
    A = "a"
    B = "b"


@torch.jit.script
class Counter:
    def __init__(self, start: int):
        self.n = start
        self.hist: List[int] = []

    def bump(self, k: int) -> int:
        self.n = self.n + k
        self.hist.append(self.n)
        return self.n


@torch.jit.interface
class Iface(torch.nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        pass

    def other(self, a: int, b: Optional[str] = None) -> List[int]:
        pass


def helper(x: Tensor, k: int = 2) -> Tensor:
    return x * k


def helper2(p: Point) -> float:
    return p.x + p.y


class Leaf(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))
        self.c = Counter(3)
        self.mode = Mode.A

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == Mode.B:
            return x
        return helper(x, 2) + self.w

    @torch.jit.export
    def other(self, a: int, b: Optional[str] = None) -> List[int]:
        return [a, self.c.bump(1)]


class Mid(torch.nn.Module):
    impl: Iface

    def __init__(self):
        super().__init__()
        self.impl = Leaf()
        self.register_buffer("scale", torch.full((2,), 0.5))

    def forward(self, x: Tensor) -> Tensor:
        return self.impl.forward(x) * self.scale


class Top(torch.nn.Module):
    origin: Point

    def __init__(self):
        super().__init__()
        self.mid = Mid()
        self.origin = Point(1, 0.5)

    def forward(self, x: Tensor) -> Tensor:
        s = helper2(self.origin)
        p = Point(2, s)
        return self.mid(x) + p.y
