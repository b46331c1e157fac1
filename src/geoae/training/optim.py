"""Adam's step without the optimizer's per-step Python (``AdamStep``).

``torch.optim.Adam(fused=True).step()`` spends ~0.25 ms of Python per call (hooks, profiler records, state
grouping) around ~0.03 ms of arithmetic: a sixth of a paper64 training step on two cores (measured). ``AdamStep``
issues the same two operations as torch's ``_fused_adam`` (the step counters incremented, held in one tensor so
that one ``add_`` does it, then ``torch._fused_adam_``), so the parameters and the optimizer's state are bit for
bit those of ``optimizer.step()``
(tests/test_train.py compares them). Anything it does not handle (several parameter groups, amsgrad, a tensor
learning rate, state not yet created) goes through ``optimizer.step()`` itself.

Given the fused kernel library, ``AdamStep`` updates in C instead (``geoae_adam``: torch's arithmetic, measured,
see ``_fused.c``), where a check at first use found it equal to ``_fused_adam_`` bit for bit on this machine and
torch runs on one thread: inside the training loop the torch call took ~50 µs a step (its argument lists and
dispatch, out of cache after the kernel's passes), the C update a few.
"""

from __future__ import annotations

import ctypes

import torch

__all__ = ["AdamStep", "c_adam_width"]


def _direct(optimizer: torch.optim.Optimizer) -> list[torch.Tensor] | None:
    """The parameters if ``AdamStep`` can step ``optimizer`` itself, else None."""
    if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    if (not group.get("fused") or group["amsgrad"] or group["differentiable"] or group["capturable"]
            or group.get("decoupled_weight_decay") or isinstance(group["lr"], torch.Tensor)
            or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks):
        return None
    params = group["params"]
    if any(p.grad is None or p not in optimizer.state for p in params):
        return None  # the first step creates the state
    return params


def _shared_counters(state: dict, params: list[torch.Tensor]) -> torch.Tensor | None:
    """One tensor holding every parameter's step counter, each parameter's ``state[p]["step"]`` becoming a view of
    its entry (same value, dtype and shape), so that one ``add_`` increments them all: ``_foreach_add_`` over the
    24 counters of a paper64 network took ~34 µs a step, one ``add_`` ~2 µs (measured). None (the counters left
    as they are) unless they are 0-d tensors of one dtype on the CPU."""
    steps = [state[p]["step"] for p in params]
    if not all(isinstance(s, torch.Tensor) and s.dim() == 0 and s.device.type == "cpu" and s.dtype == steps[0].dtype
               for s in steps):
        return None
    counters = torch.stack([s.detach() for s in steps])
    for i, p in enumerate(params):
        state[p]["step"] = counters[i]
    return counters


class AdamStep:
    """``step()`` for a fused ``torch.optim.Adam`` of one parameter group, with its per-step Python left out: bit for
    bit the update and state of ``optimizer.step()``. The lists of state tensors are gathered at the first direct
    step and kept: create it after any ``optimizer.load_state_dict`` (which replaces them), as the training loop
    does after resuming. An optimizer it cannot step itself is stepped by ``optimizer.step()``."""

    def __init__(self, optimizer: torch.optim.Optimizer, kernel=None):
        self.optimizer = optimizer
        self._lists: tuple[list[torch.Tensor], ...] | None = None
        self._counters: torch.Tensor | None = None
        self._kernel = kernel  # a fused.Kernel: update with its geoae_adam where that equals torch's
        self._c: _CUpdate | None = None
        self.c_steps = 0  # updates made by geoae_adam

    @torch.no_grad()
    def step(self) -> None:
        if self._lists is None:
            params = _direct(self.optimizer)
            if params is None:
                self.optimizer.step()
                return
            state = self.optimizer.state
            self._counters = _shared_counters(state, params)
            self._lists = (params, [state[p]["step"] for p in params], [state[p]["exp_avg"] for p in params],
                           [state[p]["exp_avg_sq"] for p in params])
        params, steps, exp_avgs, exp_avg_sqs = self._lists
        grads = [p.grad for p in params]
        if any(g is None for g in grads):  # torch skips a parameter without a gradient: let it
            self.optimizer.step()
            if self._c is not None:
                self._c.step = None  # the counters moved without it: read them again
            return
        group = self.optimizer.param_groups[0]
        if self._kernel is not None and self._counters is not None and self._c_step(params, grads, group):
            return
        if self._counters is not None:
            self._counters.add_(1)  # every parameter's counter, one operation
        else:
            torch._foreach_add_(steps, 1)
        if self._c is not None:
            self._c.step = None  # the counters moved without it: read them again
        beta1, beta2 = group["betas"]
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                           lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                           eps=group["eps"], maximize=group["maximize"], grad_scale=None, found_inf=None)

    def _c_step(self, params, grads, group) -> bool:
        """The update by the kernel library's ``geoae_adam``, if it applies (torch on one thread, the
        hyper-parameters it computes, a width at which it equals torch here): whether it ran."""
        beta1, beta2 = group["betas"]
        if (torch.get_num_threads() != 1 or group["weight_decay"] != 0 or group["maximize"] or not 1 - beta1 < 0.5
                or isinstance(group["lr"], torch.Tensor)):
            return False
        if self._c is None:
            width = c_adam_width(self._kernel)
            if width is None:
                self._kernel = None
                return False
            params, _, exp_avgs, exp_avg_sqs = self._lists
            self._c = _CUpdate(self._kernel.lib, width, params, exp_avgs, exp_avg_sqs)
        c = self._c
        if c.step is None:
            if not bool((self._counters == self._counters[0]).all()):
                self._kernel, self._c = None, None  # counters apart: torch's update handles them
                return False
            c.step = float(self._counters[0])
        c.bind(params, grads)
        self._counters.add_(1)
        c.step += 1.0
        code = c.lib.geoae_adam(c.n, c.p, c.g, c.m, c.v, c.numel, group["lr"], beta1, beta2, group["eps"], c.step,
                                c.width)
        if code != 0:
            raise RuntimeError(f"geoae_adam returned error {code}")
        self.c_steps += 1
        return True


class _CUpdate:
    """Pointer arrays for ``geoae_adam`` over one optimizer's tensors (re-read where a tensor moved)."""

    def __init__(self, lib, width: int, params, exp_avgs, exp_avg_sqs):
        self.lib, self.width, self.n = lib, width, len(params)
        self.numel = (ctypes.c_longlong * self.n)(*[p.numel() for p in params])
        self.m, self.v = _pointers(exp_avgs), _pointers(exp_avg_sqs)
        self.p = self.g = None
        self._keys: tuple = ()
        self.step: float | None = None

    def bind(self, params, grads) -> None:
        keys = tuple(t.data_ptr() for t in params) + tuple(g.data_ptr() for g in grads)
        if keys != self._keys:
            if not all(t.is_contiguous() and t.dtype == torch.float32 for t in (*params, *grads)):
                raise ValueError("geoae_adam needs contiguous float32 parameters and gradients")
            self.p, self.g, self._keys = _pointers(params), _pointers(grads), keys


def _pointers(tensors) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


_WIDTHS: dict[str, int | None] = {}


def c_adam_width(kernel) -> int | None:
    """The vector width (8, 16 or 4) at which the kernel library's ``geoae_adam`` gives exactly what torch's
    ``_fused_adam_`` gives on this machine, over tensors of 1 to 40 entries and a few hundred (its vector body and
    its scalar tail), gradients from 1e-9 to 10 with zeros among them, three steps, two sets of hyper-parameters;
    None if no width does (then torch updates). Checked once per library and process, on one torch thread."""
    key = str(kernel.path)
    if key in _WIDTHS:
        return _WIDTHS[key]
    gen = torch.Generator().manual_seed(20261207)
    sizes = list(range(1, 41)) + [72, 288, 300, 1152]
    found = None
    for width in (8, 16, 4):
        same = True
        for lr, betas, eps in ((1e-3, (0.9, 0.999), 1e-8), (1e-2, (0.8, 0.99), 3.2e-6)):
            scale = [10.0 ** k for k in range(-9, 2)]
            ps = [torch.randn(n, generator=gen) for n in sizes]
            gs = [torch.randn(n, generator=gen) * scale[i % len(scale)] for i, n in enumerate(sizes)]
            for grad in gs[::5]:
                grad[::3] = 0.0
            ms = [torch.zeros(n) for n in sizes]
            vs = [torch.zeros(n) for n in sizes]
            ref = [[t.clone() for t in group] for group in (ps, gs, ms, vs)]
            update = _CUpdate(kernel.lib, width, ps, ms, vs)
            update.bind(ps, gs)
            for step in (1.0, 2.0, 3.0):
                torch._fused_adam_(ref[0], ref[1], ref[2], ref[3], [], [torch.tensor(step)] * len(sizes),
                                   amsgrad=False, lr=lr, beta1=betas[0], beta2=betas[1], weight_decay=0.0, eps=eps,
                                   maximize=False, grad_scale=None, found_inf=None)
                kernel.lib.geoae_adam(len(sizes), update.p, update.g, update.m, update.v, update.numel, lr, *betas,
                                      eps, step, width)
            same = same and all(torch.equal(a, b) and torch.equal(a.signbit(), b.signbit())
                                for k in (0, 2, 3) for a, b in zip(ref[k], (ps, gs, ms, vs)[k], strict=True))
        if same:
            found = width
            break
    _WIDTHS[key] = found
    return found
