"""The training loop and what it runs: the model, the optimizer, DDP, the callback
contract, checkpoints, and step-time measurement."""
