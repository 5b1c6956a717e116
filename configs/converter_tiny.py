"""A tiny tone-colour converter (v2 layout, ~1 M parameters; shallower posterior encoder and flow,
one resblock per decoder stage) that trains on 2 CPU cores. CI's training tests use it.

Run (a corpus manifest from `ovjax corpus synth`, or any JSONL of audio/text/speaker):

    ovjax train converter --config converter_tiny --workdir runs/tiny \\
        data.source=corpus/manifest.jsonl

What to expect on 2 cores: ~40 s to compile, then ~4 steps/s; over 300 steps the mel loss
(45 x L1) falls from ~200 to ~60 and the KL term by about half. A pipeline check, not a voice:
converter_demo is the small model ovjax ships, converter_v2 the official size.
"""
from ovjax.text.espeak import DEFAULT_ESPEAK_SYMBOLS
from ovjax.training.config import Data, Experiment, Train, model_json


def get_config() -> Experiment:
  model = model_json("converter_v2")
  model["model"].update(
      inter_channels=32, hidden_channels=32, filter_channels=64, n_heads=2, n_layers=2,
      gin_channels=32, upsample_initial_channel=32, upsample_rates=[16, 16],
      upsample_kernel_sizes=[32, 32], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
      posterior_layers=4, flow_layers=2, n_flows=2)
  model["ipa_symbols"] = list(DEFAULT_ESPEAK_SYMBOLS)
  return Experiment(
      kind="converter", model=model,
      data=Data(batch_size=2, frame_buckets=(300,), validation_items=2, max_seconds=3.4),
      train=Train(steps=300, discriminator_width=0.0625, log_every=10, eval_every=300,
                  checkpoint_every=100))
