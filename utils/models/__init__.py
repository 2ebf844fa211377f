"""Whisper checkpoints built offline: `tiny_random` (random weights, real vocabulary) for fast
tests, `tiny_en` (OpenAI's tiny.en, real weights) for tests of what depends on the weights."""
