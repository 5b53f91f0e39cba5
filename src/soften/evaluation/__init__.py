"""Evaluation: every attack runs the model in eval mode and fp32."""

from soften.evaluation.attacks import ATTACK_KINDS
from soften.evaluation.evaluate import evaluate_checkpoint

__all__ = ["ATTACK_KINDS", "evaluate_checkpoint"]
