"""Training: methods (objective + label refiner + extras), the loop, checkpoints."""
