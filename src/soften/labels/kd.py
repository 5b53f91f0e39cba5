"""Knowledge distillation from teachers trained earlier in the DAG (Chen et al., ICLR 2021).

Teachers (eval mode) see the adversarial input x' crafted against the student
with the hard label; with weights w_j summing to less than 1,

    loss = (1 - sum_j w_j) * CE(f(x'), y) + sum_j w_j * T^2 * H(softmax(t_j(x')/T), softmax(f(x')/T)).

``kd-at``: one adversarially trained teacher (PGD-AT, weight 0.6).
``kd-swa``: a standard teacher (0.1) and an adversarial one (0.6), T = 2, plus
SWA of the student (the ``swa`` extra): the VITA-Group/Alleviate-Robust-Overfitting
defaults (coef_ce 0.3, coef_kd1 0.1, coef_kd2 0.6, temperature 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soften.labels.base import Batch, Outputs, Refiner, Setup, Target, register


def kd_target(y: torch.Tensor, teacher_logits: list[torch.Tensor], weights: list[float], temperature: float) -> Target:
    distill = tuple((float(w), F.softmax(z.detach().float() / temperature, dim=1), float(temperature))
                    for w, z in zip(weights, teacher_logits))
    return Target(y, label_weight=1.0 - sum(weights), distill=distill)


@register("kd-at", "kd-swa")
class KnowledgeDistillation(Refiner):
    def __init__(self, params, setup: Setup):
        super().__init__(params, setup)
        from soften.models.checkpoint import load_model

        if not setup.teachers:
            raise ValueError("knowledge distillation needs teacher checkpoints in the run spec ('teachers')")
        self.teachers = []
        self.weights = []
        for t in setup.teachers:
            model, _ = load_model(t["checkpoint"], setup.device)
            for p in model.parameters():
                p.requires_grad_(False)
            self.teachers.append(model)
            self.weights.append(float(t["weight"]))
        if sum(self.weights) > 1:
            raise ValueError(f"teacher weights {self.weights} sum to more than 1")
        self.temperature = float(params["temperature"])

    def targets(self, batch: Batch, out: Outputs) -> Target:
        with torch.no_grad():
            logits = [t(out.x_adv) for t in self.teachers]
        return kd_target(batch.y, logits, self.weights, self.temperature)
