"""The OpenVoice v2 tone-colour converter at its official size (32.8 M parameters; VITS'
46.7 M-parameter discriminator), trained from scratch with VITS' recipe and MeloTTS' use_vc
objective: the reference encoder's embedding of each utterance, an IPA text encoder whose prior
the flow output must match.

Run (one machine; on a TPU pod see the README's training section):

    ovjax train converter --config converter_full --workdir runs/converter \\
        data.layout=vctk data.source=/data/VCTK-Corpus-0.92

What to expect: OpenVoice's converter was trained on ~300 K utterances of ~20 K speakers; VITS
recipes run ~500 K steps at batch 32-64 on GPUs. On a 2-core CPU this config does not train in
any useful time (`ovjax bench --train` measures a step); it is meant for accelerators.
"""
from ovjax.text.espeak import DEFAULT_ESPEAK_SYMBOLS
from ovjax.training.config import Data, Experiment, Train, model_json


def get_config() -> Experiment:
  model = model_json("converter_v2")
  model["ipa_symbols"] = list(DEFAULT_ESPEAK_SYMBOLS)
  return Experiment(kind="converter", model=model, data=Data(batch_size=32),
                    train=Train(steps=500_000, discriminator_width=1.0))
