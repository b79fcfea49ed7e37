"""Evaluation: flow EPE on generated and real pairs, flow pictures, collapse checks."""
