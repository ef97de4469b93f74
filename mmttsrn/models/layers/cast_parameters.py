"""Parameters cast once to the autocast dtype, for graphs of inference."""
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Set

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ['CastParameters']


class _ParameterUses(TorchDispatchMode):
    """Sorts the parameters (by identity) that ops take, directly or through
    views of them, into those cast to ``dtype`` (``_to_copy`` to that dtype,
    nothing else changed) and those used any other way. A cast commutes
    with a view, so a parameter whose views are only cast qualifies too."""

    def __init__(self, param_ids: Set[int], dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        # id of a parameter or of a view of one -> the parameter's id; the
        # views are kept alive so that their ids are not reused meanwhile.
        self.base = {key: key for key in param_ids}
        self.views: List[Tensor] = []
        self.cast: Set[int] = set()
        self.other: Set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace == 'prim':  # metadata queries, no data use
            return out
        for arg in tree_leaves((args, kwargs)):
            base = self.base.get(id(arg)) if isinstance(arg, Tensor) else None
            if base is None:
                continue
            if func.is_view:
                for view in tree_leaves(out):
                    self.base[id(view)] = base
                    self.views.append(view)
            elif (func is torch.ops.aten._to_copy.default and arg is args[0]
                  and out.dtype == self.dtype and out.device == arg.device
                  and out.stride() == arg.stride()):
                self.cast.add(base)
            else:
                self.other.add(base)
        return out


class CastParameters:
    """The parameters of a module that a function only ever casts to one
    dtype, each with a copy in that dtype to run the function on instead.

    Under autocast every linear and conv casts its float32 weight and bias to
    the autocast dtype at each call, and so do the low-precision norms
    (:class:`LowPrecisionLayerNorm`): in a CUDA graph of a network forward,
    one kernel per parameter and call (about 600 of the 1,650 kernels of the
    paper config's bf16 clip). Run on the copies, each of those casts gets a
    tensor of its dtype already, so it launches nothing, and the result is
    the same: the copies are those casts, made once.

    :meth:`find` runs the function once and watches every op that takes a
    parameter or a view of one. A parameter qualifies when each of those
    ops is a view or a cast to ``dtype`` (a cast of a view is the view of
    the cast); one also used otherwise (in float32, say) keeps its own
    tensor. A copy is exact for runs that take the path of the run that
    found it: :class:`CUDAGraphCache` finds them once per signature, on the
    paths of a capture (:func:`capture_paths`), and records its graph there.

    Args:
        module (nn.Module): Owner of the parameters.
        params (dict[str, Tensor]): The qualifying parameters by name.
        dtype (torch.dtype): The autocast dtype.
    """

    def __init__(self, module: nn.Module, params: Dict[str, Tensor],
                 dtype: torch.dtype) -> None:
        self.module = module
        self._params = params
        self._versions = {name: p._version for name, p in params.items()}
        self._copies = {
            name: p.detach().to(dtype)
            for name, p in params.items()
        }

    def __len__(self) -> int:
        return len(self._params)

    @classmethod
    def find(cls, module: nn.Module, dtype: torch.dtype, fn: Callable,
             *args: Any) -> 'CastParameters':
        """Run ``fn(*args)`` once (in the caller's autocast state) and
        return the parameters of ``module`` that it only casts to
        ``dtype``."""
        params = dict(module.named_parameters())
        uses = _ParameterUses({id(p) for p in params.values()}, dtype)
        # Eager, so that the mode sees every op: compiled code would hide
        # them (and a fullgraph compile refuses to run under the mode).
        with torch.compiler.set_stance('force_eager'), uses:
            fn(*args)
        only_cast = uses.cast - uses.other
        return cls(
            module,
            {name: p
             for name, p in params.items() if id(p) in only_cast}, dtype)

    def refresh(self) -> None:
        """Cast again, in place, the parameters changed in place since
        their copy was made (``load_state_dict``, an optimizer step: their
        version counter moved). A parameter replaced by a new tensor is not
        seen: the caller drops this object then."""
        for name, param in self._params.items():
            if param._version != self._versions[name]:
                self._copies[name].copy_(param.detach())
                self._versions[name] = param._version

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Within the context, the module's submodules hold the copies in
        place of their parameters (shared parameters included)."""
        by_id = {
            id(self._params[name]): copy
            for name, copy in self._copies.items()
        }
        swapped = []
        for submodule in self.module.modules():
            for name, param in submodule._parameters.items():
                if param is not None and id(param) in by_id:
                    swapped.append((submodule, name, param))
        try:
            for submodule, name, param in swapped:
                # Not setattr: nn.Module accepts only nn.Parameter there.
                submodule._parameters[name] = by_id[id(param)]
            yield
        finally:
            for submodule, name, param in swapped:
                submodule._parameters[name] = param
