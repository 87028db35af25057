"""epsd_tf: EPSD (Early Pruning with Self-Distillation) for Keras 3."""
__version__ = "0.1.0"
