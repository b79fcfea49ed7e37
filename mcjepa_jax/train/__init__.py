"""Training: optimizer, train state and step, input pipeline glue, the train loop."""
