"""Training input pipeline: speech corpora -> TFDS datasets -> fixed-shape batches.

* `corpus.py`: local corpus layouts (LJSpeech, VCTK, a JSONL manifest) read into `Item`s.
* `catalog.py`: the TFDS catalog's ljspeech, vctk and libritts (needs the `tf` extra) as `Item`s.
* `preprocess.py`: one item -> a record (int16 audio, symbol ids, lengths) or a drop reason.
* `builders.py`: TFDS builders writing array_record train/validation splits, and `open_dataset`.
* `sampler.py`: `BucketPlan`, the deterministic length-bucketed batch plan (pure NumPy).
* `loader.py`: `TrainLoader`, Grain reading and padding in background threads, with a resumable
  state; `eval_batch` for validation items.

Nothing here imports TensorFlow; submodules load TFDS, Grain and the text front ends on import,
so import the one you need.
"""
