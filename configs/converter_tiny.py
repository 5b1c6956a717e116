"""A tiny tone-colour converter (v2 layout, ~1.3 M parameters) that trains on 2 CPU cores.

Run (a corpus manifest from `ovjax corpus synth`, or any JSONL of audio/text/speaker):

    ovjax train converter --config converter_tiny --workdir runs/tiny \\
        data.source=corpus/manifest.jsonl

What to expect: a few steps per second on 2 cores after a ~1 minute compile; the mel loss
(45 x L1) falls from ~80-100 to ~40 within a few hundred steps, the KL from ~50-100 to ~10.
It is a pipeline check and a demo-sized model, not a good voice: see converter_demo for the one
ovjax ships, and converter_v2 for the official size.
"""
from ovjax.text.espeak import DEFAULT_ESPEAK_SYMBOLS
from ovjax.training.config import Data, Experiment, Train, model_json


def get_config() -> Experiment:
  model = model_json("converter_v2")
  model["model"].update(inter_channels=32, hidden_channels=32, filter_channels=64, n_heads=2,
                        n_layers=2, upsample_initial_channel=64, gin_channels=32)
  model["ipa_symbols"] = list(DEFAULT_ESPEAK_SYMBOLS)
  return Experiment(
      kind="converter", model=model,
      data=Data(batch_size=4, frame_buckets=(128, 256, 512, 1024), validation_items=4,
                max_seconds=12.0),
      train=Train(steps=500, discriminator_width=0.125, log_every=10, eval_every=250,
                  checkpoint_every=100, disable_most_optimizations=False))
