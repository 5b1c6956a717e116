"""Fine-tune the official OpenVoice v2 converter (checkpoints_v2/converter from the myshell-ai
OpenVoice v2 release) on your own speakers: the generator starts from the official weights, the
IPA text encoder (which the release does not include) and the discriminator start fresh, or the
discriminator from a VITS-layout D_*.pth.

Run:

    ovjax train converter --config converter_finetune --workdir runs/finetune \\
        data.source=my_corpus/manifest.jsonl   # train.init_from=DIR if not ./checkpoints_v2/converter

What to expect: from the first step the mel loss is a trained decoder's, far below a fresh
model's; a fresh discriminator needs a few thousand steps before the adversarial terms settle,
so the learning rate starts at a tenth of VITS'. Export with `ovjax export` and use the folder
wherever the official one goes.
"""
from ovjax.text.espeak import DEFAULT_ESPEAK_SYMBOLS
from ovjax.training.config import Data, Experiment, Train, model_json


def get_config() -> Experiment:
  model = model_json("converter_v2")
  model["ipa_symbols"] = list(DEFAULT_ESPEAK_SYMBOLS)
  return Experiment(kind="converter", model=model, data=Data(batch_size=16),
                    train=Train(steps=20_000, learning_rate=2e-5,
                                init_from="checkpoints_v2/converter",
                                checkpoint_every=1000, eval_every=1000))
