"""Evaluation during training: the model's inference path on held-out items, its mel error, and
audio samples with mel pictures written to the workdir.

Converter: each validation item reconverted into its own tone colour (tau 0: the reconstruction
the mel error is measured on) and into the next item's. Base TTS: each item's text said by its
speaker.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ovjax.audio.io import write_wav
from ovjax.audio.mel import config_filterbank, spec_to_log_mel
from ovjax.eval.plots import save_mel_png
from ovjax.layers.masks import sequence_mask
from ovjax.models import base_tts as tts_model
from ovjax.models.converter import ToneColorConverterModel
from ovjax.training.objective import Recipe
from ovjax.training.step import model_inputs


def inference_params(recipe: Recipe, params_g):
  """What the inference model loads: the converter without its training-only text encoder."""
  if recipe.kind == "converter":
    return {"params": {k: v for k, v in params_g["params"].items() if k != "text_enc"}}
  return params_g


@functools.partial(jax.jit, static_argnames="recipe")
def converter_samples(params, batch, *, recipe: Recipe):
  """(reconstructions, conversions into the next item's voice) [B, T * hop], and the mel L1 of
  the reconstructions against the input over valid frames."""
  inputs = model_inputs(recipe, batch)
  model = ToneColorConverterModel(recipe.model)
  spec, lengths = inputs["spec"], inputs["spec_lengths"]
  se = model.apply(params, spec, lengths, method=ToneColorConverterModel.extract_se)
  noise = jnp.zeros((*spec.shape[:2], recipe.model.inter_channels))
  vc = lambda tgt: model.apply(params, spec, lengths, se, tgt, 0.0, noise,
                               method=ToneColorConverterModel.voice_conversion)[0]
  recon, swapped = vc(se), vc(jnp.roll(se, -1, axis=0))
  filterbank = config_filterbank(recipe.vits)
  mel_in = spec_to_log_mel(spec, filterbank)
  mel_out = spec_to_log_mel(model_inputs(recipe, dict(batch, audio=jnp.pad(
      recon, ((0, 0), (0, batch["audio"].shape[1] - recon.shape[1])))))["spec"], filterbank)
  mask = sequence_mask(lengths, spec.shape[1])
  mel_l1 = jnp.sum(jnp.abs(mel_in - mel_out) * mask) / (jnp.sum(mask) * mel_in.shape[-1])
  return recon, swapped, mel_l1, mel_in, mel_out


def evaluate(recipe: Recipe, params_g, batch, keys, speakers, step: int, workdir) -> dict:
  """Writes samples/step_<N>/ (WAVs and mel.png) and returns the eval metrics."""
  vits = recipe.vits
  out_dir = Path(workdir) / "samples" / f"step_{step:07d}"
  params = inference_params(recipe, params_g)
  rate, hop = vits.sampling_rate, vits.hop_length
  frames = np.asarray(batch["audio_lengths"]) // hop
  keys = [re.sub(r"[^\w.-]+", "_", Path(str(k)).stem) for k in keys]  # Keys may be paths.
  if recipe.kind == "converter":
    recon, swapped, mel_l1, mel_in, mel_out = jax.device_get(
        converter_samples(params, batch, recipe=recipe))
    n = len(keys)
    for i, key in enumerate(keys):
      write_wav(out_dir / f"{key}_reconstructed.wav", recon[i, :frames[i] * hop], rate)
      write_wav(out_dir / f"{key}_to_{speakers[(i + 1) % n]}.wav",
                swapped[i, :frames[i] * hop], rate)
    save_mel_png(out_dir / "mel.png", {f"{keys[0]} (input)": mel_in[0, :frames[0]],
                                       "reconstructed": mel_out[0, :frames[0]]}, rate, hop,
                 title=f"step {step}")
    return {"eval/mel_l1": float(mel_l1)}
  # Base TTS: say each held-out text in its speaker's voice.
  ids, lengths = jnp.asarray(batch["ids"]), jnp.asarray(batch["id_lengths"])
  sid = jnp.asarray(batch["speaker_id"])
  audio, y_lengths = tts_model.infer(params, ids, lengths, sid, jax.random.key(step),
                                     config=recipe.model)
  audio, y_lengths = np.asarray(audio), np.asarray(y_lengths)
  mels = {}
  for i, key in enumerate(keys):
    wave = audio[i, :y_lengths[i] * hop]
    write_wav(out_dir / f"{key}_synthesized.wav", wave, rate)
    if i == 0:
      inputs = model_inputs(recipe, {"audio": jnp.asarray(batch["audio"][:1]),
                                     "audio_lengths": jnp.asarray(batch["audio_lengths"][:1]),
                                     "ids": ids[:1], "id_lengths": lengths[:1], "speaker_id": sid[:1]})
      mels[f"{key} (recording)"] = np.asarray(
          spec_to_log_mel(inputs["spec"], config_filterbank(vits)))[0, :frames[0]]
      synth = np.zeros((1, len(wave) + hop), np.float32)
      synth[0, :len(wave)] = wave
      spec = model_inputs(recipe, {"audio": jnp.asarray(synth),
                                   "audio_lengths": jnp.array([len(wave)]), "ids": ids[:1],
                                   "id_lengths": lengths[:1], "speaker_id": sid[:1]})["spec"]
      mels["synthesized"] = np.asarray(spec_to_log_mel(spec, config_filterbank(vits)))[0]
  save_mel_png(out_dir / "mel.png", mels, rate, hop, title=f"step {step}")
  return {"eval/seconds_synthesized": float(np.sum(y_lengths) * hop / rate)}
