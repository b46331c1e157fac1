"""Adam's step without the optimizer's per-step Python (``AdamStep``).

``torch.optim.Adam(fused=True).step()`` spends ~0.25 ms of Python per call (hooks, profiler records, state
grouping) around ~0.03 ms of arithmetic: a sixth of a paper64 training step on two cores (measured). ``AdamStep``
issues the same two operations as torch's ``_fused_adam`` (the step counters incremented, held in one tensor so
that one ``add_`` does it, then ``torch._fused_adam_``), so the parameters and the optimizer's state are bit for
bit those of ``optimizer.step()``
(tests/test_train.py compares them). Anything it does not handle (several parameter groups, amsgrad, a tensor
learning rate, state not yet created) goes through ``optimizer.step()`` itself.
"""

from __future__ import annotations

import torch

__all__ = ["AdamStep"]


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

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self._lists: tuple[list[torch.Tensor], ...] | None = None
        self._counters: torch.Tensor | None = None

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
            return
        group = self.optimizer.param_groups[0]
        if self._counters is not None:
            self._counters.add_(1)  # every parameter's counter, one operation
        else:
            torch._foreach_add_(steps, 1)
        beta1, beta2 = group["betas"]
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                           lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                           eps=group["eps"], maximize=group["maximize"], grad_scale=None, found_inf=None)
