"""A trained model out of the notebook: load a run's model (run_model), talk to it
(engine/sampling.py), describe it (model_card), publish it (hub) and convert it for
llama.cpp (gguf). docs/export.md is the user's reference."""
