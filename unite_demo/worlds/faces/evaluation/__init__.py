"""Evaluating the cartoon-faces world: the metric networks (the ruler), the measures, the drawn
held-out set and the evaluation itself."""
