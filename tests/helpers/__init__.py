"""What the tests share: references, tolerances, problems, runs and hypothesis strategies."""
