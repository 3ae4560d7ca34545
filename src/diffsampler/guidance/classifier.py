r"""Classifier guidance (Dhariwal & Nichol 2021).

    ε̂ = ε − s·√(1−ᾱ_t)·∇ₓ log p(y | x_t, t)

``classifier(x, t_model)`` returns logits, with t on the schedule's model time (the training
index for discrete schedules, as for the backbones). The gradient is taken with autograd under
``torch.enable_grad`` while the backbone stays in no-grad. With ``pass_labels`` the labels also
reach the wrapped ε-function (a class-conditional model, or CFG inside ``Compose``); otherwise
the model runs unconditionally.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..schedules import Schedule
from ..tensors import bcast, check_labels
from .base import GUIDANCE, check_interval, check_scale, inside, labels_of


@GUIDANCE.register("classifier", cli_models={"classifier": "digits-classifier/noisy"})
class ClassifierGuidance:
    """ε − s·√(1−ᾱ)·∇ₓ log p(y | x_t, t) with any noise-conditional classifier; per-sample labels."""

    renoise = False
    zero_snr = False  # its gradient is of ε's x_t: at zero SNR, where x̂_0 stands in for ε, it has no meaning
    second_network = False

    def __init__(
        self,
        classifier: Callable[[Tensor, Tensor], Tensor],
        scale: float = 1.0,
        interval: tuple[float, float] | None = None,
        pass_labels: bool = False,
        label_key: str = "class_labels",
    ) -> None:
        if not callable(classifier):
            raise TypeError(f"classifier must be callable as classifier(x, t) -> logits, got {classifier!r}")
        self.classifier, self.scale = classifier, check_scale("classifier", scale)
        self.interval, self.pass_labels, self.label_key = check_interval(interval), pass_labels, label_key

    def grad_log_prob(self, x: Tensor, t: Tensor, y: Tensor, schedule: Schedule) -> Tensor:
        """∇ₓ log p(y | x_t, t), one label per sample."""
        with torch.enable_grad():
            xi = x.detach().requires_grad_(True)
            logits = self.classifier(xi, schedule.model_time(t).to(device=x.device, dtype=torch.float32))
            y = check_labels(y, x.shape[0], logits.shape[1], device=x.device)
            logp = torch.log_softmax(logits.float(), dim=1).gather(1, y[:, None]).sum()
            (grad,) = torch.autograd.grad(logp, xi)
        return grad

    def __call__(self, eps: Any, schedule: Schedule, backbone: Any = None) -> Any:
        def guided(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
            y = labels_of("classifier", cond, self.label_key, x.shape[0], x.device)
            inner = cond if self.pass_labels else {k: v for k, v in cond.items() if k != self.label_key}
            e = eps(x, t, **inner)
            on = inside(t, self.interval)
            if self.scale == 0 or not bool(on.any()):
                return e
            if schedule.variance_preserving:
                g = self.grad_log_prob(x, t, y, schedule).to(e.dtype)
            else:  # the classifier reads the model's x = s·x_vp: ∇_{x_vp} = s·∇ₓ
                s = bcast(schedule.scale(t), x).to(x.dtype)
                g = (s * self.grad_log_prob(x * s, t, y, schedule)).to(e.dtype)
            return e - bcast(on * self.scale * schedule.std(t), x) * g

        return guided
