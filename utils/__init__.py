"""Fine-tune Whisper on your language: sources -> features -> store -> training -> transcription.

Sub-packages, one per stage (each knows only the stages before it): `sources`, `store`,
`featurize`, `train`, `transcribe`; plus `app` (the Gradio transcriber) and `pipeline` (the three
notebooks in one command). See README.md's architecture section.
"""

from . import logs

logs.setup()
