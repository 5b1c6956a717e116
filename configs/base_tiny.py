"""A tiny VITS base speaker TTS (~1 M parameters) over espeak-ng IPA, one speaker id per corpus
speaker; trains on 2 CPU cores. CI's training tests use it.

Run:

    ovjax train base --config base_tiny --workdir runs/base_tiny data.source=corpus/manifest.jsonl

What to expect on 2 cores: ~60 s to compile, then ~3 steps/s; over 300 steps the mel loss falls
from ~200 to ~60, and the duration and KL terms fall too. A pipeline check: base_v1 is the
official size.
"""
from ovjax.text.espeak import DEFAULT_ESPEAK_SYMBOLS
from ovjax.training.config import Data, Experiment, Train, model_json


def get_config() -> Experiment:
  model = model_json("base_v1_en")
  model["data"].update(text_cleaners=["espeak"], n_speakers=16)
  model["model"].update(
      inter_channels=32, hidden_channels=32, filter_channels=64, n_heads=2, n_layers=2,
      gin_channels=32, upsample_initial_channel=32, upsample_rates=[16, 16],
      upsample_kernel_sizes=[32, 32], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
      posterior_layers=4, flow_layers=2, n_flows=2)
  model["symbols"] = list(DEFAULT_ESPEAK_SYMBOLS)
  model["speakers"] = {"default": 0}
  return Experiment(
      kind="base", model=model,
      data=Data(batch_size=2, frame_buckets=(300,), validation_items=2, max_seconds=3.4),
      train=Train(steps=300, discriminator_width=0.0625, log_every=10, eval_every=300,
                  checkpoint_every=100))
