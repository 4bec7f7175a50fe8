"""How a run trains: the plan (recipe), the stages it runs, the optimizer step and the epoch loop."""
