"""surgkit.video: the SurgVISTA video foundation model (Yang et al.; spec ../shared/specs/surgvista.md).

Modules:

* :mod:`~surgkit.video.config` — encoder / pretraining / classifier configs and size presets;
* :mod:`~surgkit.video.model` — :class:`SurgVistaEncoder`, :class:`SurgVistaForPretraining`,
  :class:`SurgVistaForClassification`, :func:`load_model`;
* :mod:`~surgkit.video.masking`, :mod:`~surgkit.video.targets` — tube masks, pixel/teacher targets, losses;
* :mod:`~surgkit.video.teacher` — image teachers (HF ViT family, surgkit's small ViT);
* :mod:`~surgkit.video.clips` — 1-fps clip sampling and the official crop;
* :mod:`~surgkit.video.pretrain`, :mod:`~surgkit.video.finetune` — the two training recipes;
* :mod:`~surgkit.video.convert`, :mod:`~surgkit.video.hf` — official checkpoints, HF VideoMAE folders;
* :mod:`~surgkit.video.demo` — the ``surgkit demo`` step.

Documentation: docs/video.md. Submodules import torch; this package file does not.
"""
