"""Training: the reference recipe's step (alignment, forward pass, losses), optimisers, the
sharded train step, checkpoints and the trainer loop."""
