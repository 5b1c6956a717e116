"""The OpenVoice v1 base speaker TTS at its official size (40 M parameters; VITS' full
discriminator) over the official cjke symbol table, one style/speaker id per corpus speaker.

Run:

    ovjax train base --config base_full --workdir runs/base \\
        data.layout=ljspeech data.source=/data/LJSpeech-1.1

What to expect: VITS reaches good quality after ~300-800 K steps at batch 64 on GPUs. Fine-tune
the official weights instead with train.init_from=checkpoints/base_speakers/EN (and the
official D_*.pth of a VITS run with train.discriminator_from, if you have one).
"""
from ovjax.training.config import Data, Experiment, Train, model_json


def get_config() -> Experiment:
  return Experiment(kind="base", model=model_json("base_v1_en"), data=Data(batch_size=32),
                    train=Train(steps=800_000, discriminator_width=1.0))
