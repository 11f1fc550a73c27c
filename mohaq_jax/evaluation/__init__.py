"""Evaluation: genome spaces and the batched population evaluator."""
