"""The demo tone-colour converter that ships inside ovjax (~2 M parameters, a few MB): small
enough to train on 2 CPU cores in about two hours, on the corpus `ovjax corpus synth` makes from
the voices installed offline (espeak-ng, Festival) plus real recordings.

Unlike the official v2 converter, its decoder is conditioned on the target's tone-colour
embedding (v1's layout, `zero_g` off): with this little training and capacity, the flow alone
moves too little of the voice.

Run (what built the shipped model; see ovjax/assets/converter_demo/MODEL_CARD.md): a first run
from scratch, then a second one warm-started from its exported weights:

    ovjax corpus synth corpus --real RECORDINGS --holdout 1 --max-speakers 100 --sentences 24
    ovjax train converter --config converter_demo --workdir runs/demo \\
        data.source=corpus/manifest.jsonl
    ovjax export runs/demo demo1 --dtype float16
    ovjax train converter --config converter_demo --workdir runs/demo2 \\
        data.source=corpus/manifest.jsonl train.init_from=demo1 train.steps=4027
    ovjax export runs/demo2 converter_demo

What to expect on 2 cores: ~80 s to compile each of the 4 length buckets, then ~0.85-1.3 step/s
at batch 8 (0.4-0.6 while other jobs share the cores). The first run took 1.8 h for 3699 steps
(stopped there with SIGTERM: `steps` below reproduces it exactly), the mel loss (45 x L1) falling
from 96 to ~32 and the KL term from 14 to ~1.6; the second (run with steps=20000 and
stopped with SIGTERM at step 4027 after 1.7 h; steps=4027 reproduces it), brought the mel loss to ~28-29, and lifted the similarity gain from +0.014 / -0.083
(seen / unseen speakers) to +0.096 / +0.078. The model card has its measured quality.
"""
from ovjax.text.espeak import DEFAULT_ESPEAK_SYMBOLS
from ovjax.training.config import Data, Experiment, Train, model_json


def get_config() -> Experiment:
  model = model_json("converter_v2")
  model["model"].update(
      inter_channels=96, hidden_channels=96, filter_channels=256, n_heads=2, n_layers=3,
      gin_channels=128, upsample_initial_channel=128, upsample_rates=[8, 8, 4],
      upsample_kernel_sizes=[16, 16, 8], resblock_kernel_sizes=[3, 7],
      resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], posterior_layers=8, flow_layers=4,
      n_flows=4, zero_g=False)
  model["ipa_symbols"] = list(DEFAULT_ESPEAK_SYMBOLS)
  return Experiment(
      kind="converter", model=model,
      data=Data(batch_size=8, frame_buckets=(160, 260, 380, 520), validation_items=4,
                max_seconds=6.0),
      train=Train(steps=3699, discriminator_width=0.125, log_every=25, eval_every=1000,
                  checkpoint_every=250))
